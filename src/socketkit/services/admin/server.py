"""The admin endpoint's glue: an HTTP session on the asyncio engine that answers one
request with the status of the running services, then closes.

Slow peers: the whole request head must arrive within ``header_timeout`` of connecting
(408, then close), whatever the pace of its bytes, and one peer (``socketkit.peercred``:
a local peer is its user) may hold at most ``max_connections_per_address`` of the
endpoint's connections. A new connection over that cap, or over ``max_connections``,
takes the place of the oldest one still waiting for its request head (of that peer, or
of anyone when the endpoint is full), which gets 503 and is closed: a slowloris neither
keeps a slot for long nor keeps anyone out who sends a request at once. Only when every
connection already has its request in is the new one refused (503).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from socketkit._log import get_logger
from socketkit._version import __version__
from socketkit.aio.connection import Connection, ConnectionLimits, Session
from socketkit.aio.server import AsyncServer
from socketkit.codec.lines import LineDecoder
from socketkit.errors import FrameTooLarge, RemoteProtocolError
from socketkit.limits import (
    ADMIN_HEADER_TIMEOUT_S,
    ADMIN_MAX_CONNECTIONS,
    ADMIN_MAX_CONNECTIONS_PER_ADDRESS,
    ADMIN_MAX_LINE,
)
from socketkit.services.admin.protocol import (
    AdminRequestError,
    RequestHead,
    ServiceStatus,
    error_response,
    route,
)

__all__ = ["AdminSession", "make_admin_server"]

logger = get_logger(__name__)


class AdminSession(Session[bytes]):
    """One HTTP request, one response, then close; 408 if the head takes too long."""

    __slots__ = ("_deadline", "_head", "_header_timeout", "_names", "_services", "_started")

    def __init__(
        self,
        conn: Connection[bytes],
        services: Callable[[], Sequence[ServiceStatus]],
        started: float,
        header_timeout: float = ADMIN_HEADER_TIMEOUT_S,
        names: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(conn)
        self._names = names
        self._head = RequestHead()
        self._services = services
        self._started = started
        self._header_timeout = header_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._header_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._deadline = None
        logger.info("admin: %s: no whole request head within %g s", self.conn.peer, self._header_timeout)
        message = f"the request head must arrive within {self._header_timeout:g} s"
        self._finish(error_response(AdminRequestError(408, message)))

    def message_received(self, message: bytes) -> None:
        if self.conn.is_closing:
            return
        try:
            request = self._head.feed_line(message)
        except AdminRequestError as exc:
            logger.info("admin: %s: %s", self.conn.peer, exc)
            self._finish(error_response(exc))
            return
        if request is not None:
            uptime = time.monotonic() - self._started
            response = route(
                request, self._services(), uptime_s=uptime, version=__version__, names=self._names
            )
            self._finish(response)

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        status = 431 if isinstance(exc, FrameTooLarge) else 400
        self._finish(error_response(AdminRequestError(status, "request line or header too long")))

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_deadline()

    def evict(self) -> bool:
        """Give up this connection for a newer one, if it is still waiting for its request
        head (503, then close); return whether it was."""
        if self._deadline is None or self.conn.is_closing:
            return False
        message = "a newer connection took this one's place: send the request head at once"
        self._finish(error_response(AdminRequestError(503, message)))
        return True

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _finish(self, response: bytes) -> None:
        self._cancel_deadline()
        if not self.conn.is_closing:
            self.conn.send(response)
            self.conn.close()


def _machine_names() -> frozenset[str]:
    """This machine's own names (short and fully qualified): a request for
    ``http://$(hostname):7080/`` is ours (no lookup: ``getfqdn`` could block on DNS)."""
    name = socket.gethostname().lower()
    return frozenset({name, name.split(".", 1)[0]})


def _evict(conn: Connection[Any]) -> bool:
    """The engine's ``evict``: only a session still waiting for its request head goes."""
    session = conn.session
    return isinstance(session, AdminSession) and session.evict()


def _refusal(reason: str) -> bytes:
    """What a peer over a connection cap reads before the close."""
    return error_response(AdminRequestError(503, reason))


def make_admin_server(
    services: Callable[[], Sequence[ServiceStatus]],
    *,
    header_timeout: float = ADMIN_HEADER_TIMEOUT_S,
    max_connections: int = ADMIN_MAX_CONNECTIONS,
    max_connections_per_address: int = ADMIN_MAX_CONNECTIONS_PER_ADDRESS,
    names: frozenset[str] = frozenset(),
    **options: Any,
) -> AsyncServer:
    """An ``AsyncServer`` for the admin endpoint; ``services`` is called per request.

    Args:
        services: the status of every running service, fresh per request.
        header_timeout: seconds from connecting to the end of the request head.
        max_connections: open connections at once.
        max_connections_per_address: open connections from one peer.
        names: host names the endpoint answers to besides ``localhost`` and IP literals
            (``protocol.host_allowed``), with this machine's own names.
        options: other ``AsyncServer`` keyword arguments.

    Raises:
        ValueError: ``header_timeout`` is not positive (or a cap, from AsyncServer).
    """
    if not header_timeout > 0:
        raise ValueError("header_timeout must be positive")
    started = time.monotonic()
    names = _machine_names() | {name.lower() for name in names}
    # The deadline covers the only phase in which the endpoint reads, from the first
    # byte to the last of the head: the engine's read timeouts would only repeat it.
    # A peer that does not read the response is still cut by the write timeout.
    limits = ConnectionLimits(idle_timeout=None, handshake_timeout=None, message_timeout=None)
    return AsyncServer(
        session_factory=lambda conn: AdminSession(conn, services, started, header_timeout, names),
        decoder_factory=lambda: LineDecoder(max_line_length=ADMIN_MAX_LINE),
        limits=limits,
        max_connections=max_connections,
        max_connections_per_address=max_connections_per_address,
        refusal=_refusal,
        evict=_evict,
        **options,
    )
