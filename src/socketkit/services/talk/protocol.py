"""The talk protocol and the operator's console commands: pure, no I/O.

On the wire (socketkit wire format v1, after the hello):

- a message is one DATA frame on channel 0 carrying UTF-8 text, so a long or multi-line
  message arrives whole (the tutorial's ``recv(1024)`` cut them);
- the server sends CONTROL frames for events: ``{"event": "welcome", "id": 3}``,
  ``{"event": "notice", "text": "..."}``;
- a client leaves by sending the message ``exit`` (as in the tutorial) or by closing;
- errors are ERROR frames (``busy`` when the server is full), then the connection closes.

Operator console: ``@3 text`` to client 3, ``@3,5 text`` to several, plain ``text`` (or
``@all text``) to everyone, ``/list``, ``/kick 3``, ``/quit``, ``/help``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from socketkit._text import escape_controls
from socketkit.codec.wire import Control, Data, ErrorFrame, encode_control, encode_data
from socketkit.errors import LocalProtocolError

__all__ = [
    "CONTINUATION",
    "EXIT",
    "MAX_MESSAGE_SIZE",
    "Broadcast",
    "Help",
    "Kick",
    "ListClients",
    "Notice",
    "Quit",
    "Say",
    "TalkMessage",
    "Welcome",
    "console_line",
    "encode_message",
    "encode_notice",
    "encode_welcome",
    "parse_command",
    "parse_event",
]

MAX_MESSAGE_SIZE: Final = 64 * 1024
"""Longest message in bytes: a screenful of pasted text, far past the tutorial's 1024."""

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


def encode_welcome(client_id: int) -> bytes:
    """The CONTROL frame a client gets when it is connected."""
    return encode_control({"event": "welcome", "id": client_id})


def encode_notice(text: str) -> bytes:
    """A CONTROL frame with a server notice (for example, a shutdown warning)."""
    return encode_control({"event": "notice", "text": text})


@dataclass(frozen=True, slots=True)
class TalkMessage:
    """A message from the other side."""

    text: str


@dataclass(frozen=True, slots=True)
class Welcome:
    """The server accepted us as client ``id``."""

    id: int


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice from the server."""

    text: str


def parse_event(event: Any) -> TalkMessage | Welcome | Notice | ErrorFrame | None:
    """Turn a decoded wire event into a talk event (``None``: not one talk knows; ignore).

    Text is decoded as UTF-8 with invalid bytes replaced, never a crash.
    """
    if isinstance(event, Data) and event.channel == 0:
        return TalkMessage(event.data.decode("utf-8", errors="replace"))
    if isinstance(event, ErrorFrame):
        return event
    if isinstance(event, Control):
        kind = event.header.get("event")
        if kind == "welcome" and isinstance(event.header.get("id"), int):
            return Welcome(event.header["id"])
        if kind == "notice":
            return Notice(str(event.header.get("text", "")))
    return None


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
