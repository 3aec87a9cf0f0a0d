"""What ``socketkit listen`` remembers between events, as pure code: standard input held
for a UDP sender that has not spoken yet, and whether the data shown so far ended its
line (so a status line never glues onto it)."""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["MAX_PENDING_STDIN", "LineEnd", "PendingInput"]

MAX_PENDING_STDIN: Final = 64 * 1024
"""Bytes of standard input ``listen --udp`` holds while no datagram has come yet (so
there is nobody to send them to). Enough for what is typed or piped ahead of the
first sender (``printf pong | socketkit listen --udp P``); beyond it listen stops
reading, so the writer waits on the pipe instead of our memory growing. Sent as a
burst once a sender is known, it stays well inside a default Linux socket receive
buffer (208 KiB), so the first sender can take it all in."""


class PendingInput:
    """Chunks of input, in order, up to ``limit`` bytes in all."""

    def __init__(self, limit: int = MAX_PENDING_STDIN) -> None:
        if limit < 1:
            raise ValueError("the limit must be at least 1 byte")
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._held = 0

    @property
    def held(self) -> int:
        """Bytes held now."""
        return self._held

    @property
    def room(self) -> int:
        """Bytes that may still be added (0: stop reading)."""
        return self.limit - self._held

    def add(self, chunk: bytes) -> None:
        """Hold ``chunk`` (kept whole: it becomes one datagram).

        Raises:
            ValueError: it does not fit in ``room`` (read at most ``room`` bytes).
        """
        if len(chunk) > self.room:
            raise ValueError(f"{len(chunk)} bytes do not fit in the {self.room} left")
        if chunk:
            self._chunks.append(chunk)
            self._held += len(chunk)

    def take(self) -> list[bytes]:
        """Every chunk held, oldest first; nothing is held afterwards."""
        chunks = list(self._chunks)
        self._chunks.clear()
        self._held = 0
        return chunks


class LineEnd:
    """Whether the data written so far ends a line; data and status lines may share one
    terminal (or one ``2>&1`` pipe), and a status line must start on its own line."""

    def __init__(self) -> None:
        self.at_line_start = True

    def wrote(self, data: bytes) -> None:
        """Data went out."""
        if data:
            self.at_line_start = data.endswith(b"\n")

    def before_status(self) -> str:
        """What to write before a status line: a newline when the data stopped mid-line
        (then the line is ended, so only once)."""
        if self.at_line_start:
            return ""
        self.at_line_start = True
        return "\n"
