"""DatagramEndpoint: the asyncio glue for UDP (and Unix datagram) listeners.

Each datagram is handed whole to the service's handler, inline on the event loop (no
task per datagram; the stdlib's ThreadingUDPServer starts a thread per datagram). The
engine's sockets take any IPv4 or IPv6 datagram whole (the event loops read up to 64
KiB or more per datagram), so nothing is truncated. A handler exception is logged with
the sender's address and the endpoint goes on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol, cast

from socketkit.aio.connection import format_peer

if TYPE_CHECKING:
    from socketkit.aio.server import ServerStats

__all__ = ["DatagramEndpoint", "DatagramHandler"]

logger = logging.getLogger(__name__)


class DatagramHandler(Protocol):
    """What a UDP service implements."""

    def __call__(self, data: bytes, addr: Any, endpoint: DatagramEndpoint) -> None:
        """Handle one datagram from ``addr``; reply with ``endpoint.sendto``."""


class DatagramEndpoint(asyncio.DatagramProtocol):
    """One bound datagram socket of a server."""

    def __init__(self, handler: DatagramHandler, stats: ServerStats) -> None:
        self._handler = handler
        self._stats = stats
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.DatagramTransport without subclassing it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        stats = self._stats
        stats.datagrams_in += 1
        stats.bytes_in += len(data)
        try:
            self._handler(data, addr, self)
        except Exception:
            logger.exception("error handling a datagram from %s", format_peer(addr))

    def sendto(self, data: bytes, addr: Any) -> None:
        """Send one datagram (dropped silently by the kernel if the peer is gone)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.sendto(data, addr)
        stats = self._stats
        stats.datagrams_out += 1
        stats.bytes_out += len(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable for an earlier reply) concern one peer only.
        logger.debug("datagram error: %s", exc)

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()
