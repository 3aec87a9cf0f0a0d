"""Echo servers: a Session for the asyncio engine (stream), a datagram handler (UDP), and a
handler for the blocking engine. Each is a few lines: the engine does the rest."""

from __future__ import annotations

from typing import Any

from socketkit.aio.connection import ConnectionLimits, Session
from socketkit.aio.datagram import DatagramEndpoint
from socketkit.aio.server import AsyncServer
from socketkit.server.handlers import BaseRequestHandler
from socketkit.services.echo.protocol import IDLE_TIMEOUT_S

__all__ = ["EchoHandler", "EchoSession", "echo_datagram", "make_echo_server"]


class EchoSession(Session[bytes]):
    """Stream echo: each chunk goes straight back (inline, no task switch).

    It writes to the transport directly, the one hot path that skips ``conn.send``'s
    checks: nothing arrives after a close, and a peer that does not read the echo is
    not read from (the engine pauses reading above the write high-water mark), so the
    send-queue cap cannot be reached.
    """

    __slots__ = ("_write",)

    def connection_made(self) -> None:
        assert self.conn.transport is not None
        self._write = self.conn.transport.write

    def message_received(self, message: bytes) -> None:
        self._write(message)
        self.conn.bytes_out += len(message)


def echo_datagram(data: bytes, addr: Any, endpoint: DatagramEndpoint) -> None:
    """UDP echo: the datagram goes back to its sender."""
    endpoint.sendto(data, addr)


class EchoHandler(BaseRequestHandler):
    """Echo on the blocking engine (socketkit.server), with an idle timeout."""

    timeout = IDLE_TIMEOUT_S

    def handle(self) -> None:
        self.request.settimeout(self.timeout)
        while data := self.request.recv(65536):
            self.request.sendall(data)


def make_echo_server(**overrides: Any) -> AsyncServer:
    """An ``AsyncServer`` serving echo on stream and datagram listeners.

    Args:
        overrides: ``AsyncServer`` keyword arguments (caps, limits...).
    """
    options: dict[str, Any] = {
        "session_factory": EchoSession,
        "datagram_handler": echo_datagram,
        "limits": ConnectionLimits(idle_timeout=IDLE_TIMEOUT_S, handshake_timeout=None, message_timeout=None),
    }
    options.update(overrides)
    return AsyncServer(**options)
