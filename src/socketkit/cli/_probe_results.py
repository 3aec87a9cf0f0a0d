"""What ``socketkit probe`` concludes and prints, as pure code: the state an errno means,
how many connects may be in flight, and the table and summary lines.

No sockets and no clock here (the probing itself is in cli/probe.py): durations come in
already measured.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "OPEN_FILES_RESERVE",
    "STATES",
    "ProbeResult",
    "format_ms",
    "in_flight_limit",
    "outcome",
    "render",
    "summary",
]

OPEN_FILES_RESERVE: Final = 32
"""Descriptors a probe keeps free under the open-file limit for everything that is not a
probing socket: stdio, the selector's epoll fd, the resolver's sockets, the interpreter's
own files. A few are enough; 32 leaves room without costing concurrency."""

STATES: Final = ("open", "closed", "timeout", "error")
"""Every state, in the order the summary counts them."""

_COLOUR: Final = {"open": "32", "closed": "31", "timeout": "33", "error": "35"}
"""ANSI colours of the states on a terminal: green, red, yellow, magenta."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome for one port.

    Attributes:
        port: the port probed.
        state: ``open`` | ``closed`` | ``timeout`` | ``error``.
        errno: what ``connect_ex`` returned (0 when open, ETIMEDOUT on timeout).
        reason: ``accepted``, ``no answer`` or the errno's name.
        ms: from the start of this port's connect to its outcome, in milliseconds.
    """

    port: int
    state: str
    errno: int
    reason: str
    ms: float


def outcome(code: int) -> tuple[str, str]:
    """The ``(state, reason)`` a finished connect's errno means (0: accepted)."""
    if code == 0:
        return "open", "accepted"
    if code == errno.ECONNREFUSED:
        return "closed", "ECONNREFUSED"
    if code == errno.ETIMEDOUT:
        return "timeout", "no answer"
    return "error", errno.errorcode.get(code, f"errno {code}")


def in_flight_limit(concurrency: int, open_files: int | None) -> int:
    """How many connects may be outstanding at once: ``concurrency``, but never more
    than the open-file limit (``None``: none known) leaves after OPEN_FILES_RESERVE;
    at least 1."""
    if open_files is None:
        return max(1, concurrency)
    return max(1, min(concurrency, open_files - OPEN_FILES_RESERVE))


def summary(host: str, results: Sequence[ProbeResult]) -> str:
    """The last line: ``1 open, 30 closed``, or ``no open ports among 31 probed on
    HOST (31 closed)`` when none is open."""
    counts = [(state, sum(r.state == state for r in results)) for state in STATES]
    parts = ", ".join(f"{n} {state}" for state, n in counts if n)
    if not any(r.state == "open" for r in results):
        return f"no open ports among {len(results)} probed on {host}" + (f" ({parts})" if parts else "")
    return parts


def format_ms(ms: float) -> str:
    """Milliseconds for the table: microsecond resolution below 1 ms (a loopback refusal
    takes tens of microseconds), tenths above."""
    return f"{ms:.3f}" if ms < 1 else f"{ms:.1f}"


def render(host: str, results: Sequence[ProbeResult], *, show_all: bool, colour: bool = False) -> list[str]:
    """The lines ``probe`` prints: a table of the ports shown (every port with
    ``show_all``, else the open ones), then the summary. No table when no port is shown:
    the summary alone says what was found."""
    shown = [r for r in results if show_all or r.state == "open"]
    lines: list[str] = []
    if shown:
        rows = [("port", "state", "ms", "why")]
        rows += [(str(r.port), r.state, format_ms(r.ms), r.reason) for r in shown]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines.append(f"{host}: {len(results)} port(s)")
        for index, (port, state, ms, why) in enumerate(rows):
            cell = state.ljust(widths[1])
            if colour and index:
                cell = f"\x1b[{_COLOUR[state]}m{state}\x1b[0m" + " " * (widths[1] - len(state))
            lines.append(f"{port.rjust(widths[0])}  {cell}  {ms.rjust(widths[2])}  {why}".rstrip())
    lines.append(summary(host, results))
    return lines
