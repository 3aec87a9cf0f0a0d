"""Standard streams that may be closed (``socketkit send ADDR <&-``, ``exec ... >&-``).

Python sets ``sys.stdin`` (or stdout, stderr) to ``None`` when its descriptor is closed
at start, and the first ``sys.stdin.buffer`` is an AttributeError; worse, the next socket
opened gets that descriptor's number, so ``print`` would write into a connection and
libuv aborts the process when it closes a descriptor below 3. Every command starts by
putting ``/dev/null`` on a closed 0, 1 or 2: a closed input reads as empty, a closed
output discards (as it does for other tools run that way).
"""

from __future__ import annotations

import os
import sys

__all__ = ["fill_closed_standard_streams"]


def fill_closed_standard_streams() -> None:
    """Open ``/dev/null`` on each closed descriptor 0-2 and give Python streams for it."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: ``fd`` itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            # Kept open for the life of the process, as Python's own streams are.
            stream = open(fd, mode, closefd=False, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
            setattr(sys, name, stream)
