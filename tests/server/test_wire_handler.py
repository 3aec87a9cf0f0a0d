"""WireRequestHandler: the blocking engine serves wire-v1 with token authentication to
socketkit's own (asyncio) client, through the same session and gate rules as exec and
files; the example of docs/server.md runs as written."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import socketkit.server as socketserver
import socketkit.server.wire as wire_module
from socketkit.address import Address
from socketkit.auth.connect import ServiceTarget, connect_authenticated
from socketkit.auth.gate import EVICTED_MESSAGE, GateRules
from socketkit.auth.handshake import NONCE_SIZE
from socketkit.auth.session import receive_control
from socketkit.auth.throttle import AuthThrottle
from socketkit.auth.wiresession import Authenticated, ClientSession, Refused
from socketkit.codec.wire import (
    Control,
    ErrorFrame,
    Hello,
    WireDecoder,
    WireEvent,
    encode_control,
    encode_hello,
)
from socketkit.errors import HandshakeError, PermissionDenied, ServiceError
from socketkit.limits import DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
from socketkit.server.wire import WireRequestHandler, run_opening
from socketkit.testing import serving
from tests.helpers import connect, recv_until_closed

TOKEN = "b10c" * 16
DOC = (Path(__file__).resolve().parents[2] / "docs" / "server.md").read_text()


class Upper(WireRequestHandler):
    """Answers each CONTROL {"text": t} with {"text": T}; says welcome once open."""

    service = "upper"
    token = TOKEN

    def session_opened(self) -> None:
        self.send_control({"event": "welcome"})

    def handle_message(self, message: WireEvent) -> None:
        if isinstance(message, Control):
            self.send_control({"text": str(message.header.get("text", "")).upper()})


def address_of(server: Any) -> Address:
    host, port = server.server_address[:2]
    return Address(host, port)


async def ask(address: Address, token: str | None, text: str, *, service: str = "upper") -> list[Any]:
    """The real client: connect, authenticate, pipeline one request; the replies."""
    target = ServiceTarget(address, token=token)
    conn = await connect_authenticated(target, service=service, pipelined={"text": text})
    try:
        return [(await receive_control(conn)).header, (await receive_control(conn)).header]
    finally:
        conn.abort()


def raw_opening(address: Any) -> tuple[socket.socket, list[object]]:
    """A raw client that sends its hello and reads the server's hello and challenge
    (and no further: a server without a token may have sent more behind them)."""
    sock = connect(address)
    try:
        sock.sendall(encode_hello())
        decoder = WireDecoder()
        events: list[object] = []
        while len(events) < 2:
            decoder.feed(sock.recv(65536))
            events += list(decoder)
    except BaseException:
        sock.close()
        raise
    return sock, events[:2]


def frames_until_closed(sock: socket.socket, *, hello: bool = True) -> list[object]:
    decoder = WireDecoder(expect_hello=hello)
    decoder.feed(recv_until_closed(sock))
    decoder.feed(b"")
    return list(decoder)


@pytest.fixture
def upper() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Upper)
    with serving(server):
        yield server


def test_the_socketkit_client_authenticates_with_a_blocking_server(
    upper: socketserver.ThreadingTCPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        replies = asyncio.run(ask(address_of(upper), TOKEN, "hello"))
    assert replies == [{"event": "welcome"}, {"text": "HELLO"}]
    assert "upper: 127.0.0.1:" in caplog.text
    assert "authenticated" in caplog.text


def test_a_wrong_token_is_refused_and_the_next_client_served(caplog: pytest.LogCaptureFixture) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Upper)
    with serving(server):
        with pytest.raises(ServiceError, match="wrong token") as info:
            asyncio.run(ask(address_of(server), "f" * 64, "hello"))
        assert info.value.code == "auth-failed"
        with pytest.raises(PermissionDenied, match="requires a token"):
            asyncio.run(ask(address_of(server), None, "hello"))
        with pytest.raises(HandshakeError, match="'upper' server, not exec"):
            asyncio.run(ask(address_of(server), TOKEN, "hello", service="exec"))
        assert asyncio.run(ask(address_of(server), TOKEN, "again"))[1] == {"text": "AGAIN"}
    # Read once the handlers have ended (the server is closed): each logs after its verdict.
    assert "upper: authentication failed from 127.0.0.1:" in caplog.text


def test_a_blocking_client_session_drives_the_same_opening(upper: socketserver.ThreadingTCPServer) -> None:
    # The blocking driver runs either role: here a client, over a plain socket.
    with connect(upper.server_address) as sock:
        session = ClientSession(
            TOKEN, os.urandom(NONCE_SIZE), "upper", now=time.monotonic(), pipelined={"text": "blocking"}
        )
        assert isinstance(run_opening(sock, session), Authenticated)
        events: list[object] = []
        while len(events) < 2:
            session.feed(sock.recv(65536))
            events += list(session)
    assert events == [Control({"event": "welcome"}), Control({"text": "BLOCKING"})]


def test_bad_input_in_and_after_the_opening_gets_an_error_frame(
    upper: socketserver.ThreadingTCPServer,
) -> None:
    with connect(upper.server_address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        frames = frames_until_closed(sock)
    assert frames[0] == Hello(1, 1)
    assert isinstance(frames[1], ErrorFrame)
    assert frames[1].code == "bad-magic"
    # After the opening: a frame over the limit is refused by protocol_error().
    with connect(upper.server_address) as sock:
        session = ClientSession(TOKEN, os.urandom(NONCE_SIZE), "upper", now=time.monotonic())
        assert isinstance(run_opening(sock, session), Authenticated)
        sock.sendall(bytes.fromhex("7fffffff 02 00"))
        frames = frames_until_closed(sock, hello=False)
    assert frames[0] == Control({"event": "welcome"})
    assert isinstance(frames[1], ErrorFrame)
    assert frames[1].code == "frame-too-large"
    assert asyncio.run(ask(address_of(upper), TOKEN, "still"))[1] == {"text": "STILL"}


def test_a_silent_client_is_cut_at_the_auth_deadline() -> None:
    class Quick(Upper):
        auth_timeout = 0.2

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Quick)
    with serving(server):
        sock, (hello, challenge) = raw_opening(server.server_address)
        with sock:
            assert hello == Hello(1, 1)
            assert isinstance(challenge, Control)
            assert challenge.header["service"] == "upper"
            assert frames_until_closed(sock, hello=False) == [
                ErrorFrame("handshake-timeout", "authentication did not finish within 0.2 s")
            ]


def test_over_the_per_peer_cap_the_oldest_unauthenticated_connection_makes_room(
    upper: socketserver.ThreadingTCPServer,
) -> None:
    # The documented defaults, the asyncio services' own; and the same eviction: a
    # client that authenticates at once gets in past connections held open (red-team
    # round 2, finding 1).
    rules = Upper.make_gate()
    assert (rules.timeout, rules.max_unauthenticated, rules.max_unauthenticated_total) == (5.0, 8, 512)
    held = [raw_opening(upper.server_address)[0] for _ in range(DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS)]
    try:
        assert asyncio.run(ask(address_of(upper), TOKEN, "hi")) == [{"event": "welcome"}, {"text": "HI"}]
        assert frames_until_closed(held[0], hello=False) == [ErrorFrame("busy", EVICTED_MESSAGE)]
    finally:
        for sock in held:
            sock.close()


class Throttled(Upper):
    throttle = AuthThrottle(free_failures=0)

    @classmethod
    def make_gate(cls) -> GateRules:
        return GateRules(cls.service, cls.token, cls.throttle)


def test_failed_tokens_delay_the_next_verdicts_and_the_token_still_gets_in() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Throttled)
    delays: list[float] = []
    with serving(server):
        with pytest.raises(ServiceError, match="wrong token"):
            asyncio.run(ask(address_of(server), "0" * 64, "x"))
        # The next connection from this address is told its verdict waits, and the
        # client (whose own timeout is shorter than nothing) waits it out and gets in.
        sock, (_, challenge) = raw_opening(server.server_address)
        sock.close()
        assert isinstance(challenge, Control)
        delays.append(challenge.header["delay"])
        assert asyncio.run(ask(address_of(server), TOKEN, "late"))[1] == {"text": "LATE"}
    assert 0 < delays[0] <= 1.0


def test_a_held_verdict_does_not_hold_up_server_close(monkeypatch: pytest.MonkeyPatch) -> None:
    class Held(Upper):
        throttle = AuthThrottle(free_failures=0)

        @classmethod
        def make_gate(cls) -> GateRules:
            for _ in range(12):  # long past the cap: every verdict now waits 300 s
                cls.throttle.failure(f"uid:{os.geteuid()}", time.monotonic())  # a local peer: its user
            return GateRules(cls.service, cls.token, cls.throttle)

    holding = threading.Event()
    hold = wire_module._hold

    def observed_hold(sock: socket.socket, seconds: float) -> None:
        if seconds > 0:
            holding.set()
        hold(sock, seconds)

    monkeypatch.setattr(wire_module, "_hold", observed_hold)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Held)
    server.drain_timeout = 0.1
    with serving(server):
        sock, (_, challenge) = raw_opening(server.server_address)
        assert isinstance(challenge, Control)
        assert challenge.header["delay"] > 250
        session = ClientSession(TOKEN, os.urandom(NONCE_SIZE), "upper", now=time.monotonic())
        session.feed(encode_hello() + encode_control(challenge.header))
        list(session)
        sock.sendall(session.data_to_send()[len(encode_hello()) :])  # the response
        assert holding.wait(10)
    # serving() has shut the server down and closed it: the handler that was waiting
    # out 300 s is gone (the autouse leak check fails the test otherwise).
    assert len(server._threads) == 0
    sock.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forking_server_with_a_token_refuses_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    server = socketserver.ForkingTCPServer(("127.0.0.1", 0), Upper)
    with serving(server), pytest.raises(ServiceError, match="cannot authenticate") as info:
        asyncio.run(ask(address_of(server), TOKEN, "x"))
    assert info.value.code == "internal-error"


def test_without_a_token_the_challenge_says_none_and_any_client_gets_in() -> None:
    class Open(Upper):
        token = None

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Open)
    with serving(server):
        sock, (_, challenge) = raw_opening(server.server_address)
        sock.close()
        assert challenge == Control({"auth": "none", "service": "upper"})
        assert asyncio.run(ask(address_of(server), None, "open"))[1] == {"text": "OPEN"}


def test_the_example_in_docs_server_md_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    section = DOC[DOC.index("### WireRequestHandler") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(match.group(1), "docs/server.md", "exec"), namespace)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), namespace["Shout"])
    with serving(server):
        assert asyncio.run(namespace["shout"](address_of(server), TOKEN, "hi")) == "HI"
        with pytest.raises(ServiceError) as info:
            asyncio.run(namespace["shout"](address_of(server), "e" * 64, "hi"))
        assert info.value.code == "auth-failed"


def test_a_refused_opening_is_a_refused_event_for_the_driver() -> None:
    # run_opening never raises for what the peer does: a closed peer is a Refused.
    left, right = socket.socketpair()
    with left, right:
        right.close()
        session = ClientSession(TOKEN, os.urandom(NONCE_SIZE), "upper", now=time.monotonic())
        left.settimeout(5)
        end = run_opening(left, session)
    assert isinstance(end, Refused)
    assert end.by_peer
