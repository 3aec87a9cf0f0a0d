"""The blocking engine's graceful drain (``socketkit.server.drain``): idle framed
handlers are told and closed at once, running ones finish, a message half received is
completed, what is still busy at the drain timeout is cut with the reason, forked
children are woken the same way, a wire-v1 handler says why in an ERROR frame, and
signals stop a real process (a second aborts)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import socketkit.server as ss
from socketkit._shutdown import SHUTTING_DOWN, grace_ran_out
from socketkit.address import Address
from socketkit.auth.connect import ServiceTarget, connect_authenticated
from socketkit.codec import LineDecoder, encode_line
from socketkit.codec.wire import ErrorFrame, WireEvent
from socketkit.server.wire import WireRequestHandler
from tests.helpers import TIMEOUT, connect, recv_line, recv_until_closed

release = threading.Event()  # what a "slow" request waits for (reset by each test)
entered = threading.Event()  # set when a "slow" request has begun


class Upper(ss.FramedRequestHandler[bytes]):
    """Upper-cases lines; ``slow`` waits for ``release``; ``begin`` starts a request that
    spans messages (``in_request``); says goodbye with the reason."""

    def make_decoder(self) -> LineDecoder:
        return LineDecoder(max_line_length=1024)

    def handle_message(self, message: bytes) -> None:
        if message == b"slow":
            entered.set()
            release.wait(TIMEOUT)
        if message == b"begin":
            self.in_request = True
        self.send(encode_line(message.upper()))

    def farewell(self, reason: str) -> None:
        self.send(encode_line(b"BYE " + reason.encode()))


def bye(reason: str) -> bytes:
    return encode_line(b"BYE " + reason.encode())


class Threaded(ss.ThreadingTCPServer):
    drain_timeout = TIMEOUT * 3  # a test that needs the timeout to pass fails first

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.drain_started = threading.Event()
        self.serve_thread = threading.Thread(target=self.serve_forever)
        self.serve_thread.start()

    def _drain(self) -> None:  # called once the listener is closed and the bell rung
        self.drain_started.set()
        super()._drain()


@contextmanager
def closing_in_background(server: Threaded) -> Iterator[threading.Thread]:
    """Stop serving, then run ``server_close()`` (the drain) in a thread."""
    server.shutdown()
    closer = threading.Thread(target=server.server_close)
    closer.start()
    try:
        yield closer
    finally:
        release.set()
        closer.join(TIMEOUT * 4)


def threaded() -> Threaded:
    release.clear()
    entered.clear()
    return Threaded(("127.0.0.1", 0), Upper)


def stop_serving(server: Threaded) -> None:
    server.serve_thread.join(TIMEOUT)


def test_an_idle_handler_is_told_and_closed_when_the_drain_begins() -> None:
    server = threaded()
    sock = connect(server.server_address)
    with sock:
        sock.sendall(b"hi\n")
        assert recv_line(sock) == b"HI\n"  # served; now waiting for the next line
        with closing_in_background(server) as closer:
            assert recv_until_closed(sock) == bye(SHUTTING_DOWN)
            closer.join(TIMEOUT)
            assert not closer.is_alive()  # the drain did not wait for its timeout
    stop_serving(server)


def test_a_running_request_finishes_then_the_handler_says_goodbye() -> None:
    server = threaded()
    sock = connect(server.server_address)
    with sock:
        sock.sendall(b"slow\n")
        assert entered.wait(TIMEOUT)
        with closing_in_background(server):
            assert server.drain_started.wait(TIMEOUT)
            release.set()
            assert recv_until_closed(sock) == b"SLOW\n" + bye(SHUTTING_DOWN)
    stop_serving(server)


def test_a_message_half_received_is_completed_and_answered() -> None:
    server = threaded()
    sock = connect(server.server_address)
    with sock:
        sock.sendall(b"hi\n")
        assert recv_line(sock) == b"HI\n"
        sock.sendall(b"hel")
        with closing_in_background(server):
            assert server.drain_started.wait(TIMEOUT)
            sock.sendall(b"lo\n")
            assert recv_until_closed(sock) == b"HELLO\n" + bye(SHUTTING_DOWN)
    stop_serving(server)


def test_a_request_still_in_progress_at_the_drain_timeout_is_cut_with_the_reason() -> None:
    server = threaded()
    server.drain_timeout = 0.2
    sock = connect(server.server_address)
    with sock:
        sock.sendall(b"begin\n")  # a request of several messages; the rest never comes
        assert recv_line(sock) == b"BEGIN\n"
        with closing_in_background(server):
            assert recv_until_closed(sock) == bye(grace_ran_out(0.2))
    stop_serving(server)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_at_rest_is_told_and_ends_when_the_drain_begins() -> None:
    server = ss.ForkingTCPServer(("127.0.0.1", 0), Upper)
    server.drain_timeout = TIMEOUT * 3
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    sock = connect(server.server_address)
    with sock:
        sock.sendall(b"hi\n")
        assert recv_line(sock) == b"HI\n"
        server.shutdown()
        thread.join(TIMEOUT)
        closer = threading.Thread(target=server.server_close)
        closer.start()
        # The child holds a copy of this client socket (fork copies every fd of this
        # test process): the farewell line, not the end of the stream, is the proof.
        assert recv_line(sock) == bye(SHUTTING_DOWN)
        closer.join(TIMEOUT)
        assert not closer.is_alive()
    assert not server.active_children


SIGNALLED_SERVER = """
import logging
import socketkit.server as ss
from socketkit.codec import LineDecoder, encode_line

