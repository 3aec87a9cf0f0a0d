"""Line codec: LF or CRLF terminated lines with a hard maximum length.

Messages are ``bytes`` without the terminator. An over-long line raises
``FrameTooLarge`` as soon as the buffer proves it (never after buffering the whole
line), and end of stream inside a line raises ``IncompleteFrame`` with the partial
bytes. Decoding to text is the caller's job, with an explicit ``errors=``.
"""

from __future__ import annotations

from collections.abc import Iterator

from socketkit.codec._buffer import ReceiveBuffer
from socketkit.codec.base import END_OF_STREAM, NEED_DATA, EndOfStream, NeedData
from socketkit.errors import FrameTooLarge, IncompleteFrame, LocalProtocolError
from socketkit.limits import DEFAULT_MAX_LINE_LENGTH

__all__ = ["LineDecoder", "encode_line"]


class LineDecoder:
    """Split a byte stream into lines.

    Args:
        max_line_length: longest accepted line in bytes, terminator excluded.
        accept_bare_lf: accept ``\\n`` alone as a terminator (``True``), or only
            ``\\r\\n`` (``False``: a line with a bare LF then keeps the LF in its
            content and only CRLF ends it).

    Raises:
        ValueError: if ``max_line_length`` is not positive.
    """

    __slots__ = ("_buffer", "_delimiter", "_discarding", "_strip_cr", "max_line_length")

    def __init__(
        self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH, *, accept_bare_lf: bool = True
    ) -> None:
        if max_line_length <= 0:
            raise ValueError(f"max_line_length must be positive, not {max_line_length}")
        self.max_line_length = max_line_length
        self._buffer = ReceiveBuffer()
        self._delimiter = b"\n" if accept_bare_lf else b"\r\n"
        self._strip_cr = accept_bare_lf
        self._discarding = False

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` marks the end of the stream."""
        self._buffer.append(data)

    def next_event(self) -> bytes | NeedData | EndOfStream:
        """Return the next line (without its terminator), ``NEED_DATA`` or ``END_OF_STREAM``.

        After ``FrameTooLarge`` the decoder skips the rest of the offending line, so a
        caller that only reports the error (IRC's ERR_INPUTTOOLONG) can keep reading.

        Raises:
            FrameTooLarge: the line is longer than ``max_line_length``.
            IncompleteFrame: the stream ended inside a line.
        """
        buffer = self._buffer
        end = buffer.find(self._delimiter)
        if self._discarding:
            if end < 0:
                # Keep a possible CR of a CRLF split across feeds; drop the rest.
                buffer.skip(max(0, len(buffer) - len(self._delimiter) + 1))
                return END_OF_STREAM if buffer.eof else NEED_DATA
            buffer.skip(end + len(self._delimiter))
            self._discarding = False
            end = buffer.find(self._delimiter)
        if end >= 0:
            line = buffer.take(end + len(self._delimiter))[:end]
            if self._strip_cr and line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line_length:
                exc = FrameTooLarge(self.max_line_length, len(line), "line")
                exc.recoverable = True  # the line is consumed
                raise exc
            return line
        # No terminator yet: one more byte than limit + "\r" proves the line too long.
        if len(buffer) > self.max_line_length + 1:
            size = len(buffer)
            buffer.skip(size)
            self._discarding = True
            exc = FrameTooLarge(self.max_line_length, size, "line")
            exc.recoverable = True  # the rest of the line will be skipped
            raise exc
        if buffer.eof:
            if len(buffer):
                raise IncompleteFrame(buffer.take_all(), "line")
            return END_OF_STREAM
        return NEED_DATA

    def __iter__(self) -> Iterator[bytes]:
        """Yield every complete line buffered so far."""
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is END_OF_STREAM:
                return
            yield event


def encode_line(
    line: bytes, *, terminator: bytes = b"\n", max_line_length: int = DEFAULT_MAX_LINE_LENGTH
) -> bytes:
    """Return ``line`` with its terminator.

    Args:
        line: the content, without CR or LF.
        terminator: ``b"\\n"`` or ``b"\\r\\n"``.
        max_line_length: refuse lines the peer's decoder would refuse.

    Raises:
        LocalProtocolError: the line contains CR or LF, or is too long.
        ValueError: the terminator is not LF or CRLF.
    """
    if terminator not in (b"\n", b"\r\n"):
        raise ValueError(f"terminator must be LF or CRLF, not {terminator!r}")
    if b"\n" in line or b"\r" in line:
        raise LocalProtocolError("a line may not contain CR or LF", error_code="bad-line")
    if len(line) > max_line_length:
        raise LocalProtocolError(
            f"line of {len(line)} bytes exceeds the limit of {max_line_length} bytes",
            error_code="frame-too-large",
        )
    return line + terminator
