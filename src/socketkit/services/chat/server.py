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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from socketkit.aio.connection import Connection, ConnectionLimits, Session
from socketkit.aio.server import AsyncServer
from socketkit.codec.irc import IRCDecoder, IRCMessage, encode_message
from socketkit.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError, ResourceError
from socketkit.services.chat import commands
from socketkit.services.chat.replies import Disconnect, DropChannel, Effect, Send, StoreChannel, StoreHistory
from socketkit.services.chat.state import ChatConfig, ChatState
from socketkit.services.chat.store import ChatStore

__all__ = ["DEFAULT_SENDQ", "ChatServer"]

logger = logging.getLogger(__name__)

DEFAULT_SENDQ = 1 << 20
"""Bytes queued for a client that does not read before it is disconnected (ngircd uses
100 KB; a busy channel's history replay can be larger, and the cap is per client)."""

TURN_OUTPUT_BUDGET = 1024 * 1024
"""Output bytes one client's lines may queue per event-loop turn before its remaining
input waits for the next turn (``Connection.yield_turn``). Without it, one turn could
take in everything ten fast senders had buffered (20,000 lines) and queue 100 times
that for the channel before writing any of it: seconds of latency and gigabytes of
memory. Every sender still gets at least one line per turn."""

TURN_TOTAL_BUDGET = 16 * 1024 * 1024
"""Output bytes all clients' lines may queue per turn; past it, every client yields after
one line (bounds a turn when a thousand clients flood a thousand-member channel)."""

TICK_S = 1.0


class ChatServer:
    """One chat server: the state, the connections, the store."""

    def __init__(
        self, config: ChatConfig, store: ChatStore | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self.state = ChatState(config, clock())
        self.store = store
        self.conns: dict[int, Connection[IRCMessage]] = {}
        self._pending: dict[int, list[bytes]] = {}
        self._flush_scheduled = False
        self.queued_bytes = 0  # output bytes queued so far (for the per-turn budget)
        self.turn = 0  # flushes so far: one per event-loop turn that produced output
        self.turn_started_at = 0  # queued_bytes when this turn began
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
                except LocalProtocolError:
                    logger.exception("chat: cannot encode a reply")
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


class ChatSession(Session[IRCMessage]):
    """One IRC connection."""

    __slots__ = ("_backlog", "_spent", "_timer", "_turn", "chat")

    def __init__(self, chat: ChatServer, conn: Connection[IRCMessage]) -> None:
        super().__init__(conn)
        self.chat = chat
        self._backlog: collections.deque[IRCMessage] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._turn = -1  # the turn ``_spent`` counts for
        self._spent = 0  # output bytes this client's lines queued in that turn

    def connection_made(self) -> None:
        conn = self.conn
        self.chat.conns[conn.id] = conn
        commands.connect(self.chat.state, conn.id, conn.host or "localhost", self.chat.clock())
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

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        chat = self.chat
        client = chat.state.clients.get(self.conn.id)
        if client is not None and exc.recoverable:
            if client.flood.take(chat.clock()) > 0:  # bad lines count against the flood budget
                chat.close_client(self.conn.id, "Excess Flood")
                return
            if isinstance(exc, FrameTooLarge):
                chat.apply(commands.input_too_long(chat.state, client, chat.clock()))
            # Either way the client stays: one bad line is skipped (servers ignore
            # malformed lines, modern.ircdocs.horse).
            return
        chat.close_client(self.conn.id, f"Protocol error: {exc}")

    def eof_received(self) -> None:
        self.chat.close_client(self.conn.id, "Connection closed")

    def shutdown_requested(self) -> None:
        self.chat.close_client(self.conn.id, "Server shutting down")

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        chat = self.chat
        client = chat.state.clients.get(self.conn.id)
        if client is not None:
            reason = "Connection closed" if exc is None else f"Read error: {exc}"
            if self.conn.write_paused:
                reason = "SendQ exceeded"
            logger.info("chat: %s (%s) left: %s", client.target, self.conn.peer, reason)
            chat.apply(commands.disconnect(chat.state, client, reason, chat.clock()))
        chat.conns.pop(self.conn.id, None)
