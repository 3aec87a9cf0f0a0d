"""Quota accounting of the served root: what its entries cost on disk, plus what running
uploads reserved, in bytes and in entries.

What an entry costs (``entry_cost``) is what it takes on disk, counted in blocks as
``du`` and disk quotas count, never less than one block: a regular file its size
rounded up to ``BLOCK`` bytes, a directory what it has allocated (it grows with the
names it holds), a link, FIFO, socket or device one block. So an empty file or a
directory is not free: 2,000 directories with long names and 2,000 empty files cost
16 MB (they took 9.4 MB on ext4), not 0. Every entry also counts against
``max_entries``, which bounds the inodes the root can take whatever the sizes.

``Usage.total`` (bytes) and ``Usage.entries`` are, at every moment::

    the cost of every entry under the root, kept partials included, and their number
    + the cost of the declared size of every upload in progress (instead of what its
      partial holds yet), and its partial as one entry

An upload is admitted only if its whole declared size fits (``admit``), before its
partial is created or a byte of its body read, so parallel uploads cannot together
pass the quota: each one's room is reserved when it starts. When it ends
(``release``) the reservation becomes what it left on disk: the file moved into place,
a partial kept for a later ``--resume`` (what it holds, counted until it is resumed or
expires), or nothing (an empty or refused partial is deleted). Directories made and
entries replaced or deleted are accounted as they go (``admit_entry``, ``add``).

The store corrects both totals against the disk when it opens and every
``RECONCILE_INTERVAL_S`` (``reset``): files changed by someone else on the machine, a
directory grown by the names put in it, and the little drift of operations that ran
during a scan, do not accumulate.
"""

from __future__ import annotations

import os
import stat
import threading
from typing import Final

from socketkit.errors import ServiceError
from socketkit.fsjail import Jail
from socketkit.limits import DEFAULT_MAX_ENTRIES
from socketkit.services.filexfer.protocol import is_partial

__all__ = [
    "BLOCK",
    "DEFAULT_MAX_ENTRIES",
    "MIN_FREE_INODES",
    "PARTIAL_MAX_AGE_S",
    "RECONCILE_INTERVAL_S",
    "Usage",
    "check_free",
    "entry_cost",
    "file_cost",
    "scan",
]

RECONCILE_INTERVAL_S: Final = 600.0
"""Seconds between two scans of the root that reset the quota's total to the disk's (and
remove expired partials). A scan costs about a second of one core per 100,000 entries;
every ten minutes that is noise, and changes made behind the service's back (an
operator copying files in) are taken into account within ten minutes."""

PARTIAL_MAX_AGE_S: Final = 24 * 3600.0
"""An abandoned partial (not being written, last written this long ago) is removed by the
next scan (an empty one at once). A day covers a client resuming the next morning; until then it counts in the
quota, so abandoned uploads cannot fill the disk behind it."""

BLOCK: Final = 4096
"""Bytes of disk charged per block, and the least an entry costs: the default block of
ext4, XFS, btrfs and APFS, and the smallest allocation a directory takes on ext4. A
file system with smaller blocks is charged a little more than it spends, never less."""

MIN_FREE_INODES = 10_000
"""Inodes an upload or a mkdir leaves free on the root's file system at least (as
``min_free`` leaves bytes): the system's own programs (logs, temporary files, package
updates) need some, and a file system out of inodes refuses every new file, whatever
its free bytes. Ten thousand is a few days of a busy system's temporary files, and
1% of the inodes of a 160 GiB ext4. File systems that report no inode count (btrfs)
are not checked."""


