"""Password checks, pure: OPER and PASS ask for a check (a ``CheckPassword`` effect) and
finish when the result comes back; attempts are throttled per connection and per
address with the time passed in; every failure is reported for the log."""

from __future__ import annotations

import pytest

from socketkit.services.chat import numerics as n
from socketkit.services.chat.replies import AuthFailed, CheckPassword
from socketkit.services.chat.session import (
    OPER_ATTEMPT_INTERVAL_S,
    OPER_ATTEMPTS_BURST,
    PASSWORD_ATTEMPT_INTERVAL_S,
    PASSWORD_ATTEMPTS_PER_ADDRESS,
    PBKDF2_ROUNDS,
    UNKNOWN_NAME_HASH,
    AttemptThrottle,
    TokenBucket,
    hash_password,
    verify_password,
)
from tests.services.chat.harness import Net

STORED = hash_password("hunter2", b"0123456789abcdef", rounds=1000)


def test_oper_asks_for_a_check_and_the_client_is_served_meanwhile() -> None:
    net = Net(defer_checks=True, opers={"root": STORED})
    bob = net.register("bob")
    net.send(bob, "OPER root wrong")
    assert net.take(bob) == []  # no answer until the check is done
    (request,) = net.pending
    assert (request.purpose, request.name, request.stored, request.known) == ("OPER", "root", STORED, True)
    assert "wrong" not in repr(request)
    assert STORED not in repr(request)
    net.send(bob, "PING :still-there")  # the client (and everyone) is served meanwhile
    assert [m.command for m in net.take(bob)] == ["PONG"]
    net.finish_check(request, verify_password(request.stored, request.password))
    replies = net.take(bob)
    assert [(m.command, m.params[-1]) for m in replies] == [(n.ERR_PASSWDMISMATCH, "Password incorrect")]
    assert net.auth_failures == [AuthFailed(bob.id, "OPER", "root", "bad password")]
    assert "o" not in bob.modes


def test_oper_success_after_the_check() -> None:
    net = Net(defer_checks=True, opers={"root": STORED})
    bob = net.register("bob")
    net.send(bob, "OPER root hunter2")
    (request,) = net.pending
    net.finish_check(request, True)
    assert net.codes(bob) == [n.RPL_YOUREOPER, "MODE"]
    assert "o" in bob.modes
    assert bob.oper_name == "root"
    assert net.auth_failures == []


def test_an_unknown_name_costs_a_check_too_and_gets_the_same_answer() -> None:
    net = Net(defer_checks=True, opers={"root": STORED})
    bob = net.register("bob")
    net.send(bob, "OPER nobody hunter2")
    (request,) = net.pending
    assert request.stored == UNKNOWN_NAME_HASH
    assert UNKNOWN_NAME_HASH.split("$")[1] == str(PBKDF2_ROUNDS)  # as costly as a real hash
    assert not request.known
    assert not verify_password(UNKNOWN_NAME_HASH, "hunter2")
    net.finish_check(request, verify_password(request.stored, request.password))
    assert net.codes(bob) == [n.ERR_PASSWDMISMATCH]
    assert net.auth_failures == [AuthFailed(bob.id, "OPER", "nobody", "no such operator")]


def test_one_check_at_a_time_per_connection() -> None:
    net = Net(defer_checks=True, opers={"root": STORED})
    bob = net.register("bob")
    net.send(bob, "OPER root a")
    net.send(bob, "OPER root b")
    assert len(net.pending) == 1
    assert [(m.command, m.params[1]) for m in net.take(bob)] == [(n.RPL_TRYAGAIN, "OPER")]
    assert net.auth_failures[-1].reason == "a check is already running"


def test_a_check_the_server_had_no_room_for_is_answered_try_again_and_not_counted() -> None:
    net = Net(defer_checks=True, opers={"root": STORED})
    bob = net.register("bob")
    for _ in range(OPER_ATTEMPTS_BURST + 2):  # more than the budget: none of them was checked
        net.send(bob, "OPER root x")
        net.finish_check(net.pending[0], None)
        assert [(m.command, m.params[1]) for m in net.take(bob)] == [(n.RPL_TRYAGAIN, "OPER")]
    assert net.auth_failures[-1].reason == "the server is busy checking other passwords"
    net.send(bob, "OPER root hunter2")
    assert len(net.pending) == 1  # still allowed: refused attempts gave their budget back


