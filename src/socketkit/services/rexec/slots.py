"""How many exec commands run at once, counted across ``--workers`` processes.

One process counts in memory. Workers forked from the process that made the slots
(``shared=True``) share an unlinked file: a running command holds an exclusive
``fcntl`` lock on one byte of it, byte N being slot N. Taking a slot tries the bytes
with ``F_SETLK`` (never waits), so the cap is the service's total whichever worker the
kernel gave the connection; the kernel drops the locks of a worker that dies, so a
crash never leaks slots. Record locks belong to a process, not to an fd: a worker
remembers the slots it holds itself, since locking a byte it already holds succeeds.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile

__all__ = ["CommandSlots"]


class CommandSlots:
    """At most ``total`` commands at once (see the module docstring)."""

    def __init__(self, total: int, *, shared: bool = False) -> None:
        self.total = total
        self._held: set[int] = set()
        self._fd: int | None = None
        if shared:
            self._fd, path = tempfile.mkstemp(prefix="socketkit-exec-slots-")
            os.unlink(path)  # the workers share the open file; nothing is left behind

    @property
    def held(self) -> int:
        """Slots this process holds (its running commands)."""
        return len(self._held)

    def acquire(self) -> int | None:
        """Take a free slot and return its number; ``None`` when all are taken."""
        for slot in range(self.total):
            if slot in self._held:
                continue
            if self._fd is not None:
                try:
                    fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EACCES):
                        continue  # another worker runs a command in it
                    raise
            self._held.add(slot)
            return slot
        return None

    def release(self, slot: int) -> None:
        """Give back a slot taken by ``acquire``."""
        self._held.discard(slot)
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slot)

    def close(self) -> None:
        """Close the shared file (this process's locks go with it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
