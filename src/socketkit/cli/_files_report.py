"""What ``put`` and ``get`` print when a file is done: one final line per file, and a
summary for a tree, on a terminal (above the progress bars, which vanish) and off one
alike.

    big.iso 64.0 MiB in 1.23 s (52.0 MiB/s), verified sha256
    big.iso 64.0 MiB in 0.41 s (58.5 MiB/s), verified sha256, resumed at 40.0 MiB
    3 files, 1.2 MiB in 0.31 s (3.9 MiB/s), 1 failed

The rate counts the bytes that crossed the network (after a resume, only the rest).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Report", "format_duration", "format_size", "report_unlisted"]

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_size(count: float) -> str:
    """Bytes as people read them: ``512 B``, ``1.5 KiB``, ``64.0 MiB`` (powers of 1024)."""
    if count < 1024:
        return f"{count:.0f} B"
    for unit in _UNITS:
        count /= 1024
        if count < 1024 or unit == _UNITS[-1]:
            break
    return f"{count:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``2 min 03 s``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _rate(count: int, seconds: float) -> str:
    return f"{format_size(count / max(seconds, 1e-6))}/s"


@dataclass
class Report:
    """The final lines of one ``put`` or ``get`` command.

    Args:
        write: prints one line (on stderr, or above the progress bars).
        quiet: print nothing (``socketkit -q``).
        clock: monotonic seconds.
    """

    write: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    quiet: bool = False
    clock: Callable[[], float] = time.monotonic
    files: int = 0
    size: int = 0
    transferred: int = 0
    started: float | None = None

    def start(self) -> float:
        """Mark a file's start; returns the time to pass to ``done``."""
        now = self.clock()
        if self.started is None:
            self.started = now
        return now

    def done(self, name: str, size: int, transferred: int, algorithm: str, since: float) -> None:
        """One file transferred and verified: its line (``name`` already escaped)."""
        seconds = self.clock() - since
        self.files += 1
        self.size += size
        self.transferred += transferred
        line = (
            f"{name} {format_size(size)} in {format_duration(seconds)} "
            f"({_rate(transferred, seconds)}), verified {algorithm}"
        )
        if size > transferred:
            line += f", resumed at {format_size(size - transferred)}"
        if not self.quiet:
            self.write(line)

    def summary(self, failures: int, *, always: bool) -> None:
        """The tree's line: files, bytes, time, rate, failures; printed when ``always``
        (``-r``) or when the command moved or tried more than one file."""
        if self.quiet or not (always or self.files + failures > 1):
            return
        seconds = 0.0 if self.started is None else self.clock() - self.started
        line = (
            f"{self.files} file{'' if self.files == 1 else 's'}, {format_size(self.size)} in "
            f"{format_duration(seconds)} ({_rate(self.transferred, seconds)})"
        )
        if failures:
            line += f", {failures} failed"
        self.write(line)


def report_unlisted(path: str, count: int) -> None:
    """One line on stderr when the server left names out of a listing."""
    if count:
        from socketkit.services.filexfer.protocol import safe_display  # noqa: PLC0415

        print(
            f"{safe_display(path or '.')}: {count} name(s) on the server cannot be shown (not UTF-8, or "
            "control, format or invisible characters) and were left out; they count in the quota, and "
            "rm -r of the directory holding them removes them",
            file=sys.stderr,
        )