def _blocks(size: int) -> int:
    return max(BLOCK, -(-size // BLOCK) * BLOCK)


def file_cost(size: int) -> int:
    """What a regular file of ``size`` bytes costs: its blocks, one at least."""
    return _blocks(size)


def entry_cost(st: os.stat_result) -> int:
    """What the entry ``st`` (an lstat) costs: see the module docstring."""
    if stat.S_ISREG(st.st_mode):
        return file_cost(st.st_size)
    if stat.S_ISDIR(st.st_mode):
        return _blocks(getattr(st, "st_blocks", 0) * 512)
    return BLOCK


class Usage:
    """The totals (see the module docstring) and the uploads in progress, behind one lock
    (worker threads of every connection call in).

    Args:
        quota: bytes allowed under the root (``None``: no quota, only bookkeeping).
        max_entries: entries allowed under the root (``None``: no limit).
    """

    def __init__(self, quota: int | None, max_entries: int | None = DEFAULT_MAX_ENTRIES) -> None:
        self.quota = quota
        self.max_entries = max_entries
        self.lock = threading.Lock()
        self.total = 0
        self.entries = 0
        self._active: dict[str, int | None] = {}  # partial's virtual path -> cost reserved

    def claim(self, key: str, what: str) -> None:
        """Mark the partial ``key`` as in use by a starting upload.

        Raises:
            ServiceError: another upload to the same target is running
                (code ``upload-in-progress``).
        """
        with self.lock:
            if key in self._active:
                raise ServiceError(f"an upload to {what} is already running", code="upload-in-progress")
            self._active[key] = None

    def _check(self, needed: int, new_entries: int) -> None:
        """Raises ``ServiceError`` (``quota-exceeded``) if it does not fit (lock held)."""
        if self.quota is not None and needed > 0 and self.total + needed > self.quota:
            raise ServiceError(
                f"over the quota of {self.quota} bytes ({self.total} in use or reserved, "
                f"{needed} more needed)",
                code="quota-exceeded",
            )
        if self.max_entries is not None and new_entries > 0 and self.entries + new_entries > self.max_entries:
            raise ServiceError(
                f"over the limit of {self.max_entries} files and directories under the root",
                code="quota-exceeded",
            )

    def admit(self, key: str, cost: int, already: int, *, new_entry: bool) -> None:
        """Reserve ``cost`` bytes for a claimed upload whose partial already costs
        ``already`` (counted in the total since the last scan); ``new_entry``: its
        partial does not exist yet (it will be one more entry).

        Raises:
            ServiceError: it does not fit in the quota or the entry limit (code
                ``quota-exceeded``).
        """
        with self.lock:
            self._check(cost - already, int(new_entry))
            self.total += cost - already
            self.entries += int(new_entry)
            self._active[key] = cost

    def release(self, key: str, kept: int, *, entries: int = 0) -> None:
        """An upload has ended and left ``kept`` bytes of cost on disk under ``key``'s
        name or its target's (``0`` if it was never admitted, or its partial was
        deleted); ``entries`` is the change in entries it made on the way out (``-1``
        when its partial was deleted, or replaced the target)."""
        with self.lock:
            cost = self._active.pop(key, None)
            if cost is not None:
                self.total = max(0, self.total - (cost - kept))
                self.entries = max(0, self.entries + entries)

    def admit_entry(self, cost: int = BLOCK) -> None:
        """Account one entry about to be made outside an upload (a directory).

        Raises:
            ServiceError: it does not fit (code ``quota-exceeded``).
        """
        with self.lock:
            self._check(cost, 1)
            self.total += cost
            self.entries += 1

    def add(self, delta: int, entries: int = 0) -> None:
        """Account bytes of cost (and entries) added (positive) or removed (negative)."""
        with self.lock:
            self.total = max(0, self.total + delta)
            self.entries = max(0, self.entries + entries)

    def is_active(self, key: str) -> bool:
        """Whether an upload is using the partial ``key`` (call with ``lock`` held when
        acting on the answer)."""
        return key in self._active

    def active_under(self, prefix: str) -> bool:
        """Whether an upload in progress has its partial under the directory ``prefix``."""
        with self.lock:
            return any(key.startswith(prefix + "/") for key in self._active)

    def reset(self, on_disk: int, entries: int) -> int:
        """Set the totals from a scan (``on_disk`` and ``entries``: every entry but the
        partials of uploads in progress); return how far the old byte total was off."""
        with self.lock:
            admitted = [cost for cost in self._active.values() if cost is not None]
            total = on_disk + sum(admitted)
            drift, self.total = total - self.total, total
            self.entries = entries + len(admitted)
        return drift


def check_free(dir_fd: int, size: int, *, min_free: int, min_free_inodes: int) -> None:
    """Refuse a new entry of ``size`` bytes that would leave the file system of
    ``dir_fd`` less than ``min_free`` bytes or ``min_free_inodes`` inodes free.

    Raises:
        ServiceError: not enough room (code ``disk-full``).
    """
    vfs = os.fstatvfs(dir_fd)
    free = vfs.f_bavail * vfs.f_frsize
    if size + min_free > free:
        raise ServiceError(f"not enough free disk: {free} bytes free, {size} needed", code="disk-full")
    if vfs.f_files and vfs.f_favail <= min_free_inodes:
        raise ServiceError(
            f"not enough free inodes on the server's disk ({vfs.f_favail} free)", code="disk-full"
        )


def scan(jail: Jail, usage: Usage, now: float) -> tuple[int, int]:
    """Measure every entry under the jail's root and ``usage.reset`` the totals to it,
    removing on the way the partials not written for ``PARTIAL_MAX_AGE_S`` and the
    empty ones (nothing to resume: a server killed between creating a partial and
    writing to it leaves one); those of uploads in progress are counted by their
    reservation, and left alone. Returns
    ``(partials removed, how far the byte total was off)``.

    Raises:
        OSError: the root cannot be listed.
    """
    total = entries = removed = 0
    for directory, fd, found in jail.walk([]):
        for name, st in found:
            if stat.S_ISREG(st.st_mode) and is_partial(name):
                key = "/".join([*directory, name])
                with usage.lock:  # so that no upload claims it while it goes
                    if usage.is_active(key):
                        continue
                    if st.st_size == 0 or now - st.st_mtime > PARTIAL_MAX_AGE_S:
                        try:
                            os.unlink(name, dir_fd=fd)
                        except FileNotFoundError:
                            continue
                        removed += 1
                        continue
            total += entry_cost(st)
            entries += 1
    return removed, usage.reset(total, entries)
