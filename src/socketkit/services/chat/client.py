"""``socketkit chat``: the terminal IRC client (the I/O around ``conversation``).

The screen is prompt_toolkit's: a line editor with history at the bottom while messages
print above it, with timestamps and a stable colour per nick. ``--plain`` (or input
that is not a terminal) reads lines from stdin and prints plain text, for scripts.

The connection is remade after it drops, with exponential back-off (1 s doubling to
60 s, with jitter so that many clients of a restarted server do not return at once);
rooms are joined again. A first connection that fails, or a refused password, ends the
client with an error instead (nothing would change by retrying).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.codec.irc import IRCDecoder, IRCMessage, encode_message
from socketkit.errors import ProtocolError, ResourceError
from socketkit.services.chat.conversation import Conversation, Line, nick_colour

if TYPE_CHECKING:
    import ssl

    from socketkit.aio.connection import Connection

__all__ = ["ChatClient", "PlainUI", "PromptUI", "UI", "backoff_delays", "render_plain", "run_client"]

QUIT_WAIT_S = 5.0  # after QUIT, how long the server gets to close the connection


class UI(Protocol):
    """Where lines are shown and typed."""

    def show(self, lines: Sequence[Line], current: str | None) -> None: ...

    async def read_line(self, prompt: str) -> str | None:
        """The next typed line, or ``None`` at the end of input."""
        ...


def backoff_delays(
    first: float = 1.0, cap: float = 60.0, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """Seconds to wait before each reconnect: doubling up to ``cap``, each with up to
    25% jitter."""
    delay = first
    while True:
        yield delay * (0.75 + 0.25 * rand())
        delay = min(cap, delay * 2)


def _clock_text(when: float) -> str:
    return time.strftime("%H:%M", time.localtime(when))


def render_plain(line: Line, current: str | None) -> str:
    """One line as plain text: ``12:03 #room <alice> hello``."""
    where = f"{line.target} " if line.target and line.target.startswith("#") else ""
    stamp = _clock_text(line.time) + (" (history)" if line.history else "")
    if line.kind == "message":
        if line.target and not line.target.startswith("#"):
            return (
                f"{stamp} *{line.nick}* {line.text}"
                if not line.own
                else f"{stamp} -> *{line.target}* {line.text}"
            )
        return f"{stamp} {where}<{line.nick}> {line.text}"
    if line.kind == "action":
        return f"{stamp} {where}* {line.nick} {line.text}"
    if line.kind == "notice":
        return f"{stamp} -{line.nick or 'server'}- {line.text}"
    if line.kind == "event":
        return f"{stamp} -- {line.text}"
    if line.kind == "error":
        return f"{stamp} !! {line.text}"
    return f"{stamp} {line.text}"


