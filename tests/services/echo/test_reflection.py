"""UDP echo against forged sources, on loopback: real datagrams from a privileged port,
from one of the server's own ports, past the rate, and a forged source that would start
a ping-pong between two echo servers (sent through a raw socket: the tests run as root).

Ordering is the readiness event: datagrams to one server socket are handled in the
order they arrive, and loopback delivers at once, so when the echo of a later datagram
is back, the verdict on an earlier one is known (and its echo would already be queued).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.datagram import DatagramEndpoint
from socketkit.aio.listeners import Listener
from socketkit.cli.main import build_parser
from socketkit.cli.serve import build_from_args
from socketkit.services.echo.policy import (
    DROP_OWN_PORT,
    DROP_PRIVILEGED_PORT,
    DROP_RATE_LIMITED,
    FIRST_UNPRIVILEGED_PORT,
    UDP_REPLY_BURST,
    UDP_REPLY_RATE,
    EchoPolicy,
)
from socketkit.services.echo.server import EchoDatagrams, EchoServer, make_echo_server
from socketkit.testing import aio_serving
from tests.aio.conftest import Runner

UDP = Listener(Address("127.0.0.1", 0), "udp")
TIMEOUT = 5.0


def frozen_clock() -> float:
    """No bucket refills during a test: every count is exact."""
    return 0.0


def udp_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def low_port_socket() -> socket.socket:
    """A UDP socket on a free privileged port of 127.0.0.1 (root binds those)."""
    for port in range(900, FIRST_UNPRIVILEGED_PORT):
        try:
            return udp_socket("127.0.0.1", port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise AssertionError("no free UDP port in 900-1023 on 127.0.0.1")


async def echo_of(sock: socket.socket, data: bytes, server: Address) -> bytes:
    """Send from ``sock`` and wait for the echo (the readiness event of these tests)."""
    sock.sendto(data, (server.host, server.port))  # loopback: never blocks
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), TIMEOUT)


def queued(sock: socket.socket) -> list[bytes]:
    """The datagrams waiting on ``sock``, without waiting for more."""
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def test_no_echo_to_a_privileged_source_port(run: Runner[None]) -> None:
    async def main() -> None:
        server = make_echo_server()
        async with aio_serving(server, [UDP]) as (address,):
            with low_port_socket() as low, udp_socket() as client:
                low.sendto(b"from a service port", (address.host, address.port))
                assert await echo_of(client, b"marker", address) == b"marker"
                assert queued(low) == []
                stats = server.stats()
                assert stats.datagrams_dropped == {DROP_PRIVILEGED_PORT: 1}
                assert (stats.datagrams_in, stats.datagrams_out) == (2, 1)

    run(main())


def test_no_echo_from_any_of_the_servers_own_ports(run: Runner[None]) -> None:
    async def main() -> None:
        server = make_echo_server()
        listeners = [UDP, Listener(Address("127.0.0.1", 0), "tcp")]
        async with aio_serving(server, listeners) as (udp, tcp):
            # From the TCP listener's port (free for UDP), and from the UDP listener's
            # own port on another loopback address: another echo server on our port.
            with udp_socket("127.0.0.1", tcp.port) as own, udp_socket("127.0.0.2", udp.port) as twin:
                own.sendto(b"loop?", (udp.host, udp.port))
                twin.sendto(b"loop?", (udp.host, udp.port))
                with udp_socket() as client:
                    assert await echo_of(client, b"marker", udp) == b"marker"
                assert queued(own) == queued(twin) == []
                assert server.stats().datagrams_dropped == {DROP_OWN_PORT: 2}

    run(main())


def test_one_source_gets_the_burst_then_nothing(
    run: Runner[None], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 127.0.0.1 and 127.0.0.2 stand for two hosts here (off loopback every port of an
    # address shares its bucket); loopback's own rule, a bucket per source port, is
    # the next test's.
    monkeypatch.setattr("socketkit.services.echo.policy.limit_key", lambda host: host)

    async def main() -> None:
        burst = 5
        handler = EchoDatagrams(EchoPolicy(burst=burst), clock=frozen_clock)
        server = make_echo_server(datagram_handler=handler)
        async with aio_serving(server, [UDP]) as (address,):
            with udp_socket() as flood, udp_socket() as same_host, udp_socket("127.0.0.2") as other:
                for i in range(3 * burst):
                    flood.sendto(b"%d" % i, (address.host, address.port))
                # Another address has its own bucket: its echo is the readiness event.
                assert await echo_of(other, b"marker", address) == b"marker"
                assert queued(flood) == [b"%d" % i for i in range(burst)]
                # Another port of the same address shares the drained bucket.
                same_host.sendto(b"same host", (address.host, address.port))
                assert await echo_of(other, b"marker 2", address) == b"marker 2"
                assert queued(same_host) == []
                assert server.stats().datagrams_dropped == {DROP_RATE_LIMITED: 2 * burst + 1}

    with caplog.at_level(logging.WARNING, logger="socketkit.services.echo.server"):
        run(main())
    # 11 drops, logged the 1st, 2nd, 4th and 8th time: visible, never a flood.
    counts = [r.getMessage().rsplit("(", 1)[1] for r in caplog.records if "no answer to" in r.getMessage()]
    assert counts == ["1 so far)", "2 so far)", "4 so far)", "8 so far)"]


def test_one_local_socket_over_its_rate_does_not_starve_another(run: Runner[None]) -> None:
    # Red-team round 2, finding 5: one local sender used to drain the bucket that all of
    # loopback shared, and every other local user's echoes were dropped with it.
    async def main() -> None:
        burst = 5
        handler = EchoDatagrams(EchoPolicy(burst=burst), clock=frozen_clock)
        server = make_echo_server(datagram_handler=handler)
        async with aio_serving(server, [UDP]) as (address,):
            with udp_socket() as flood, udp_socket("127.0.0.77") as other, udp_socket() as same_host:
                for i in range(3 * burst):
                    flood.sendto(b"%d" % i, (address.host, address.port))
                assert await echo_of(other, b"marker", address) == b"marker"
                assert await echo_of(same_host, b"marker", address) == b"marker"
                assert queued(flood) == [b"%d" % i for i in range(burst)]
                assert server.stats().datagrams_dropped == {DROP_RATE_LIMITED: 2 * burst}

    run(main())


def test_serve_echo_flags_set_the_policy() -> None:
    parser = build_parser()
    default = build_from_args(parser.parse_args(["serve", "echo", "--udp", "--port", "0"])).make_server()
    assert isinstance(default, EchoServer)
    assert (default.echo_policy.rate, default.echo_policy.burst) == (UDP_REPLY_RATE, UDP_REPLY_BURST)
    args = parser.parse_args(
        ["serve", "echo", "--udp", "--port", "0", "--udp-rate", "2.5", "--udp-burst", "3"]
    )
    server = build_from_args(args).make_server()
    assert isinstance(server, EchoServer)
    assert (server.echo_policy.rate, server.echo_policy.burst) == (2.5, 3)


@pytest.mark.parametrize("flag", [["--udp-rate", "0"], ["--udp-rate", "x"], ["--udp-burst", "0"]])
def test_serve_echo_refuses_a_limit_that_is_not_positive(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["serve", "echo", "--udp", *flag])
    assert caught.value.code == 2
    assert flag[0] in capsys.readouterr().err


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF or 0xFFFF


def send_forged(source: Address, destination: Address, payload: bytes) -> None:
    """Send one UDP datagram whose IPv4 source is ``source``, through a raw socket."""
    src, dst = socket.inet_aton(source.host), socket.inet_aton(destination.host)
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    header = struct.pack("!HHHH", source.port, destination.port, length, 0)
    udp = struct.pack("!HHHH", source.port, destination.port, length, _checksum(pseudo + header + payload))
    # Version 4, header 5 words; total length and IP checksum are filled in by Linux.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + udp + payload, (destination.host, 0))


class _Watched(EchoDatagrams):
    """Echo with a frozen clock that sets ``refused`` once its server refuses a datagram."""

    def __init__(self, policy: EchoPolicy) -> None:
        super().__init__(policy, clock=frozen_clock)
        self.refused = asyncio.Event()
        self.server: EchoServer | None = None

    def __call__(self, data: bytes, addr: Any, endpoint: DatagramEndpoint) -> None:
        super().__call__(data, addr, endpoint)
        assert self.server is not None
        if self.server.stats().datagrams_dropped:
            self.refused.set()


def watched_server(burst: int) -> tuple[EchoServer, _Watched]:
    handler = _Watched(EchoPolicy(burst=burst))
    server = make_echo_server(datagram_handler=handler)
    handler.server = server
    return server, handler


async def first_refusal(*handlers: _Watched) -> None:
    waits = [asyncio.ensure_future(h.refused.wait()) for h in handlers]
    try:
        done, _ = await asyncio.wait(waits, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    assert done, "the two echo servers are still answering each other"


def test_a_forged_source_cannot_start_an_endless_ping_pong(
    run: Runner[None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two hosts played by 127.0.0.1 and 127.0.0.2 (and a third client on .3): off
    # loopback each IPv4 address has its own bucket, which this stands for.
    monkeypatch.setattr("socketkit.services.echo.policy.limit_key", lambda host: host)

    async def main() -> None:
        burst = 5
        a, a_handler = watched_server(burst)
        b, b_handler = watched_server(burst)
        async with (
            aio_serving(a, [UDP]) as (a_address,),
            aio_serving(b, [Listener(Address("127.0.0.2", 0), "udp")]) as (b_address,),
        ):
            send_forged(b_address, a_address, b"ping")  # to A, "from" B
            await first_refusal(a_handler, b_handler)
            # Each answered the other's address `burst` times; A's next datagram from B
            # found the bucket empty, and the one datagram in flight was gone.
            a_stats, b_stats = a.stats(), b.stats()
            assert a_stats.datagrams_dropped == {DROP_RATE_LIMITED: 1}
            assert (a_stats.datagrams_in, a_stats.datagrams_out) == (burst + 1, burst)
            assert (b_stats.datagrams_in, b_stats.datagrams_out) == (burst, burst)
            assert b_stats.datagrams_dropped == {}
            # Nothing is left bouncing: each server sees only the next probe.
            with udp_socket("127.0.0.3") as client:
                assert await echo_of(client, b"probe", a_address) == b"probe"
                assert await echo_of(client, b"probe", b_address) == b"probe"
            assert (a.stats().datagrams_in, b.stats().datagrams_in) == (burst + 2, burst + 1)

    run(main())


def test_a_forged_source_on_the_servers_own_port_gets_no_echo_at_all(run: Runner[None]) -> None:
    async def main() -> None:
        b, b_handler = watched_server(5)
        async with aio_serving(b, [Listener(Address("127.0.0.2", 0), "udp")]) as (b_address,):
            a, a_handler = watched_server(5)
            same_port = Listener(Address("127.0.0.1", b_address.port), "udp")
            async with aio_serving(a, [same_port]) as (a_address,):
                send_forged(b_address, a_address, b"ping")  # two echo servers on one port
                await first_refusal(a_handler, b_handler)
                a_stats = a.stats()
                assert a_stats.datagrams_dropped == {DROP_OWN_PORT: 1}
                assert (a_stats.datagrams_in, a_stats.datagrams_out) == (1, 0)
                assert b.stats().datagrams_in == 0

    run(main())
