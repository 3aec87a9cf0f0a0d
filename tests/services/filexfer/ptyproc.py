"""A ``socketkit`` command whose standard output and error are a pseudo-terminal, as on a
user's screen: rich draws its progress bars there, and the test reads what was drawn."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import TIMEOUT

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
COLUMNS = 200
"""Wide enough that no line the tests look for is wrapped."""


def plain(text: str) -> str:
    """``text`` without terminal escapes and carriage returns."""
    return _ESCAPE.sub("", text).replace("\r", "")


class PtyProc:
    """``python -m socketkit ARGS`` on a new pseudo-terminal (stdin: /dev/null)."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
            environment = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), **(env or {})}
            environment.pop("NO_COLOR", None)
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "socketkit", *args],
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=environment,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.master = master
        self.raw = bytearray()
        self.ended = False

    @property
    def text(self) -> str:
        """Everything drawn so far, escapes removed."""
        return plain(self.raw.decode("utf-8", errors="replace"))

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError as exc:  # Linux: EIO once every holder of the slave has closed it
            if exc.errno != errno.EIO:
                raise
            chunk = b""
        if chunk:
            self.raw += chunk
        else:
            self.ended = True

    def until(self, found: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """Read until ``found(text)``; fail with the tail of the screen otherwise."""
        deadline = time.monotonic() + timeout
        while not found(self.text):
            left = deadline - time.monotonic()
            if self.ended or left <= 0:
                raise AssertionError(f"not seen on the terminal; it shows: {self.text[-800:]!r}")
            self._read(left)
        return self.text

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Read to the end of the output, wait for the exit status, close the terminal."""
        deadline = time.monotonic() + timeout
        try:
            while not self.ended and time.monotonic() < deadline:
                self._read(deadline - time.monotonic())
            return self.popen.wait(max(0.1, deadline - time.monotonic()))
        finally:
            self.close()

    def close(self) -> None:
        """End the child if it still runs, and release the terminal."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
