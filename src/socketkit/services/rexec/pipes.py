"""The pipes between an exec command and its client, and the /proc scan that finds a
command's processes (helpers of ``runner``; they start nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from typing import Protocol

__all__ = ["PIPE_SIZE", "InputPipe", "OutputPipe", "OutputSink", "enlarge", "members"]


class OutputSink(Protocol):
    """Where an output pipe's data goes (``runner.RunningCommand``: named by what it
    does, so this module needs nothing of the runner's)."""

    def output(self, pipe: OutputPipe, data: bytes) -> None:
        """Forward ``data`` read from ``pipe``."""


PIPE_SIZE = 1 << 20
"""Pipe capacity asked of the kernel (F_SETPIPE_SZ): fewer, larger reads at high rates."""

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def enlarge(fd: int) -> None:
    """Ask for a ``PIPE_SIZE`` pipe (the kernel's limit may keep it smaller)."""
    with contextlib.suppress(OSError):  # may exceed /proc/sys/fs/pipe-max-size: keep the default
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)


def members(field: int, value: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of the processes whose /proc stat field ``field`` (counted after
    the command name: 2 is the process group, 3 the session) is ``value``."""
    members: list[tuple[int, int]] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > field and int(fields[field]) == value:
            members.append((int(entry), int(fields[1])))
    return members


class OutputPipe(asyncio.Protocol):
    """Forward one of the command's output pipes to the client as DATA frames."""

    def __init__(self, command: OutputSink, channel: int) -> None:
        self.command = command
        self.channel = channel
        self.transport: asyncio.ReadTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.command.output(self, data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class InputPipe(asyncio.Protocol):
    """The command's stdin: tells the relay when there is room for more."""

    def __init__(self) -> None:
        self.room = asyncio.get_running_loop().create_future()
        self.room.set_result(None)

    def pause_writing(self) -> None:
        if self.room.done():
            self.room = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if not self.room.done():
            self.room.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # a closed pipe takes (and drops) anything: never wait on it
