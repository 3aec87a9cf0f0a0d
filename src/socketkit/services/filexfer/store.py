"""The served directory: jailed paths, atomic durable uploads, resumable partials, hashes.

- Every client path goes through ``socketkit.paths.resolve_under``.
- An upload is written to a hidden partial file in the target's own directory
  (``.NAME.part``), hashed as it is written, verified against the SHA-256 the
  client declared, fsynced, and only then moved into place (``link`` when
  the client did not ask to overwrite, so a file that appeared meanwhile is never
  clobbered; ``rename`` with ``--force``), and the directory is fsynced. Readers see
  the old file or the new one, never a mix, whatever moment the server dies at.
- An interrupted upload leaves its partial; ``--resume`` continues it once the client
  has compared the partial's SHA-256 prefix with its own file (a different file
  starts over). Partials untouched for a week are removed when the server starts.
- SHA-256s of served files are cached in the state database (keyed by size, mtime and
  inode), so a download can announce its hash up front and still be sent with
  ``sendfile`` without reading the file twice.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from socketkit.errors import PermissionDenied, ServiceError
from socketkit.paths import relative_to_root, resolve_under, split_virtual
from socketkit.services.filexfer.protocol import Entry
from socketkit.state import StateDB

__all__ = ["FileStore", "StoreLimits", "Upload"]

logger = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20
PART_SUFFIX = ".part"
SYNC_EVERY = 64 << 20  # fdatasync an upload every 64 MiB (see Upload.write_raw)
STALE_PARTIAL_S = 7 * 24 * 3600.0  # partials untouched for a week are removed at start

_SCHEMA = [
    """CREATE TABLE file_hashes (
        path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER, sha256 TEXT
    )""",
    """CREATE TABLE file_audit (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, peer TEXT NOT NULL, op TEXT NOT NULL,
        path TEXT NOT NULL, size INTEGER, sha256 TEXT, outcome TEXT NOT NULL,
        bytes INTEGER, duration_ms REAL
    )""",
    "CREATE INDEX file_audit_at ON file_audit (at)",
]


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Size limits of the store."""

    max_file_size: int = 1 << 40
    quota: int | None = None  # bytes under the root, all files
    min_free: int = 64 * 1024 * 1024  # keep this much disk free
    read_only: bool = False


def _partial_name(name: str) -> str:
    # One partial per target: a retry finds it and resumes after comparing prefixes;
    # a second upload to the same name meanwhile is refused as busy.
    return f".{name}{PART_SUFFIX}"


