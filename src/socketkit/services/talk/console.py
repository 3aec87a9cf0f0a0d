"""Lines typed into the talk console or client (a terminal, a pipe or a file), read by a
thread and handed to the event loop.

A thread, because standard input can be anything, and asyncio cannot watch all of it;
a daemon, because a blocked read cannot be interrupted. It reads the file descriptor
with ``os.read``, not through ``sys.stdin``'s buffer, whose lock a daemon thread blocked
in a read would hold at exit (Python then aborts: "could not acquire lock for stdin").
Each line is read with a cap: one longer than a message may be (``MAX_MESSAGE_SIZE``)
is never held whole, it is skipped to its end and reported in one line, and the lines
after it go on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from socketkit.services.talk.protocol import MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    import asyncio

__all__ = ["FdLines", "read_capped_line", "read_lines"]

READ_SIZE: Final = 64 * 1024
"""Bytes asked of each ``os.read``: a pipe's whole buffer at once."""


class _Lines(Protocol):
    def readline(self, limit: int, /) -> bytes: ...


class FdLines:
    """``readline(limit)`` over a file descriptor, unbuffered by Python's io (no lock);
    at most ``limit + READ_SIZE`` bytes are held."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self._eof = False

    def readline(self, limit: int) -> bytes:
        """Up to and including the next newline, at most ``limit`` bytes; ``b""`` at the end."""
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned, limit)
            if end >= 0 or len(self._buffer) >= limit or self._eof:
                size = end + 1 if end >= 0 else min(limit, len(self._buffer))
                line = bytes(self._buffer[:size])
                del self._buffer[:size]
                return line
            scanned = len(self._buffer)
            chunk = os.read(self.fd, READ_SIZE)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True


def read_capped_line(stream: _Lines, limit: int = MAX_MESSAGE_SIZE) -> bytes | None:
    """One line of at most ``limit`` bytes with its newline; ``None`` for a longer one
    (read to its end and dropped); ``b""`` at the end of the input."""
    line = stream.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line
    while True:  # the rest of the over-long line, a bounded piece at a time
        rest = stream.readline(limit + 1)
        if not rest or rest.endswith(b"\n"):
            return None


def _too_long() -> None:
    print(
        f"! a line over {MAX_MESSAGE_SIZE} bytes was not sent (that is the limit)",
        file=sys.stderr,
        flush=True,
    )


def read_lines(
    loop: asyncio.AbstractEventLoop,
    on_line: Callable[[str | None], None],
    on_too_long: Callable[[], None] = _too_long,
) -> threading.Thread:
    """Read standard input in a daemon thread; call ``on_line`` on the loop for each line
    (UTF-8, invalid bytes replaced), then with ``None`` at the end of the input;
    ``on_too_long`` for each line over the limit."""

    def run() -> None:
        try:
            stream = FdLines(sys.stdin.fileno())
            while True:
                line = read_capped_line(stream)
                if line is None:
                    loop.call_soon_threadsafe(on_too_long)
                    continue
                if not line:
                    break
                text = line.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
                loop.call_soon_threadsafe(on_line, text)
        except (OSError, ValueError, AttributeError):  # no stdin, or closed under us at exit
            pass
        except RuntimeError:  # the loop is already closed: nobody listens
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(on_line, None)

    thread = threading.Thread(target=run, name="socketkit-stdin", daemon=True)
    thread.start()
    return thread
