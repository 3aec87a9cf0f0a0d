"""The admin endpoint's glue: an HTTP session on the asyncio engine that answers one
request with the status of the running services, then closes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from socketkit._version import __version__
from socketkit.aio.connection import Connection, ConnectionLimits, Session
from socketkit.aio.server import AsyncServer
from socketkit.codec.lines import LineDecoder
from socketkit.errors import FrameTooLarge, RemoteProtocolError
from socketkit.limits import ADMIN_MAX_CONNECTIONS, ADMIN_MAX_LINE
from socketkit.services.admin.protocol import (
    AdminRequestError,
    RequestHead,
    ServiceStatus,
    error_response,
    route,
)

__all__ = ["AdminSession", "make_admin_server"]

logger = logging.getLogger(__name__)


class AdminSession(Session[bytes]):
    """One HTTP request, one response, then close."""

    __slots__ = ("_head", "_services", "_started")

    def __init__(
        self, conn: Connection[bytes], services: Callable[[], Sequence[ServiceStatus]], started: float
    ) -> None:
        super().__init__(conn)
        self._head = RequestHead()
        self._services = services
        self._started = started

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
            self._finish(route(request, self._services(), uptime_s=uptime, version=__version__))

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        status = 431 if isinstance(exc, FrameTooLarge) else 400
        self._finish(error_response(AdminRequestError(status, "request line or header too long")))

    def _finish(self, response: bytes) -> None:
        if not self.conn.is_closing:
            self.conn.send(response)
            self.conn.close()


def make_admin_server(services: Callable[[], Sequence[ServiceStatus]], **options: Any) -> AsyncServer:
    """An ``AsyncServer`` for the admin endpoint; ``services`` is called per request."""
    started = time.monotonic()
    options.setdefault("max_connections", ADMIN_MAX_CONNECTIONS)
    options.setdefault("max_connections_per_address", ADMIN_MAX_CONNECTIONS)
    return AsyncServer(
        session_factory=lambda conn: AdminSession(conn, services, started),
        decoder_factory=lambda: LineDecoder(max_line_length=ADMIN_MAX_LINE),
        limits=ConnectionLimits(idle_timeout=10.0, handshake_timeout=10.0, message_timeout=10.0),
        **options,
    )
