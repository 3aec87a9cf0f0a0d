"""The chat server glue: IRC lines in, ``commands.handle``, effects out to sockets and SQLite.

Each connection is a callback-style ``Session`` (no task per message): a line is parsed,
handled and its effects applied inline, so a message to a channel of 1,000 members is
formatted a few times and written to 1,000 transports in one go. A member that stops
reading cannot slow the others: its transport buffers up to the send-queue cap
(``--sendq``) and the connection is then closed ("SendQ exceeded").

Fairness: a client's lines are handled until they have queued ``TURN_OUTPUT_BUDGET``
bytes in one event-loop turn; the rest of its input waits for the next turn, after the
output has been written.

Flood control: each client has a token bucket; lines beyond it are held back and
handled at the bucket's pace (the penalty), with reading from that client paused; a
client whose backlog passes ``flood_queue`` lines is disconnected ("Excess Flood").

Listings (LIST, WHO, NAMES: ``commands.listings``) longer than a page go on here, a
page per ``commands.resume``, the waiting clients in turn, ``LISTING_TURN_BUDGET`` in
all per event-loop turn (the socket poll, and others' PINGs, come between pages); a
client is served again once its output is below the high-water mark and its flood
budget has a token.

Password checks (``CheckPassword`` effects: OPER, PASS) run on ``PasswordChecker``'s few
worker threads, never on the event loop: a PBKDF2 check takes 0.1-0.2 s, and eight
clients sending OPERs used to stop every PONG for a minute and a half. Its queue is
bounded; a check that finds it full is answered at once (RPL_TRYAGAIN) instead of
waiting without bound. Every failed or refused attempt is one log line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from socketkit._log import get_logger
from socketkit.aio.connection import Connection, ConnectionLimits, Session
from socketkit.aio.server import AsyncServer
from socketkit.codec.irc import FORBIDDEN_CHARACTER, InvalidText, IRCDecoder, IRCMessage, encode_message
from socketkit.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError, ResourceError
from socketkit.services.chat import commands
from socketkit.services.chat.commands.listings import LISTING_PAGE
from socketkit.services.chat.options import DEFAULT_SENDQ
from socketkit.services.chat.replies import (
    AuthFailed,
    CheckPassword,
    Disconnect,
    DropChannel,
    Effect,
    ListingPending,
    Send,
    StoreChannel,
    StoreHistory,
)
from socketkit.services.chat.session import verify_password
from socketkit.services.chat.state import ChatConfig, ChatState
from socketkit.services.chat.store import ChatStore

__all__ = [
    "DEFAULT_SENDQ",
    "LISTING_TURN_BUDGET",
    "PASSWORD_QUEUE",
    "PASSWORD_WORKERS",
    "ChatServer",
    "PasswordChecker",
]

logger = get_logger(__name__)

TURN_OUTPUT_BUDGET = 1024 * 1024
"""Output bytes one client's lines may queue per event-loop turn before its remaining
input waits for the next turn (``Connection.yield_turn``). Without it, one turn could
take in everything ten fast senders had buffered (20,000 lines) and queue 100 times
that for the channel before writing any of it: seconds of latency and gigabytes of
memory. Every sender still gets at least one line per turn."""

TURN_TOTAL_BUDGET = 16 * 1024 * 1024
"""Output bytes all clients' lines may queue per turn; past it, every client yields after
one line (bounds a turn when a thousand clients flood a thousand-member channel)."""

LISTING_TURN_BUDGET: Final = 4 * LISTING_PAGE
"""Units of listing work (channels or users looked at) all clients' listings may do in
one event-loop turn: four pages, at most some 10 ms, so however many clients list at
once, a turn stays short and the others' lines are read and answered between pages."""

TICK_S = 1.0

PASSWORD_WORKERS: Final = 2
"""Threads checking passwords. PBKDF2 releases the GIL, so each one is a core's worth of
hashing that the event loop does not wait for; two leave the loop a core on small
machines while an operator's OPER still waits at most a check or two."""

