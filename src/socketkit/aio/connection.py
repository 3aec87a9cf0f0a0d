"""Connection: the asyncio glue between a transport, a codec decoder and a service.

One object per stream connection is the asyncio ``Protocol``: bytes arrive in
``data_received``, go through the connection's decoder (or straight through, for raw
byte services such as echo), and each complete message is delivered either

- to a ``Session`` (callback style, called inline on the event loop: no task switch
  per message, which is how echo keeps up with a bare uvloop Protocol), or
- to an inbox read by a handler task (``async for message in conn``), with flow
  control: past ``max_pending_messages`` the engine stops reading from the socket.

Writes: ``send()`` queues bytes on the transport; ``await drain()`` waits while the
peer is slow. Above the high-water mark a callback-style connection stops reading from
its peer (an echo peer that never reads cannot make us buffer without bound), and past
``max_send_queue`` the connection is aborted. Timeouts are enforced by the server's
sweeper from counters kept here, so the hot path reads no clock.

Resource handling: the transport is closed by ``close()``/``abort()``, by the peer, or
by the server at shutdown; ``connection_lost`` always runs and wakes every waiter.
Error handling: bad input raises ``RemoteProtocolError`` in the decoder or session;
it is logged with the peer address and handed to ``Session.protocol_error`` (default:
close). Any other exception from a session callback is logged with its traceback and
aborts that connection only.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit.address import format_host_port
from socketkit.codec.base import END_OF_STREAM, NEED_DATA, Decoder
from socketkit.errors import BrokenResourceError, ClosedResourceError, RemoteProtocolError
from socketkit.limits import (
    DEFAULT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_PENDING_MESSAGES,
    DEFAULT_MAX_SEND_QUEUE,
    DEFAULT_MESSAGE_TIMEOUT_S,
    DEFAULT_WRITE_HIGH_WATER,
    DEFAULT_WRITE_TIMEOUT_S,
)

if TYPE_CHECKING:
    from socketkit.aio.server import AsyncServer

__all__ = ["Connection", "ConnectionLimits", "Session", "format_peer"]

_PAUSE_USER, _PAUSE_WRITES, _PAUSE_INBOX, _PAUSE_ERROR, _PAUSE_TURN = 1, 2, 4, 8, 16
_PAUSE_BITS = {
    "user": _PAUSE_USER,
    "writes": _PAUSE_WRITES,
    "inbox": _PAUSE_INBOX,
    "error": _PAUSE_ERROR,
    "turn": _PAUSE_TURN,
}

logger = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits; ``None`` turns a timeout off. Defaults: ``socketkit.limits``.

    Attributes:
        idle_timeout: no byte in either direction for this long: close.
        handshake_timeout: no complete first message this long after connecting: close.
        message_timeout: bytes arrive but no message completes for this long: close.
        write_timeout: the peer reads nothing this long while we have data queued: abort.
        max_send_queue: bytes queued for the peer before it is aborted.
        write_high_water: queued bytes above which the peer counts as slow.
        max_pending_messages: decoded messages waiting for a busy handler task before
            reading from the socket pauses.
    """

    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT_S
    message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT_S
    write_timeout: float | None = DEFAULT_WRITE_TIMEOUT_S
    max_send_queue: int = DEFAULT_MAX_SEND_QUEUE
    write_high_water: int = DEFAULT_WRITE_HIGH_WATER
    max_pending_messages: int = DEFAULT_MAX_PENDING_MESSAGES


