"""socketkit's loggers: every log line is one line, whatever a peer put in it.

Log messages quote what peers send (paths, argv, nicks, addresses). A newline in a path
would start a forged log line, and terminal escapes would rewrite the operator's screen.
Every module takes its logger from ``get_logger``, which escapes control characters
(C0 and C1, DEL) in the rendered message as ``\\xNN`` before any handler sees it, so
the rule holds for the library's users too, whatever handlers they configure.
Tracebacks are left alone: they are ours, not the peer's.
"""

from __future__ import annotations

import logging
import threading
import time

from socketkit._text import CONTROL, escape_controls

__all__ = ["LOG_SAMPLE_WINDOW_S", "REFUSALS", "EventSampler", "escape_controls", "get_logger", "sampled"]


class _EscapeControls(logging.Filter):
    """Render the message once, escaped; the record then carries no arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if CONTROL.search(message):
            message = escape_controls(message)
        record.msg, record.args = message, None
        return True


_FILTER = _EscapeControls()


def get_logger(name: str) -> logging.Logger:
    """The logger for module ``name``, with control characters escaped in its messages."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


LOG_SAMPLE_WINDOW_S = 60.0
"""Repeated events of one kind (refusals, timeouts) are logged the 1st, 2nd, 4th, 8th...
time within this window, then the count starts again: a flood of 56,000 refusals in 20 s
costs a few lines a minute, and an event that comes back tomorrow is logged again."""


class EventSampler:
    """Counts events by kind within a window, for logs that a peer can make repeat."""

    def __init__(self, window_s: float = LOG_SAMPLE_WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def count(self, kind: str) -> int:
        """Count one event of ``kind``; return how many there were in this window."""
        now = time.monotonic()
        with self._lock:
            started, count = self._counts.get(kind, (now, 0))
            if now - started > self.window_s:
                started, count = now, 0
            count += 1
            self._counts[kind] = (started, count)
            return count


REFUSALS = EventSampler()
"""The sampler of refusals and timeouts (keyed by service and kind, never by peer)."""


def sampled(count: int) -> bool:
    """Whether the ``count``-th event of a window is logged (1, 2, 4, 8...)."""
    return count & (count - 1) == 0