PASSWORD_QUEUE: Final = 16
"""Checks waiting for a worker before further attempts are refused with RPL_TRYAGAIN:
about 1.5 s of work for two workers, so a legitimate OPER never waits long, and an
attack cannot queue work (or memory) without bound."""

Verify = Callable[[str, str], bool]


class PasswordChecker:
    """Runs ``CheckPassword`` requests on ``workers`` threads, at most ``workers + queue``
    at a time; the result is handed back on the event loop.

    Resource handling: the threads are started on first use and joined by ``close()``
    (queued checks are dropped, running ones finish). Error handling: a check that
    raises counts as a failed password (logged on one line); a full queue is reported
    to the caller, which refuses the attempt.
    """

    def __init__(
        self,
        *,
        workers: int = PASSWORD_WORKERS,
        queue: int = PASSWORD_QUEUE,
        verify: Verify = verify_password,
    ) -> None:
        self.capacity = workers + queue
        self.in_flight = 0  # submitted and not yet handed back (queued or running)
        self._verify = verify
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="socketkit-chat-passwords")
        self._closed = False

    def submit(self, request: CheckPassword, done: Callable[[CheckPassword, bool], None]) -> bool:
        """Start checking ``request``; ``done(request, ok)`` runs on this event loop when it
        is over. ``False``: no room (or closed), nothing started."""
        if self._closed or self.in_flight >= self.capacity:
            return False
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._verify, request.stored, request.password
        )
        self.in_flight += 1

        def finished(future: asyncio.Future[bool]) -> None:
            self.in_flight -= 1
            if future.cancelled():  # closed while it waited
                return
            error = future.exception()
            if error is not None:
                logger.error("chat: %s password check for #%d failed: %r", request.purpose, request.id, error)
            done(request, error is None and future.result())

        future.add_done_callback(finished)
        return True

    def close(self) -> None:
        """Stop: drop the queued checks, wait for the running ones, join the threads."""
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)


