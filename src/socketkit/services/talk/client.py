"""``socketkit talk ADDR``: the client of ``serve talk``.

Lines typed are sent as messages, the operator's are printed as ``server> text``;
``exit`` or the end of the input leaves. The client pings within the idle timeout the
server announces (``KEEPALIVE_FRACTION`` of it), so an idle but alive client is never
dropped, and every end is explained: the server's ``bye`` reason (idle, kicked, the
server stopping), its error, a server that stopped answering, or a lost connection.

A peer that is not a talk server is named as such in one line, with what it did: a
plain-text server (the tutorial's, which cannot decode our hello and dies) closes
without a word, another sends text or never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, Final

from socketkit import limits
from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.auth.wiresession import Refused, WireSession
from socketkit.codec.wire import ErrorFrame, Hello
from socketkit.errors import LocalProtocolError, ProtocolError, ResourceError
from socketkit.services.talk.console import read_lines
from socketkit.services.talk.protocol import (
    EXIT,
    Bye,
    Notice,
    TalkMessage,
    Welcome,
    console_line,
    encode_message,
    encode_ping,
    keepalive_interval,
    parse_event,
)
from socketkit.services.talk.text import PlainText, TalkDecoder, TextTooLong

__all__ = ["talk"]

PLAIN_TEXT_HINT: Final = "a plain-text server takes `socketkit send ADDR MESSAGE`"

PREVIEW_CHARS: Final = 60
"""Characters of a text server's first words quoted in the error: enough to recognise
it (a banner, an HTTP status line), never a screenful."""


def _say(line: str, *, error: bool = False) -> None:
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def _not_talk(address: Address, what: str) -> int:
    _say(f"HandshakeError: {address} is not a socketkit talk server: {what} ({PLAIN_TEXT_HINT})", error=True)
    return 1


async def _greet(conn: Any, address: Address) -> Welcome | int:
    """Our hello, then the server's hello and welcome; an exit status if it fails."""
    opening = WireSession()  # the hello exchange every wire-v1 peer shares
    conn.send(opening.data_to_send())
    waiting = "no answer to our hello"
    deadline = limits.DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S  # read now: tests may shorten it
    try:
        async with asyncio.timeout(deadline):
            first = await conn.receive()
            if isinstance(first, (PlainText, TextTooLong)):
                text = first.text[:PREVIEW_CHARS] if isinstance(first, PlainText) else "a long line"
                return _not_talk(address, f"it answered in plain text ({text!r})")
            if not isinstance(first, Hello):
                return _not_talk(address, f"it answered {type(first).__name__}, not a hello")
            opening.receive_frame(first)
            end = opening.next_event()
            if isinstance(end, Refused):  # a talk server, of another version: tell it so
                with contextlib.suppress(ResourceError):
                    conn.send(opening.data_to_send())
                _say(f"HandshakeError: {address}: {end.error}", error=True)
                return 1
            waiting = "it said hello but no welcome"
            event = parse_event(await conn.receive())
    except TimeoutError:
        return _not_talk(address, f"{waiting} within {deadline:g} s")
    except EOFError:
        return _not_talk(address, "it closed the connection without a word")
    except ProtocolError as exc:
        return _not_talk(address, str(exc))
    except ResourceError as exc:
        return _not_talk(address, f"the connection broke ({exc.__cause__ or exc})")
    if isinstance(event, ErrorFrame):
        _say(console_line(f"ServiceError: {event.code}:", event.message), error=True)
        return 1
    if not isinstance(event, Welcome):
        return _not_talk(address, "it said hello but sent no welcome")
    return event


async def _keepalive(conn: Any, welcome: Welcome, interval: float) -> float:
    """Ping every ``interval`` seconds; return how long the server was silent once a
    whole idle timeout passed without a byte from a server that answers pings."""
    heard, silent = conn.bytes_in, 0.0
    while True:
        await asyncio.sleep(interval)
        if conn.bytes_in != heard:
            heard, silent = conn.bytes_in, 0.0
        else:
            silent += interval
        if welcome.announced and welcome.idle_timeout is not None and silent >= welcome.idle_timeout:
            return silent
        with contextlib.suppress(ResourceError):
            conn.send(encode_ping())


async def talk(address: Address, *, timeout: float) -> int:
    """Talk until we leave or the server closes: 0; errors (and a dead server): 1."""
    conn: Any = await open_connection(address, TalkDecoder(), timeout=timeout, service="talk")
    try:
        welcome = await _greet(conn, address)
        if isinstance(welcome, int):
            return welcome
        _say(f"* connected to {address} as #{welcome.id}; type `exit` to leave")

        interval = keepalive_interval(welcome)
        pinger = None if interval is None else asyncio.ensure_future(_keepalive(conn, welcome, interval))

        left = False

        def on_line(line: str | None) -> None:
            nonlocal left
            if conn.is_closing or left:  # nothing may be written after our end of stream
                return
            try:
                conn.send(encode_message(EXIT if line is None else line))
            except LocalProtocolError as exc:  # over the limit: not sent, the talk goes on
                _say(f"! not sent: {exc}", error=True)
                return
            except ResourceError:
                return
            if line is None or line == EXIT:
                left = True
                if pinger is not None:
                    pinger.cancel()
                conn.send_eof()

        read_lines(asyncio.get_running_loop(), on_line)
        reading = asyncio.ensure_future(_read(conn))
        try:
            if pinger is not None:
                await asyncio.wait({reading, pinger}, return_when=asyncio.FIRST_COMPLETED)
                if pinger.done() and not pinger.cancelled() and not reading.done():
                    silent = pinger.result()
                    _say(
                        f"* the server stopped answering (nothing for {silent:g} s): disconnecting",
                        error=True,
                    )
                    return 1
            return await reading
        finally:
            for task in (reading, pinger):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (reading, pinger) if t is not None), return_exceptions=True)
    finally:
        conn.abort()


async def _read(conn: Any) -> int:
    """Print what the server sends until it closes: 0, or 1 after an error."""
    bye: str | None = None
    try:
        async for event in conn:
            talk = parse_event(event)
            if isinstance(talk, TalkMessage):
                _say(console_line("server>", talk.text))
            elif isinstance(talk, Notice):
                _say(console_line("*", talk.text))
            elif isinstance(talk, Bye):
                bye = talk.reason
            elif isinstance(talk, ErrorFrame):
                _say(console_line(f"ServiceError: {talk.code}:", talk.message), error=True)
                return 1
    except ProtocolError as exc:
        _say(f"! bad data from the server ({exc}): disconnecting", error=True)
        return 1
    except ResourceError as exc:
        _say(f"* connection lost: {exc.__cause__ or exc}", error=True)
        return 1
    _say(console_line("* disconnected:", bye) if bye else "* connection closed")
    return 0
