"""Prompt shutdown and the bounded graceful stop: no leaked thread, fd or child."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

import pytest

import socketkit.server as ss
from socketkit.testing import serving
from tests.helpers import TIMEOUT, connect, recv_exactly, recv_until_closed


class Echo(ss.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


def test_shutdown_does_not_wait_for_the_poll_interval() -> None:
    # With a 60 s poll interval the stdlib would take up to a minute; the wake-up fd
    # makes it immediate. The bound below only separates "woken" from "polled".
    with ss.TCPServer(("127.0.0.1", 0), Echo) as server:
        thread = threading.Thread(target=server.serve_forever, args=(60,))
        thread.start()
        # Prove the loop is inside its wait: one request round trip.
        sock = connect(server.server_address)
        sock.close()
        started = time.monotonic()
        server.shutdown()
        elapsed = time.monotonic() - started
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert elapsed < 5.0


def test_shutdown_without_serve_forever_returns() -> None:
    with ss.TCPServer(("127.0.0.1", 0), Echo) as server:
        assert server._BaseServer__is_shut_down.is_set()  # type: ignore[attr-defined]
        server.shutdown()  # the stdlib deadlocks here


def test_the_private_stop_flag_set_from_a_handler_thread_wakes_the_loop() -> None:
    """With no poll interval the stdlib's loop would sleep in select() until the next
    request; setting ``_BaseServer__shutdown_request`` from a handler thread wakes ours."""

    class Stop(ss.BaseRequestHandler):
        def handle(self) -> None:
            self.server._BaseServer__shutdown_request = True
            self.request.sendall(b"bye")

    with ss.ThreadingTCPServer(("127.0.0.1", 0), Stop) as server:
        thread = threading.Thread(target=server.serve_forever, args=(None,))
        thread.start()
        try:
            sock = connect(server.server_address)
            with sock:
                assert recv_exactly(sock, 3) == b"bye"
            stopped = server._BaseServer__is_shut_down.wait(TIMEOUT)  # type: ignore[attr-defined]
        finally:
            if not stopped:
                server.shutdown()
            thread.join(TIMEOUT)
    assert stopped


def test_serve_forever_can_run_again_after_shutdown() -> None:
    with ss.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server:
        for _ in range(2):
            thread = threading.Thread(target=server.serve_forever)
            thread.start()
            sock = connect(server.server_address)
            with sock:
                sock.sendall(b"again")
                assert recv_exactly(sock, 5) == b"again"
            server.shutdown()
            thread.join(TIMEOUT)


def test_handlers_finish_within_the_drain_timeout() -> None:
    release = threading.Event()
    entered = threading.Event()

    class Slow(ss.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(10)
            entered.set()
            release.wait(TIMEOUT)
            self.request.sendall(b"finished")

    draining = threading.Event()

    class Server(ss.ThreadingTCPServer):
        def _drain(self) -> None:  # called once the listener is closed
            draining.set()
            super()._drain()

    server = Server(("127.0.0.1", 0), Slow)
    server.drain_timeout = TIMEOUT
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    sock = connect(server.server_address)
    closer = threading.Thread(target=server.server_close)
    try:
        with sock:
            sock.sendall(b"go")
            assert entered.wait(TIMEOUT)
            server.shutdown()
            thread.join(TIMEOUT)
            closer.start()
            assert draining.wait(TIMEOUT)
            # New connections are refused while handlers drain: the listener closed first.
            with pytest.raises(ConnectionRefusedError):
                connect(server.server_address).close()
            release.set()
            closer.join(TIMEOUT)
            assert recv_until_closed(sock) == b"finished"
    finally:
        release.set()  # never leave the handler waiting if an assertion failed
        if closer.is_alive():
            closer.join(TIMEOUT)


def test_handlers_past_the_deadline_get_their_connections_closed() -> None:
    entered = threading.Event()

    class Forever(ss.BaseRequestHandler):
        def handle(self) -> None:
            entered.set()
            while self.request.recv(10):  # a client that never hangs up
                pass

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Forever)
    server.drain_timeout = 0.05
    with serving(server):
        sock = connect(server.server_address)
        assert entered.wait(TIMEOUT)
    # server_close() returned: the handler thread was woken and joined (the leak
    # check of conftest.py also verifies the thread is gone).
    with sock:
        assert recv_until_closed(sock) == b""


def test_the_tutorial_echo_handler_does_not_spin_after_the_client_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tutorial "简单并发实例", verbatim: it loops on recv() == b"" forever on the stdlib."""

    class MyServer(ss.BaseRequestHandler):
        def handle(self) -> None:
            while True:
                conn = self.request
                while True:
                    client_data = conn.recv(1024)
                    conn.sendall(client_data)
                conn.close()  # type: ignore[unreachable]

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), MyServer)
    server.drain_timeout = TIMEOUT  # the handler must end by itself, well before this
    with serving(server):
        sock = connect(server.server_address)
        sock.sendall(b"hello")
        assert recv_exactly(sock, 5) == b"hello"
        sock.close()
        deadline = time.monotonic() + TIMEOUT
        while "kept reading" not in caplog.text and "read" not in caplog.text:
            assert time.monotonic() < deadline, "handler still spinning"
            time.sleep(0.01)
    assert "the peer closed the connection" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forking_server_reaps_children_and_stops_stuck_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Stuck(ss.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"ready\n")
            signal.pause()  # only a signal ends this child

    server = ss.ForkingTCPServer(("127.0.0.1", 0), Stuck)
    server.drain_timeout = 0.1
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            assert sock.recv(6) == b"ready\n"
            assert len(server.active_children or ()) == 1
    # server_close(): SIGTERM after the drain timeout, child reaped (leak check too).
    assert not server.active_children
    assert "SIGTERM" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forking_server_reaps_finished_children_while_serving() -> None:
    server = ss.ForkingTCPServer(("127.0.0.1", 0), Echo)
    with serving(server, poll_interval=0.01):
        for _ in range(5):
            sock = connect(server.server_address)
            with sock:
                sock.sendall(b"x")
                assert sock.recv(1) == b"x"
                # The child holds a copy of this client socket (fork copies every fd of
                # this test process), so close() alone would not end the connection.
                sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + TIMEOUT
        while server.active_children:
            assert time.monotonic() < deadline, f"children not reaped: {server.active_children}"
            time.sleep(0.01)