def is_partial(name: str) -> bool:
    """Whether a directory entry is one of our hidden partial files."""
    return name.startswith(".") and name.endswith(PART_SUFFIX)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Upload:
    """One upload in progress: append, then ``finish`` (verify + move in) or ``abort``."""

    def __init__(
        self,
        store: FileStore,
        final: str,
        partial: str,
        size: int,
        sha256: str | None,
        force: bool,
        fd: int,
        offset: int,
        digest: Any,
    ) -> None:
        self.store = store
        self.final = final
        self.partial = partial
        self.size = size
        self.sha256 = sha256
        self.force = force
        self.fd = fd
        self.offset = offset  # bytes already in the partial when the body starts
        self.written = offset
        self.hashed = offset
        self.synced = offset
        self.digest = digest

    def write(self, data: bytes) -> None:
        """Append body bytes, hashing them on the way (``hash`` + ``write_raw``).

        Raises:
            ServiceError: see ``write_raw``.
        """
        self.hash(data)
        self.write_raw([data])

    def hash(self, data: bytes) -> None:
        """Account body bytes in the running SHA-256 (call in order, once per byte).

        Raises:
            ServiceError: more bytes than the declared size (code ``bad-request``).
        """
        if self.hashed + len(data) > self.size:
            raise ServiceError("more bytes than the declared size", code="bad-request")
        self.digest.update(data)
        self.hashed += len(data)

    def hash_all(self, chunks: list[bytes]) -> None:
        """``hash`` for a batch (from a worker thread).

        Raises:
            ServiceError: see ``hash``.
        """
        for data in chunks:
            self.hash(data)

    def write_raw(self, chunks: list[bytes]) -> None:
        """Write body bytes already hashed (from a writer thread). Written data is
        flushed to disk every ``SYNC_EVERY`` bytes, so the final fsync is short and
        writeback overlaps the transfer.

        Raises:
            ServiceError: a write error such as a full disk (code ``disk-full`` or
                ``io-error``).
        """
        try:
            for data in chunks:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
                self.written += len(data)
            if self.written - self.synced >= SYNC_EVERY:
                os.fdatasync(self.fd)
                self.synced = self.written
        except OSError as exc:
            code = "disk-full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io-error"
            raise ServiceError(f"cannot write: {exc.strerror}", code=code) from exc

    def finish(self) -> None:
        """Verify against ``sha256`` (set by now), make durable and move into place.

        Raises:
            ServiceError: checksum mismatch (the partial is deleted), short body, or the
                target exists and ``force`` was not given (code ``exists``).
        """
        try:
            if self.written != self.size:
                raise ServiceError(f"body ended after {self.written} of {self.size} bytes", code="incomplete")
            if self.digest.hexdigest() != self.sha256:
                with contextlib.suppress(OSError):
                    os.unlink(self.partial)
                raise ServiceError(
                    "checksum mismatch: the data received does not match the declared SHA-256",
                    code="checksum-mismatch",
                )
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1
        old_size = self.store.size_of(self.final)
        if self.force:
            os.replace(self.partial, self.final)
        else:
            try:
                os.link(self.partial, self.final)  # never replaces a file that appeared meanwhile
            except FileExistsError:
                raise ServiceError(
                    f"{self.store.virtual(self.final)} exists (use --force to replace it)", code="exists"
                ) from None
            os.unlink(self.partial)
        _fsync_dir(os.path.dirname(self.final))
        self.store.adjust_usage(self.size - old_size)
        assert self.sha256 is not None  # verified above
        self.store.remember_hash(self.final, self.sha256)

    def abort(self) -> None:
        """Stop, keeping the partial (hidden, unclaimed) for a later ``--resume``."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True, slots=True)
class Download:
    """An open file to send from ``offset``."""

    fd: int
    path: str
    size: int
    sha256: str
    mtime: float
    offset: int


class FileStore:
    """Operations on the served root (blocking: call through ``asyncio.to_thread``)."""

    def __init__(self, root: str, db: StateDB | None, limits: StoreLimits = StoreLimits()) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"root {root!r} is not a directory")
        self.db = db
        self.limits = limits
        self._lock = threading.Lock()
        self._active: set[str] = set()  # partials being written
        self.usage = 0
        if db is not None:
            db.ensure_schema("files", 1, _SCHEMA)
        self._scan()

    # --- paths ---------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """The real path of a client path (jailed)."""
        return resolve_under(self.root, path)

    def virtual(self, real: str) -> str:
        """The client-facing path of a real path."""
        return relative_to_root(self.root, real) or "."

    def _scan(self) -> None:
        """Measure usage for the quota, and remove partials abandoned long ago."""
        now = time.time()
        total = 0
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if is_partial(name) and now - st.st_mtime > STALE_PARTIAL_S:
                        os.unlink(path)
                        continue
                    total += st.st_size
        self.usage = total

    def size_of(self, real: str) -> int:
        """Size of an existing regular file (0 if none)."""
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) else 0

    def adjust_usage(self, delta: int) -> None:
        """Account bytes added (or removed, negative) under the root."""
        with self._lock:
            self.usage = max(0, self.usage + delta)

    # --- uploads -------------------------------------------------------------------

    def begin_put(self, path: str, size: int, sha256: str | None, *, force: bool, resume: bool) -> Upload:
        """Check limits and open (or reopen, to resume) the partial file.

        Raises:
            PermissionDenied: read-only store, or a bad path.
            PathOutsideRoot: the path leaves the root.
            ServiceError: too large, over quota, disk full, exists, busy, not a directory.
        """
        if self.limits.read_only:
            raise PermissionDenied("this server is read-only")
        parts = split_virtual(path)
        if not parts:
            raise ServiceError("name a file to upload", code="bad-request")
        final = self.resolve(path)
        if os.path.isdir(final):
            raise ServiceError(f"{path} is a directory", code="is-a-directory")
        if os.path.lexists(final) and not force:
            raise ServiceError(f"{path} exists (use --force to replace it)", code="exists")
        if size > self.limits.max_file_size:
            raise ServiceError(
                f"{size} bytes is over the {self.limits.max_file_size}-byte file limit", code="too-large"
            )
        directory = os.path.dirname(final)
        if not os.path.isdir(directory):
            raise ServiceError(f"the directory of {path} does not exist (mkdir it first)", code="not-found")
        if self.limits.quota is not None and self.usage + size - self.size_of(final) > self.limits.quota:
            raise ServiceError(
                f"over the quota of {self.limits.quota} bytes ({self.usage} used)", code="quota-exceeded"
            )
        free = shutil.disk_usage(directory).free
        if size + self.limits.min_free > free:
            raise ServiceError(f"not enough free disk: {free} bytes free, {size} needed", code="disk-full")
        partial = os.path.join(directory, _partial_name(os.path.basename(final)))
        with self._lock:
            if partial in self._active:
                raise ServiceError(f"an upload to {path} is already running", code="upload-in-progress")
            self._active.add(partial)
        try:
            return self._open_partial(final, partial, size, sha256, force, resume)
        except BaseException:
            self.release(partial)
            raise

    def _open_partial(
        self, final: str, partial: str, size: int, sha256: str | None, force: bool, resume: bool
    ) -> Upload:
        digest = hashlib.sha256()
        offset = 0
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(partial, flags, 0o600)
        try:
            if resume:
                offset = min(os.fstat(fd).st_size, size)
                remaining = offset
                while remaining:
                    chunk = os.read(fd, min(HASH_CHUNK, remaining))
                    if not chunk:
                        break
                    digest.update(chunk)
                    remaining -= len(chunk)
                offset -= remaining
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return Upload(self, final, partial, size, sha256, force, fd, offset, digest)

    def restart(self, upload: Upload) -> None:
        """Discard what a resumed partial held (its prefix did not match the client's)."""
        os.ftruncate(upload.fd, 0)
        os.lseek(upload.fd, 0, os.SEEK_SET)
        upload.offset = upload.written = upload.hashed = upload.synced = 0
        upload.digest = hashlib.sha256()

    def release(self, partial: str) -> None:
        """The upload using ``partial`` has ended, one way or another."""
        with self._lock:
            self._active.discard(partial)

    # --- downloads -----------------------------------------------------------------

    def open_get(self, path: str, offset: int, prefix_sha256: str | None) -> Download:
        """Open a regular file for sending, checking a resume prefix first.

        Raises:
            ServiceError: not found, not a file, or the prefix differs (``resume-mismatch``).
        """
        real = self.resolve(path)
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ServiceError(f"{path}: no such file", code="not-found") from None
        except IsADirectoryError:
            raise ServiceError(f"{path} is a directory (use -r)", code="is-a-directory") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ServiceError(f"{path} is not a regular file", code="not-a-file")
            if offset > st.st_size:
                raise ServiceError("resume offset is past the end of the file", code="resume-mismatch")
            if offset:
                digest = hashlib.sha256()
                remaining = offset
                while remaining:
                    chunk = os.pread(fd, min(HASH_CHUNK, remaining), offset - remaining)
                    digest.update(chunk)
                    remaining -= len(chunk)
                if digest.hexdigest() != prefix_sha256:
                    raise ServiceError(
                        "the part already downloaded differs from the file: start again",
                        code="resume-mismatch",
                    )
            sha = self.hash_fd(real, fd, st)
        except BaseException:
            os.close(fd)
            raise
        return Download(fd, real, st.st_size, sha, st.st_mtime, offset)

    def hash_fd(self, real: str, fd: int, st: os.stat_result) -> str:
        """The file's SHA-256: from the cache when size, mtime and inode still match."""
        key = self.virtual(real)
        if self.db is not None:
            rows = self.db.query("SELECT size, mtime_ns, ino, sha256 FROM file_hashes WHERE path = ?", (key,))
            if rows and (rows[0]["size"], rows[0]["mtime_ns"], rows[0]["ino"]) == (
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
            ):
                return str(rows[0]["sha256"])
        digest = hashlib.sha256()
        position = 0
        while chunk := os.pread(fd, HASH_CHUNK, position):
            digest.update(chunk)
            position += len(chunk)
        sha = digest.hexdigest()
        self._store_hash(key, st, sha)
        return sha

    def remember_hash(self, real: str, sha256: str) -> None:
        """Cache the hash of a file just written (its stat is the cache key)."""
        with contextlib.suppress(OSError):
            self._store_hash(self.virtual(real), os.stat(real), sha256)

    def _store_hash(self, key: str, st: os.stat_result, sha: str) -> None:
        if self.db is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, ino, sha256) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, st.st_size, st.st_mtime_ns, st.st_ino, sha),
            )

    # --- listing and changes ---------------------------------------------------------

    def entry(self, real: str, *, with_hash: bool) -> Entry:
        """Describe one path (symlinks are reported, not followed)."""
        st = os.lstat(real)
        if stat.S_ISLNK(st.st_mode):
            kind = "link"
        elif stat.S_ISDIR(st.st_mode):
            kind = "dir"
        elif stat.S_ISREG(st.st_mode):
            kind = "file"
        else:
            kind = "other"
        sha = None
        if with_hash and kind == "file":
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                sha = self.hash_fd(real, fd, os.fstat(fd))
            finally:
                os.close(fd)
        size = st.st_size if kind == "file" else 0
        return Entry(self.virtual(real), kind, size, round(st.st_mtime, 3), sha)

    def walk(self, path: str, *, recursive: bool, with_hash: bool) -> Iterator[Entry]:
        """Entries under a directory (or the one entry of a file), partials hidden.

        Raises:
            ServiceError: not found.
        """
        real = self.resolve(path)
        if not os.path.lexists(real):
            raise ServiceError(f"{path or '.'}: no such file or directory", code="not-found")
        if not os.path.isdir(real) or os.path.islink(real):
            yield self.entry(real, with_hash=with_hash)
            return
        stack = [real]
        while stack:
            directory = stack.pop()
            try:
                names = sorted(os.listdir(directory))
            except OSError as exc:
                raise ServiceError(
                    f"cannot list {self.virtual(directory)}: {exc.strerror}", code="io-error"
                ) from exc
            for name in names:
                if is_partial(name):
                    continue
                child = os.path.join(directory, name)
                try:
                    entry = self.entry(child, with_hash=with_hash)
                except FileNotFoundError:
                    continue  # removed while we listed
                yield entry
                if recursive and entry.type == "dir":
                    stack.append(child)

    def delete(self, path: str, *, recursive: bool) -> str:
        """Remove a file, a symlink, an empty directory, or (``recursive``) a tree.

        Raises:
            PermissionDenied: read-only, or deleting the root itself.
            ServiceError: not found, or a non-empty directory without ``recursive``.
        """
        if self.limits.read_only:
            raise PermissionDenied("this server is read-only")
        if not split_virtual(path):
            raise PermissionDenied("the root itself cannot be deleted")
        real = self._resolve_entry(path)
        if not os.path.lexists(real):
            raise ServiceError(f"{path}: no such file or directory", code="not-found")
        freed = 0
        if os.path.isdir(real) and not os.path.islink(real):
            if recursive:
                for directory, _, files in os.walk(real):
                    freed += sum(self.size_of(os.path.join(directory, name)) for name in files)
                shutil.rmtree(real)
            else:
                try:
                    os.rmdir(real)
                except OSError as exc:
                    raise ServiceError(
                        f"{path} is a directory that is not empty (use -r)", code="not-empty"
                    ) from exc
        else:
            freed = self.size_of(real)
            os.unlink(real)
        _fsync_dir(os.path.dirname(real))
        self.adjust_usage(-freed)
        return self.virtual(real)

    def _resolve_entry(self, path: str) -> str:
        """Resolve the parent, keep the last component: a symlink itself, not its target."""
        parts = split_virtual(path)
        parent = resolve_under(self.root, "/".join(parts[:-1]))
        real = os.path.join(parent, parts[-1])
        resolve_under(self.root, path)  # the target too must stay inside (refuses escapes)
        return real

    def mkdir(self, path: str, *, parents: bool) -> str:
        """Create a directory.

        Raises:
            PermissionDenied: read-only.
            ServiceError: exists as a file, or a missing parent without ``parents``.
        """
        if self.limits.read_only:
            raise PermissionDenied("this server is read-only")
        real = self.resolve(path)
        try:
            if parents:
                os.makedirs(real, exist_ok=True)
            else:
                os.mkdir(real)
        except FileExistsError:
            raise ServiceError(f"{path} exists", code="exists") from None
        except FileNotFoundError:
            raise ServiceError(f"the parent of {path} does not exist", code="not-found") from None
        except NotADirectoryError:
            raise ServiceError(f"a parent of {path} is a file", code="not-a-directory") from None
        if not os.path.isdir(real):
            raise ServiceError(f"{path} exists and is not a directory", code="exists")
        return self.virtual(real)

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
        """One row of the audit log."""
        if self.db is not None:
            self.db.execute(
                "INSERT INTO file_audit (at, peer, op, path, size, sha256, outcome, bytes, duration_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), peer, op, path, size, sha256, outcome, transferred, duration_ms),
            )
