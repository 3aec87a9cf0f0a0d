"""Password checks over loopback: they run on the worker threads while the event loop
keeps answering everyone; the queue is bounded; each failure is one log line."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from socketkit.codec.irc import IRCMessage
from socketkit.services.chat import numerics as n
from socketkit.services.chat.server import PasswordChecker
from socketkit.services.chat.session import PASSWORD_ATTEMPTS_PER_ADDRESS, hash_password, verify_password
from tests.helpers import TIMEOUT
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

HASHED = hash_password("opsecret", b"0123456789abcdef")  # the real cost: 200,000 rounds


class HeldChecks:
    """A ``verify`` for ``PasswordChecker`` that holds every check on its worker thread
    until ``release()``: while held, a check is provably still running."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.threads: list[str] = []
        self._gate = threading.Event()

    def __call__(self, stored: str, password: str) -> bool:
        self.threads.append(threading.current_thread().name)
        self.started.release()
        if not self._gate.wait(TIMEOUT):
            raise TimeoutError("the test never released the check")
        return verify_password(stored, password)

    def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert self.started.acquire(timeout=TIMEOUT), "a check did not start"

    def release(self) -> None:
        self._gate.set()


def test_the_event_loop_answers_pings_while_password_checks_are_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    held = HeldChecks()
    checker = PasswordChecker(workers=2, queue=1, verify=held)
    caplog.set_level(logging.INFO, "socketkit.services.chat")
    with (
        chat_server(opers={"root": HASHED}, passwords=checker) as (address,),
        Irc(address, "ann") as ann,
        Irc(address, "ben") as ben,
        Irc(address, "cat") as cat,
        Irc(address, "dan") as dan,
        Irc(address, "pinger") as pinger,
    ):
        try:
            ann.send("OPER root guess-ann")
            ben.send("OPER root guess-ben")
            held.wait_started(2)  # both workers are inside a check now, and stay there
            cat.send("OPER root guess-cat")  # waits in the queue (room for one)
            cat.sync()
            dan.send("OPER root guess-dan")  # no room: refused at once, not queued
            refused = dan.expect(n.RPL_TRYAGAIN)
            assert refused.params[1:] == ("OPER", "Please wait a while and try again.")
            for i in range(5):  # the loop is free: every PING is answered...
                pinger.send(f"PING :round-{i}")
                assert pinger.expect("PONG").params[-1] == f"round-{i}"
            assert checker.in_flight == 3  # ... while three checks are still pending
            assert len(held.threads) == 2  # two running, one queued
        finally:
            held.release()
        for client in (ann, ben, cat):
            assert client.expect(n.ERR_PASSWDMISMATCH).params[-1] == "Password incorrect"
        assert len(held.threads) == 3
    assert all(name.startswith("socketkit-chat-passwords") for name in held.threads)
    assert failures(caplog) == {
        "ann": "bad password",
        "ben": "bad password",
        "cat": "bad password",
        "dan": "the server is busy checking other passwords",
    }
    assert "guess" not in caplog.text  # passwords are never logged
    assert not any(r.exc_info for r in caplog.records)


FAILURE_LINE = re.compile(r"^chat: OPER failed for (\S+) from 127\.0\.0\.1:\d+, operator 'root': (.+)$")


def failures(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """Nick -> reason of each OPER failure line (each nick at most once)."""
    found: dict[str, str] = {}
    for record in caplog.records:
        match = FAILURE_LINE.match(record.getMessage())
        if match:
            assert record.levelno == logging.WARNING
            assert match.group(1) not in found, f"two failure lines for {match.group(1)}"
            found[match.group(1)] = match.group(2)
    return found


def test_eight_clients_hammering_oper_are_throttled_and_never_stall_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "socketkit.services.chat")
    attempts, moment = 5, 1_800_000_000.0
    replies: list[IRCMessage] = []
    # A stopped clock: the budgets do not refill during the test, so the bound below is
    # exact whatever the machine's speed.
    with (
        chat_server(opers={"root": HASHED}, clock=lambda: moment) as (address,),
        Irc(address, "pinger") as pinger,
    ):
        hammers = [Irc(address, f"h{i}") for i in range(8)]
        try:
            for round_ in range(attempts):
                for hammer in hammers:
                    hammer.send(f"OPER root wrong-{round_}")
                pinger.send(f"PING :during-{round_}")
                assert pinger.expect("PONG").params[-1] == f"during-{round_}"
            for hammer in hammers:
                got = 0
                while got < attempts:  # each attempt gets exactly one answer
                    message = hammer.next()
                    if message.command in (n.ERR_PASSWDMISMATCH, n.RPL_TRYAGAIN):
                        replies.append(message)
                        got += 1
        finally:
            for hammer in hammers:
                hammer.close()
    assert len(replies) == 8 * attempts
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("chat: OPER failed")]
    assert len(lines) == 8 * attempts  # one log line per attempt
    checked = sum(line.endswith(": bad password") for line in lines)
    # Every first attempt was checked; after that the address's budget bounds the PBKDF2
    # work, however many connections it opens.
    assert 8 <= checked <= PASSWORD_ATTEMPTS_PER_ADDRESS
    refused = [line for line in lines if not line.endswith(": bad password")]
    assert all("throttled for" in line or "already running" in line for line in refused)
    assert "wrong-" not in caplog.text
    assert not any(r.exc_info for r in caplog.records)