class PlainUI:
    """stdin/stdout, no colours (scripts, pipes, dumb terminals)."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None

    def show(self, lines: Sequence[Line], current: str | None) -> None:
        for line in lines:
            print(render_plain(line, current), flush=True)

    async def read_line(self, prompt: str) -> str | None:
        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._reader = asyncio.StreamReader(limit=1 << 16)
            reader_protocol = asyncio.StreamReaderProtocol(self._reader)
            await loop.connect_read_pipe(lambda: reader_protocol, sys.stdin)
        try:
            data = await self._reader.readline()
        except ValueError:  # a line longer than the limit: cut it (IRC would anyway)
            return ""
        if not data:
            return None
        return data.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


class PromptUI:
    """prompt_toolkit: an editable input line under the scrolling conversation."""

    def __init__(self, *, input: object = None, output: object = None) -> None:
        from prompt_toolkit import PromptSession  # noqa: PLC0415 (heavy: only when used)
        from prompt_toolkit.styles import Style  # noqa: PLC0415

        self._session: PromptSession[str] = PromptSession(input=input, output=output)  # type: ignore[arg-type]
        self._style = Style.from_dict(
            {"time": "#888888", "room": "bold", "error": "ansired bold", "event": "#888888", "own": "bold"}
        )

    def _fragments(self, line: Line) -> list[tuple[str, str]]:
        parts = [("class:time", _clock_text(line.time) + " ")]
        if line.history:
            parts.append(("class:time", "(history) "))
        if line.target and line.target.startswith("#"):
            parts.append(("class:room", line.target + " "))
        nick_style = "class:own" if line.own else nick_colour(line.nick or "")
        if line.kind == "message":
            if line.target and not line.target.startswith("#"):
                who = f"-> *{line.target}*" if line.own else f"*{line.nick}*"
                parts += [(nick_style, who), ("", " " + line.text)]
            else:
                parts += [(nick_style, f"<{line.nick}>"), ("", " " + line.text)]
        elif line.kind == "action":
            parts += [(nick_style, f"* {line.nick}"), ("", " " + line.text)]
        elif line.kind == "notice":
            parts += [(nick_style, f"-{line.nick or 'server'}-"), ("", " " + line.text)]
        elif line.kind == "error":
            parts.append(("class:error", "!! " + line.text))
        elif line.kind == "event":
            parts.append(("class:event", "-- " + line.text))
        else:
            parts.append(("", line.text))
        return parts

    def show(self, lines: Sequence[Line], current: str | None) -> None:
        from prompt_toolkit import print_formatted_text  # noqa: PLC0415
        from prompt_toolkit.formatted_text import FormattedText  # noqa: PLC0415

        for line in lines:
            print_formatted_text(
                FormattedText(self._fragments(line)), style=self._style, output=self._session.output
            )

    async def read_line(self, prompt: str) -> str | None:
        from prompt_toolkit.patch_stdout import patch_stdout  # noqa: PLC0415

        try:
            with patch_stdout(raw=True):
                return await self._session.prompt_async(prompt)
        except (EOFError, KeyboardInterrupt):
            return None


class ChatClient:
    """Connect, register, relay typed lines and server messages; reconnect when dropped."""

    def __init__(
        self,
        address: Address,
        conversation: Conversation,
        ui: UI,
        *,
        ssl: ssl.SSLContext | None = None,
        delays: Iterator[float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.address = address
        self.talk = conversation
        self.ui = ui
        self.ssl = ssl
        self.delays = delays or backoff_delays()
        self.clock = clock
        self.conn: Connection[IRCMessage] | None = None
        self.connected = asyncio.Event()
        self._fatal: str | None = None
        self._input_done = False

    def _show(self, lines: Sequence[Line]) -> None:
        if lines:
            self.ui.show(lines, self.talk.current)

    def _info(self, text: str, kind: str = "info") -> None:
        self._show([Line(self.clock(), kind, text)])

    def _send(self, messages: Sequence[IRCMessage]) -> None:
        conn = self.conn
        if not messages:
            return
        if conn is None or conn.is_closing:
            self._info("not connected: that was not sent", "error")
            return
        with contextlib.suppress(ResourceError):
            for message in messages:
                conn.send(encode_message(message))

    async def run(self) -> int:
        """Until /quit or the end of input: 0; a first connection that fails: 1."""
        reader = asyncio.ensure_future(self._read_input())
        try:
            first = True
            while True:
                try:
                    await self._session()
                except (OSError, TimeoutError) as exc:
                    if first:
                        self._info(f"cannot connect to {self.address}: {exc}", "error")
                        return 1
                    self._info(f"connection to {self.address} failed: {exc}", "error")
                first = False
                if self._fatal is not None:
                    self._info(self._fatal, "error")
                    return 1
                if self.talk.quitting or self._input_done:
                    return 0
                delay = next(self.delays)
                self._info(f"reconnecting in {delay:.0f} s")
                await asyncio.sleep(delay)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _session(self) -> None:
        self.conn = conn = await open_connection(self.address, IRCDecoder(), ssl=self.ssl)
        self._info(f"connected to {self.address}")
        talk = self.talk
        self._send(talk.hello())
        try:
            while True:
                try:
                    message = await conn.receive()
                except EOFError:
                    break
                except ProtocolError as exc:
                    self._info(f"bad line from the server: {exc}", "error")
                    continue
                replies, lines = talk.receive(message, self.clock())
                if message.verb == "464":
                    self._fatal = "the server refused the password"
                if message.verb == "001":
                    self.delays = backoff_delays()  # a good connection resets the back-off
                    self.connected.set()
                self._send(replies)
                self._show(lines)
        except ResourceError as exc:
            self._info(f"connection lost: {exc}", "error")
        finally:
            self.connected.clear()
            self.conn = None
            conn.abort()
        if not talk.quitting:
            self._info("disconnected", "error")

    async def _read_input(self) -> None:
        talk = self.talk
        while True:
            if not talk.registered:
                await self.connected.wait()
            line = await self.ui.read_line(f"[{talk.current or talk.nick}] ")
            if line is None:  # end of input: leave politely
                self._input_done = True
                line = "/quit"
            messages, lines = talk.command(line, self.clock())
            self._show(lines)
            self._send(messages)
            if talk.quitting:
                await self._close_after_quit()
                return

    async def _close_after_quit(self) -> None:
        conn = self.conn
        if conn is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(QUIT_WAIT_S):
                await conn.wait_closed()
        conn.abort()


def run_client(args: argparse.Namespace) -> int:
    """``socketkit chat ADDR --nick N``."""
    from socketkit.aio.loop import run  # noqa: PLC0415

    address: Address = args.address
    ssl_context = None
    if args.tls:
        from socketkit.tls import client_context  # noqa: PLC0415

        ssl_context = client_context(args.tls_ca, insecure=args.insecure)
    channels = [c if c.startswith("#") else "#" + c for c in args.join]
    talk = Conversation(
        args.nick, password=args.password, channels=channels, current=channels[0] if channels else None
    )
    plain = args.plain or not (sys.stdin.isatty() and sys.stdout.isatty())
    ui: UI = PlainUI() if plain else PromptUI()
    client = ChatClient(address, talk, ui, ssl=ssl_context)
    return run(client.run())
