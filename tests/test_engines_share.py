"""What the two engines share, declared once and acted on alike: the accept-error
policy (``socketkit._oserrors.accept_error``), the way a peer is written
(``socketkit.address.format_peer``), and OSErrors turned into resource errors with
their cause."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from pathlib import Path

import pytest

import socketkit.server as ss
from socketkit._oserrors import AcceptError, accept_error, resource_error, translate_os_errors
from socketkit.address import Address, format_peer
from socketkit.aio.accept import Acceptor, Bound
from socketkit.aio.listeners import Listener
from socketkit.errors import BrokenResourceError, ClosedResourceError
from socketkit.testing import serving
from tests.helpers import connect, recv_until_closed

POLICY = [
    (errno.EAGAIN, AcceptError.NOTHING_PENDING),
    (errno.EINTR, AcceptError.NOTHING_PENDING),
    (errno.ECONNABORTED, AcceptError.CONNECTION_LOST),
    (errno.EPROTO, AcceptError.CONNECTION_LOST),
    (errno.EPERM, AcceptError.CONNECTION_LOST),  # a firewall refused that connection
    (errno.EMSGSIZE, AcceptError.CONNECTION_LOST),  # a truncated datagram (blocking UDP)
    (errno.EMFILE, AcceptError.OUT_OF_RESOURCES),
    (errno.ENFILE, AcceptError.OUT_OF_RESOURCES),
    (errno.ENOBUFS, AcceptError.OUT_OF_RESOURCES),
    (errno.ENOMEM, AcceptError.OUT_OF_RESOURCES),
    (errno.EBADF, AcceptError.LISTENER_BROKEN),
    (errno.ENOTSOCK, AcceptError.LISTENER_BROKEN),
    (errno.EINVAL, AcceptError.LISTENER_BROKEN),
]


@pytest.mark.parametrize(("code", "kind"), POLICY, ids=[errno.errorcode[c] for c, _ in POLICY])
def test_the_policy_sorts_accept_errors(code: int, kind: AcceptError) -> None:
    assert accept_error(OSError(code, os.strerror(code))) is kind


def blocking_reaction(code: int) -> str:
    """What ``socketkit.server`` does with a failed accept: go on, rest, or raise."""
    server = ss.TCPServer(("127.0.0.1", 0), ss.BaseRequestHandler)
    try:
        try:
            server._accept_failed(OSError(code, os.strerror(code)))
        except OSError:
            return "stop"
        return "rest" if server._accept_paused_until else "go on"
    finally:
        server.server_close()


class _FailingListener:
    """A listening socket whose accept() fails once with ``code``, then has nothing."""

    def __init__(self, real: socket.socket, code: int) -> None:
        self.real = real
        self.code: int | None = code
        self.accepts = 0

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        self.accepts += 1
        code, self.code = self.code, None
        if code is None:
            raise BlockingIOError(errno.EAGAIN, "nothing")
        raise OSError(code, os.strerror(code))


def aio_reaction(code: int, caplog: pytest.LogCaptureFixture) -> str:
    """What ``socketkit.aio`` does with a failed accept: go on, rest, or stop that listener."""
    with socket.socket() as real:
        fake = _FailingListener(real, code)
        acceptor = Acceptor(lambda *args: None, lambda: False)
        bound = Bound(Listener(Address("127.0.0.1", 0)), fake, Address("127.0.0.1", 0))  # type: ignore[arg-type]

        async def once() -> None:
            acceptor._on_acceptable(bound)

        caplog.clear()
        asyncio.run(once())
    if "that listener stops accepting" in caplog.text:
        return "stop"
    if acceptor._episodes.failing:
        return "rest"
    return "go on"


@pytest.mark.parametrize(("code", "kind"), POLICY, ids=[errno.errorcode[c] for c, _ in POLICY])
def test_both_engines_act_alike_on_each_accept_error(
    code: int, kind: AcceptError, caplog: pytest.LogCaptureFixture
) -> None:
    expected = {
        AcceptError.NOTHING_PENDING: "go on",
        AcceptError.CONNECTION_LOST: "go on",
        AcceptError.OUT_OF_RESOURCES: "rest",
        AcceptError.LISTENER_BROKEN: "stop",
    }[kind]
    caplog.set_level(logging.INFO)
    assert blocking_reaction(code) == expected
    assert aio_reaction(code, caplog) == expected


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (("127.0.0.1", 5000), "127.0.0.1:5000"),
        (("::1", 5000, 0, 0), "[::1]:5000"),
        ("/run/app.sock", "unix:/run/app.sock"),
        (b"/run/app.sock", "unix:/run/app.sock"),
        ("", "unix"),  # a Unix client socket bound to no path
        (None, "unix"),
    ],
)
def test_a_peer_is_written_one_way(address: object, shown: str) -> None:
    assert format_peer(address) == shown


def test_the_blocking_engine_logs_peers_as_the_asyncio_engine_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Unix client with no name of its own: both engines say ``unix`` (the blocking
    engine used to say "unnamed socket")."""

    class Vanishing(ss.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(1)
            raise ConnectionResetError("gone")

    path = str(tmp_path / "s")
    caplog.set_level(logging.INFO)
    with serving(ss.ThreadingUnixStreamServer(path, Vanishing)):
        sock = connect(path, socket.AF_UNIX)
        with sock:
            sock.sendall(b"x")
            assert recv_until_closed(sock) == b""
    assert "connection from unix ended: ConnectionResetError" in caplog.text


def test_os_errors_become_resource_errors_with_their_cause() -> None:
    reset = ConnectionResetError(errno.ECONNRESET, "reset")
    broken = resource_error(reset, "the connection")
    assert isinstance(broken, BrokenResourceError)
    assert broken.__cause__ is reset
    closed = resource_error(OSError(errno.EBADF, "bad"), "the connection")
    assert isinstance(closed, ClosedResourceError)
    with pytest.raises(BrokenResourceError) as info, translate_os_errors():
        raise reset
    assert info.value.__cause__ is reset
    with pytest.raises(TimeoutError), translate_os_errors():
        raise TimeoutError("stays itself")
