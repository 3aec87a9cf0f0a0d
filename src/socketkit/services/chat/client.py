"""``socketkit chat``: the terminal IRC client (the I/O around ``conversation``).

The screen is prompt_toolkit's: a line editor with history at the bottom while messages
print above it, with timestamps and a stable colour per nick. ``--plain`` (or input
that is not a terminal) reads lines from stdin and prints plain text, for scripts.
Any stdin works: a terminal, a pipe or a socket is watched by the event loop; a regular
file, /dev/null or another device (which the loop cannot watch: uvloop aborts the
process on them) is read by a thread; a closed stdin is an empty input. At the end of
the input the client sends QUIT and exits 0 once the server has closed, as ``nc`` does.

A nick the server refuses before the welcome (431, 432, 433, 436, 437) makes the
interactive client ask for another one (``/nick`` and ``/quit`` work all along); in line
mode, where nobody is there to answer, it ends the client (exit 1, the server's reason on
stderr, where every error that ends the client goes).

The connection is remade after it drops, with exponential back-off (1 s doubling to
60 s, with jitter so that many clients of a restarted server do not return at once);
rooms are joined again. A first connection that fails, or a refused password, ends the
client with an error instead (nothing would change by retrying). So does a peer that is
not an IRC server: its first message must look like IRC (a PING or ERROR, or a numeric
or a known command from a named source), and anything else (bytes of another protocol,
the stream ending inside a line, an echo of our own lines) ends the client with one
line, ``ADDR is not an IRC server``. Bad input from a server that did speak IRC ends
that session (the connection cannot be trusted after it) and the client reconnects with
back-off; it is never read again and again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Final, Protocol

from socketkit._stdio import fill_closed_standard_streams
from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.codec.irc import IRCDecoder, IRCMessage, encode_message
from socketkit.errors import ConfigError, ConnectError, LocalProtocolError, ProtocolError, ResourceError
from socketkit.services.chat.client_input import LineSource, open_input
from socketkit.services.chat.conversation import Conversation, Line, nick_colour
from socketkit.services.chat.numerics import ERR_PASSWDMISMATCH

if TYPE_CHECKING:
    import ssl

    from socketkit.aio.connection import Connection

__all__ = ["ChatClient", "PlainUI", "PromptUI", "UI", "backoff_delays", "render_plain", "run_client"]

QUIT_WAIT_S = 5.0  # after QUIT, how long the server gets to close the connection

MAX_SERVER_LINE: Final = 4096
"""Bytes of a message from the server (without tags): RFC 1459 says 512, a few servers
send longer ones; a line past this ends the session (the stream is not IRC as we know it)."""

_IRC_FIRST: Final = frozenset({"NOTICE", "CAP", "PRIVMSG", "MODE", "JOIN", "NICK", "AUTHENTICATE", "FAIL"})
"""Commands an IRC server may open with (from a named source), besides numerics."""


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
    if line.kind in ("error", "fatal"):
        return f"{stamp} !! {line.text}"
    return f"{stamp} {line.text}"


class PlainUI:
    """stdin/stdout, no colours (scripts, pipes, dumb terminals)."""

    def __init__(self) -> None:
        self._input: LineSource | None = None

    def show(self, lines: Sequence[Line], current: str | None) -> None:
        for line in lines:
            out = sys.stderr if line.kind == "fatal" else sys.stdout  # why the client ends: stderr
            print(render_plain(line, current), file=out, flush=True)

    async def read_line(self, prompt: str) -> str | None:
        if self._input is None:
            self._input = await open_input(sys.stdin)
        data = await self._input.readline()
        if not data:
            return None
        # Not UTF-8: the server would refuse the line (UTF8ONLY); U+FFFD says what was lost.
        return data.decode("utf-8", errors="replace").rstrip("\r\n")


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
        elif line.kind in ("error", "fatal"):
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
    """Connect, register, relay typed lines and server messages; reconnect when dropped.

    ``plain``: line mode (scripts): typed lines wait for the welcome, and a refused nick
    ends the client, since nobody is there to type another one.
    """

    def __init__(
        self,
        address: Address,
        conversation: Conversation,
        ui: UI,
        *,
        ssl: ssl.SSLContext | None = None,
        delays: Iterator[float] | None = None,
        clock: Callable[[], float] = time.time,
        plain: bool = False,
    ) -> None:
        self.address = address
        self.plain = plain
        self.talk = conversation
        self.ui = ui
        self.ssl = ssl
        self.delays = delays or backoff_delays()
        self.clock = clock
        self.conn: Connection[IRCMessage] | None = None
        self.connected = asyncio.Event()
        self._fatal: str | None = None
        self._input_done = False
        self._spoke_irc = False  # the server has spoken IRC at least once
        self._quit = asyncio.Event()  # /quit typed: no reconnecting any more

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
                try:
                    data = encode_message(message)
                except LocalProtocolError:  # typed text with a NUL or CR in it, say
                    self._info("that cannot be sent: IRC allows no NUL or CR in a line", "error")
                    continue
                conn.send(data)

    async def run(self) -> int:
        """Until /quit or the end of input: 0; a first connection that fails: 1."""
        reader = asyncio.ensure_future(self._read_input())
        try:
            first = True
            while True:
                try:
                    await self._session()
                except (OSError, TimeoutError) as exc:
                    # A ConnectError says it all: the address, the reason, what to try.
                    connect = isinstance(exc, ConnectError)
                    if first:
                        self._info(
                            str(exc) if connect else f"cannot connect to {self.address}: {exc}", "fatal"
                        )
                        return 1
                    self._info(
                        str(exc) if connect else f"connection to {self.address} failed: {exc}", "error"
                    )
                first = False
                if self._fatal is not None:
                    self._info(self._fatal, "fatal")
                    return 1
                if self.talk.quitting or self._input_done:
                    return 0
                delay = next(self.delays)
                self._info(f"reconnecting in {delay:.0f} s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # a /quit meanwhile ends the wait
                        await self._quit.wait()
                if self._quit.is_set():
                    return 0
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _session(self) -> None:
        # Another server's text may not be UTF-8: shown with U+FFFD, never as surrogates.
        decoder = IRCDecoder(MAX_SERVER_LINE, text_errors="replace")
        self.conn = conn = await open_connection(self.address, decoder, ssl=self.ssl, service="chat")
        self._info(f"connected to {self.address}")
        talk = self.talk
        self._send(talk.hello())
        irc = False  # whether the peer has said something IRC-like on this connection
        try:
            while True:
                try:
                    message = await conn.receive()
                except EOFError:
                    if not irc and not self._spoke_irc:
                        self._fatal = f"{self.address} is not an IRC server (it closed without a word)"
                    break
                except ProtocolError as exc:
                    # The connection hands out nothing more after bad input: the session is over.
                    if not irc:
                        self._fatal = f"{self.address} is not an IRC server ({exc})"
                    else:
                        self._info(f"bad data from the server ({exc}): disconnecting", "error")
                    break
                if not irc:
                    if not _looks_like_irc(message):
                        self._fatal = (
                            f"{self.address} is not an IRC server (it began with {message.command!r})"
                        )
                        break
                    irc = self._spoke_irc = True
                replies, lines = talk.receive(message, self.clock())
                if message.verb == ERR_PASSWDMISMATCH and not talk.registered:
                    # The connection password (an OPER refused later is no reason to stop).
                    self._fatal = "the server refused the password"
                if self.plain and talk.refused is not None:
                    self._fatal = talk.refused  # nobody to type another nick: the end
                    break
                if message.verb == "001":
                    self.delays = backoff_delays()  # a good connection resets the back-off
                    self.connected.set()
                self._send(replies)
                self._show(lines)
        except ResourceError as exc:
            if not irc and not self._spoke_irc:
                self._fatal = f"{self.address} is not an IRC server (connection lost: {exc})"
            else:
                self._info(f"connection lost: {exc}", "error")
        finally:
            self.connected.clear()
            self.conn = None
            conn.abort()
        if not talk.quitting and self._fatal is None:
            self._info("disconnected", "error")

    async def _read_input(self) -> None:
        talk = self.talk
        while True:
            if self.plain and not talk.registered:
                await self.connected.wait()  # a script's lines are for after the welcome
            try:
                line = await self.ui.read_line(f"[{talk.current or talk.nick}] ")
            except (OSError, ValueError) as exc:  # the input broke: as good as its end
                self._info(f"cannot read the input: {exc}", "error")
                line = None
            if line is None:  # end of input: leave politely
                self._input_done = True
                line = "/quit"
            messages, lines = talk.command(line, self.clock())
            self._show(lines)
            if not (talk.quitting and self.conn is None):  # nobody to say goodbye to
                self._send(messages)
            if talk.quitting:
                self._quit.set()
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


def _looks_like_irc(message: IRCMessage) -> bool:
    """Whether a first message is one an IRC server would open with."""
    verb = message.verb
    if verb in ("PING", "ERROR"):
        return True
    if not message.source:
        return False
    return (len(verb) == 3 and verb.isdigit()) or verb in _IRC_FIRST


def _is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is a terminal (``False`` when closed: ``None`` or unusable)."""
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # a closed file
        return False


def run_client(args: argparse.Namespace) -> int:
    """``socketkit chat ADDR --nick N``."""
    from socketkit.aio.loop import run  # noqa: PLC0415

    fill_closed_standard_streams()  # a closed stdin reads as empty (the same as python -m socketkit)

    address: Address = args.address
    ssl_context = None
    if args.tls:
        from socketkit.tls import client_context  # noqa: PLC0415

        try:
            ssl_context = client_context(args.tls_ca, insecure=args.insecure)
        except OSError as exc:  # ssl names neither the file nor the option
            raise ConfigError(f"--tls-ca {args.tls_ca}: {exc.strerror or exc}") from None
    channels = [c if c.startswith("#") else "#" + c for c in args.join]
    talk = Conversation(
        args.nick, password=args.password, channels=channels, current=channels[0] if channels else None
    )
    plain = args.plain or not (_is_terminal(sys.stdin) and _is_terminal(sys.stdout))
    ui: UI = PlainUI() if plain else PromptUI()
    client = ChatClient(address, talk, ui, ssl=ssl_context, plain=plain)
    return run(client.run())
