"""Which language a talk peer speaks, told from its first byte, and plain text (pure).

``serve talk`` answers two kinds of client on one port: ``socketkit talk`` (wire format
v1, whose hello starts with 0x89) and a plain socket client such as the tutorial's,
which sends UTF-8 text. 0x89 can never start UTF-8 text (it is a continuation byte), so
the first byte decides, and ``TalkDecoder`` hands the stream to a ``WireDecoder`` or to
a ``PlainTextDecoder`` for good.

Plain text is shown a line at a time (LF or CRLF). A client that has sent no newline
yet gets what it sent shown as it arrives instead (each read), whole characters only:
the tutorial's client sends each ``input()`` without one and waits for the answer, as
its server shows each ``recv(1024)``. Its first newline makes it a line client, whose
partial line then waits for its end. Invalid UTF-8 becomes U+FFFD, never an error; a
line over ``MAX_MESSAGE_SIZE`` bytes is dropped and reported as ``TextTooLong`` (one
event), and the text after it goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from socketkit.codec._buffer import ReceiveBuffer
from socketkit.codec.base import END_OF_STREAM, NEED_DATA, EndOfStream, NeedData
from socketkit.codec.wire import MAGIC, WireDecoder, WireEvent
from socketkit.services.talk.protocol import MAX_MESSAGE_SIZE

__all__ = ["PlainText", "PlainTextDecoder", "TalkDecoder", "TalkEvent", "TextTooLong", "utf8_prefix"]

_WIRE_FIRST: Final = MAGIC[0]
"""The first byte of every wire-v1 hello (0x89): never the first byte of UTF-8 text."""


@dataclass(frozen=True, slots=True)
class PlainText:
    """Text from a plain client: a line, or what arrived of one before any newline."""

    text: str


@dataclass(frozen=True, slots=True)
class TextTooLong:
    """A plain client's line was over ``limit`` bytes: dropped (the next one is read)."""

    limit: int


TalkEvent = WireEvent | PlainText | TextTooLong

_SEQUENCE_LENGTH: Final = {**dict.fromkeys(range(24, 28), 2), 28: 3, 29: 3, 30: 4}
"""Bytes of a UTF-8 sequence by its lead byte's top five bits: 110xx 2, 1110x 3, 11110 4."""


def utf8_prefix(data: bytes | bytearray) -> int:
    """How many leading bytes of ``data`` end on a character boundary: an incomplete
    UTF-8 sequence at the end (at most 3 bytes) waits for the rest of it."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the start of the last character
            needed = _SEQUENCE_LENGTH.get(byte >> 3, 1)  # ASCII or an invalid byte: 1
            return len(data) - back if needed > back else len(data)
    return len(data)  # only continuation bytes: invalid however it goes on


class PlainTextDecoder:
    """UTF-8 text, a line at a time (see the module docstring).

    Args:
        max_line: longest line in bytes, terminator excluded.
    """

    __slots__ = ("_buffer", "_lines", "_skipping", "max_line")

    def __init__(self, max_line: int = MAX_MESSAGE_SIZE) -> None:
        self.max_line = max_line
        self._buffer = ReceiveBuffer()
        self._lines = False  # a newline came: hold partial lines from now on
        self._skipping = False  # inside an over-long line: drop up to its newline

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` marks the end of the stream."""
        self._buffer.append(data)

    def next_event(self) -> PlainText | TextTooLong | NeedData | EndOfStream:
        """The next piece of text, ``NEED_DATA`` or ``END_OF_STREAM`` (never raises)."""
        buffer = self._buffer
        while (end := buffer.find(b"\n")) >= 0:
            line = buffer.take(end + 1)[:-1]
            self._lines = True
            if self._skipping:  # the end of a line already reported
                self._skipping = False
                continue
            if len(line) > self.max_line + 1 or (len(line) == self.max_line + 1 and not line.endswith(b"\r")):
                return TextTooLong(self.max_line)
            return PlainText(_decode(line.removesuffix(b"\r")))
        size = len(buffer)
        if self._skipping:
            buffer.skip(size)
        elif size > self.max_line + 1:  # one more than the limit and a CR: proven too long
            buffer.skip(size)
            self._skipping = self._lines  # a line client: the rest of that line goes too
            return TextTooLong(self.max_line)
        elif size and (buffer.eof or not self._lines):
            # The end of the stream, or a client that sends no newlines: show what came.
            cut = size if buffer.eof else utf8_prefix(buffer.peek(size))
            if cut:
                return PlainText(_decode(buffer.take(cut).removesuffix(b"\r")))
        return END_OF_STREAM if buffer.eof and not len(buffer) else NEED_DATA

    def __iter__(self) -> Iterator[PlainText | TextTooLong]:
        """Yield every piece of text buffered so far."""
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is END_OF_STREAM:
                return
            yield event


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class TalkDecoder:
    """A talk peer's stream: wire v1 if it starts with 0x89, plain text otherwise.

    Args:
        max_message: largest message (wire DATA payload or text line) in bytes.
    """

    __slots__ = ("_eof", "_inner", "max_message")

    def __init__(self, max_message: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message = max_message
        self._inner: WireDecoder | PlainTextDecoder | None = None
        self._eof = False

    @property
    def plain(self) -> bool | None:
        """Whether the peer speaks plain text (``None``: it has sent nothing yet)."""
        return None if self._inner is None else isinstance(self._inner, PlainTextDecoder)

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` marks the end of the stream."""
        if self._inner is None:
            if not data:
                self._eof = True
                return
            if data[0] == _WIRE_FIRST:
                self._inner = WireDecoder(max_frame_size=self.max_message)
            else:
                self._inner = PlainTextDecoder(self.max_message)
        self._inner.feed(data)

    def next_event(self) -> TalkEvent | NeedData | EndOfStream:
        """The next event of whichever decoder the first byte chose.

        Raises:
            HandshakeError, RemoteProtocolError: bad wire-v1 input (``WireDecoder``).
        """
        if self._inner is None:
            return END_OF_STREAM if self._eof else NEED_DATA
        return self._inner.next_event()

    def __iter__(self) -> Iterator[TalkEvent]:
        """Yield every event buffered so far."""
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is END_OF_STREAM:
                return
            yield event