class ChatServer:
    """One chat server: the state, the connections, the store."""

    def __init__(
        self,
        config: ChatConfig,
        store: ChatStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        passwords: PasswordChecker | None = None,
    ) -> None:
        self.clock = clock
        self.state = ChatState(config, clock())
        self.store = store
        self.passwords = passwords or PasswordChecker()
        self.conns: dict[int, Connection[IRCMessage]] = {}
        self._pending: dict[int, list[bytes]] = {}
        self._flush_scheduled = False
        self.queued_bytes = 0  # output bytes queued so far (for the per-turn budget)
        self.turn = 0  # flushes so far: one per event-loop turn that produced output
        self.turn_started_at = 0  # queued_bytes when this turn began
        self._listing: collections.OrderedDict[int, None] = collections.OrderedDict()  # may go on, in turn
        self._listing_scheduled = False
        if store is not None:
            store.load(self.state)
        self.server: AsyncServer | None = None

    def make_server(self, *, sendq: int = DEFAULT_SENDQ, **options: Any) -> AsyncServer:
        """The ``AsyncServer`` for this chat (caps and grace in ``options``)."""
        self.server = AsyncServer(
            session_factory=lambda conn: ChatSession(self, conn),
            decoder_factory=IRCDecoder,
            # Registration and ping timeouts are IRC's own (commands.tick); the engine
            # only cuts a line that takes a minute to arrive.
            limits=ConnectionLimits(
                idle_timeout=None,
                handshake_timeout=None,
                message_timeout=60.0,
                max_send_queue=sendq,
                write_high_water=min(sendq // 4, 256 * 1024),
            ),
            refusal=lambda reason: f"ERROR :Closing link: {reason}\r\n".encode(),
            **options,
        )
        return self.server

    def start_ticker(self, server: AsyncServer) -> None:
        """Run the pings and timeouts as a task of ``server`` (stopped with it)."""
        server.spawn(self.run_ticker(), name="socketkit-chat-ticker")

    async def run_ticker(self) -> None:
        """Pings and timeouts, once a second, until cancelled."""
        while True:
            await asyncio.sleep(TICK_S)
            self.apply(commands.tick(self.state, self.clock()))

    def apply(self, effects: Iterable[Effect]) -> None:
        """Carry out the effects of handling one message.

        Messages are not written at once: they are queued per connection and written by
        ``flush`` once per event-loop turn, so a client receiving 50 channel messages in
        one turn gets one write, not 50 (the system call per delivery was 3/4 of the
        server's time in a busy channel).
        """
        pending = self._pending
        for effect in effects:
            if type(effect) is Send:
                try:
                    data = encode_message(effect.message)
                except LocalProtocolError as exc:
                    # A bug of ours (replies are built to be sendable): one line, and the
                    # server goes on; never one traceback per message a client can trigger.
                    logger.error("chat: cannot send %s: %s", effect.message.command, exc)  # noqa: TRY400
                    continue
                exclude = effect.exclude
                self.queued_bytes += len(data) * len(effect.ids)
                for cid in effect.ids:
                    if cid == exclude:
                        continue
                    queued = pending.get(cid)
                    if queued is None:
                        pending[cid] = [data]
                    else:
                        queued.append(data)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self.flush)
            elif isinstance(effect, Disconnect):
                self.close_client(effect.id, effect.reason)
            elif isinstance(effect, CheckPassword):
                if not self.passwords.submit(effect, self._password_checked):
                    self.apply(commands.password_checked(self.state, effect, None, self.clock()))
            elif isinstance(effect, ListingPending):
                self.listing_ready(effect.id)
            elif isinstance(effect, AuthFailed):
                self._log_auth_failure(effect)
            elif self.store is not None:
                if isinstance(effect, StoreChannel):
                    self.store.save_channel(effect.channel)
                elif isinstance(effect, DropChannel):
                    self.store.drop_channel(effect.name)
                elif isinstance(effect, StoreHistory):
                    self.store.add_history(effect.channel, effect.item)
                    if not self._flush_scheduled:
                        self._flush_scheduled = True
                        asyncio.get_running_loop().call_soon(self.flush)

    def run_listings(self) -> None:
        """Go on with the waiting listings, a page each in turn, up to
        ``LISTING_TURN_BUDGET`` units in all; the rest waits for the next turn. A client
        whose output is above its high-water mark waits for it to drain, one whose flood
        budget is spent waits for a token; either is called again then."""
        self._listing_scheduled = False
        budget = LISTING_TURN_BUDGET
        now = self.clock()
        while self._listing and budget > 0:
            cid, _ = self._listing.popitem(last=False)
            conn = self.conns.get(cid)
            client = self.state.clients.get(cid)
            if conn is None or client is None or conn.is_closing or not client.listings:
                continue
            session = conn.session
            if not isinstance(session, ChatSession):
                continue
            if conn.write_paused:
                session.listing_after_drain()
                continue
            wait = client.flood.wait_time(now)
            if wait > 0:
                session.listing_after(wait)
                continue
            page = min(LISTING_PAGE, budget)
            budget -= page
            self.apply(commands.resume(self.state, client, now, page))  # back in the queue if not done
            self._flush_one(cid)  # written now, so that write_paused says where it stands
        if self._listing and not self._listing_scheduled:
            self._listing_scheduled = True
            asyncio.get_running_loop().call_soon(self.run_listings)

    def listing_ready(self, cid: int) -> None:
        """A client's listing may go on (it has one, or it waited for a drain or a token)."""
        client = self.state.clients.get(cid)
        if client is None or not client.listings:
            return
        self._listing[cid] = None
        if not self._listing_scheduled:
            self._listing_scheduled = True
            asyncio.get_running_loop().call_soon(self.run_listings)

    def _password_checked(self, request: CheckPassword, ok: bool) -> None:
        self.apply(commands.password_checked(self.state, request, ok, self.clock()))

    def _log_auth_failure(self, failure: AuthFailed) -> None:
        """One line per failed or refused attempt: who, from where, which name; never the
        password. The name is the client's text, so it is quoted (``%r``)."""
        client = self.state.clients.get(failure.id)
        conn = self.conns.get(failure.id)
        logger.warning(
            "chat: %s failed for %s from %s%s: %s",
            failure.purpose,
            client.target if client is not None else "?",
            conn.peer if conn is not None else "?",
            _named(failure),
            failure.reason,
        )

    def close(self) -> None:
        """Stop the password workers (after the server has stopped)."""
        self.passwords.close()

    def flush(self) -> None:
        """Write what ``apply`` queued: one write per connection, one hand-over of
        history rows to the store."""
        self._flush_scheduled = False
        self.turn += 1
        self.turn_started_at = self.queued_bytes
        if self.store is not None:
            self.store.flush()
        pending, self._pending = self._pending, {}
        conns = self.conns
        for cid, parts in pending.items():
            conn = conns.get(cid)
            if conn is not None and not conn.is_closing:
                with contextlib.suppress(ResourceError):
                    conn.send(parts[0] if len(parts) == 1 else b"".join(parts))

    def _flush_one(self, cid: int) -> None:
        parts = self._pending.pop(cid, None)
        conn = self.conns.get(cid)
        if parts and conn is not None and not conn.is_closing:
            with contextlib.suppress(ResourceError):
                conn.send(b"".join(parts))

    def close_client(self, cid: int, reason: str) -> None:
        """Send ERROR, close the connection, and take the client out of the state."""
        conn = self.conns.get(cid)
        client = self.state.clients.get(cid)
        self._flush_one(cid)  # what was queued for it goes before the ERROR
        if conn is not None and not conn.is_closing:
            with contextlib.suppress(ResourceError):
                conn.send(f"ERROR :Closing link: ({reason})\r\n".encode("utf-8", errors="surrogateescape"))
            conn.close()
        if client is not None:
            logger.info("chat: %s (%s) left: %s", client.target, conn.peer if conn else "?", reason)
            self.apply(commands.disconnect(self.state, client, reason, self.clock()))


