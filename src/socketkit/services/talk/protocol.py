"""The talk protocol and the operator's console commands: pure, no I/O.

On the wire (socketkit wire format v1, after the hello; the client sends its hello
first, and the server answers once it has seen it, because a plain-text client must
not be sent binary, see ``socketkit.services.talk.text``):

- a message is one DATA frame on channel 0 carrying UTF-8 text, so a long or multi-line
  message arrives whole (the tutorial's ``recv(1024)`` cut them);
- the server sends CONTROL frames for events: ``{"event": "welcome", "id": 3,
  "idle_timeout": 300}`` (seconds of silence before the server drops a client, ``null``
  for never), ``{"event": "notice", "text": "..."}``, and before it closes a client's
  connection ``{"event": "bye", "reason": "idle for 300 s"}``;
- keepalive: the client sends ``{"event": "ping"}`` every ``KEEPALIVE_FRACTION`` of the
  announced idle timeout, the server answers ``{"event": "pong"}``: an idle but alive
  client is never dropped, and a server that stops answering is noticed;
- a client leaves by sending the message ``exit`` (as in the tutorial) or by closing;
- errors are ERROR frames (``busy`` when the server is full), then the connection closes.

A plain-text client gets the operator's messages as UTF-8 lines, notices as ``* text``
lines, and the reason it is disconnected as a last ``* disconnected: reason`` line.

Operator console: ``@3 text`` to client 3, ``@3,5 text`` to several, plain ``text`` (or
``@all text``) to everyone, ``/list``, ``/kick 3``, ``/quit``, ``/help``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from socketkit._text import escape_controls
from socketkit.codec.wire import Control, Data, ErrorFrame, encode_control, encode_data
from socketkit.errors import LocalProtocolError
from socketkit.limits import DEFAULT_IDLE_TIMEOUT_S

__all__ = [
    "CONTINUATION",
    "EXIT",
    "KEEPALIVE_FRACTION",
    "MAX_MESSAGE_SIZE",
    "MIN_KEEPALIVE_INTERVAL_S",
    "Broadcast",
    "Bye",
    "Help",
    "Kick",
    "ListClients",
    "Notice",
    "Ping",
    "Pong",
    "Quit",
    "Say",
    "TalkMessage",
    "Welcome",
    "console_line",
    "encode_bye",
    "encode_message",
    "encode_notice",
    "encode_ping",
    "encode_plain_bye",
    "encode_plain_message",
    "encode_plain_notice",
    "encode_pong",
    "encode_welcome",
    "keepalive_interval",
    "parse_command",
    "parse_event",
]

MAX_MESSAGE_SIZE: Final = 64 * 1024
"""Longest message in bytes: a screenful of pasted text, far past the tutorial's 1024."""

KEEPALIVE_FRACTION: Final = 1 / 3
"""A client pings after this fraction of the server's idle timeout: two pings may be
late or lost before the server would drop it."""

MIN_KEEPALIVE_INTERVAL_S: Final = 0.05
"""The shortest time between two pings, whatever idle timeout a server announces: a
server cannot make its clients flood it."""

EXIT: Final = "exit"
"""The message that ends a client's session (the tutorial's convention)."""

HELP_TEXT: Final = """\
@ID text        send text to client ID (@3,5 text: to several)
text            send text to every client (also: @all text)
/list           list connected clients
/kick ID        disconnect client ID
/quit           stop the server
/help           this help"""


CONTINUATION: Final = "  | "
"""Prefix of a message's second and later lines on the console: a peer's newline can
never start a line that looks like someone else's (``[#2 ...] text``)."""


def console_line(who: str, text: str) -> str:
    """How the console shows ``text`` from ``who``: control characters escaped (no
    terminal escapes from peers), later lines marked as continuations."""
    first, *rest = escape_controls(text.replace("\r\n", "\n"), keep_newlines=True).split("\n")
    return "\n".join([f"{who} {first}", *(CONTINUATION + line for line in rest)])


def encode_message(text: str) -> bytes:
    """A DATA frame carrying one message.

    Raises:
        LocalProtocolError: the text is over ``MAX_MESSAGE_SIZE`` bytes as UTF-8.
    """
    data = text.encode("utf-8", errors="surrogateescape")
    if len(data) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_SIZE}-byte limit")
    return encode_data(data)


def encode_welcome(client_id: int, idle_timeout: float | None) -> bytes:
    """The CONTROL frame a client gets when it is connected, with the idle timeout its
    keepalive must beat (``None``: the server drops no silent client)."""
    return encode_control({"event": "welcome", "id": client_id, "idle_timeout": idle_timeout})


def encode_notice(text: str) -> bytes:
    """A CONTROL frame with a server notice."""
    return encode_control({"event": "notice", "text": text})


def encode_bye(reason: str) -> bytes:
    """The CONTROL frame sent before the server closes a client's connection."""
    return encode_control({"event": "bye", "reason": reason})


def encode_ping() -> bytes:
    """The client's keepalive."""
    return encode_control({"event": "ping"})


