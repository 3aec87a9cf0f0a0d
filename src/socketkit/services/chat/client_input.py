"""Where the chat client's typed lines come from: nothing, a watched pipe or terminal
(asyncio), or a blocking stream read in a thread; each line capped."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from typing import IO, Any, Final, Protocol

__all__ = ["MAX_INPUT_LINE", "LineSource"]

MAX_INPUT_LINE: Final = 1 << 16
"""Bytes of one line of input; a longer one is dropped whole (the server would refuse
anything over 512 bytes anyway, and a line without end must not grow memory)."""


class LineSource(Protocol):
    """Lines of the input, as bytes with their newline; ``b""`` at the end."""

    async def readline(self) -> bytes: ...


class _NoInput:
    """A closed stdin: the input is over before it starts."""

    async def readline(self) -> bytes:
        return b""


class _WatchedInput:
    """A terminal, pipe or socket: the event loop tells when a line is there."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readline(self) -> bytes:
        try:
            return await self._reader.readline()
        except ValueError:  # a line longer than the limit: dropped (IRC would cut it anyway)
            return b"\n"


class _ThreadedInput:
    """A regular file, /dev/null or another device: read by one daemon thread, a line at
    a time when asked. A daemon, because a read of some devices never returns and leaving
    must not wait for it (regular files and /dev/null never block)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._wanted = threading.Semaphore(0)
        self._lines: asyncio.Queue[bytes] = asyncio.Queue()  # at most one line per request
        threading.Thread(target=self._run, name="socketkit-chat-input", daemon=True).start()

    async def readline(self) -> bytes:
        self._wanted.release()
        return await self._lines.get()

    def _run(self) -> None:
        while True:
            self._wanted.acquire()
            try:
                line = _read_capped(self._stream)
            except (OSError, ValueError):  # unreadable from here on: the input is over
                line = b""
            try:
                self._loop.call_soon_threadsafe(self._lines.put_nowait, line)
            except RuntimeError:  # the loop is gone: nobody reads any more
                return
            if not line:
                return


def _read_capped(stream: IO[bytes]) -> bytes:
    """One line of at most ``MAX_INPUT_LINE`` bytes (a longer one is skipped: ``b"\\n"``)."""
    line = stream.readline(MAX_INPUT_LINE)
    if len(line) < MAX_INPUT_LINE or line.endswith(b"\n"):
        return line
    while True:  # the rest of an over-long line
        rest = stream.readline(MAX_INPUT_LINE)
        if not rest or rest.endswith(b"\n"):
            return b"\n"


async def open_input(stream: IO[str] | None) -> LineSource:
    """The lines of ``stream`` (normally ``sys.stdin``: ``None`` when fd 0 was closed),
    however it is connected."""
    if stream is None:
        return _NoInput()
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError):  # closed, or not backed by a file descriptor
        return _NoInput()
    binary: Any = getattr(stream, "buffer", stream)
    # Only these can be watched by the loop: uvloop aborts the whole process (SIGABRT) on a
    # regular file or /dev/null, and the stdlib loop's epoll refuses them (EPERM).
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        reader = asyncio.StreamReader(limit=MAX_INPUT_LINE)
        protocol = asyncio.StreamReaderProtocol(reader)
        await asyncio.get_running_loop().connect_read_pipe(lambda: protocol, binary)
        return _WatchedInput(reader)
    return _ThreadedInput(binary)
