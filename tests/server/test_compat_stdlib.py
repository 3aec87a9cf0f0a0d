"""One set of scenarios, run against the standard library's socketserver and ours.

The handlers are written for the stdlib (several are the tutorial's own programs, with
its quirks), and must behave the same on ``socketkit.server``.
"""

from __future__ import annotations

import os
import socket
import socketserver
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

import socketkit.server
from socketkit.testing import serving
from tests.helpers import TIMEOUT, connect, recv_exactly, recv_line

MODULES = [pytest.param(socketserver, id="stdlib"), pytest.param(socketkit.server, id="socketkit")]
# The stdlib polls for shutdown; a short interval keeps its runs quick.
POLL = 0.05


@pytest.fixture(params=MODULES)
def ss(request: pytest.FixtureRequest) -> types.ModuleType:
    module: types.ModuleType = request.param
    return module


def tutorial_echo_handler(ss: Any) -> type:
    """The tutorial's concurrent echo server, with the empty-read check it describes."""

    class MyServer(ss.BaseRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            conn = self.request
            while True:
                client_data = conn.recv(1024)
                if not client_data:
                    break
                conn.sendall(client_data)

    return MyServer


def test_tutorial_concurrent_echo_serves_clients_at_once(ss: Any) -> None:
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), tutorial_echo_handler(ss))
    with serving(server, poll_interval=POLL):
        clients = [connect(server.server_address) for _ in range(5)]
        try:
            # All five are connected at once; each gets its own echo back.
            for i, sock in enumerate(clients):
                sock.sendall(f"俺喜欢你 {i}".encode())
            for i, sock in enumerate(clients):
                expected = f"俺喜欢你 {i}".encode()
                assert recv_exactly(sock, len(expected)) == expected
        finally:
            for sock in clients:
                sock.close()