class Hang(ss.FramedRequestHandler):
    def make_decoder(self):
        return LineDecoder()

    def handle_message(self, message):
        print("handling", flush=True)
        self.request.recv(1)  # waits for the peer, which never sends

logging.basicConfig(level=logging.INFO)
with ss.ThreadingTCPServer(("127.0.0.1", 0), Hang) as server:
    server.drain_timeout = 3600
    server.install_signal_handlers()
    print(server.server_address[1], flush=True)
    server.serve_forever()
print("closed", flush=True)
"""


def test_signals_stop_a_blocking_server_and_a_second_one_aborts() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED_SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        port = int(proc.stdout.readline())
        sock = connect(("127.0.0.1", port))
        with sock:
            sock.sendall(b"hang\n")
            assert proc.stdout.readline() == "handling\n"
            proc.send_signal(signal.SIGTERM)
            assert "SIGTERM: shutting down" in proc.stderr.readline()
            # The drain waits (an hour) for the request: the listener is closed already.
            with pytest.raises(ConnectionRefusedError):
                connect(("127.0.0.1", port)).close()
            proc.send_signal(signal.SIGTERM)
            assert "second SIGTERM: aborting" in proc.stderr.readline()
            assert recv_until_closed(sock) == b""
            assert proc.wait(TIMEOUT) == 0
            assert proc.stdout.read() == "closed\n"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)


class WireIdle(WireRequestHandler):
    """A wire-v1 service without a token that never answers: its clients sit idle."""

    service = "idle"

    def handle_message(self, message: WireEvent) -> None:
        pass


def test_a_wire_v1_handler_says_shutting_down_in_an_error_frame() -> None:
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), WireIdle)
    server.drain_timeout = TIMEOUT * 3
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    host, port = server.server_address[:2]

    async def client() -> list[WireEvent]:
        conn = await connect_authenticated(ServiceTarget(Address(host, port), token=None), service="idle")
        try:
            server.shutdown()
            closer = threading.Thread(target=server.server_close)
            closer.start()
            events = [event async for event in conn]
            closer.join(TIMEOUT)
            return events
        finally:
            conn.abort()

    try:
        events = asyncio.run(asyncio.wait_for(client(), TIMEOUT))
    finally:
        thread.join(TIMEOUT)
        server.server_close()
    assert events == [ErrorFrame(code="shutting-down", message=SHUTTING_DOWN)]