def _named(failure: AuthFailed) -> str:
    if not failure.name:
        return ""
    return f", {'operator' if failure.purpose == 'OPER' else 'name'} {failure.name!r}"


class ChatSession(Session[IRCMessage]):
    """One IRC connection."""

    __slots__ = ("_backlog", "_drain", "_listing_timer", "_spent", "_timer", "_turn", "chat")

    def __init__(self, chat: ChatServer, conn: Connection[IRCMessage]) -> None:
        super().__init__(conn)
        self.chat = chat
        self._backlog: collections.deque[IRCMessage] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._turn = -1  # the turn ``_spent`` counts for
        self._spent = 0  # output bytes this client's lines queued in that turn
        self._listing_timer: asyncio.TimerHandle | None = None  # a listing waiting for a token
        self._drain: asyncio.Future[None] | None = None  # a listing waiting for the output to drain

    def connection_made(self) -> None:
        conn = self.conn
        self.chat.conns[conn.id] = conn
        commands.connect(
            self.chat.state, conn.id, conn.host or "localhost", self.chat.clock(), conn.limit_key
        )
        logger.info("chat: connection #%d from %s", conn.id, conn.peer)

    def message_received(self, message: IRCMessage) -> None:
        chat = self.chat
        client = chat.state.clients.get(self.conn.id)
        if client is None:
            return
        if self._backlog:
            self._hold(message)
            return
        wait = client.flood.take(chat.clock())
        if wait > 0:
            self._hold(message, wait)
            return
        before = chat.queued_bytes
        chat.apply(commands.handle(chat.state, client, message, chat.clock()))
        if self._turn != chat.turn:
            self._turn, self._spent = chat.turn, 0
        self._spent += chat.queued_bytes - before
        if self._spent > TURN_OUTPUT_BUDGET or chat.queued_bytes - chat.turn_started_at > TURN_TOTAL_BUDGET:
            self.conn.yield_turn()

    def _hold(self, message: IRCMessage, wait: float | None = None) -> None:
        chat = self.chat
        self._backlog.append(message)
        if len(self._backlog) > chat.state.config.flood_queue:
            self._backlog.clear()
            chat.close_client(self.conn.id, "Excess Flood")
            return
        self.conn.pause_reading("user")
        if self._timer is None and wait is not None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._release)

    def _release(self) -> None:
        """Handle held-back lines as tokens come back (the flood penalty)."""
        self._timer = None
        chat = self.chat
        client = chat.state.clients.get(self.conn.id)
        while self._backlog and client is not None:
            wait = client.flood.take(chat.clock())
            if wait > 0:
                self._timer = asyncio.get_running_loop().call_later(wait, self._release)
                return
            chat.apply(commands.handle(chat.state, client, self._backlog.popleft(), chat.clock()))
            client = chat.state.clients.get(self.conn.id)
        if client is not None:
            self.conn.resume_reading("user")

    def listing_after(self, wait: float) -> None:
        """Go on with this client's listing in ``wait`` seconds (its flood budget)."""
        if self._listing_timer is None:
            self._listing_timer = asyncio.get_running_loop().call_later(wait, self._listing_go)

    def _listing_go(self) -> None:
        self._listing_timer = None
        self.chat.listing_ready(self.conn.id)

    def listing_after_drain(self) -> None:
        """Go on with this client's listing once its output is below the high-water mark."""
        if self._drain is None:
            self._drain = asyncio.ensure_future(self.conn.drain())
            self._drain.add_done_callback(self._drained)

    def _drained(self, future: asyncio.Future[None]) -> None:
        self._drain = None
        if not future.cancelled() and future.exception() is None:  # else: the connection is gone
            self.chat.listing_ready(self.conn.id)

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        chat = self.chat
        client = chat.state.clients.get(self.conn.id)
        if client is not None and exc.recoverable:
            if client.flood.take(chat.clock()) > 0:  # bad lines count against the flood budget
                chat.close_client(self.conn.id, "Excess Flood")
                return
            if isinstance(exc, FrameTooLarge):
                chat.apply(commands.input_too_long(chat.state, client, chat.clock()))
            elif exc.error_code == FORBIDDEN_CHARACTER:
                chat.apply(commands.forbidden_character(chat.state, client, chat.clock()))
            elif isinstance(exc, InvalidText):
                chat.apply(commands.invalid_text(chat.state, client, exc.command, chat.clock()))
            # Either way the client stays: one bad line is skipped (servers ignore
            # malformed lines, modern.ircdocs.horse), and never reaches a handler or
            # the history. The engine has logged it, on one line.
            return
        chat.close_client(self.conn.id, f"Protocol error: {exc}")

    def eof_received(self) -> None:
        self.chat.close_client(self.conn.id, "Connection closed")

    def shutdown_requested(self) -> None:
        self.chat.close_client(self.conn.id, "Server shutting down")

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._timer, self._listing_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._listing_timer = None
        if self._drain is not None:
            self._drain.cancel()
        chat = self.chat
        client = chat.state.clients.get(self.conn.id)
        if client is not None:
            reason = "Connection closed" if exc is None else f"Read error: {exc}"
            if self.conn.write_paused:
                reason = "SendQ exceeded"
            logger.info("chat: %s (%s) left: %s", client.target, self.conn.peer, reason)
            chat.apply(commands.disconnect(chat.state, client, reason, chat.clock()))
        chat.conns.pop(self.conn.id, None)
