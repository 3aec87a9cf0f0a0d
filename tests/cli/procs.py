"""Driving ``socketkit`` commands as subprocesses: line-by-line output with deadlines."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO

from tests.helpers import TIMEOUT


class Proc:
    """A ``python -m socketkit ...`` child whose stdout and stderr lines can be awaited."""

    def __init__(
        self,
        *args: str,
        stdin: bool = True,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "SOCKETKIT_UVLOOP": os.environ.get("SOCKETKIT_UVLOOP", "1"),
            **(env or {}),
        }
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "socketkit", *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        self.lines: dict[str, queue.Queue[str | None]] = {
            "out": queue.Queue(),
            "err": queue.Queue(),
        }
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, "out"), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, "err"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[bytes] | None, name: str) -> None:
        assert stream is not None
        for raw in stream:
            self.lines[name].put(raw.decode("utf-8", errors="replace").rstrip("\n"))
        self.lines[name].put(None)

    def expect(self, pattern: str, stream: str = "out", timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait for a line matching ``pattern`` (regex search); fail with what was seen."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines[stream].get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; seen: {self._tail(stream)}") from None
            if line is None:
                self.lines[stream].put(None)
                raise AssertionError(f"{stream} ended before {pattern!r}; seen: {self._tail(stream)}")
            self.seen[stream].append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def _tail(self, stream: str) -> list[str]:
        """The last lines seen, shortened: enough to debug, never a flood."""
        return [
            line if len(line) < 160 else line[:150] + f"...({len(line)})" for line in self.seen[stream][-12:]
        ]

    def write(self, data: bytes) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = self.popen.wait(timeout)
        self._join()
        return code

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self) -> None:
        """End the child (SIGTERM, then SIGKILL) and release its pipes."""
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._join()

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(TIMEOUT)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