def test_tutorial_command_transfer_frames_large_output(ss: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """Tutorial "命令传送2": a length header, then the output, read in a loop."""
    import subprocess

    class Myserver(ss.BaseRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            conn = self.request
            conn.sendall(bytes("欢迎登录", "utf8"))
            while True:
                client_bytes = conn.recv(1024)
                if not client_bytes:
                    break
                result_str = subprocess.getoutput(str(client_bytes, "utf8"))
                result_bytes = bytes(result_str, encoding="utf8")
                conn.sendall(bytes("info|%d" % len(result_bytes), "utf8"))
                conn.recv(1024)  # the tutorial's fix for the sticky header: wait for "ok"
                conn.sendall(result_bytes)

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Myserver)
    with serving(server, poll_interval=POLL):
        sk = connect(server.server_address)
        try:
            assert str(sk.recv(1024), "utf8") == "欢迎登录"
            command = f"{sys.executable} -c \"print('x' * 200000)\""
            sk.sendall(bytes(command, "utf8"))
            result_length = int(str(sk.recv(1024), "utf8").split("|")[1])
            sk.sendall(b"ok")
            content = recv_exactly(sk, result_length)
            assert content == b"x" * 200000
        finally:
            sk.close()


def test_stream_handler_rfile_wfile(ss: Any) -> None:
    class Upper(ss.StreamRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            for line in self.rfile:
                self.wfile.write(line.upper())

    server = ss.TCPServer(("127.0.0.1", 0), Upper)
    with serving(server, poll_interval=POLL):
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"one\ntwo\n")
            assert recv_line(sock) == b"ONE\n"
            assert recv_line(sock) == b"TWO\n"


def udp_pid(ss: Any) -> type:
    """Replies with the datagram upper-cased and the pid of the process that handled it."""

    class Pid(ss.DatagramRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            self.wfile.write(b"%s %d" % (self.rfile.read().upper(), os.getpid()))

    return Pid


# Every way to run a datagram server. "Forking" handles each datagram in a child, which
# replies through the server's socket (so the child must keep that socket open).
DATAGRAM_KINDS = [
    "",
    "Threading",
    pytest.param("Forking", marks=pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")),
]


def datagram_server(ss: Any, kind: str, base: str) -> Any:
    """``ss.{kind}{base}``; Python 3.11's stdlib lacks the Forking Unix servers (3.12 has
    them), so compose them from the mix-in as 3.11 programs do."""
    name = f"{kind}{base}"
    if hasattr(ss, name):
        return getattr(ss, name)
    return type(name, (getattr(ss, f"{kind}MixIn"), getattr(ss, base)), {})


def datagram_exchange(sock: socket.socket, address: Any, *, in_children: bool) -> None:
    """Two datagrams, two replies; handled in other processes exactly when forking."""
    handlers = set()
    for message in (b"ping", b"pong"):
        sock.sendto(message, address)
        reply, pid = sock.recv(100).rsplit(b" ", 1)
        assert reply == message.upper()
        handlers.add(int(pid))
    assert (os.getpid() not in handlers) is in_children


@pytest.mark.parametrize("kind", DATAGRAM_KINDS)
def test_udp_datagram_handler(ss: Any, kind: str) -> None:
    server = datagram_server(ss, kind, "UDPServer")(("127.0.0.1", 0), udp_pid(ss))
    with (
        serving(server, poll_interval=POLL),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.settimeout(TIMEOUT)
        datagram_exchange(sock, server.server_address, in_children=kind == "Forking")


def test_unix_stream_server(ss: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    server = ss.ThreadingUnixStreamServer(path, tutorial_echo_handler(ss))
    with serving(server, poll_interval=POLL):
        sock = connect(path, socket.AF_UNIX)
        with sock:
            sock.sendall(b"unix")
            assert recv_exactly(sock, 4) == b"unix"


@pytest.mark.parametrize("kind", DATAGRAM_KINDS)
def test_unix_datagram_server(ss: Any, tmp_path: Path, kind: str) -> None:
    path = str(tmp_path / "d.sock")
    server = datagram_server(ss, kind, "UnixDatagramServer")(path, udp_pid(ss))
    with (
        serving(server, poll_interval=POLL),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind(str(tmp_path / "c.sock"))
        sock.settimeout(TIMEOUT)
        datagram_exchange(sock, path, in_children=kind == "Forking")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forking_tcp_server(ss: Any) -> None:
    class Pid(ss.StreamRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            self.wfile.write(f"{os.getpid()}\n".encode())

    server = ss.ForkingTCPServer(("127.0.0.1", 0), Pid)
    with serving(server, poll_interval=POLL):
        pids = set()
        for _ in range(3):
            sock = connect(server.server_address)
            with sock:
                pids.add(int(recv_line(sock)))
    assert os.getpid() not in pids
    assert len(pids) == 3


def test_handle_request_times_out(ss: Any) -> None:
    calls: list[str] = []

    class Server(ss.TCPServer):  # type: ignore[misc, name-defined]
        timeout = 0.05

        def handle_timeout(self) -> None:
            calls.append("timeout")

    with Server(("127.0.0.1", 0), ss.BaseRequestHandler) as server:
        server.handle_request()
    assert calls == ["timeout"]


def test_handle_request_serves_one(ss: Any) -> None:
    with ss.TCPServer(("127.0.0.1", 0), tutorial_echo_handler(ss)) as server:
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"once")
            sock.shutdown(socket.SHUT_WR)
            server.handle_request()
            assert recv_exactly(sock, 4) == b"once"


def test_verify_request_can_refuse(ss: Any) -> None:
    class Picky(ss.ThreadingTCPServer):  # type: ignore[misc, name-defined]
        def verify_request(self, request: Any, client_address: Any) -> bool:
            return False

    server = Picky(("127.0.0.1", 0), tutorial_echo_handler(ss))
    with serving(server, poll_interval=POLL):
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"x")
            assert sock.recv(10) == b""


def test_handle_error_override_and_server_keeps_serving(ss: Any) -> None:
    errors: list[Any] = []

    class Boom(ss.BaseRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            if self.request.recv(10) == b"boom":
                raise RuntimeError("handler bug")
            self.request.sendall(b"fine")

    class Server(ss.ThreadingTCPServer):  # type: ignore[misc, name-defined]
        def handle_error(self, request: Any, client_address: Any) -> None:
            errors.append(sys.exc_info()[0])

    server = Server(("127.0.0.1", 0), Boom)
    with serving(server, poll_interval=POLL):
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"boom")
            assert sock.recv(10) == b""
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"ok")
            assert recv_exactly(sock, 4) == b"fine"
    assert errors == [RuntimeError]


def test_bind_and_activate_false(ss: Any) -> None:
    server = ss.TCPServer(("127.0.0.1", 0), tutorial_echo_handler(ss), bind_and_activate=False)
    try:
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        assert server.server_address[1] != 0
    finally:
        server.server_close()


def test_context_manager_closes_the_listener(ss: Any) -> None:
    with ss.TCPServer(("127.0.0.1", 0), ss.BaseRequestHandler) as server:
        fd = server.fileno()
        assert fd >= 0
    assert server.socket.fileno() == -1


def test_shutdown_from_another_thread_and_service_actions(ss: Any) -> None:
    actions = threading.Event()

    class Server(ss.TCPServer):  # type: ignore[misc, name-defined]
        def service_actions(self) -> None:
            actions.set()

    with Server(("127.0.0.1", 0), ss.BaseRequestHandler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(POLL,))
        thread.start()
        assert actions.wait(TIMEOUT)
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_server_attributes(ss: Any) -> None:
    with ss.ThreadingTCPServer(("127.0.0.1", 0), ss.BaseRequestHandler) as server:
        assert server.RequestHandlerClass is ss.BaseRequestHandler
        assert server.socket.family == socket.AF_INET
        assert server.address_family == socket.AF_INET
        assert server.socket_type == socket.SOCK_STREAM
        assert isinstance(server.request_queue_size, int)
        assert server.daemon_threads is False
        assert server.block_on_close is True
        assert server.timeout is None


def test_threads_lists_the_running_handler_threads(ss: Any) -> None:
    """``server._threads`` is a list of handler threads, as code written for the stdlib
    (its own tests among it) reads it; empty once the server has closed."""
    release = threading.Event()
    entered = threading.Semaphore(0)

    class Held(ss.BaseRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            entered.release()
            release.wait(TIMEOUT)

    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Held)
    clients = []
    try:
        for _ in range(3):
            clients.append(connect(server.server_address))
            server.handle_request()
        for _ in range(3):
            assert entered.acquire(timeout=TIMEOUT)
        assert len(server._threads) == 3
        assert all(isinstance(t, threading.Thread) and t.is_alive() for t in server._threads)
        assert threading.current_thread() not in server._threads
    finally:
        release.set()
        for sock in clients:
            sock.close()
        server.server_close()
    assert len(server._threads) == 0


def test_a_handler_stops_the_loop_through_the_private_flag(ss: Any) -> None:
    """``shutdown()`` from a handler of a non-threaded server would wait for itself;
    programs set the stdlib's private flag instead, and wait on its private event."""

    class Stop(ss.BaseRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            self.request.sendall(b"bye")
            self.server._BaseServer__shutdown_request = True

    with ss.TCPServer(("127.0.0.1", 0), Stop) as server:
        thread = threading.Thread(target=server.serve_forever, args=(POLL,))
        thread.start()
        try:
            sock = connect(server.server_address)
            with sock:
                assert recv_exactly(sock, 3) == b"bye"
            stopped = server._BaseServer__is_shut_down.wait(TIMEOUT)
        finally:
            if thread.is_alive() and not server._BaseServer__is_shut_down.is_set():
                server.shutdown()  # the flag did not stop it: stop it to fail cleanly
            thread.join(TIMEOUT)
        assert stopped
        assert server._BaseServer__shutdown_request is False  # reset for the next serve_forever()
