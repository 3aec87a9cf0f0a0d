"""UDP echo's reflection policy, pure: a fake clock, no sockets."""

from __future__ import annotations

import pytest

from socketkit.services.echo.policy import (
    DROP_OWN_PORT,
    DROP_PRIVILEGED_PORT,
    DROP_RATE_LIMITED,
    FIRST_UNPRIVILEGED_PORT,
    UDP_MAX_SOURCES,
    UDP_REPLY_BURST,
    UDP_REPLY_RATE,
    EchoPolicy,
)

CLIENT_PORT = 40000  # an ephemeral port, as a real client's


@pytest.mark.parametrize("port", [0, 7, 13, 19, 37, 53, 123, 161, FIRST_UNPRIVILEGED_PORT - 1])
def test_no_answer_to_a_privileged_source_port(port: int) -> None:
    assert EchoPolicy().check("192.0.2.1", port, 0.0) == DROP_PRIVILEGED_PORT


def test_the_first_unprivileged_port_is_answered() -> None:
    assert EchoPolicy().check("192.0.2.1", FIRST_UNPRIVILEGED_PORT, 0.0) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "192.0.2.7", "::1", "::ffff:192.0.2.7"])
def test_no_answer_from_one_of_our_own_ports_whatever_the_host(host: str) -> None:
    policy = EchoPolicy(own_ports=[7007, 7100])
    assert policy.check(host, 7007, 0.0) == DROP_OWN_PORT
    assert policy.check(host, 7100, 0.0) == DROP_OWN_PORT
    assert policy.check(host, 7008, 0.0) is None


def test_own_ports_can_be_replaced_once_bound() -> None:
    policy = EchoPolicy()
    assert policy.check("127.0.0.1", 5555, 0.0) is None
    policy.set_own_ports([5555])
    assert policy.own_ports == frozenset({5555})
    assert policy.check("127.0.0.1", 5555, 0.0) == DROP_OWN_PORT


def test_a_source_gets_its_burst_then_the_rate() -> None:
    policy = EchoPolicy(rate=10.0, burst=4)
    assert [policy.check("192.0.2.1", CLIENT_PORT, 0.0) for _ in range(5)] == [None] * 4 + [DROP_RATE_LIMITED]
    assert policy.check("192.0.2.1", CLIENT_PORT, 0.05) == DROP_RATE_LIMITED  # half a token
    assert policy.check("192.0.2.1", CLIENT_PORT, 0.1) is None  # one token after 1/rate s
    assert policy.check("192.0.2.1", CLIENT_PORT, 0.1) == DROP_RATE_LIMITED


def test_a_bucket_refills_to_its_burst_and_no_further() -> None:
    policy = EchoPolicy(rate=10.0, burst=3)
    for _ in range(3):
        policy.check("192.0.2.1", CLIENT_PORT, 0.0)
    answers = [policy.check("192.0.2.1", CLIENT_PORT, 3600.0) for _ in range(4)]
    assert answers == [None, None, None, DROP_RATE_LIMITED]


def test_the_bucket_is_per_address_every_port_of_it_shares_it() -> None:
    policy = EchoPolicy(burst=2)
    assert policy.check("192.0.2.1", 40000, 0.0) is None
    assert policy.check("192.0.2.1", 40001, 0.0) is None
    assert policy.check("192.0.2.1", 40002, 0.0) == DROP_RATE_LIMITED
    assert policy.check("192.0.2.2", 40000, 0.0) is None  # another address: its own bucket


def test_ipv4_seen_through_a_dual_stack_socket_shares_the_ipv4_bucket() -> None:
    policy = EchoPolicy(burst=1)
    assert policy.check("192.0.2.1", CLIENT_PORT, 0.0) is None
    assert policy.check("::ffff:192.0.2.1", CLIENT_PORT, 0.0) == DROP_RATE_LIMITED


def test_refused_ports_use_no_token_of_the_forged_address() -> None:
    policy = EchoPolicy(burst=1, own_ports=[7007])
    for _ in range(10):
        policy.check("192.0.2.1", 53, 0.0)
        policy.check("192.0.2.1", 7007, 0.0)
    assert policy.check("192.0.2.1", CLIENT_PORT, 0.0) is None


def test_rotating_source_addresses_cannot_grow_the_table_past_its_bound() -> None:
    policy = EchoPolicy(burst=1, max_sources=100)
    for i in range(10_000):
        policy.check(f"10.0.{i // 256}.{i % 256}", CLIENT_PORT, 0.0)
    assert policy.sources() == 100


