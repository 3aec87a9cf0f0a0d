"""IRC messages (RFC 1459/2812 as clarified by modern.ircdocs.horse, plus IRCv3 message
tags): parse, format, and the line decoder with IRC's limits. Pure.

Text is ``str`` decoded from UTF-8. What happens to a line that is not UTF-8 is the
caller's choice (``text_errors``): ``"strict"`` (the default, what the chat server
uses) refuses it with ``InvalidText`` (recoverable: the decoder goes on with the next
line), so that no surrogate ever reaches a handler, a database or a log; ``"replace"``
shows U+FFFD instead (a client displaying another server's text); ``"surrogateescape"``
keeps the bytes through a parse/format round trip (a relay that must not touch them).

Limits: the message part (source, command, params) is at most 510 bytes before CRLF
(RFC 1459's 512 with the CRLF); tags may add 8191 bytes (IRCv3). The decoder accepts
LF as well as CRLF, ignores empty lines, and after an over-long line (which raises
``FrameTooLarge``, for ERR_INPUTTOOLONG) carries on with the next one.

NUL and CR (and LF, in text handed to ``parse_message``) are refused anywhere in a line
(``RemoteProtocolError`` with error code ``FORBIDDEN_CHARACTER``; the decoder goes on
with the next line): the grammar allows none of them in any part of a message, so a
parsed message never holds what ``format_message`` refuses to send.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from socketkit.codec.base import END_OF_STREAM, NEED_DATA, EndOfStream, NeedData
from socketkit.codec.lines import LineDecoder
from socketkit.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from socketkit.limits import IRC_MAX_LINE_LENGTH, IRC_MAX_TAGS_LENGTH

__all__ = [
    "FORBIDDEN_CHARACTER",
    "INVALID_UTF8",
    "MAX_BODY",
    "TEXT_ERRORS",
    "IRCDecoder",
    "IRCMessage",
    "InvalidText",
    "casefold",
    "encode_message",
    "format_message",
    "parse_message",
]

MAX_BODY: Final = IRC_MAX_LINE_LENGTH - 2
"""Bytes of a message without its tags and CRLF (RFC 1459: 512 with the CRLF)."""

FORBIDDEN_CHARACTER: Final = "forbidden-character"
"""``RemoteProtocolError.error_code`` of a line holding NUL, CR or LF."""

INVALID_UTF8: Final = "invalid-utf8"
"""``RemoteProtocolError.error_code`` of a line that is not UTF-8 (``InvalidText``)."""


class InvalidText(RemoteProtocolError):
    """A line that is not valid UTF-8, refused whole (IRCv3 ``UTF8ONLY``: the server
    answers ``FAIL <command> INVALID_UTF8``).

    Attributes:
        command: the line's command if it could be read (ASCII), else ``"*"``: what the
            ``FAIL`` reply names.
    """

    def __init__(self, command: str) -> None:
        super().__init__("IRC line refused: it is not valid UTF-8", error_code=INVALID_UTF8)
        self.command = command


# modern.ircdocs.horse: no part of a message (tags, source, command, parameters) may hold
# NUL, CR or LF; servers "MAY handle a single CR as if it was CRLF". We refuse the line
# instead of splitting at a bare CR (``PRIVMSG #a :hi\rQUIT`` would smuggle a second
# command past whatever checked the first, e.g. a bridge relaying text) and instead of
# stripping (the sender would be told nothing and others would read text it never
# wrote). An escaped ``\r``/``\n`` inside a tag value stays allowed: it is re-escaped on
# the way out.

_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_UNESCAPES = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})
_RFC1459 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")


def casefold(name: str) -> str:
    """RFC 1459 case mapping (``[]\\~`` are the upper case of ``{}|^``), for nicks and
    channels (ISUPPORT CASEMAPPING=rfc1459)."""
    return name.translate(_RFC1459)


@dataclass(frozen=True, slots=True)
class IRCMessage:
    """One IRC message.

    Attributes:
        command: the verb (``PRIVMSG``) or numeric (``001``), as sent.
        params: parameters, the trailing one included as the last item.
        source: the prefix without its colon (``nick!user@host``), or ``None``.
        tags: IRCv3 message tags, unescaped; a tag without a value maps to ``""``.
    """

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def verb(self) -> str:
        """The command in upper case (``privmsg`` and ``PRIVMSG`` are the same command)."""
        return self.command.upper()


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        out.append(_ESCAPES.get(nxt, nxt))  # unknown escape: the char itself; final "\": dropped
    return "".join(out)


def _forbidden() -> RemoteProtocolError:
    return RemoteProtocolError(
        "IRC line refused: NUL, CR and LF are not allowed inside a message", error_code=FORBIDDEN_CHARACTER
    )


TEXT_ERRORS: Final = ("strict", "replace", "surrogateescape")
"""What ``parse_message`` may do with bytes that are not UTF-8 (see the module docstring)."""


def _command_of(text: str) -> str:
    """The command of a line that failed to decode, if it is plain ASCII (else ``*``)."""
    rest = text.partition(" ")[2] if text.startswith("@") else text
    rest = rest.lstrip(" ")
    if rest.startswith(":"):
        rest = rest.partition(" ")[2].lstrip(" ")
    command = rest.partition(" ")[0]
    return command.upper() if command.isascii() and command.isalnum() else "*"


def parse_message(
    line: str | bytes, *, max_body: int | None = MAX_BODY, text_errors: str = "strict"
) -> IRCMessage:
    """Parse one line (without its CRLF).

    Args:
        line: the message, as text or raw bytes (decoded as UTF-8).
        max_body: refuse a message part (after the tags) longer than this many bytes.
        text_errors: bytes that are not UTF-8: ``"strict"`` refuses the line
            (``InvalidText``), ``"replace"`` or ``"surrogateescape"`` decode it so.

    Returns:
        the message.

    Raises:
        FrameTooLarge: the message part is over ``max_body`` bytes.
        InvalidText: the line is not UTF-8 (with ``text_errors="strict"``).
        RemoteProtocolError: no command, or a NUL, CR or LF in the line (error code
            ``FORBIDDEN_CHARACTER``).
    """
    if isinstance(line, bytes):
        if b"\0" in line or b"\r" in line or b"\n" in line:  # three C scans: the hot path
            raise _forbidden()
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            if text_errors == "strict":
                raise InvalidText(_command_of(line.decode("utf-8", errors="replace"))) from None
            text = line.decode("utf-8", errors=text_errors)
    else:
        if "\0" in line or "\r" in line or "\n" in line:
            raise _forbidden()
        if text_errors == "strict" and not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8
                raise InvalidText(_command_of(line)) from None
        text = line
    tags: dict[str, str] = {}
    rest = text
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        for item in raw_tags.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = _unescape(value)
    rest = rest.lstrip(" ")
    if max_body is not None and len(rest) > max_body // 4:  # cheap pre-check: a char is 1-4 bytes
        size = len(rest.encode("utf-8", errors="surrogateescape"))
        if size > max_body:
            raise FrameTooLarge(max_body, size, "IRC message")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    command, _, rest = rest.partition(" ")
    if not command:
        raise RemoteProtocolError("IRC message without a command", error_code="bad-message")
    params: list[str] = []
    while rest:
        rest = rest.lstrip(" ")
        if not rest:
            break
        if rest.startswith(":"):
            params.append(rest[1:])
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
    return IRCMessage(command, tuple(params), source, tags)


_TEXT_PARAMS = {
    "PRIVMSG": 2,
    "NOTICE": 2,
    "TOPIC": 2,
    "PART": 2,
    "KILL": 2,
    "KICK": 3,
    "QUIT": 1,
    "AWAY": 1,
    "ERROR": 1,
}
"""Commands with free text as their Nth parameter: sent with ``:`` even when one word, as
servers conventionally do (clients that split on `` :`` expect it)."""


def format_message(message: IRCMessage) -> str:
    """The line for ``message``, without CRLF.

    The last parameter gets a ``:`` when it must (empty, a space, a leading ``:``) and,
    by convention, always for free-text commands and for numerics with a text at the end.

    Raises:
        LocalProtocolError: a middle parameter that is empty, has a space or starts with
            ``:``, any CR/LF/NUL, or an empty command.
    """
    parts = []
    if message.tags:
        parts.append(
            "@"
            + ";".join(k if v == "" else f"{k}={v.translate(_UNESCAPES)}" for k, v in message.tags.items())
        )
    if message.source:
        parts.append(":" + message.source)
    if not message.command or " " in message.command:
        raise LocalProtocolError(f"bad IRC command {message.command!r}")
    parts.append(message.command)
    params = message.params
    for param in params[:-1]:
        if not param or " " in param or param.startswith(":"):
            raise LocalProtocolError(f"IRC middle parameter {param!r} needs to be the last one")
        parts.append(param)
    if params:
        last = params[-1]
        text = _TEXT_PARAMS.get(message.command) == len(params) or (
            message.command.isdigit() and len(params) > 2
        )
        needed = not last or " " in last or last.startswith(":")
        parts.append(":" + last if text or needed else last)
    line = " ".join(parts)
    if "\r" in line or "\n" in line or "\0" in line:
        raise LocalProtocolError("CR, LF and NUL cannot be sent in an IRC message")
    return line


def encode_message(message: IRCMessage) -> bytes:
    """``format_message`` plus CRLF, as bytes (surrogate-escaped bytes restored).

    Raises:
        LocalProtocolError: see ``format_message``.
    """
    return format_message(message).encode("utf-8", errors="surrogateescape") + b"\r\n"


class IRCDecoder:
    """Split an IRC byte stream into ``IRCMessage``s (LF or CRLF; empty lines skipped).

    ``FrameTooLarge`` (ERR_INPUTTOOLONG) does not end the stream: the next call goes on
    with the line after the offending one. ``text_errors`` is ``parse_message``'s.

    Raises:
        ValueError: ``text_errors`` is not one of ``TEXT_ERRORS``.
    """

    def __init__(
        self, max_body: int = MAX_BODY, max_tags: int = IRC_MAX_TAGS_LENGTH, *, text_errors: str = "strict"
    ) -> None:
        if text_errors not in TEXT_ERRORS:
            raise ValueError(f"text_errors must be one of {', '.join(TEXT_ERRORS)}, not {text_errors!r}")
        self.max_body = max_body
        self.text_errors = text_errors
        self._lines = LineDecoder(max_body + max_tags + 1)

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` marks the end of the stream."""
        self._lines.feed(data)

    def next_event(self) -> IRCMessage | NeedData | EndOfStream:
        """The next message, ``NEED_DATA`` or ``END_OF_STREAM``.

        Raises:
            FrameTooLarge: a line or its message part is too long (the decoder can go on).
            IncompleteFrame: the stream ended inside a line.
            InvalidText: a line that is not UTF-8 (``text_errors="strict"``); the
                decoder goes on with the next line.
            RemoteProtocolError: a line without a command, or with NUL or a bare CR
                (``FORBIDDEN_CHARACTER``); the decoder goes on with the next line.
        """
        while True:
            line = self._lines.next_event()
            if line is NEED_DATA or line is END_OF_STREAM:
                return line
            if line.strip(b" "):
                try:
                    return parse_message(line, max_body=self.max_body, text_errors=self.text_errors)
                except RemoteProtocolError as exc:
                    exc.recoverable = True  # one bad line; the next one starts clean
                    raise

    def __iter__(self) -> Iterator[IRCMessage]:
        """Yield every complete message buffered so far."""
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is END_OF_STREAM:
                return
            yield event
