"""One upload: a hidden partial next to its target, verified, made durable, moved in.

- The partial (``.NAME.part``) is created relative to the target's directory fd,
  resolved beneath the root (``socketkit.fsjail``), with ``O_NOFOLLOW | O_NONBLOCK``,
  and only once every check has passed and the quota has admitted it: a refused
  upload creates nothing. An existing partial is reopened (to resume) only if it is
  a regular file (something else put under that name, a FIFO say, is refused, never
  opened), and its type is checked again on the open fd.
- The body is hashed as it is written and flushed every ``SYNC_EVERY`` bytes; at the end
  it is verified against the SHA-256 the client declared and fsynced.
- It is moved in relative to the target's directory resolved again from the root, and
  only if the partial found there is still the file this upload wrote (same inode):
  ``linkat`` when the client did not ask to overwrite (a file that appeared meanwhile is
  never clobbered), ``renameat`` with ``--force``; then the directory is fsynced.
  Readers see the old file or the new one, never a mix, whatever moment the server
  dies at.
- Its room in the quota is reserved when it starts and turned into what it left on disk
  when it ends (``socketkit.services.filexfer.quota``). An interrupted upload keeps its
  partial for a later ``--resume`` only if the partial holds bytes (the server writes
  out every byte it received first); an empty one is deleted at ``close``. A resume
  continues once the client has compared the partial's SHA-256 prefix with its own
  file (a different file starts over). A put that asks neither to resume nor to force
  is refused while such a partial holds bytes (``resumable``): what was sent is never
  discarded unasked.
- The file in place gets the source's permission bits as the client declared them,
  masked (``FileStore.stored_mode``: no setuid, setgid or sticky, never more than the
  store's umask allows, always readable by the server).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from typing import Any, Protocol

from socketkit.errors import ServiceError
from socketkit.fsjail import FILE_FLAGS, Jail
from socketkit.services.filexfer.protocol import partial_name
from socketkit.services.filexfer.quota import Usage, entry_cost, file_cost
from socketkit.services.filexfer.records import Records

__all__ = ["HASH_CHUNK", "SYNC_EVERY", "Upload", "hash_prefix"]


class _Limits(Protocol):
    @property
    def owner(self) -> tuple[int, int] | None: ...


class _Store(Protocol):
    """What an upload needs of its store (``store.FileStore``, which imports this
    module: the store's own type would make an import loop)."""

    @property
    def jail(self) -> Jail: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def limits(self) -> _Limits: ...
    @property
    def records(self) -> Records: ...
    def check_free(self, dir_fd: int, size: int) -> None: ...
    def stored_mode(self, mode: int | None) -> int: ...


HASH_CHUNK = 1 << 20
"""Bytes per read when hashing a file or a partial's prefix."""

SYNC_EVERY = 64 << 20
"""fdatasync an upload every 64 MiB: writeback overlaps the transfer and the final fsync
stays short, without a sync per chunk."""


def hash_prefix(fd: int, limit: int | None) -> tuple[Any, int]:
    """The SHA-256 (a hashlib object) of the first ``limit`` bytes of ``fd`` (``None``:
    all of it), read with ``pread``, and how many bytes it covers (fewer than ``limit``
    when the file is shorter)."""
    digest = hashlib.sha256()
    position = 0
    while limit is None or position < limit:
        want = HASH_CHUNK if limit is None else min(HASH_CHUNK, limit - position)
        chunk = os.pread(fd, want, position)
        if not chunk:
            break
        digest.update(chunk)
        position += len(chunk)
    return digest, position


class Upload:
    """One upload in progress: append, then ``finish`` (verify + move in); ``close``
    always (it keeps the partial of an unfinished upload and settles the quota).

    Made by ``Upload.open``; the fds belong to it until ``close``.
    """

    def __init__(
        self,
        store: _Store,
        parts: list[str],
        dir_fd: int,
        fd: int,
        size: int,
        sha256: str | None,
        force: bool,
        mode: int | None = None,
    ) -> None:
        self.store = store
        self.parts = parts
        self.path = "/".join(parts)
        self.partial = partial_name(parts[-1])
        self.key = "/".join([*parts[:-1], self.partial])
        self.dir_fd = dir_fd
        self.fd = fd
        self.size = size
        self.sha256 = sha256
        self.force = force
        self.mode = mode  # the source's permission bits, as the client declared them
        self.identity = (0, 0)
        self.offset = 0  # bytes already in the partial when the body starts
        self.written = self.hashed = self.synced = 0
        self.digest: Any = hashlib.sha256()
        self._outcome = "kept"  # kept (partial stays), moved (in place), discarded (deleted)
        self.kept = 0  # bytes left on disk once closed: the file, the partial, or none

    @classmethod
    def open(
        cls,
        store: _Store,
        parts: list[str],
        size: int,
        sha256: str | None,
        *,
        force: bool,
        resume: bool,
        mode: int | None = None,
    ) -> Upload:
        """Check the target and the disk, claim the partial, reserve the quota, and only
        then open (or create) the partial file: an upload refused for any reason
        creates nothing (and an interrupted upload's partial is left as it was).

        Raises:
            ServiceError: exists, is a directory, no such directory, disk full, over the
                quota, an upload to it is running, its partial is not a regular file,
                or its partial holds bytes and neither ``resume`` nor ``force`` was
                given (``resumable``).
            OSError: the directory cannot be resolved beneath the root (ELOOP...).
        """
        path = "/".join(parts)
        partial = partial_name(parts[-1])
        key = "/".join([*parts[:-1], partial])
        try:
            dir_fd = store.jail.open_dir(parts[:-1])
        except FileNotFoundError:
            raise ServiceError(
                f"the directory of {path} does not exist (mkdir it first)", code="not-found"
            ) from None
        try:
            _check_target(dir_fd, parts[-1], path, force=force)
            store.check_free(dir_fd, size)
            store.usage.claim(key, path)
            try:
                fd = _open_partial(store, dir_fd, partial, path, key, size, keep=not (resume or force))
            except BaseException:
                store.usage.release(key, 0)
                raise
        except BaseException:
            os.close(dir_fd)
            raise
        upload = cls(store, parts, dir_fd, fd, size, sha256, force, mode)
        try:
            upload._prepare(resume)
        except BaseException:
            upload.close()
            raise
        return upload

    def _prepare(self, resume: bool) -> None:
        st = os.fstat(self.fd)
        os.set_blocking(self.fd, True)
        self.identity = (st.st_dev, st.st_ino)
        offset = 0
        if resume:
            self.digest, offset = hash_prefix(self.fd, min(st.st_size, self.size))
        os.ftruncate(self.fd, offset)
        os.lseek(self.fd, offset, os.SEEK_SET)
        self.offset = self.written = self.hashed = self.synced = offset

    def restart(self) -> None:
        """Discard what a resumed partial held (its prefix did not match the client's)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.offset = self.written = self.hashed = self.synced = 0
        self.digest = hashlib.sha256()

    # --- the body ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append body bytes, hashing them on the way (``hash`` + ``write_raw``).

        Raises:
            ServiceError: see ``hash`` and ``write_raw``.
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
        """Write body bytes already hashed (from a writer thread), flushing them to disk
        every ``SYNC_EVERY`` bytes.

        Raises:
            ServiceError: a write error such as a full disk (code ``disk-full`` or
                ``io-error``), or more bytes than declared (``bad-request``).
        """
        try:
            for data in chunks:
                if self.written + len(data) > self.size:  # the reservation is the limit
                    raise ServiceError("more bytes than the declared size", code="bad-request")
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

    # --- the end -------------------------------------------------------------------------

    def finish(self) -> None:
        """Verify against ``sha256`` (set by now), make durable and move into place.

        Raises:
            ServiceError: short body (``incomplete``), checksum mismatch (the partial is
                deleted), the target exists and ``force`` was not given (``exists``), or
                the partial is no longer where it was written (``conflict``).
            OSError: the directory can no longer be resolved beneath the root.
        """
        if self.written != self.size:
            raise ServiceError(f"body ended after {self.written} of {self.size} bytes", code="incomplete")
        if self.digest.hexdigest() != self.sha256:
            if self._is_ours(self.dir_fd):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.partial, dir_fd=self.dir_fd)
                self._outcome = "discarded"
            raise ServiceError(
                "checksum mismatch: the data received does not match the declared SHA-256",
                code="checksum-mismatch",
            )
        store = self.store
        os.fchmod(self.fd, store.stored_mode(self.mode))
        if store.limits.owner is not None:
            os.fchown(self.fd, *store.limits.owner)
        os.fsync(self.fd)
        # Resolved again from the root: a directory renamed (or swapped for a symlink)
        # during the upload is not followed; the partial must be the file we wrote.
        with store.jail.parent(self.parts) as (dir_fd, name):
            if not self._is_ours(dir_fd):
                raise ServiceError(
                    f"{self.path}: the partial file was moved or replaced during the upload", code="conflict"
                )
            replaced = _lstat(dir_fd, name)
            if self.force:
                os.rename(self.partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                try:  # never replaces a file that appeared meanwhile
                    os.link(self.partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    raise ServiceError(
                        f"{self.path} exists (use --force to replace it)", code="exists"
                    ) from None
                replaced = None
                os.unlink(self.partial, dir_fd=dir_fd)
            self._outcome = "moved"
            os.fsync(dir_fd)
        if replaced is not None:  # the partial took the place (and the inode) of an entry
            store.usage.add(-entry_cost(replaced), entries=-1)
        assert self.sha256 is not None  # verified above
        store.records.store_hash(self.path, os.fstat(self.fd), self.sha256)

    def _is_ours(self, dir_fd: int) -> bool:
        try:
            st = os.stat(self.partial, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def close(self) -> None:
        """Release the fds and settle the quota: the reservation becomes what the upload
        leaves on disk. A partial is kept (hidden, for a later ``--resume``) only if it
        holds bytes; an empty one is deleted, so a refused, failed or abandoned upload
        that wrote nothing leaves nothing behind."""
        if self.fd < 0:
            return
        entries = 0
        if self._outcome == "moved":
            kept, self.kept = file_cost(self.size), self.size
        elif self._outcome == "discarded":
            kept, entries = 0, -1
        else:
            try:
                held = os.fstat(self.fd).st_size
            except OSError:
                held = self.written
            kept, self.kept = file_cost(held), held
            if held == 0 and self._is_ours(self.dir_fd):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.partial, dir_fd=self.dir_fd)
                kept, entries = 0, -1
        os.close(self.fd)
        os.close(self.dir_fd)
        self.fd = self.dir_fd = -1
        self.store.usage.release(self.key, kept, entries=entries)


def _check_target(dir_fd: int, name: str, path: str, *, force: bool) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ServiceError(f"{path} is a directory", code="is-a-directory")
    if not force:
        raise ServiceError(f"{path} exists (use --force to replace it)", code="exists")


def _open_partial(
    store: _Store, dir_fd: int, partial: str, path: str, key: str, size: int, *, keep: bool
) -> int:
    """The claimed partial of an upload of ``size`` bytes, opened once its room is
    admitted: an existing one (a regular file: anything else put under that name, a
    FIFO or a device, is refused without being opened) is reopened, a new one is
    created only now, exclusively. ``keep``: refuse to reuse a partial that holds bytes
    (a plain put after an interrupted one: only ``--resume`` or ``--force`` may).

    Raises:
        ServiceError: not a regular file (``not-a-file``), kept bytes (``resumable``),
            over the quota.
    """
    existing = _lstat(dir_fd, partial)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise ServiceError(f"{path}: its partial file is not a regular file", code="not-a-file")
    if keep and existing is not None and existing.st_size > 0:
        raise ServiceError(
            f"interrupted transfer ({existing.st_size} of {size} bytes kept on the server): "
            "`--resume` continues it, `--force` starts over",
            code="resumable",
        )
    already = 0 if existing is None else file_cost(existing.st_size)
    store.usage.admit(key, file_cost(size), already, new_entry=existing is None)
    try:
        try:
            if existing is None:
                return os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o600, dir_fd=dir_fd)
            fd = os.open(partial, os.O_RDWR | FILE_FLAGS, dir_fd=dir_fd)
        except (FileExistsError, FileNotFoundError):
            # Made or removed on the machine since the lstat: not ours to take over.
            raise ServiceError(
                f"{path}: its partial file changed meanwhile; try again", code="conflict"
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in since the lstat
                raise ServiceError(f"{path}: its partial file is not a regular file", code="not-a-file")
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        # Nothing was made: the reservation goes, what was there stays counted.
        store.usage.release(key, already, entries=-1 if existing is None else 0)
        raise
    return fd


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