def test_oper_attempts_are_throttled_per_connection_with_the_time_passed_in() -> None:
    net = Net(opers={"root": STORED})
    bob = net.register("bob")
    for _ in range(OPER_ATTEMPTS_BURST):
        net.send(bob, "OPER root wrong")
        assert [m.params[-1] for m in net.take(bob)] == ["Password incorrect"]
    checked = len(net.auth_failures)
    net.send(bob, "OPER root hunter2")  # even the right password: not checked now
    (reply,) = net.take(bob)
    assert reply.command == n.ERR_PASSWDMISMATCH
    assert reply.params[-1] == f"Too many OPER attempts; try again in {OPER_ATTEMPT_INTERVAL_S:.0f} s"
    assert net.auth_failures[checked:] == [
        AuthFailed(bob.id, "OPER", "root", f"throttled for {OPER_ATTEMPT_INTERVAL_S:.0f} s")
    ]
    assert "o" not in bob.modes
    net.now += OPER_ATTEMPT_INTERVAL_S / 2
    net.send(bob, "OPER root hunter2")
    assert (
        net.take(bob)[0].params[-1]
        == f"Too many OPER attempts; try again in {OPER_ATTEMPT_INTERVAL_S / 2:.0f} s"
    )
    net.now += OPER_ATTEMPT_INTERVAL_S / 2
    net.send(bob, "OPER root hunter2")
    assert net.codes(bob) == [n.RPL_YOUREOPER, "MODE"]


def test_oper_attempts_are_throttled_per_address_across_connections() -> None:
    net = Net(defer_checks=True, opers={"root": STORED})
    clients = [net.register(f"u{i}") for i in range(PASSWORD_ATTEMPTS_PER_ADDRESS)]
    started = 0
    for client in clients:  # one attempt each: no connection is over its own budget
        net.send(client, "OPER root wrong")
        started += len(net.pending)
        for request in list(net.pending):
            net.finish_check(request, False)
    assert started == PASSWORD_ATTEMPTS_PER_ADDRESS
    late = net.register("late")  # a fresh connection from the same address
    net.send(late, "OPER root wrong")
    assert net.pending == []
    assert net.take(late)[0].params[-1].startswith("Too many OPER attempts")
    other = net.connect("192.0.2.7")  # another address has its own budget
    net.send(other, "NICK other")
    net.send(other, "USER o 0 * :O")
    net.send(other, "OPER root wrong")
    assert len(net.pending) == 1
    net.now += PASSWORD_ATTEMPT_INTERVAL_S
    net.send(late, "OPER root wrong")
    assert len(net.pending) == 2


@pytest.mark.parametrize(
    ("hosts", "other"),
    [
        ([f"127.{i}.{i}.{i + 1}" for i in range(PASSWORD_ATTEMPTS_PER_ADDRESS + 1)], "192.0.2.7"),
        ([f"2001:db8:1:2::{i:x}" for i in range(1, PASSWORD_ATTEMPTS_PER_ADDRESS + 2)], "2001:db8:1:3::1"),
    ],
    ids=["all-of-loopback", "one-ipv6-64"],
)
def test_password_attempts_from_one_peer_share_a_budget_whatever_its_source_address(
    hosts: list[str], other: str
) -> None:
    """Any local user can connect from any 127.x.y.z, an IPv6 peer from any address of
    its /64: the throttle keys on ``limit_key``, not on the exact address."""
    net = Net(password=STORED)
    for i, host in enumerate(hosts[:-1]):
        guess = net.connect(host)
        net.send(guess, "PASS guess")
        net.send(guess, f"NICK g{i}")
        net.send(guess, f"USER g{i} 0 * :G")
        assert net.closed[guess.id] == "Bad password"
    rotated = net.connect(hosts[-1])
    net.send(rotated, "PASS hunter2")
    net.send(rotated, "NICK alice")
    net.send(rotated, "USER a 0 * :A")
    assert net.closed[rotated.id] == "Too many password attempts"
    elsewhere = net.connect(other)
    net.send(elsewhere, "PASS hunter2")
    net.send(elsewhere, "NICK bob")
    net.send(elsewhere, "USER b 0 * :B")
    assert elsewhere.registered


def test_successes_do_not_use_up_the_address_budget() -> None:
    net = Net(opers={"root": STORED})
    for i in range(2 * PASSWORD_ATTEMPTS_PER_ADDRESS):
        client = net.register(f"op{i}")
        net.send(client, "OPER root hunter2")
        assert net.codes(client) == [n.RPL_YOUREOPER, "MODE"]


def test_the_connection_password_is_checked_once_at_registration_with_the_last_pass() -> None:
    net = Net(defer_checks=True, password=STORED)
    client = net.connect()
    net.send(client, "PASS first")
    net.send(client, "PASS hunter2")  # only the last one counts
    assert net.pending == []  # nothing checked before NICK and USER
    net.send(client, "NICK alice")
    net.send(client, "USER a 0 * :A")
    (request,) = net.pending
    assert (request.purpose, request.name, request.password) == ("PASS", "", "hunter2")
    assert client.pass_attempt is None  # not kept once handed over
    net.send(client, "NICK alicia")  # registration stays waiting for the check: no second one
    assert len(net.pending) == 1
    assert not client.registered
    net.finish_check(request, verify_password(request.stored, request.password))
    assert client.registered
    assert client.nick == "alicia"
    assert net.codes(client)[0] == n.RPL_WELCOME


