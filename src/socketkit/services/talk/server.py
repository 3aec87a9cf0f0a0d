"""The talk server: one task per client, the operator's commands, and what to show.

Everything the operator should see goes through ``show(line)`` (the console prints
it); the operator's lines come in through ``command(line)``. Clients are numbered from
1 in order of arrival; joining, leaving (``exit`` or an orderly close) and vanishing
(reset, timeout, bad input) are announced.

Two kinds of client share the port (``socketkit.services.talk.text``): ``socketkit
talk`` speaks wire v1, a plain socket client (the tutorial's) UTF-8 text. The server
says nothing until the client's first bytes show which, or until the handshake
deadline passes in silence: a plain client may wait for its user to type.

The idle timeout is the server's own, not the engine's, so that a client dropped for
it is told why (a ``bye`` frame, or a last text line), as it is when kicked or when the
server stops. Any traffic counts, in either direction (the keepalive pings too).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from socketkit._log import get_logger
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.aio.server import AsyncServer
from socketkit.aio.wire import send_error
from socketkit.auth.wiresession import Refused, WireSession, opening_refusal
from socketkit.codec.wire import Hello
from socketkit.errors import (
    ClosedResourceError,
    HandshakeError,
    LocalProtocolError,
    ProtocolError,
    ResourceError,
)
from socketkit.limits import DEFAULT_HANDSHAKE_TIMEOUT_S, DEFAULT_MESSAGE_TIMEOUT_S
from socketkit.services.talk.protocol import (
    EXIT,
    HELP_TEXT,
    Broadcast,
    Help,
    Kick,
    ListClients,
    Ping,
    Quit,
    Say,
    TalkMessage,
    console_line,
    encode_bye,
    encode_message,
    encode_plain_bye,
    encode_plain_message,
    encode_plain_notice,
    encode_pong,
    encode_welcome,
    parse_command,
    parse_event,
)
from socketkit.services.talk.text import PlainText, TalkDecoder, TalkEvent, TextTooLong

__all__ = ["TalkServer"]

logger = get_logger(__name__)

KICKED = "kicked by the operator"
SHUTTING_DOWN = "the server is shutting down"


class _Idle(Exception):
    """The client said nothing (and was told nothing) for the idle timeout."""


@dataclass(slots=True)
class _Client:
    id: int
    conn: Connection[TalkEvent]
    plain: bool
    since: float = field(default_factory=time.time)
    bye: str | None = None  # why we close it (said to it before closing)
    seen_total: int = 0  # bytes in + out at the last look (the idle clock)
    last_active: float = 0.0


class TalkServer:
    """State and behaviour of ``socketkit serve talk``.

    Args:
        show: prints one line to the operator.
        idle_timeout: seconds a silent client stays connected (``None``: forever).
        handshake_timeout: seconds a new client may stay silent before it is taken for
            a plain-text one (a ``socketkit talk`` client sends its hello at once).
    """

    def __init__(
        self,
        show: Callable[[str], None],
        *,
        idle_timeout: float | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
    ) -> None:
        self.show = show
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.clients: dict[int, _Client] = {}
        self._next_id = 0
        self.server: AsyncServer | None = None

    def make_server(self, **options: Any) -> AsyncServer:
        """The ``AsyncServer`` for this talk session (keyword options: caps, grace...)."""
        self.server = AsyncServer(
            handler=self.handle,
            decoder_factory=TalkDecoder,
            limits=ConnectionLimits(
                idle_timeout=None,  # ours, to say why (see the module docstring)
                handshake_timeout=None,  # ours: a silent client may be a plain one
                message_timeout=DEFAULT_MESSAGE_TIMEOUT_S,
            ),
            refusal=lambda reason: opening_refusal("busy", reason),
            **options,
        )
        return self.server

    async def handle(self, conn: Connection[TalkEvent]) -> None:
        """One client, from its first bytes to goodbye."""
        try:
            async with asyncio.timeout(self.handshake_timeout):
                first: TalkEvent | None = await conn.receive()
        except TimeoutError:
            first = None  # silent so far: a plain client whose user has not typed yet
        except (ProtocolError, EOFError, ResourceError) as exc:
            if isinstance(exc, HandshakeError):  # it began like wire v1 (0x89), then not
                opening = WireSession()
                opening.receive_error(exc)
                opening.next_event()
                with contextlib.suppress(ResourceError):
                    conn.send(opening.data_to_send())  # our hello, then the ERROR frame
            logger.info("talk handshake with %s failed: %s", conn.peer, exc)
            conn.close()
            return
        wire = isinstance(first, Hello)
        if isinstance(first, Hello):
            # It speaks wire v1: the opening (our hello, now and only now) is the session's.
            opening = WireSession()
            opening.receive_frame(first)
            end = opening.next_event()
            conn.send(opening.data_to_send())
            if isinstance(end, Refused):
                logger.info("talk handshake with %s failed: %s", conn.peer, end.error)
                conn.close()
                return
            first = None
        self._next_id += 1
        client = _Client(self._next_id, conn, plain=not wire, last_active=conn.connected_at)
        self.clients[client.id] = client
        if wire:
            conn.send(encode_welcome(client.id, self.idle_timeout))
        self.show(f"* #{client.id} {conn.peer} joined" + ("" if wire else " (plain text)"))
        await self._converse(client, first)

    async def _converse(self, client: _Client, first: TalkEvent | None) -> None:
        conn = client.conn
        how = "left"
        try:
            event = first if first is not None else await self._receive(client)
            while True:
                if not self._on_event(client, event):
                    break
                event = await self._receive(client)
        except EOFError:
            pass
        except _Idle:
            client.bye = f"idle for {self.idle_timeout:g} s"
        except ProtocolError as exc:
            how = f"was disconnected ({exc})"
            send_error(conn, exc)
        except ClosedResourceError:
            how = "was disconnected"
        except ResourceError as exc:
            how = f"vanished ({exc.__cause__ or exc})"
        finally:
            del self.clients[client.id]
            if conn.shutdown_requested and client.bye is None:
                client.bye = SHUTTING_DOWN
            if client.bye is not None:
                how = f"was disconnected ({client.bye})"
                with contextlib.suppress(ResourceError):
                    conn.send(encode_plain_bye(client.bye) if client.plain else encode_bye(client.bye))
            self.show(f"* #{client.id} {conn.peer} {how}")
            conn.close()

    def _on_event(self, client: _Client, event: TalkEvent) -> bool:
        """Handle one event from a client; ``False``: it leaves."""
        conn = client.conn
        if isinstance(event, TextTooLong):
            self.show(f"! #{client.id} {conn.peer} sent a line over {event.limit} bytes: dropped")
            with contextlib.suppress(ResourceError):
                conn.send(encode_plain_notice(f"your line was over {event.limit} bytes: dropped"))
            return True
        talk = event if isinstance(event, PlainText) else parse_event(event)
        if isinstance(talk, Ping):
            conn.send(encode_pong())
        elif isinstance(talk, (TalkMessage, PlainText)):
            if talk.text == EXIT:
                return False
            if talk.text:
                self.show(console_line(f"[#{client.id} {conn.peer}]", talk.text))
        return True

    async def _receive(self, client: _Client) -> TalkEvent:
        """The client's next event, or ``_Idle`` once nothing went either way for the
        idle timeout (what the operator sends it counts: it is still being talked to).

        Raises:
            _Idle: the idle timeout passed.
            EOFError, ProtocolError, ResourceError: as ``Connection.receive``.
        """
        conn, idle = client.conn, self.idle_timeout
        if idle is None:
            return await conn.receive()
        loop = asyncio.get_running_loop()
        while True:
            total = conn.bytes_in + conn.bytes_out
            if total != client.seen_total:
                client.seen_total, client.last_active = total, loop.time()
            left = client.last_active + idle - loop.time()
            if left <= 0:
                raise _Idle
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    return await conn.receive()

    def command(self, line: str) -> None:
        """Carry out one line typed by the operator; mistakes are shown, never raised."""
        try:
            command = parse_command(line)
        except ValueError as exc:
            self.show(f"! {exc}")
            return
        if command is None:
            return
        if isinstance(command, Help):
            self.show(HELP_TEXT)
        elif isinstance(command, ListClients):
            self._list()
        elif isinstance(command, Quit):
            if self.server is not None:
                asyncio.get_running_loop().create_task(self.server.aclose())
        elif isinstance(command, Kick):
            client = self.clients.get(command.id)
            if client is None:
                self.show(f"! no client #{command.id}")
            else:
                client.bye = KICKED
                client.conn.request_shutdown()  # wakes its task, which says why and closes
        elif isinstance(command, Broadcast):
            if not self.clients:
                self.show("! no client is connected")
            self._send(list(self.clients), command.text)
        elif isinstance(command, Say):
            self._send(list(command.ids), command.text)

    def _send(self, ids: list[int], text: str) -> None:
        try:
            frames = {False: encode_message(text), True: encode_plain_message(text)}
        except LocalProtocolError as exc:
            self.show(f"! {exc}")
            return
        for client_id in ids:
            client = self.clients.get(client_id)
            if client is None:
                self.show(f"! no client #{client_id}")
                continue
            try:
                client.conn.send(frames[client.plain])
            except ResourceError:
                self.show(f"! #{client_id} is gone")

    def _list(self) -> None:
        if not self.clients:
            self.show("no client is connected")
            return
        now = time.time()
        for client in self.clients.values():
            kind = " (plain text)" if client.plain else ""
            self.show(f"#{client.id} {client.conn.peer}{kind} connected {now - client.since:.0f} s ago")
