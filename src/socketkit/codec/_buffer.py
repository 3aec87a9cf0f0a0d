"""ReceiveBuffer: the bytes a decoder holds between feeds, with an end-of-stream mark.

A ``bytearray`` whose front is consumed with ``del buf[:n]`` (amortised O(1) in
CPython, which moves a start offset instead of copying), plus a remembered search
offset so that looking for a delimiter never rescans bytes already searched: feeding
a long line one byte at a time stays linear, not quadratic.
"""

from __future__ import annotations

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Bytes received and not yet turned into messages."""

    __slots__ = ("_data", "_scanned", "eof")

    def __init__(self) -> None:
        self._data = bytearray()
        self._scanned = 0  # bytes known to hold no delimiter
        self.eof = False

    def __len__(self) -> int:
        return len(self._data)

    def append(self, data: bytes) -> None:
        """Add bytes at the end; ``b""`` marks the end of the stream."""
        if data:
            self._data += data
        else:
            self.eof = True

    def find(self, delimiter: bytes) -> int:
        """Return the index of the first ``delimiter``, or -1; never rescans old bytes."""
        index = self._data.find(delimiter, self._scanned)
        if index < 0:
            # Keep len(delimiter) - 1 bytes: the delimiter may straddle the next feed.
            self._scanned = max(0, len(self._data) - len(delimiter) + 1)
        return index

    def peek(self, size: int) -> bytes:
        """Return up to ``size`` leading bytes without consuming them."""
        return bytes(self._data[:size])

    def take(self, size: int) -> bytes:
        """Remove and return the leading ``size`` bytes (or all, if fewer)."""
        data = bytes(self._data[:size])
        del self._data[:size]
        self._scanned = 0
        return data

    def skip(self, size: int) -> None:
        """Drop the leading ``size`` bytes."""
        del self._data[:size]
        self._scanned = 0

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        return self.take(len(self._data))