def test_eviction_forgets_the_least_recently_seen_source() -> None:
    policy = EchoPolicy(burst=1, max_sources=3)
    policy.check("192.0.2.1", CLIENT_PORT, 0.0)  # drained
    policy.check("192.0.2.2", CLIENT_PORT, 0.0)
    policy.check("192.0.2.3", CLIENT_PORT, 0.0)
    assert policy.check("192.0.2.1", CLIENT_PORT, 0.0) == DROP_RATE_LIMITED  # seen again: most recent
    policy.check("192.0.2.4", CLIENT_PORT, 0.0)  # evicts .2, the least recently seen
    assert policy.sources() == 3
    assert policy.check("192.0.2.1", CLIENT_PORT, 0.0) == DROP_RATE_LIMITED  # still remembered
    assert policy.check("192.0.2.2", CLIENT_PORT, 0.0) is None  # forgotten: a fresh bucket


def _ping_pong(a: EchoPolicy, a_addr: tuple[str, int], b: EchoPolicy, b_addr: tuple[str, int]) -> int:
    """Two echo servers answering each other, starting with a datagram to A forged as
    B's; return how many echoes were sent before one of them refused (at most 10,000)."""
    now, echoes = 0.0, 0
    servers = [(a, b_addr), (b, a_addr)]  # (policy of the receiver, source of the datagram)
    while echoes < 10_000:
        policy, (host, port) = servers[echoes % 2]
        if policy.check(host, port, now) is not None:
            return echoes
        echoes += 1
        now += 0.0001  # a 100 µs hop (loopback, a LAN)
    return echoes


def test_a_forged_datagram_between_two_echo_servers_on_the_same_port_is_never_echoed() -> None:
    a = EchoPolicy(own_ports=[7007])
    b = EchoPolicy(own_ports=[7007])
    assert _ping_pong(a, ("192.0.2.1", 7007), b, ("198.51.100.1", 7007)) == 0


def test_a_forged_datagram_between_two_echo_servers_on_other_ports_ends_after_the_burst() -> None:
    a = EchoPolicy(own_ports=[7007])
    b = EchoPolicy(own_ports=[9007])
    echoes = _ping_pong(a, ("192.0.2.1", 7007), b, ("198.51.100.1", 9007))
    # Each side answers the other's address UDP_REPLY_BURST times (plus what its bucket
    # refills meanwhile: 80 hops of 100 µs at 20/s is 0.16 of a token), then drops.
    assert echoes == 2 * UDP_REPLY_BURST


def test_limits_are_named_and_positive() -> None:
    assert UDP_REPLY_RATE > 0
    assert UDP_REPLY_BURST >= 1
    assert UDP_MAX_SOURCES >= 1
    for bad in ({"rate": 0}, {"rate": -1.0}, {"burst": 0}, {"max_sources": 0}):
        with pytest.raises(ValueError, match="positive"):
            EchoPolicy(**bad)  # type: ignore[arg-type]


def test_the_default_table_holds_udp_max_sources_addresses() -> None:
    policy = EchoPolicy()
    for i in range(UDP_MAX_SOURCES + 1000):
        policy.check(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", CLIENT_PORT, 0.0)
    assert policy.sources() == UDP_MAX_SOURCES


def test_peers_share_a_bucket_as_every_per_address_rule_counts_them() -> None:
    # An IPv6 peer is its /64, and ::ffff:a.b.c.d is a.b.c.d: rotating among them buys
    # nothing.
    policy = EchoPolicy(burst=2, rate=1)
    for group in (
        ["2001:db8:0:1::1", "2001:db8:0:1::ffff"],
        ["192.0.2.7", "::ffff:192.0.2.7"],
    ):
        answers = [policy.check(host, 5000, 0.0) for host in group * 2]
        assert answers[:2] == [None, None]
        assert set(answers[2:]) == {DROP_RATE_LIMITED}
    assert policy.check("2001:db8:0:2::1", 5000, 0.0) is None  # another /64


def test_on_loopback_each_source_port_has_its_own_bucket() -> None:
    # Red-team round 2, finding 5: all of loopback shared one bucket, so one local user
    # sending from 127.0.0.77 starved every other. A loopback source is a local
    # program's own socket (forging one takes root), so each gets its bucket.
    policy = EchoPolicy(burst=2, rate=1)
    for host in ("127.0.0.1", "127.0.0.77", "::1", "::ffff:127.0.0.1"):
        assert [policy.check(host, 40000, 0.0) for _ in range(3)] == [None, None, DROP_RATE_LIMITED]
        assert policy.check(host, 40001, 0.0) is None  # another socket: its own bucket
    # Off loopback, every port of an address still shares the address's bucket.
    assert [policy.check("192.0.2.9", port, 0.0) for port in (40000, 40001, 40002)] == [
        None,
        None,
        DROP_RATE_LIMITED,
    ]