def test_capacity_errors_back_off_and_recover(caplog: pytest.LogCaptureFixture) -> None:
    import errno

    class Flaky(ss.ThreadingTCPServer):
        failures = 3

        def get_request(self) -> tuple[Any, Any]:
            if self.failures:
                self.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return super().get_request()

    server = Flaky(("127.0.0.1", 0), Echo)
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"still here")
            assert recv_exactly(sock, 10) == b"still here"
    assert caplog.text.count("pausing the listener") == 1
    assert "accept() works again" in caplog.text


def test_unexpected_accept_errors_propagate_instead_of_spinning() -> None:
    import errno

    class Broken(ss.TCPServer):
        def get_request(self) -> tuple[Any, Any]:
            raise OSError(errno.EBADF, "Bad file descriptor")

    with Broken(("127.0.0.1", 0), Echo) as server:
        sock = connect(server.server_address)
        with sock, pytest.raises(OSError, match="Bad file descriptor"):
            server.serve_forever()


def test_server_close_twice_is_harmless() -> None:
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.server_close()
    server.server_close()


def test_a_vanished_client_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    class Reader(ss.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(10)
            raise ConnectionResetError("peer reset")

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Reader)
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"x")
            assert recv_until_closed(sock) == b""
    records = [r for r in caplog.records if "ended" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert "127.0.0.1:" in records[0].getMessage()


def test_handler_bugs_are_logged_with_traceback_and_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Buggy(ss.BaseRequestHandler):
        def handle(self) -> None:
            raise KeyError("bug")

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Buggy)
    with serving(server):
        sock = connect(server.server_address)
        with sock:
            assert recv_until_closed(sock) == b""
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "127.0.0.1:" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


def test_listener_socket_is_not_inherited_by_handler_sockets() -> None:
    with ss.TCPServer(("127.0.0.1", 0), Echo) as server:
        assert server.socket.get_inheritable() is False
        assert isinstance(server.socket, socket.socket)


def test_threaded_connections_are_plain_sockets_until_the_peer_closes() -> None:
    seen: list[type] = []
    ready = threading.Event()

    class Look(ss.BaseRequestHandler):
        def handle(self) -> None:
            seen.append(type(self.request))  # before EOF: no Python-level recv in the way
            ready.set()
            while self.request.recv(10):
                pass
            while True:  # keeps reading after EOF, as the tutorial does
                self.request.recv(10)

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Look)
    with serving(server):
        sock = connect(server.server_address)
        assert ready.wait(TIMEOUT)
        sock.close()
    assert seen == [socket.socket]


def test_a_spinning_handler_on_a_non_threaded_server_is_ended_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Spin(ss.BaseRequestHandler):
        def handle(self) -> None:
            while True:
                self.request.sendall(self.request.recv(10))

    with ss.TCPServer(("127.0.0.1", 0), Spin) as server:
        sock = connect(server.server_address)
        sock.sendall(b"hi")
        sock.shutdown(socket.SHUT_WR)
        server.handle_request()  # returns only because the guard ended the handler
        assert recv_until_closed(sock) == b"hi"
        sock.close()
    assert "the peer closed the connection" in caplog.text


def test_the_guard_can_be_turned_off() -> None:
    class Twice(ss.BaseRequestHandler):
        def handle(self) -> None:
            for _ in range(200):  # many reads at EOF: allowed when the guard is off
                assert self.request.recv(10) == b""
            self.request.sendall(b"ok")

    with ss.TCPServer(("127.0.0.1", 0), Twice) as server:
        server.max_reads_after_eof = None
        sock = connect(server.server_address)
        with sock:
            sock.shutdown(socket.SHUT_WR)
            server.handle_request()
            assert recv_until_closed(sock) == b"ok"
