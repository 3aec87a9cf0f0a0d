"""The read half of a connection: why reading is paused, and the task-style inbox.

``Receiving`` sits between ``Sending`` and ``Connection`` (``socketkit.aio.connection``).
Reading from the socket pauses for independent reasons, a bit each (the service asked,
the peer does not read our replies, the handler task is behind, bad input waits to be
seen, ``yield_turn``) and restarts once none is left. A handler task reads with ``await
conn.receive()`` or ``async for message in conn``: decoded messages wait in an inbox,
and past ``max_pending_messages`` of them reading pauses until the handler has caught
up to half of that.

At shutdown, ``receive()`` ends the handler's loop (``EOFError``) only once the
connection is idle: nothing waits in the inbox, the kernel holds nothing unread from the
peer, no message is half received, and no request is marked ``busy()``. A request in
progress goes on until it ends or the server's grace runs out; what the peer had
already sent is still read and answered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
from collections.abc import Iterator
from typing import Generic, TypeVar

from socketkit._shutdown import SHUTTING_DOWN
from socketkit.aio.connection_limits import ConnectionLimits
from socketkit.aio.sending import Sending
from socketkit.errors import ClosedResourceError

try:  # POSIX: how many bytes the kernel holds for us on a socket
    import fcntl
    import termios

    _FIONREAD: int | None = termios.FIONREAD
except ImportError:  # pragma: no cover (Windows)
    _FIONREAD = None

__all__ = ["PAUSE_BITS", "Receiving"]

PAUSE_USER, PAUSE_WRITES, PAUSE_INBOX, PAUSE_ERROR, PAUSE_TURN = 1, 2, 4, 8, 16
PAUSE_BITS = {
    "user": PAUSE_USER,
    "writes": PAUSE_WRITES,
    "inbox": PAUSE_INBOX,
    "error": PAUSE_ERROR,
    "turn": PAUSE_TURN,
}

T = TypeVar("T")


class Receiving(Sending, Generic[T]):
    """Read flow control and the inbox of a task-style connection."""

    __slots__ = ("_arriving", "_busy", "_eof", "_inbox", "_inbox_waiter", "_paused", "_shutdown_requested")

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__(limits)
        self._paused = 0  # bit set of PAUSE_* reasons for not reading
        self._busy = 0  # requests in progress (busy() blocks entered, not left)
        # The last bytes read completed no message: one is arriving (the decoder holds
        # its start), so the connection is not idle; a drain lets it complete.
        self._arriving = False
        self._shutdown_requested = False
        self._inbox: collections.deque[T] | None = None  # created on the first message
        self._inbox_waiter: asyncio.Future[None] | None = None
        self._eof = False

    # --- flow control ------------------------------------------------------------------

    def pause_reading(self, reason: str = "user") -> None:
        """Stop reading from the socket until every reason given is resumed.

        Reasons: ``"user"`` (the default), and the engine's own ``"writes"`` (the peer
        is not reading our replies), ``"inbox"`` (the handler task is behind),
        ``"error"`` (bad input, waiting for the handler to see it) and ``"turn"``
        (``yield_turn``).
        """
        bit = PAUSE_BITS[reason]
        if not self._paused and self.transport is not None and not self._closing:
            self.transport.pause_reading()
        self._paused |= bit

    def resume_reading(self, reason: str = "user") -> None:
        """Resume reading for ``reason`` (reading restarts once no reason is left)."""
        bit = PAUSE_BITS[reason]
        if self._paused & bit:
            self._paused &= ~bit
            if not self._paused and self.transport is not None and not self._closing:
                self.transport.resume_reading()

    def is_paused(self, reason: str) -> bool:
        """Whether reading is paused for ``reason``."""
        return bool(self._paused & PAUSE_BITS[reason])

    def unread_bytes(self) -> int:
        """Bytes the peer sent that the kernel holds and the engine has not read yet
        (``FIONREAD``; 0 where the system cannot tell)."""
        transport = self.transport
        if _FIONREAD is None or transport is None or self._lost:
            return 0
        sock = transport.get_extra_info("socket")
        if sock is None:
            return 0
        try:
            raw = fcntl.ioctl(sock.fileno(), _FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):  # closed meanwhile: nothing to read
            return 0
        return max(0, int(struct.unpack("i", raw)[0]))

    # --- shutdown ----------------------------------------------------------------------

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a request in progress (``with conn.busy(): ...``): a server shutting down
        lets it finish, up to its grace, instead of ending the connection at the next
        ``receive()``; once no request is in progress the connection counts as idle.
        Blocks may nest (a request and its sub-steps)."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy and self._shutdown_requested:
                self._wake_inbox()  # a receive() waiting elsewhere sees the idle connection
                self._became_idle()

    def _became_idle(self) -> None:
        """The last ``busy()`` block ended while the server is stopping (hook)."""

    @property
    def shutdown_requested(self) -> bool:
        """Whether the server asked this connection to finish (it is stopping)."""
        return self._shutdown_requested

    def _idle_for_shutdown(self) -> bool:
        """Whether a stopping server may end this connection now (see the module)."""
        return not (self._busy or self._inbox or self._arriving) and not self.unread_bytes()

    # --- task style ---------------------------------------------------------------------

    async def receive(self) -> T:
        """Return the next message.

        Raises:
            EOFError: the peer ended the stream at a message boundary, or the server is
                shutting down and the connection is idle (so ``async for`` loops end by
                themselves).
            RemoteProtocolError: the peer sent bad input.
            BrokenResourceError: the connection broke.
            ClosedResourceError: it was closed on our side.
        """
        while not self._inbox:  # None (nothing yet) or empty
            if self._error is not None:
                raise self._error
            if self._eof:
                raise EOFError(f"{self.peer} ended the stream")
            if self._shutdown_requested and self._idle_for_shutdown():
                raise EOFError(SHUTTING_DOWN)
            if self._lost:
                raise ClosedResourceError(f"connection with {self.peer} is closed")
            self._inbox_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._inbox_waiter
            finally:
                self._inbox_waiter = None
        inbox = self._inbox
        message = inbox.popleft()
        if self._paused & PAUSE_INBOX and len(inbox) <= self.limits.max_pending_messages // 2:
            self.resume_reading("inbox")
        return message

    def __aiter__(self) -> Receiving[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except EOFError:
            raise StopAsyncIteration from None

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