def format_peer(address: Any) -> str:
    """``host:port``, ``[v6]:port``, or the Unix path (``unix`` if the peer has none)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return format_host_port(str(address[0]), int(address[1]))
    if isinstance(address, (str, bytes)) and address:
        return f"unix:{address!s}"
    return "unix"


class Session(Generic[T]):
    """Per-connection behaviour of a callback-style service.

    The engine calls these on the event loop, one at a time, never concurrently. They
    must not block; ``message_received`` in particular runs inline for every message.
    """

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: Connection[T]) -> None:
        self.conn = conn

    def connection_made(self) -> None:
        """The connection is open (after the TLS handshake, if any)."""

    def message_received(self, message: T) -> None:
        """One complete message arrived."""

    def eof_received(self) -> None:
        """The peer finished sending (half-close). Default: finish writing, then close."""
        self.conn.close()

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        """The peer sent bad input (already logged). Default: close."""
        self.conn.close()

    def shutdown_requested(self) -> None:
        """The server is stopping: finish up. Default: close now."""
        self.conn.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection is closed (``exc``: why, if not an orderly close)."""


class Connection(asyncio.Protocol, Generic[T]):
    """One stream connection; see the module docstring.

    Args:
        decoder: the codec for incoming bytes (``None``: deliver raw chunks as they come).
        session_factory: callback style; ``None`` for task style (``receive()``).
        limits: timeouts and buffer caps.
        owner: the server that accepted the connection (``None`` for clients).

    Attributes:
        id: a number unique within the owning server.
        peer: the peer's address, formatted for logs (``127.0.0.1:5000``).
        bytes_in, bytes_out, messages_in: counters.
    """

    # Slots, and buffers created only when used: an idle connection costs ~0.5 KB here,
    # and 10,000 of them stay in cache (see docs/benchmarks.md, idle connections).
    __slots__ = (
        "__weakref__",
        "_closing",
        "_decoder",
        "_deliver",
        "_drain_waiters",
        "_eof",
        "_error",
        "_half_close_ok",
        "_inbox",
        "_inbox_waiter",
        "_lost",
        "_lost_exc",
        "_lost_waiter",
        "_owner",
        "_paused",
        "_session_factory",
        "_shutdown_requested",
        "_write_paused",
        "bytes_at_message",
        "bytes_in",
        "bytes_out",
        "connected_at",
        "host",
        "id",
        "last_active",
        "last_message_at",
        "limit_key",
        "limits",
        "messages_in",
        "peername",
        "seen_messages",
        "seen_total",
        "session",
        "transport",
        "write_paused_at",
    )

    def __init__(
        self,
        *,
        decoder: Decoder[T] | None,
        session_factory: Callable[[Connection[T]], Session[T]] | None = None,
        limits: ConnectionLimits = ConnectionLimits(),
        owner: AsyncServer | None = None,
        conn_id: int = 0,
    ) -> None:
        self.id = conn_id
        self.peername: Any = None
        self.host: str | None = None  # the peer's IP (per-address caps); None for Unix
        self.limit_key = ""  # who the peer is for per-peer limits (socketkit.peercred), set at accept
        self.limits = limits
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self._decoder = decoder
        self._owner = owner
        self._session_factory = session_factory
        self.session: Session[T] | None = None
        self.transport: asyncio.Transport | None = None
        self._closing = False
        self._lost = False
        self._lost_exc: BaseException | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._paused = 0  # bit set of _PAUSE_* reasons for not reading
        self._half_close_ok = True
        self._shutdown_requested = False
        # Task style.
        self._inbox: collections.deque[T] | None = None
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._deliver: Callable[[T], None] = self._to_inbox
        # Sweeper bookkeeping (written by the server's sweeper, never on the hot path).
        self.connected_at = 0.0
        self.last_active = 0.0
        self.last_message_at = 0.0
        self.write_paused_at = 0.0
        self.seen_total = 0
        self.seen_messages = 0
        self.bytes_at_message = 0

    @property
    def peer(self) -> str:
        """The peer's address for logs: ``127.0.0.1:5000``, ``[::1]:5000`` or ``unix``."""
        return "?" if self.transport is None else format_peer(self.peername)

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.peername = transport.get_extra_info("peername")
        self._half_close_ok = transport.get_extra_info("sslcontext") is None
        transport.set_write_buffer_limits(high=self.limits.write_high_water)
        loop = asyncio.get_running_loop()
        self.connected_at = self.last_active = self.last_message_at = loop.time()
        if self._owner is not None:
            self._owner.connection_opened(self)
        if self._session_factory is not None:
            self.session = self._session_factory(self)
            self._deliver = self.session.message_received
            self._call(self.session.connection_made)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        decoder = self._decoder
        try:
            if decoder is None:
                # Raw mode: every chunk is a message (messages_in stays 0; the sweeper
                # measures progress in bytes). Kept minimal: this is echo's hot path.
                self._deliver(data)  # type: ignore[arg-type]  # raw mode: T is bytes
                return
            decoder.feed(data)
            self._decode(decoder)
        except Exception:  # noqa: BLE001 (a service bug ends this connection, not the server)
            self._session_failed()

    def _decode(self, decoder: Decoder[T]) -> None:
        """Deliver every message the decoder has; after a recoverable protocol error (one
        bad line) go on with the next one if the session kept the connection open."""
        while not self._paused & _PAUSE_TURN:
            try:
                message = decoder.next_event()
            except RemoteProtocolError as exc:
                self._protocol_error(exc)
                if exc.recoverable and self.session is not None and not self._closing:
                    continue
                return
            if message is NEED_DATA or message is END_OF_STREAM:
                return
            self.messages_in += 1
            self._deliver(message)

    def eof_received(self) -> bool:
        decoder = self._decoder
        try:
            if decoder is not None:
                decoder.feed(b"")
                while True:
                    message = decoder.next_event()
                    if message is NEED_DATA or message is END_OF_STREAM:
                        break
                    self.messages_in += 1
                    self._deliver(message)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return False
        except Exception:  # noqa: BLE001 (a service bug ends this connection, not the server)
            self._session_failed()
            return False
        self._eof = True
        self._wake_inbox()
        if self.session is not None:
            self._call(self.session.eof_received)
        # Keep the transport open for half-close protocols; TLS cannot half-close.
        return self._half_close_ok and not self._closing

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        self._lost_exc = exc
        if exc is not None and self._error is None:
            self._error = BrokenResourceError(f"connection with {self.peer} broke: {exc}")
            self._error.__cause__ = exc
        self._wake_inbox()
        self._wake_drainers()
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(None)
        if self.session is not None:
            self._call(self.session.connection_lost, exc)
        if self._owner is not None:
            self._owner.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._owner is not None:
            self.write_paused_at = asyncio.get_running_loop().time()
        if self.session is not None:
            # A peer that does not read stops being read: memory stays bounded.
            self.pause_reading("writes")

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers()
        self.resume_reading("writes")

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # --- sending ---------------------------------------------------------------------

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
    def has_decoder(self) -> bool:
        """Whether messages are decoded (``False``: raw chunks are delivered as they come)."""
        return self._decoder is not None

    @property
    def write_paused(self) -> bool:
        """Whether the peer is slow: more than the high-water mark is queued for it."""
        return self._write_paused

    def request_shutdown(self) -> None:
        """The server is stopping: tell the session (or wake a handler reading)."""
        if self.session is not None:
            self._call(self.session.shutdown_requested)
        else:
            self._shutdown_requested = True
            self._wake_inbox()

    @property
    def shutdown_requested(self) -> bool:
        """Task style: whether the server asked this connection to finish."""
        return self._shutdown_requested

    @property
    def is_closing(self) -> bool:
        """Whether ``close()``/``abort()`` was called or the connection is gone."""
        return self._closing

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

    # --- reading (task style) --------------------------------------------------------

    def pause_reading(self, reason: str = "user") -> None:
        """Stop reading from the socket until every reason given is resumed.

        Reasons: ``"user"`` (the default), and the engine's own ``"writes"`` (the peer
        is not reading our replies), ``"inbox"`` (the handler task is behind),
        ``"error"`` (bad input, waiting for the handler to see it) and ``"turn"``
        (``yield_turn``).
        """
        bit = _PAUSE_BITS[reason]
        if not self._paused and self.transport is not None and not self._closing:
            self.transport.pause_reading()
        self._paused |= bit

    def resume_reading(self, reason: str = "user") -> None:
        """Resume reading for ``reason`` (reading restarts once no reason is left)."""
        bit = _PAUSE_BITS[reason]
        if self._paused & bit:
            self._paused &= ~bit
            if not self._paused and self.transport is not None and not self._closing:
                self.transport.resume_reading()

    def yield_turn(self) -> None:
        """Deliver no more messages in this event-loop turn; what was already received is
        delivered from the next turn on (reading pauses meanwhile).

        For sessions whose one message fans out into much output (a busy chat channel):
        the output of this turn is written before more input is taken, so one turn's work
        and memory stay bounded however much a fast sender had queued, and other
        connections get their turn.
        """
        if self._paused & _PAUSE_TURN or self._closing:
            return
        self.pause_reading("turn")
        asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self.resume_reading("turn")
        decoder = self._decoder
        if decoder is None or self._closing:
            return
        try:
            self._decode(decoder)
        except Exception:  # noqa: BLE001 (a service bug ends this connection, not the server)
            self._session_failed()

    def is_paused(self, reason: str) -> bool:
        """Whether reading is paused for ``reason``."""
        return bool(self._paused & _PAUSE_BITS[reason])

    async def receive(self) -> T:
        """Return the next message.

        Raises:
            EOFError: the peer ended the stream at a message boundary, or the server is
                shutting down (so ``async for`` loops end by themselves).
            RemoteProtocolError: the peer sent bad input.
            BrokenResourceError: the connection broke.
            ClosedResourceError: it was closed on our side.
        """
        while not self._inbox:  # None (nothing yet) or empty
            if self._error is not None:
                raise self._error
            if self._eof:
                raise EOFError(f"{self.peer} ended the stream")
            if self._shutdown_requested:
                raise EOFError("the server is shutting down")
            if self._lost:
                raise ClosedResourceError(f"connection with {self.peer} is closed")
            self._inbox_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._inbox_waiter
            finally:
                self._inbox_waiter = None
        inbox = self._inbox
        message = inbox.popleft()
        if self._paused & _PAUSE_INBOX and len(inbox) <= self.limits.max_pending_messages // 2:
            self.resume_reading("inbox")
        return message

    def __aiter__(self) -> Connection[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except EOFError:
            raise StopAsyncIteration from None

    # --- internals ---------------------------------------------------------------------

    def _to_inbox(self, message: T) -> None:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = collections.deque()
        inbox.append(message)
        if len(inbox) > self.limits.max_pending_messages:
            self.pause_reading("inbox")
        self._wake_inbox()

    def _wake_inbox(self) -> None:
        waiter = self._inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        if self.session is None or self._owner is None:
            # A handler task (or a client's caller) receives the error and reports it in
            # its own words: one line per event, not two.
            logger.debug("protocol error from %s: %s", self.peer, exc)
        else:
            count = REFUSALS.count(f"protocol {self._owner.serial} {exc.error_code}")
            if sampled(count):
                logger.warning("protocol error from %s: %s (%d in the last minute)", self.peer, exc, count)
        if self.session is None:
            self._error = exc
            self._wake_inbox()
            self.pause_reading("error")
            return
        self._call(self.session.protocol_error, exc)

    def _session_failed(self) -> None:
        logger.exception(  # noqa: LOG004 (always called from an except block)
            "error in the session of %s; closing that connection", self.peer
        )
        self.abort()

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except RemoteProtocolError as exc:
            if callback is not getattr(self.session, "protocol_error", None):
                self._protocol_error(exc)
            else:
                self._session_failed()
        except Exception:  # noqa: BLE001 (a service bug ends this connection, not the server)
            self._session_failed()
