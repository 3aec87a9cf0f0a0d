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
- Names on disk that a client could not send back (``unshowable``: not UTF-8, or a
  character ``socketkit.paths`` refuses) are left out of listings too, and counted
  (``Unlisted``) so that the server can say so; they count in the quota like anything
  else, and ``rm -r`` of their directory removes them.
- Uploads: ``upload.Upload``. Quota: ``quota.Usage`` (bytes of disk and entries),
  reconciled with the disk when the store opens and on the server's timer
  (``reconcile``), which also removes partials abandoned for ``PARTIAL_MAX_AGE_S``;
  every entry made (an upload's partial, a directory) is admitted first, so one the
  quota refuses is never made.
- SHA-256s and the audit log: ``records.Records``.

Blocking: call through ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from socketkit._log import get_logger
from socketkit.errors import PathOutsideRoot, PermissionDenied, ServiceError
from socketkit.fsjail import FILE_FLAGS, Jail
from socketkit.paths import display_name, misleading, unsafe_character
from socketkit.services.filexfer.protocol import (
    PERMISSION_BITS,
    Entry,
    is_partial,
    masked_mode,
    request_parts,
)
from socketkit.services.filexfer.quota import (
    BLOCK,
    DEFAULT_MAX_ENTRIES,
    MIN_FREE_INODES,
    PARTIAL_MAX_AGE_S,
    Usage,
    check_free,
    entry_cost,
    scan,
)
from socketkit.services.filexfer.records import Records
from socketkit.services.filexfer.umask import process_umask
from socketkit.services.filexfer.upload import Upload, hash_prefix
from socketkit.state import StateDB

__all__ = ["Download", "FileStore", "StoreLimits", "Upload"]

logger = get_logger(__name__)


OWNER_READ = 0o400
"""Always given to a stored file, whatever mode the client sent: the server must be able
to read what it stores to serve it (and hash it)."""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Size limits of the store."""

    max_file_size: int = 1 << 40
    quota: int | None = None  # bytes under the root (``quota.entry_cost`` of every entry, running uploads)
    max_entries: int | None = DEFAULT_MAX_ENTRIES  # files, directories, links under the root
    min_free: int = 64 * 1024 * 1024  # keep this much disk free
    min_free_inodes: int = MIN_FREE_INODES
    read_only: bool = False
    # Masks the permission bits a client sends with a file (``protocol.masked_mode``);
    # None: the server process's umask when the store opens.
    umask: int | None = None
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
    mode: int  # its permission bits (``protocol.PERMISSION_BITS``), sent to the client


def unshowable(name: str) -> bool:
    """A name on disk that no client may see or send back: not UTF-8 (JSON cannot carry
    it), holding a character the name rule refuses, or looking like something it is not
    (blank, dots, a path: ``socketkit.paths.misleading``): put there by someone on the
    machine, or by an older version."""
    return unsafe_character(name) is not None or misleading(name) is not None


@dataclass(slots=True)
class Unlisted:
    """Entries a listing left out because ``unshowable`` names them (partials are not
    counted: they are the protocol's own); the server reports them."""

    count: int = 0
    example: str = ""  # the first one's path, escaped for a log line


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
        self.umask = process_umask() if limits.umask is None else limits.umask & 0o777
        self.clock = clock
        self.usage = Usage(limits.quota, limits.max_entries)
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
        removed, drift = scan(self.jail, self.usage, self.clock())
        self.records.prune()
        first, self._measured = not self._measured, True
        if removed or (drift and not first):
            logger.info(
                "files: usage %d bytes in %d entries (off by %d); removed %d partial(s) older than %.0f h",
                self.usage.total,
                self.usage.entries,
                drift,
                removed,
                PARTIAL_MAX_AGE_S / 3600,
            )
        self.reconciled.set()

    def check_free(self, dir_fd: int, size: int) -> None:
        """``quota.check_free`` with the store's limits.

        Raises:
            ServiceError: not enough room (code ``disk-full``).
        """
        check_free(dir_fd, size, min_free=self.limits.min_free, min_free_inodes=self.limits.min_free_inodes)

    def _admit_directory(self) -> Callable[[], None]:
        """``Jail.mkdir``'s ``admit``: room on the disk and in the quota for one more
        directory, and the refund if it is not made."""
        self.check_free(self.jail.fd, BLOCK)
        self.usage.admit_entry(BLOCK)
        return lambda: self.usage.add(-BLOCK, entries=-1)

    # --- uploads ---------------------------------------------------------------------------

    def stored_mode(self, mode: int | None) -> int:
        """The permission bits of an uploaded file whose source had ``mode`` (``None``:
        not declared): ``protocol.masked_mode`` with the store's umask, plus
        ``OWNER_READ``."""
        return masked_mode(mode, self.umask) | OWNER_READ

    def begin_put(
        self, path: str, size: int, sha256: str | None, *, force: bool, resume: bool, mode: int | None = None
    ) -> Upload:
        """Check limits and open (or reopen, to resume) the partial file; ``mode``: the
        source's permission bits (``stored_mode`` gives the file its own at the end).

        Raises:
            PermissionDenied: read-only store, or a bad path.
            PathOutsideRoot: the path leaves the root.
            ServiceError: too large, over quota, disk full, exists, busy, not a
                directory, or an interrupted upload to it holds bytes and neither
                ``resume`` nor ``force`` was given (``resumable``).
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
        return Upload.open(self, parts, size, sha256, force=force, resume=resume, mode=mode)

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
            if offset and hash_prefix(fd, offset)[0].hexdigest() != prefix_sha256:
                raise ServiceError(
                    "the part already downloaded differs from the file: start again", code="resume-mismatch"
                )
            sha = self._hash(parts, fd, st)
        except BaseException:
            os.close(fd)
            raise
        mode = stat.S_IMODE(st.st_mode) & PERMISSION_BITS
        return Download(fd, "/".join(parts), st.st_size, sha, st.st_mtime, offset, mode)

    def _hash(self, parts: list[str], fd: int, st: os.stat_result) -> str:
        """The file's SHA-256: from the cache when size, mtime and inode still match."""
        key = "/".join(parts)
        cached = self.records.cached_hash(key, st)
        if cached is not None:
            return cached
        digest, _ = hash_prefix(fd, None)
        sha: str = digest.hexdigest()
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

    def walk(
        self, path: str, *, recursive: bool, with_hash: bool, unlisted: Unlisted | None = None
    ) -> Generator[Entry, None, None]:
        """Entries under a directory (or the one entry of anything else), symlinks
        listed and never entered; partials and ``unshowable`` names left out (the
        latter counted in ``unlisted``, with what they hold).

        Raises:
            OSError: not found... (mapped by the server).
        """
        parts = request_parts(path)
        st = self.jail.lstat(parts)
        if not stat.S_ISDIR(st.st_mode):
            yield self._entry(parts, st, with_hash)
            return
        counted = unlisted if unlisted is not None else Unlisted()

        def skip(name: str) -> bool:
            if is_partial(name):
                return True
            if unshowable(name):
                if not counted.count:
                    counted.example = display_name("/".join([*parts, name]))
                counted.count += 1
                return True
            return False

        for directory, fd, entries in self.jail.walk(parts, skip=skip):
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
                self._removed(st)
            elif recursive:
                try:
                    self.jail.remove_tree(parts, keep=self._in_use, on_remove=self._removed)
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and self.usage.active_under(virtual):
                        raise ServiceError(
                            f"{virtual}: an upload into it is still running", code="upload-in-progress"
                        ) from None
                    raise
            else:
                self._rmdir(dir_fd, name, parts)
            os.fsync(dir_fd)
        self.records.forget(virtual)
        return virtual

    def _removed(self, st: os.stat_result) -> None:
        self.usage.add(-entry_cost(st), entries=-1)

    def _in_use(self, parts: list[str]) -> bool:
        return is_partial(parts[-1]) and self.usage.is_active("/".join(parts))

    def _rmdir(self, dir_fd: int, name: str, parts: list[str]) -> None:
        """rmdir; a directory that only holds abandoned partials counts as empty (the
        client cannot see them, so it could never empty it)."""
        try:
            self._rmdir_counted(dir_fd, name)
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
            with self.usage.lock:  # no upload may claim one of them meanwhile
                if any(self.usage.is_active("/".join([*parts, n])) for n, _ in names):
                    raise ServiceError(
                        f"{'/'.join(parts)}: an upload into it is still running", code="upload-in-progress"
                    )
                freed = [os.stat(partial, dir_fd=fd, follow_symlinks=False) for partial, _ in names]
                for partial, _ in names:
                    os.unlink(partial, dir_fd=fd)
            for st in freed:
                self._removed(st)
        finally:
            os.close(fd)
        self._rmdir_counted(dir_fd, name)

    def _rmdir_counted(self, dir_fd: int, name: str) -> None:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        os.rmdir(name, dir_fd=dir_fd)
        self._removed(st)

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
            self.jail.mkdir(parts, parents=parents, owner=self.limits.owner, admit=self._admit_directory)
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
