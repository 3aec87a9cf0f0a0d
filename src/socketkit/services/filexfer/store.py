"""The served directory: the file service's operations, every one beneath the root's fd.

- A client path becomes checked components (``protocol.request_parts``: no escape, no
  unsafe or reserved name, ``..`` applied), which ``socketkit.fsjail.Jail`` resolves
  beneath the root's directory fd without following any symlink. Nothing is checked by
  name and then opened by name.
- Only regular files and directories are served. A FIFO, a device or a socket is
  listed as ``other`` and refused (``not-a-file``) by every operation that would open
  it; every open is non-blocking and the type is checked on the open fd, so no worker
  thread ever waits on one (and neither does the server's shutdown).
- Partial files (``.NAME.part``) are invisible: skipped in listings, refused as names.
- Uploads: ``upload.Upload``. Quota: ``quota.Usage``, reconciled with the disk when the
  store opens and on the server's timer (``reconcile``), which also removes partials
  abandoned for ``PARTIAL_MAX_AGE_S``.
- SHA-256s and the audit log: ``records.Records``.

Blocking: call through ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from socketkit._log import get_logger
from socketkit.errors import PathOutsideRoot, PermissionDenied, ServiceError
from socketkit.fsjail import FILE_FLAGS, Jail
from socketkit.services.filexfer.protocol import Entry, is_partial, request_parts
from socketkit.services.filexfer.quota import PARTIAL_MAX_AGE_S, Usage
from socketkit.services.filexfer.records import Records
from socketkit.services.filexfer.upload import HASH_CHUNK, Upload
from socketkit.state import StateDB

__all__ = ["Download", "FileStore", "StoreLimits", "Upload"]

logger = get_logger(__name__)


FILE_MODE = 0o644
"""Mode of an uploaded file once it is in place (its partial is 0600 until then): the
served tree is content, not state, and what others may read of it is the served
directory's own mode (``serve all`` keeps its root inside the 0700 state directory).
0644 is what scp, rsync and FTP servers give a new file under the usual umask."""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Size limits of the store."""

    max_file_size: int = 1 << 40
    quota: int | None = None  # bytes under the root: files, kept partials, running uploads
    min_free: int = 64 * 1024 * 1024  # keep this much disk free
    read_only: bool = False
    file_mode: int = FILE_MODE
    owner: tuple[int, int] | None = None  # (uid, gid) given every file and directory made


@dataclass(frozen=True, slots=True)
class Download:
    """An open regular file to send from ``offset``."""

    fd: int
    path: str
    size: int
    sha256: str
    mtime: float
    offset: int


def _hidden(name: str) -> bool:
    """Left out of listings: partials, and names no client could send back (not UTF-8
    on disk: JSON cannot carry them)."""
    if is_partial(name):
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def _require_regular(st: os.stat_result, path: str) -> None:
    """Raises the error for anything but a regular file."""
    if stat.S_ISDIR(st.st_mode):
        raise ServiceError(f"{path or '.'} is a directory (use -r)", code="is-a-directory")
    if stat.S_ISLNK(st.st_mode):
        raise PathOutsideRoot(f"{path} is a symbolic link (links are not followed)")
    if not stat.S_ISREG(st.st_mode):
        raise ServiceError(f"{path} is not a regular file (a FIFO, device or socket)", code="not-a-file")


