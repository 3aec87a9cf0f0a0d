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
import re

from socketkit._text import escape_controls

__all__ = ["escape_controls", "get_logger"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _EscapeControls(logging.Filter):
    """Render the message once, escaped; the record then carries no arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _CONTROL.search(message):
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