def test_the_connection_password_waits_for_the_end_of_capability_negotiation() -> None:
    net = Net(defer_checks=True, password=STORED)
    client = net.connect()
    net.send(client, "CAP LS 302")
    net.send(client, "PASS hunter2")
    net.send(client, "NICK alice")
    net.send(client, "USER a 0 * :A")
    assert net.pending == []
    net.send(client, "CAP END")
    (request,) = net.pending
    net.finish_check(request, True)
    assert client.registered


def test_a_wrong_missing_or_unchecked_connection_password_closes_the_connection() -> None:
    net = Net(defer_checks=True, password=STORED)
    wrong = net.connect()
    net.send(wrong, "PASS guess")
    net.send(wrong, "NICK mallory")
    net.send(wrong, "USER m 0 * :M")
    net.finish_check(net.pending[0], False)
    assert net.codes(wrong) == [n.ERR_PASSWDMISMATCH]
    assert net.closed[wrong.id] == "Bad password"
    missing = net.connect()
    net.send(missing, "NICK bob")
    net.send(missing, "USER b 0 * :B")
    assert net.pending == []
    assert net.codes(missing) == [n.ERR_PASSWDMISMATCH]
    busy = net.connect()
    net.send(busy, "PASS hunter2")
    net.send(busy, "NICK carol")
    net.send(busy, "USER c 0 * :C")
    net.finish_check(net.pending[0], None)
    assert net.codes(busy) == [n.RPL_TRYAGAIN]
    assert net.closed[busy.id] == "Server busy, try again later"
    assert [(f.purpose, f.reason) for f in net.auth_failures] == [
        ("PASS", "bad password"),
        ("PASS", "no password sent"),
        ("PASS", "the server is busy checking other passwords"),
    ]


def test_connection_password_guesses_are_throttled_per_address() -> None:
    net = Net(password=STORED)
    for i in range(PASSWORD_ATTEMPTS_PER_ADDRESS):
        guess = net.connect()
        net.send(guess, "PASS guess")
        net.send(guess, f"NICK g{i}")
        net.send(guess, f"USER g{i} 0 * :G")
        assert net.closed[guess.id] == "Bad password"
    right = net.connect()  # even the right password waits now: it is not checked
    net.send(right, "PASS hunter2")
    net.send(right, "NICK alice")
    net.send(right, "USER a 0 * :A")
    assert not right.registered
    reply = net.take(right)[0]
    assert reply.command == n.ERR_PASSWDMISMATCH
    assert reply.params[-1] == f"Too many password attempts; try again in {PASSWORD_ATTEMPT_INTERVAL_S:.0f} s"
    assert net.closed[right.id] == "Too many password attempts"
    net.now += PASSWORD_ATTEMPT_INTERVAL_S
    again = net.connect()
    net.send(again, "PASS hunter2")
    net.send(again, "NICK alice")
    net.send(again, "USER a 0 * :A")
    assert again.registered


def test_a_result_for_a_client_that_left_changes_nothing() -> None:
    net = Net(defer_checks=True, opers={"root": STORED})
    bob = net.register("bob")
    net.send(bob, "OPER root hunter2")
    (request,) = net.pending
    net.send(bob, "QUIT")
    net.finish_check(request, True)
    assert net.state.operators == set()
    assert net.take(bob) == []


def test_throttle_buckets_wait_without_spending_and_forget_the_oldest_address() -> None:
    bucket = TokenBucket(2.0, 0.5, 0.0, 0.0)
    assert bucket.wait_time(1.0) == 1.0  # half a token after 1 s: 1 s more for a whole one
    assert bucket.wait_time(1.0) == 1.0  # asking spends nothing
    assert bucket.take(2.5) == 0.0  # 1.25 tokens, one spent
    bucket.give_back()
    assert bucket.tokens == 1.25
    throttle = AttemptThrottle(burst=1, interval_s=10.0, max_keys=2)
    own = TokenBucket(1.0, 0.1, 0.0, 0.0)
    assert throttle.take("a", 0.0, own) == 10.0  # the connection's bucket is empty...
    assert throttle.take("a", 0.0) == 0.0  # ... and nothing of the address's was spent
    assert throttle.take("a", 5.0) == 5.0
    throttle.take("b", 5.0)
    throttle.take("c", 5.0)
    assert len(throttle) == 2  # "a", the least recently used, was forgotten
    assert throttle.take("a", 5.0) == 0.0
    throttle.give_back("never-seen")  # no error, nothing remembered
    assert len(throttle) == 2


def test_check_requests_and_clients_never_show_a_password() -> None:
    request = CheckPassword(1, "OPER", "root", STORED, "hunter2")
    assert "hunter2" not in repr(request)
    assert STORED not in repr(request)
    net = Net(password=STORED)
    client = net.connect()
    net.send(client, "PASS hunter2")
    assert client.pass_attempt == "hunter2"
    assert "hunter2" not in repr(client)