class FileStore:
    """Operations on the served root (blocking: call through ``asyncio.to_thread``).

    Args:
        root: the served directory.
        db: the state database (hash cache, audit log), or ``None``.
        limits: sizes, quota, read-only.
        use_openat2: see ``socketkit.fsjail.Jail``.
        clock: wall-clock time, for the age of partials.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """

    def __init__(
        self,
        root: str,
        db: StateDB | None,
        limits: StoreLimits = StoreLimits(),
        *,
        use_openat2: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"root {root!r} is not a directory")
        self.jail = Jail(self.root, use_openat2=use_openat2)
        self.db = db
        self.limits = limits
        self.clock = clock
        self.usage = Usage(limits.quota)
        self.reconciled = threading.Event()  # set after each reconcile (tests, status)
        self._measured = False
        try:
            self.records = Records(db)
            self.reconcile()
        except BaseException:
            self.jail.close()
            raise

    def close(self) -> None:
        """Release the root's fd (uploads in progress must have ended)."""
        self.jail.close()

    def __enter__(self) -> FileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the quota -----------------------------------------------------------------------

    def reconcile(self) -> None:
        """Measure the root for the quota, and remove expired partials (see ``quota``).

        Raises:
            OSError: the root cannot be listed.
        """
        now = self.clock()
        total = removed = 0
        for directory, fd, entries in self.jail.walk([]):
            for name, st in entries:
                if not stat.S_ISREG(st.st_mode):
                    continue
                if is_partial(name):
                    key = "/".join([*directory, name])
                    with self.usage.lock:  # so that no upload claims it while it goes
                        if self.usage.is_active(key):
                            continue  # counted by its declared size
                        if now - st.st_mtime > PARTIAL_MAX_AGE_S:
                            try:
                                os.unlink(name, dir_fd=fd)
                            except FileNotFoundError:
                                continue
                            removed += 1
                            continue
                total += st.st_size
        drift = self.usage.reset(total)
        first, self._measured = not self._measured, True
        if removed or (drift and not first):
            logger.info(
                "files: usage %d bytes (off by %d); removed %d partial(s) older than %.0f h",
                self.usage.total,
                drift,
                removed,
                PARTIAL_MAX_AGE_S / 3600,
            )
        self.reconciled.set()

    # --- uploads ---------------------------------------------------------------------------

    def begin_put(self, path: str, size: int, sha256: str | None, *, force: bool, resume: bool) -> Upload:
        """Check limits and open (or reopen, to resume) the partial file.

        Raises:
            PermissionDenied: read-only store, or a bad path.
            PathOutsideRoot: the path leaves the root.
            ServiceError: too large, over quota, disk full, exists, busy, not a directory.
            OSError: the directory cannot be resolved (mapped by the server).
        """
        if self.limits.read_only:
            raise PermissionDenied("this server is read-only")
        parts = request_parts(path)
        if not parts:
            raise ServiceError("name a file to upload", code="bad-request")
        if size > self.limits.max_file_size:
            raise ServiceError(
                f"{size} bytes is over the {self.limits.max_file_size}-byte file limit", code="too-large"
            )
        return Upload.open(self, parts, size, sha256, force=force, resume=resume)

    # --- downloads -------------------------------------------------------------------------

    def _open_regular(self, parts: list[str], path: str) -> tuple[int, os.stat_result]:
        """A regular file, opened read-only beneath the root; its type is checked before
        (so a device is not even opened) and again on the fd (what was opened)."""
        _require_regular(self.jail.lstat(parts), path)
        fd = self.jail.open(parts, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            _require_regular(st, path)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def open_get(self, path: str, offset: int, prefix_sha256: str | None) -> Download:
        """Open a regular file for sending, checking a resume prefix first.

        Raises:
            ServiceError: not a file, or the prefix differs (``resume-mismatch``).
            OSError: not found, a symlink on the way... (mapped by the server).
        """
        parts = request_parts(path)
        fd, st = self._open_regular(parts, path)
        try:
            if offset > st.st_size:
                raise ServiceError("resume offset is past the end of the file", code="resume-mismatch")
            if offset:
                digest = hashlib.sha256()
                position = 0
                while position < offset:
                    chunk = os.pread(fd, min(HASH_CHUNK, offset - position), position)
                    if not chunk:
                        break
                    digest.update(chunk)
                    position += len(chunk)
                if digest.hexdigest() != prefix_sha256:
                    raise ServiceError(
                        "the part already downloaded differs from the file: start again",
                        code="resume-mismatch",
                    )
            sha = self._hash(parts, fd, st)
        except BaseException:
            os.close(fd)
            raise
        return Download(fd, "/".join(parts), st.st_size, sha, st.st_mtime, offset)

    def _hash(self, parts: list[str], fd: int, st: os.stat_result) -> str:
        """The file's SHA-256: from the cache when size, mtime and inode still match."""
        key = "/".join(parts)
        cached = self.records.cached_hash(key, st)
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        position = 0
        while chunk := os.pread(fd, HASH_CHUNK, position):
            digest.update(chunk)
            position += len(chunk)
        sha = digest.hexdigest()
        self.records.store_hash(key, st, sha)
        return sha

    # --- listing ---------------------------------------------------------------------------

    def _entry(
        self, parts: list[str], st: os.stat_result, with_hash: bool, dir_fd: int | None = None
    ) -> Entry:
        """Describe one entry (``dir_fd``: its directory, open, when walking)."""
        kind = _kind(st)
        sha = None
        if with_hash and kind == "file":
            if dir_fd is None:
                fd = self.jail.open(parts, os.O_RDONLY)
            else:
                fd = os.open(parts[-1], os.O_RDONLY | FILE_FLAGS, dir_fd=dir_fd)
            try:
                opened = os.fstat(fd)
                if stat.S_ISREG(opened.st_mode):  # it may have been replaced meanwhile
                    sha = self._hash(parts, fd, opened)
            finally:
                os.close(fd)
        size = st.st_size if kind == "file" else 0
        return Entry("/".join(parts) or ".", kind, size, round(st.st_mtime, 3), sha)

    def stat(self, path: str, *, with_hash: bool) -> Entry:
        """One entry (a symlink described, not followed).

        Raises:
            OSError: not found... (mapped by the server).
        """
        parts = request_parts(path)
        return self._entry(parts, self.jail.lstat(parts), with_hash)

    def walk(self, path: str, *, recursive: bool, with_hash: bool) -> Generator[Entry, None, None]:
        """Entries under a directory (or the one entry of anything else), hidden names
        left out, symlinks listed and never entered.

        Raises:
            OSError: not found... (mapped by the server).
        """
        parts = request_parts(path)
        st = self.jail.lstat(parts)
        if not stat.S_ISDIR(st.st_mode):
            yield self._entry(parts, st, with_hash)
            return
        for directory, fd, entries in self.jail.walk(parts, skip=_hidden):
            for name, child in entries:
                yield self._entry([*directory, name], child, with_hash, dir_fd=fd)
            if not recursive:
                return

    # --- changes ---------------------------------------------------------------------------

    def delete(self, path: str, *, recursive: bool) -> str:
        """Remove a file, a symlink (never its target), an empty directory, or
        (``recursive``) a tree, walked without following anything swapped into it.

        Raises:
            PermissionDenied: read-only, or deleting the root itself.
            ServiceError: a non-empty directory without ``recursive``, or an upload
                into the tree is running.
            OSError: not found... (mapped by the server).
        """
        if self.limits.read_only:
            raise PermissionDenied("this server is read-only")
        parts = request_parts(path)
        if not parts:
            raise PermissionDenied("the root itself cannot be deleted")
        virtual = "/".join(parts)
        with self.jail.parent(parts) as (dir_fd, name):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=dir_fd)
                self.usage.add(-st.st_size if stat.S_ISREG(st.st_mode) else 0)
            elif recursive:
                try:
                    self.jail.remove_tree(parts, keep=self._in_use, on_unlink=lambda n: self.usage.add(-n))
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and self.usage.active_under(virtual):
                        raise ServiceError(
                            f"{virtual}: an upload into it is still running", code="upload-in-progress"
                        ) from None
                    raise
            else:
                self._rmdir(dir_fd, name, parts)
            os.fsync(dir_fd)
        return virtual

    def _in_use(self, parts: list[str]) -> bool:
        return is_partial(parts[-1]) and self.usage.is_active("/".join(parts))

    def _rmdir(self, dir_fd: int, name: str, parts: list[str]) -> None:
        """rmdir; a directory that only holds abandoned partials counts as empty (the
        client cannot see them, so it could never empty it)."""
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        else:
            return
        fd = self.jail.open_dir(parts)
        try:
            with os.scandir(fd) as entries:
                names = [(e.name, e.is_file(follow_symlinks=False)) for e in entries]
            if not names or not all(is_file and is_partial(n) for n, is_file in names):
                raise ServiceError(
                    f"{'/'.join(parts)} is a directory that is not empty (use -r)", code="not-empty"
                )
            freed = 0
            with self.usage.lock:  # no upload may claim one of them meanwhile
                if any(self.usage.is_active("/".join([*parts, n])) for n, _ in names):
                    raise ServiceError(
                        f"{'/'.join(parts)}: an upload into it is still running", code="upload-in-progress"
                    )
                for partial, _ in names:
                    freed += os.stat(partial, dir_fd=fd, follow_symlinks=False).st_size
                    os.unlink(partial, dir_fd=fd)
            self.usage.add(-freed)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)

    def mkdir(self, path: str, *, parents: bool) -> str:
        """Create a directory (``parents``: and the missing ones above it).

        Raises:
            PermissionDenied: read-only.
            ServiceError: exists (as anything but a directory, or at all without
                ``parents``), a missing parent, or a parent that is a file.
            OSError: a symlink on the way... (mapped by the server).
        """
        if self.limits.read_only:
            raise PermissionDenied("this server is read-only")
        parts = request_parts(path)
        if not parts:
            if parents:
                return "."
            raise ServiceError(". exists", code="exists")
        try:
            self.jail.mkdir(parts, parents=parents, owner=self.limits.owner)
        except FileExistsError:
            raise ServiceError(f"{path} exists", code="exists") from None
        except FileNotFoundError:
            raise ServiceError(f"the parent of {path} does not exist", code="not-found") from None
        except NotADirectoryError:
            raise ServiceError(f"a parent of {path} is a file", code="not-a-directory") from None
        return "/".join(parts)

    def audit(
        self,
        peer: str,
        op: str,
        path: str,
        outcome: str,
        *,
        size: int | None = None,
        sha256: str | None = None,
        transferred: int | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """One row of the audit log (``records.Records.audit``)."""
        self.records.audit(
            peer,
            op,
            path,
            outcome,
            size=size,
            sha256=sha256,
            transferred=transferred,
            duration_ms=duration_ms,
        )
