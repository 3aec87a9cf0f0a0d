"""The two log formats: readable lines (the default) and JSON, one object per line.

A JSON line carries ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``message``,
plus the fields a caller passes as ``extra={"fields": {...}}`` (the per-connection
line: service, peer, duration, bytes, reason), so a log pipeline needs no parsing of
the message. The message is already one line (``socketkit._log``); ``json.dumps``
escapes whatever else it holds.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Final

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "JsonFormatter", "formatter"]

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({key: value for key, value in fields.items() if key not in line})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(name: str) -> logging.Formatter:
    """The formatter of the format ``name`` (``text`` or ``json``)."""
    return JsonFormatter() if name == "json" else logging.Formatter(TEXT_FORMAT)