def encode_pong() -> bytes:
    """The server's answer to a keepalive."""
    return encode_control({"event": "pong"})


def encode_plain_message(text: str) -> bytes:
    """A message for a plain-text client: one UTF-8 line.

    Raises:
        LocalProtocolError: the text is over ``MAX_MESSAGE_SIZE`` bytes as UTF-8.
    """
    data = text.encode("utf-8", errors="surrogateescape")
    if len(data) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_SIZE}-byte limit")
    return data + b"\n"


def encode_plain_notice(text: str) -> bytes:
    """A server notice for a plain-text client: a ``* text`` line."""
    return f"* {text}\n".encode("utf-8", errors="replace")


def encode_plain_bye(reason: str) -> bytes:
    """The last line a plain-text client gets: why it is disconnected."""
    return encode_plain_notice(f"disconnected: {reason}")


@dataclass(frozen=True, slots=True)
class TalkMessage:
    """A message from the other side."""

    text: str


@dataclass(frozen=True, slots=True)
class Welcome:
    """The server accepted us as client ``id``.

    Attributes:
        idle_timeout: seconds of silence the server allows (``None``: no limit).
        announced: whether the server said so (an older one does not, nor answers pings).
    """

    id: int
    idle_timeout: float | None = None
    announced: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice from the server."""

    text: str


@dataclass(frozen=True, slots=True)
class Bye:
    """The server is closing our connection, and says why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Ping:
    """A client's keepalive."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The server's answer to a keepalive."""


TalkEvent = TalkMessage | Welcome | Notice | Bye | Ping | Pong | ErrorFrame


def parse_event(event: Any) -> TalkEvent | None:
    """Turn a decoded wire event into a talk event (``None``: not one talk knows; ignore).

    Text is decoded as UTF-8 with invalid bytes replaced, never a crash.
    """
    if isinstance(event, Data) and event.channel == 0:
        return TalkMessage(event.data.decode("utf-8", errors="replace"))
    if isinstance(event, ErrorFrame):
        return event
    if isinstance(event, Control):
        header = event.header
        kind = header.get("event")
        if kind == "welcome" and isinstance(header.get("id"), int):
            idle = header.get("idle_timeout")
            if idle is None:
                return Welcome(header["id"], None, "idle_timeout" in header)
            if isinstance(idle, (int, float)) and not isinstance(idle, bool) and 0 < idle < math.inf:
                return Welcome(header["id"], float(idle), True)
            return Welcome(header["id"])  # a value that means nothing: as if none was said
        if kind == "notice":
            return Notice(str(header.get("text", "")))
        if kind == "bye":
            return Bye(str(header.get("reason", "")))
        if kind == "ping":
            return Ping()
        if kind == "pong":
            return Pong()
    return None


def keepalive_interval(welcome: Welcome) -> float | None:
    """Seconds between the client's pings (``None``: none needed).

    A server that announced no idle timeout gets pings as if it had the default one
    (older servers count any bytes as a sign of life, and drop silent clients)."""
    if not welcome.announced:
        idle: float | None = DEFAULT_IDLE_TIMEOUT_S
    else:
        idle = welcome.idle_timeout
    if idle is None:
        return None
    return max(MIN_KEEPALIVE_INTERVAL_S, idle * KEEPALIVE_FRACTION)


@dataclass(frozen=True, slots=True)
class Say:
    """Send ``text`` to the clients ``ids``."""

    ids: tuple[int, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``text`` to every client."""

    text: str


@dataclass(frozen=True, slots=True)
class ListClients:
    """Show the connected clients."""


@dataclass(frozen=True, slots=True)
class Kick:
    """Disconnect client ``id``."""

    id: int


@dataclass(frozen=True, slots=True)
class Quit:
    """Stop the server."""


@dataclass(frozen=True, slots=True)
class Help:
    """Show the commands."""


Command = Say | Broadcast | ListClients | Kick | Quit | Help


def parse_command(line: str) -> Command | None:
    """Parse one line typed by the operator (``None``: nothing to do).

    Raises:
        ValueError: a malformed command (the message says the right form).
    """
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    if line.startswith("/"):
        word, _, rest = line[1:].partition(" ")
        word = word.lower()
        if word == "list":
            return ListClients()
        if word in ("quit", "exit"):
            return Quit()
        if word == "help":
            return Help()
        if word == "kick":
            if not rest.strip().isdigit():
                raise ValueError("usage: /kick ID")
            return Kick(int(rest.strip()))
        raise ValueError(f"unknown command /{word} (try /help)")
    if line.startswith("@"):
        target, _, text = line[1:].partition(" ")
        if target.lower() == "all":
            return Broadcast(text)
        ids = tuple(int(part) for part in target.split(",") if part.isdigit())
        if not ids or len(ids) != len(target.split(",")):
            raise ValueError("usage: @ID text, @ID,ID text or @all text")
        return Say(ids, text)
    return Broadcast(line)
