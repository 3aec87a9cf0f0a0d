"""Quota accounting of the served root: what is on disk plus what running uploads reserved.

``Usage.total`` is, at every moment::

    the bytes of every regular file under the root, kept partials included
    + the declared size of every upload in progress (instead of its partial's bytes)

An upload is admitted only if its whole declared size fits (``admit``), before a byte of
its body is read, so parallel uploads cannot together pass the quota: each one's room
is reserved when it starts. When it ends (``release``) the reservation becomes what it
left on disk: the file moved into place (its size), a partial kept for a later
``--resume`` (the bytes written, counted until it is resumed or expires), or nothing
(a checksum mismatch deletes it). Files replaced or deleted are subtracted as they go.

The store corrects the total against the disk when it opens and every
``RECONCILE_INTERVAL_S`` (``reset``): files changed by someone else on the machine,
and the little drift of operations that ran during a scan, do not accumulate.
"""

from __future__ import annotations

import threading
from typing import Final

from socketkit.errors import ServiceError

__all__ = ["PARTIAL_MAX_AGE_S", "RECONCILE_INTERVAL_S", "Usage"]

RECONCILE_INTERVAL_S: Final = 600.0
"""Seconds between two scans of the root that reset the quota's total to the disk's (and
remove expired partials). A scan costs about a second of one core per 100,000 entries;
every ten minutes that is noise, and changes made behind the service's back (an
operator copying files in) are taken into account within ten minutes."""

PARTIAL_MAX_AGE_S: Final = 24 * 3600.0
"""An abandoned partial (not being written, last written this long ago) is removed by the
next scan. A day covers a client resuming the next morning; until then it counts in the
quota, so abandoned uploads cannot fill the disk behind it."""


class Usage:
    """The total (see the module docstring) and the uploads in progress, behind one lock
    (worker threads of every connection call in).

    Args:
        quota: bytes allowed under the root (``None``: no quota, only bookkeeping).
    """

    def __init__(self, quota: int | None) -> None:
        self.quota = quota
        self.lock = threading.Lock()
        self.total = 0
        self._active: dict[str, int | None] = {}  # partial's virtual path -> declared size

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

    def admit(self, key: str, size: int, already: int) -> None:
        """Reserve room for a claimed upload of ``size`` bytes whose partial already
        holds ``already`` bytes (counted in the total since the last scan).

        Raises:
            ServiceError: it does not fit in the quota (code ``quota-exceeded``).
        """
        with self.lock:
            needed = size - already
            if self.quota is not None and needed > 0 and self.total + needed > self.quota:
                raise ServiceError(
                    f"over the quota of {self.quota} bytes ({self.total} in use or reserved, "
                    f"{needed} more needed)",
                    code="quota-exceeded",
                )
            self.total += needed
            self._active[key] = size

    def release(self, key: str, kept: int) -> None:
        """An upload has ended and left ``kept`` bytes on disk under ``key``'s name or its
        target's (``0`` if it was never admitted, or its partial was deleted)."""
        with self.lock:
            size = self._active.pop(key, None)
            if size is not None:
                self.total = max(0, self.total - (size - kept))

    def add(self, delta: int) -> None:
        """Account bytes written (positive) or removed (negative) under the root."""
        with self.lock:
            self.total = max(0, self.total + delta)

    def is_active(self, key: str) -> bool:
        """Whether an upload is using the partial ``key`` (call with ``lock`` held when
        acting on the answer)."""
        return key in self._active

    def active_under(self, prefix: str) -> bool:
        """Whether an upload in progress has its partial under the directory ``prefix``."""
        with self.lock:
            return any(key.startswith(prefix + "/") for key in self._active)

    def reset(self, on_disk: int) -> int:
        """Set the total from a scan (``on_disk``: every regular file but the partials of
        uploads in progress); return how far the old total was off."""
        with self.lock:
            total = on_disk + sum(size or 0 for size in self._active.values())
            drift, self.total = total - self.total, total
        return drift
