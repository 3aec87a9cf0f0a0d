"""Connection: the asyncio Protocol joining a transport, a codec decoder and a service.

Bytes arrive in ``data_received``, go through the connection's decoder (or straight
through, for raw byte services such as echo), and each complete message is delivered
either

- to a ``Session`` (callback style, called inline on the event loop: no task switch
  per message, which is how echo keeps up with a bare uvloop Protocol), or
- to the inbox read by a handler task (``async for message in conn``, with flow
  control: ``socketkit.aio.receiving``).

Writing is ``socketkit.aio.sending``'s (``send()``, ``await drain()``, the send-queue
cap); above the high-water mark a callback-style connection also stops reading from
its peer, so an echo peer that never reads cannot make us buffer without bound.
Timeouts are enforced by the server's sweeper from counters kept here, so the hot path
reads no clock.

Shutdown: when the owning server stops, ``request_shutdown()`` tells the session
(``Session.shutdown_requested``: by default the connection closes once idle, after what
the peer had already sent is answered) or lets a handler's ``receive()`` end once idle;
``busy()`` marks a request to be let finish. When the grace runs out the server cuts
what is left: a session gets ``shutdown_forced(reason)`` (by default ``farewell``: the
server's last words, then close); a handler task is cancelled, then given the same.

Resource handling: the transport is closed by ``close()``/``abort()``, by the peer, or
by the server at shutdown; ``connection_lost`` always runs and wakes every waiter.
Error handling: bad input raises ``RemoteProtocolError`` in the decoder or session;
it is logged with the peer address and handed to ``Session.protocol_error`` (default:
close). Any other exception from a session callback is logged with its traceback and
aborts that connection only. An ``OSError`` that ends the transport becomes the
``BrokenResourceError`` its waiters raise (``socketkit._oserrors.resource_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, cast

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit._oserrors import resource_error
from socketkit._shutdown import SHUTTING_DOWN
from socketkit.address import format_peer
from socketkit.aio.connection_limits import ConnectionLimits
from socketkit.aio.receiving import PAUSE_TURN, PAUSE_WRITES, Receiving
from socketkit.codec.base import END_OF_STREAM, NEED_DATA, Decoder
from socketkit.errors import RemoteProtocolError, ResourceError

__all__ = ["Connection", "ConnectionLimits", "ConnectionOwner", "Session", "format_peer"]

logger = get_logger(__name__)

T = TypeVar("T")


class ConnectionOwner(Protocol):
    """What a connection needs of the server that accepted it (``AsyncServer``)."""

    serial: int
    """Names the server in sampled log lines."""

    @property
    def closing(self) -> bool:
        """Whether the server is stopping."""

    def connection_opened(self, conn: Connection[Any]) -> None:
        """Register ``conn`` (its transport is up)."""

    def connection_closed(self, conn: Connection[Any]) -> None:
        """Unregister ``conn`` (its transport is gone)."""

    def farewell_for(self, reason: str) -> bytes | None:
        """The service's last words to a peer it stops serving for ``reason``."""


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
        """The server is stopping: finish up. Default: close once idle
        (``Connection.close_when_idle``): what the peer already sent is answered first,
        and the server's farewell goes last."""
        self.conn.close_when_idle(SHUTTING_DOWN)

    def shutdown_forced(self, reason: str) -> None:
        """The server's shutdown grace ran out: the connection must end now. Default:
        the server's farewell for ``reason`` (``Connection.farewell``), then close."""
        self.conn.farewell(reason)

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection is closed (``exc``: why, if not an orderly close)."""


class Connection(Receiving[T]):
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

    # Slots (here and in the two bases), and buffers created only when used: an idle
    # connection costs ~0.5 KB, and 10,000 of them stay in cache (docs/benchmarks.md).
    __slots__ = (
        "_close_when_idle",
        "_decoder",
        "_deliver",
        "_half_close_ok",
        "_lost_exc",
        "_owner",
        "_session_factory",
        "bytes_at_message",
        "bytes_in",
        "connected_at",
        "host",
        "id",
        "last_active",
        "last_message_at",
        "limit_key",
        "messages_in",
        "seen_messages",
        "seen_total",
        "session",
        "write_paused_at",
    )

    def __init__(
        self,
        *,
        decoder: Decoder[T] | None,
        session_factory: Callable[[Connection[T]], Session[T]] | None = None,
        limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 (frozen, shared)
        owner: ConnectionOwner | None = None,
        conn_id: int = 0,
    ) -> None:
        super().__init__(limits)
        self.id = conn_id
        self.host: str | None = None  # the peer's IP (per-address caps); None for Unix
        self.limit_key = ""  # who the peer is for per-peer limits (socketkit.peercred), set at accept
        self.bytes_in = 0
        self.messages_in = 0
        self._decoder = decoder
        self._owner = owner
        self._session_factory = session_factory
        self.session: Session[T] | None = None
        self._lost_exc: BaseException | None = None
        self._half_close_ok = True
        self._close_when_idle: str | None = None  # the farewell reason, once asked
        self._deliver: Callable[[T], None] = self._to_inbox
        # Sweeper bookkeeping (written by the server's sweeper, never on the hot path).
        self.connected_at = 0.0
        self.last_active = 0.0
        self.last_message_at = 0.0
        self.write_paused_at = 0.0
        self.seen_total = 0
        self.seen_messages = 0
        self.bytes_at_message = 0

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
        owner = self._owner
        if owner is not None:
            owner.connection_opened(self)
        if self._session_factory is not None:
            self.session = self._session_factory(self)
            self._deliver = self.session.message_received
            self._call(self.session.connection_made)
        if owner is not None and owner.closing:  # came up while the server stops
            self.request_shutdown()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        decoder = self._decoder
        try:
            if decoder is None:
                # Raw mode: every chunk is a message (messages_in stays 0; the sweeper
                # measures progress in bytes). Kept minimal: this is echo's hot path.
                self._deliver(data)  # type: ignore[arg-type]  # raw mode: T is bytes
            else:
                decoder.feed(data)
                before = self.messages_in
                self._decode(decoder)
                self._arriving = self.messages_in == before
        except Exception:  # noqa: BLE001 (a service bug ends this connection, not the server)
            self._session_failed()
        if self._close_when_idle is not None:
            self._close_if_idle()

    def _decode(self, decoder: Decoder[T]) -> None:
        """Deliver every message the decoder has; after a recoverable protocol error (one
        bad line) go on with the next one if the session kept the connection open."""
        while not self._paused & PAUSE_TURN:
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
            self._error = resource_error(exc, f"connection with {self.peer}")
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
        if self._close_when_idle is not None:
            self._close_if_idle()

    # --- state -------------------------------------------------------------------------

    @property
    def has_decoder(self) -> bool:
        """Whether messages are decoded (``False``: raw chunks are delivered as they come)."""
        return self._decoder is not None

    def yield_turn(self) -> None:
        """Deliver no more messages in this event-loop turn; what was already received is
        delivered from the next turn on (reading pauses meanwhile).

        For sessions whose one message fans out into much output (a busy chat channel):
        the output of this turn is written before more input is taken, so one turn's work
        and memory stay bounded however much a fast sender had queued, and other
        connections get their turn.
        """
        if self._paused & PAUSE_TURN or self._closing:
            return
        self.pause_reading("turn")
        asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self.resume_reading("turn")
        decoder = self._decoder
        if decoder is None or self._closing:
            return
        before = self.messages_in
        try:
            self._decode(decoder)
        except Exception:  # noqa: BLE001 (a service bug ends this connection, not the server)
            self._session_failed()
        if self.messages_in != before:
            self._arriving = False
        if self._close_when_idle is not None:
            self._close_if_idle()

    # --- shutdown ------------------------------------------------------------------------

    def request_shutdown(self) -> None:
        """The server is stopping: tell the session, or let a handler's ``receive()``
        end once the connection is idle (see ``socketkit.aio.receiving``)."""
        if self._shutdown_requested:
            return
        self._shutdown_requested = True
        if self.session is not None:
            self._call(self.session.shutdown_requested)
        else:
            self._wake_inbox()

    def shutdown_forced(self, reason: str) -> None:
        """The server's grace ran out: a session is told (``Session.shutdown_forced``);
        a handler task is the server's to cancel, then it calls ``farewell``."""
        if self.session is not None:
            self._call(self.session.shutdown_forced, reason)

    def close_when_idle(self, reason: str | None = None) -> None:
        """Close once nothing is in progress: no ``busy()`` request, nothing unread from
        the peer, nothing queued for it; with ``reason``, the server's farewell for it
        goes last (``farewell``). What the peer has already sent is still delivered and
        answered, so a reply in flight is never cut off by the close."""
        if self._closing or self.transport is None:
            return
        self._close_when_idle = reason or ""
        # Marks at 0: resume_writing() says when everything queued has been written.
        self.transport.set_write_buffer_limits(high=0, low=0)
        self._close_if_idle()

    def _became_idle(self) -> None:
        if self._close_when_idle is not None:
            self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self._closing or self._busy or self._arriving or self._paused & ~PAUSE_WRITES:
            return
        if self.write_buffer_size or self.unread_bytes():
            return  # data_received() or resume_writing() comes back here
        reason = self._close_when_idle
        if reason:
            self.farewell(reason)
        else:
            self.close()

    def farewell(self, reason: str) -> None:
        """Close, after sending the server's farewell for ``reason``
        (``AsyncServer(farewell=...)``) if it has one and the connection can still write:
        the peer learns why it is cut, in its protocol."""
        if self._closing:
            return
        message = None if self._owner is None else self._owner.farewell_for(reason)
        if message:
            with contextlib.suppress(ResourceError):
                self.send(message)
        self.close()

    # --- internals ---------------------------------------------------------------------

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
