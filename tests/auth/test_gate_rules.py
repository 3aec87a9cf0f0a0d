"""The rules of the unauthenticated phase, without any engine: caps, the throttle's
delay carried into the session, what each outcome records and logs."""

from __future__ import annotations

from socketkit.auth.gate import EVICTED_MESSAGE, Eviction, GateRules
from socketkit.auth.handshake import client_mac
from socketkit.auth.throttle import AuthThrottle
from socketkit.auth.wiresession import Authenticated, ChallengeIssued, Refused
from socketkit.codec.wire import encode_control, encode_error, encode_hello
from socketkit.errors import BrokenResourceError

TOKEN = "ab" * 32
NONCE = bytes(32)


def login(
    rules: GateRules, key: str, token: str, now: float, handle: int | None = None
) -> Authenticated | Refused:
    session = rules.start(key, NONCE, now, handle=handle)
    nonce = bytes(range(32))
    mac = client_mac(token, NONCE, nonce)
    session.feed(
        encode_hello() + encode_control({"auth": "response", "nonce": nonce.hex(), "mac": mac.hex()})
    )
    end = list(session)[-1]
    assert isinstance(end, (Authenticated, Refused))
    return end


def test_over_a_cap_the_oldest_makes_room() -> None:
    rules = GateRules("t", TOKEN, max_unauthenticated=2, max_unauthenticated_total=3)
    assert [rules.admit("a", 1), rules.admit("a", 2)] == [None, None]
    assert rules.admit("a", 3) == Eviction(1, "2 connections from it are not authenticated yet")
    assert rules.admit("b", 4) is None
    # Over the total, the peer with the most (a: 2 and 3) gives up its oldest, not b.
    assert rules.admit("c", 5) == Eviction(2, "3 connections are not authenticated yet")
    assert rules.unauthenticated() == 3
    assert rules.release(1) is False  # evicted: it was forgotten then
    assert [rules.release(handle) for handle in (3, 4, 5)] == [True, True, True]
    assert rules.unauthenticated() == 0
    assert rules.eviction_notice() == encode_error("busy", EVICTED_MESSAGE)


def test_one_that_has_answered_goes_after_those_that_have_not() -> None:
    # An answered connection may be waiting out the throttle's delay for its verdict.
    rules = GateRules("t", TOKEN, AuthThrottle(free_failures=0), max_unauthenticated=2)
    rules.throttle.failure("a", 0.0)  # its verdicts wait 1 s
    assert rules.admit("a", 1) is None
    assert isinstance(login(rules, "a", TOKEN, 0.0, handle=1), Authenticated)  # answered, held
    assert rules.admit("a", 2) is None
    rules.start("a", NONCE, 0.0, handle=2)  # challenged, not answered
    assert rules.admit("a", 3) == Eviction(2, "2 connections from it are not authenticated yet")
    assert isinstance(login(rules, "a", TOKEN, 0.0, handle=3), Authenticated)
    assert rules.admit("a", 4) == Eviction(
        1, "2 connections from it are not authenticated yet"
    )  # all answered


def test_an_evicted_connection_is_logged_only_for_a_verdict_on_its_token() -> None:
    rules = GateRules("t", TOKEN, AuthThrottle(free_failures=5))
    gone = Refused(BrokenResourceError("closed"), by_peer=True)
    assert rules.settle("a", "peer", gone, 0.0, evicted=True) is None
    wrong = login(rules, "a", "cd" * 32, 0.0)
    assert rules.settle("a", "peer", wrong, 0.0, evicted=True) == (
        "warning",
        "t: authentication failed from peer",
    )
    assert rules.settle("a", "peer", Authenticated(verified=True), 0.0, evicted=True) is None


def test_failures_are_counted_and_the_delay_reaches_the_next_session() -> None:
    rules = GateRules("t", TOKEN, AuthThrottle(free_failures=1))
    end = login(rules, "peer", "cd" * 32, now=10.0)
    assert rules.settle("peer", "1.2.3.4:5", end, 10.0) == (
        "warning",
        "t: authentication failed from 1.2.3.4:5",
    )
    end = login(rules, "peer", "cd" * 32, now=11.0)
    assert rules.settle("peer", "1.2.3.4:5", end, 11.0) == (
        "warning",
        "t: authentication failed from 1.2.3.4:5; its next verdicts wait 1 s",
    )
    # The next connection from that peer is announced as delayed and held until then.
    session = rules.start("peer", NONCE, 11.5)
    session.feed(encode_hello())
    assert list(session)[-1] == ChallengeIssued(0.5, True)
    assert session.verdict_at == 12.0
    assert rules.start("other", NONCE, 11.5).delay == 0.0  # other peers are not delayed
    # The right token clears the record.
    end = login(rules, "peer", TOKEN, now=12.0)
    assert rules.settle("peer", "1.2.3.4:5", end, 12.0) == ("info", "t: 1.2.3.4:5 authenticated")
    assert rules.throttle.wait_time("peer", 12.0) == 0.0


def test_what_is_not_a_wrong_token_is_not_counted() -> None:
    rules = GateRules("t", TOKEN, AuthThrottle(free_failures=0), timeout=2.0)
    timeout = rules.start("p", NONCE, 0.0)
    timeout.check_deadline(2.0)
    end = list(timeout)[-1]
    assert isinstance(end, Refused)
    assert rules.settle("p", "x", end, 2.0) == ("info", "t: closing x: no authentication within 2 s")
    gone = Refused(BrokenResourceError("reset"), by_peer=True)
    assert rules.settle("p", "x", gone, 2.0) == ("info", "t: x left before authenticating (reset)")
    bad = rules.start("p", NONCE, 0.0)
    bad.feed(b"GET /")
    end = list(bad)[-1]
    assert isinstance(end, Refused)
    line = rules.settle("p", "x", end, 2.0)
    assert line is not None
    assert line[1].startswith("t: bad opening from x: peer is not speaking socketkit wire v1")
    assert rules.throttle.wait_time("p", 2.0) == 0.0
    # A server without a token has nothing to count, and nothing worth a line.
    open_rules = GateRules("t", None, AuthThrottle(free_failures=0))
    assert open_rules.start("p", NONCE, 0.0).delay == 0.0
    assert open_rules.settle("p", "x", Authenticated(verified=False), 0.0) is None
