"""The talk server: one task per client, the operator's commands, and what to show.

Everything the operator should see goes through ``show(line)`` (the console prints
it); the operator's lines come in through ``command(line)``. Clients are numbered from
1 in order of arrival; joining, leaving (``exit`` or an orderly close) and vanishing
(reset, timeout, bad input) are announced.
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
from socketkit.aio.wire import exchange_hello, send_error
from socketkit.codec.wire import WireDecoder, WireEvent, encode_error, encode_hello
from socketkit.errors import ClosedResourceError, LocalProtocolError, ProtocolError, ResourceError
from socketkit.limits import DEFAULT_HANDSHAKE_TIMEOUT_S, DEFAULT_MESSAGE_TIMEOUT_S
from socketkit.services.talk.protocol import (
    EXIT,
    HELP_TEXT,
    MAX_MESSAGE_SIZE,
    Broadcast,
    Help,
    Kick,
    ListClients,
    Quit,
    Say,
    TalkMessage,
    console_line,
    encode_message,
    encode_notice,
    encode_welcome,
    parse_command,
    parse_event,
)

__all__ = ["TalkServer"]

logger = get_logger(__name__)


@dataclass(slots=True)
class _Client:
    id: int
    conn: Connection[WireEvent]
    since: float = field(default_factory=time.time)


class TalkServer:
    """State and behaviour of ``socketkit serve talk``.

    Args:
        show: prints one line to the operator.
        idle_timeout: seconds a silent client stays connected (``None``: forever).
    """

    def __init__(self, show: Callable[[str], None], *, idle_timeout: float | None = None) -> None:
        self.show = show
        self.idle_timeout = idle_timeout
        self.clients: dict[int, _Client] = {}
        self._next_id = 0
        self.server: AsyncServer | None = None

    def make_server(self, **options: Any) -> AsyncServer:
        """The ``AsyncServer`` for this talk session (keyword options: caps, grace...)."""
        self.server = AsyncServer(
            handler=self.handle,
            decoder_factory=lambda: WireDecoder(max_frame_size=MAX_MESSAGE_SIZE),
            limits=ConnectionLimits(
                idle_timeout=self.idle_timeout,
                handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT_S,
                message_timeout=DEFAULT_MESSAGE_TIMEOUT_S,
            ),
            refusal=lambda reason: encode_hello() + encode_error("busy", reason),
            **options,
        )
        return self.server

    async def handle(self, conn: Connection[WireEvent]) -> None:
        """One client, from hello to goodbye."""
        try:
            await exchange_hello(conn)
        except (ProtocolError, EOFError, ResourceError) as exc:
            logger.info("talk handshake with %s failed: %s", conn.peer, exc)
            return
        self._next_id += 1
        client = _Client(self._next_id, conn)
        self.clients[client.id] = client
        conn.send(encode_welcome(client.id))
        self.show(f"* #{client.id} {conn.peer} joined")
        how = "left"
        try:
            async for event in conn:
                talk = parse_event(event)
                if isinstance(talk, TalkMessage):
                    if talk.text == EXIT:
                        break
                    self.show(console_line(f"[#{client.id} {conn.peer}]", talk.text))
        except ProtocolError as exc:
            how = f"was disconnected ({exc})"
            send_error(conn, exc)
        except ClosedResourceError:
            how = "was disconnected"  # closed on our side: /kick
        except ResourceError as exc:
            how = f"vanished ({exc.__cause__ or exc})"
        finally:
            del self.clients[client.id]
            if conn.shutdown_requested:
                how = "disconnected (server stopping)"
                with contextlib.suppress(ResourceError):
                    conn.send(encode_notice("the server is shutting down"))
            self.show(f"* #{client.id} {conn.peer} {how}")
            conn.close()

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
                with contextlib.suppress(ResourceError):
                    client.conn.send(encode_notice("you were disconnected by the operator"))
                client.conn.close()
        elif isinstance(command, Broadcast):
            if not self.clients:
                self.show("! no client is connected")
            self._send(list(self.clients), command.text)
        elif isinstance(command, Say):
            self._send(list(command.ids), command.text)

    def _send(self, ids: list[int], text: str) -> None:
        try:
            frame = encode_message(text)
        except LocalProtocolError as exc:
            self.show(f"! {exc}")
            return
        for client_id in ids:
            client = self.clients.get(client_id)
            if client is None:
                self.show(f"! no client #{client_id}")
                continue
            try:
                client.conn.send(frame)
            except ResourceError:
                self.show(f"! #{client_id} is gone")

    def _list(self) -> None:
        if not self.clients:
            self.show("no client is connected")
            return
        now = time.time()
        for client in self.clients.values():
            self.show(f"#{client.id} {client.conn.peer} connected {now - client.since:.0f} s ago")
