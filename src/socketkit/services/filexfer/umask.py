"""The process's umask, read without changing it (both sides of a transfer mask the
permission bits they receive with it: ``protocol.masked_mode``).

``os.umask`` can only be read by setting it, and between the two calls every file any
other thread creates gets the temporary value; Linux shows the umask in
``/proc/self/status`` (since 4.7), which is read instead. Where that is missing the
set-and-restore is done once, at import, before the program has started threads of its
own, and remembered.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["process_umask"]

_STATUS: Final = "/proc/self/status"


def _from_proc() -> int | None:
    try:
        with open(_STATUS, encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        return None
    return None


def _set_and_restore() -> int:
    current = os.umask(0o077)
    os.umask(current)
    return current


_AT_IMPORT: Final = _from_proc()
_FALLBACK: Final = _set_and_restore() if _AT_IMPORT is None else _AT_IMPORT


def process_umask() -> int:
    """The umask now (``/proc``), or as it was at import where ``/proc`` cannot tell."""
    now = _from_proc()
    return _FALLBACK if now is None else now
