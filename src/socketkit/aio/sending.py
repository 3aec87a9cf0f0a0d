"""The write half of a connection: queueing bytes on the transport, back-pressure, closing.

``Sending`` is the base of ``Connection`` (``socketkit.aio.connection``), the layer that
owns the transport and its lifetime flags: ``send()`` queues bytes and never blocks;
``await drain()`` waits while more than the high-water mark is queued (the peer is
slow); past ``max_send_queue`` queued bytes the peer is disconnected, so a peer that
never reads cannot make us buffer without bound. ``close()`` flushes first, ``abort()``
drops what is queued.

Error handling: a send on a closing connection raises ``ClosedResourceError``; a
waiter on a connection that broke gets the ``BrokenResourceError`` that
``connection_lost`` made of the ``OSError`` (its ``__cause__``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from socketkit._log import get_logger
from socketkit.address import format_peer
from socketkit.aio.connection_limits import ConnectionLimits
from socketkit.errors import ClosedResourceError

__all__ = ["Sending"]

logger = get_logger(__name__)


class Sending(asyncio.Protocol):
    """The transport, its lifetime flags, and everything that writes to it.

    Attributes:
        transport: the asyncio transport (``None`` until connected).
        limits: timeouts and buffer caps.
        peername: the peer's socket address.
        bytes_out: bytes queued for the peer so far.
    """

    __slots__ = (
        "__weakref__",
        "_closing",
        "_drain_waiters",
        "_error",
        "_lost",
        "_lost_waiter",
        "_write_paused",
        "bytes_out",
        "limits",
        "peername",
        "transport",
    )

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.peername: Any = None
        self.bytes_out = 0
        self._closing = False
        self._lost = False
        self._lost_waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None  # what waiters raise once it broke
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None

    @property
    def peer(self) -> str:
        """The peer's address for logs: ``127.0.0.1:5000``, ``[::1]:5000`` or ``unix``."""
        return "?" if self.transport is None else format_peer(self.peername)

    @property
    def error(self) -> Exception | None:
        """What ended the connection abnormally (the error its waiters raise), if it did."""
        return self._error

    @property
    def is_closing(self) -> bool:
        """Whether ``close()``/``abort()`` was called or the connection is gone."""
        return self._closing

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the peer (never blocks; see ``drain()``).

        Raises:
            ClosedResourceError: the connection is closing or closed.
        """
        if self._closing:
            raise ClosedResourceError(f"connection with {self.peer} is closed")
        self.transport.write(data)  # type: ignore[union-attr]  # set before any send
        self.bytes_out += len(data)
        if self._write_paused:
            self._check_send_queue()

    def send_parts(self, parts: tuple[bytes, ...] | list[bytes]) -> None:
        """Queue several buffers at once (a frame header and its payload, without
        joining them here).

        Raises:
            ClosedResourceError: the connection is closing or closed.
        """
        if self._closing:
            raise ClosedResourceError(f"connection with {self.peer} is closed")
        self.transport.writelines(parts)  # type: ignore[union-attr]  # set before any send
        self.bytes_out += sum(len(part) for part in parts)
        if self._write_paused:
            self._check_send_queue()

    def _check_send_queue(self) -> None:
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() > self.limits.max_send_queue:
            logger.warning(
                "%s is not reading: %d bytes queued (max_send_queue); disconnecting",
                self.peer,
                transport.get_write_buffer_size(),
            )
            self.abort()

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what was sent (below the high-water mark).

        Raises:
            BrokenResourceError: the connection broke (or was aborted for not reading).
            ClosedResourceError: it was closed on our side.
        """
        if self._write_paused and not self._lost:
            waiter = asyncio.get_running_loop().create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            await waiter
        if self._lost:
            raise self._error or ClosedResourceError(f"connection with {self.peer} is closed")

    async def drain_all(self) -> None:
        """Wait until nothing at all is queued for the peer (before writing to the socket
        directly, e.g. with ``os.sendfile``).

        Raises:
            BrokenResourceError: the connection broke.
            ClosedResourceError: it was closed on our side.
        """
        transport = self.transport
        if transport is None or transport.get_write_buffer_size() == 0:
            return
        # With both marks at 0, the transport calls resume_writing exactly when empty.
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            await self.drain()
        finally:
            if not self._lost:
                transport.set_write_buffer_limits(high=self.limits.write_high_water)

    async def send_all(self, data: bytes) -> None:
        """``send()`` then ``drain()``: the awaitable, back-pressured way to write.

        Raises:
            ClosedResourceError: the connection is closed.
            BrokenResourceError: the connection broke.
        """
        self.send(data)
        await self.drain()

    def send_eof(self) -> None:
        """Half-close: no more data from us; the peer may still send (not over TLS)."""
        if self.transport is not None and not self._closing and self.transport.can_write_eof():
            self.transport.write_eof()

    @property
    def write_buffer_size(self) -> int:
        """Bytes queued for the peer and not yet accepted by the kernel."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    @property
    def write_paused(self) -> bool:
        """Whether the peer is slow: more than the high-water mark is queued for it."""
        return self._write_paused

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Close after what is queued has been sent."""
        if not self._closing and self.transport is not None:
            self._closing = True
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping what is queued."""
        if self.transport is not None and not self._lost:
            self._closing = True
            self.transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is fully closed."""
        if not self._lost:
            if self._lost_waiter is None:
                self._lost_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._lost_waiter)

    async def aclose(self) -> None:
        """Close (flushing) and wait until closed."""
        self.close()
        await self.wait_closed()
