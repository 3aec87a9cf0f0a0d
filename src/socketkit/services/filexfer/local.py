"""The file client's local side: hashing local files, the partial file of a download
(private while incomplete, kept when interrupted), moving it into place, and where the
names a server sends land under a local directory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from typing import Any

from socketkit.errors import ServiceError
from socketkit.paths import resolve_under

__all__ = [
    "HASH_CHUNK",
    "append_all",
    "close_partial",
    "file_sha256",
    "link_into_place",
    "local_destination",
    "open_partial",
    "partial_path",
    "resumable",
    "update_all",
]

HASH_CHUNK = 1 << 20
"""Bytes per read when hashing a local file (large reads, few system calls)."""

PARTIAL_MODE = 0o600
"""A download's partial is private until it is complete and verified: only then does it
get the server file's permission bits (what it holds may be a secret)."""


def file_sha256(fd: int, size: int, *, stop: threading.Event | None = None) -> Any:
    """A hashlib object over the first ``size`` bytes of ``fd`` (read with pread);
    ``stop`` ends it early (its result is then meaningless).

    Raises:
        OSError: the file shrank meanwhile, or cannot be read.
    """
    digest = hashlib.sha256()
    position = 0
    while position < size and not (stop is not None and stop.is_set()):
        chunk = os.pread(fd, min(HASH_CHUNK, size - position), position)
        if not chunk:
            raise OSError(f"the file shrank while being hashed ({position} of {size} bytes)")
        digest.update(chunk)
        position += len(chunk)
    return digest


def partial_path(destination: str) -> str:
    """The hidden partial file of a download to ``destination`` (``.NAME.part`` beside it)."""
    directory, name = os.path.split(destination)
    return os.path.join(directory, f".{name}.part")


def resumable(held: int, where: str) -> ServiceError:
    """The refusal of a plain transfer whose interrupted predecessor left ``held`` bytes
    in ``where`` (the same words as the server's for an upload)."""
    return ServiceError(
        f"interrupted transfer ({held} bytes kept in {where}): "
        "`--resume` continues it, `--force` starts over",
        code="resumable",
    )


def open_partial(local: str, *, force: bool) -> tuple[int, str]:
    """The partial of a download to ``local``, opened (created ``PARTIAL_MODE`` if new,
    never through a symbolic link) with what it holds left as it is; and its path.

    Raises:
        FileExistsError: ``local`` exists and ``force`` is off.
        FileNotFoundError: its directory does not exist.
        OSError: it cannot be opened.
    """
    if os.path.lexists(local) and not force:
        raise FileExistsError(f"{local} exists (use --force to replace it)")
    partial = partial_path(local)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(partial, flags, PARTIAL_MODE), partial
    except FileNotFoundError:
        directory = os.path.dirname(local) or "."
        raise FileNotFoundError(f"{directory}: no such local directory") from None


def close_partial(fd: int, partial: str, *, discard: bool, moved: bool) -> None:
    """Close a download's partial: deleted when ``discard`` (its bytes are wrong) or when
    it holds nothing, kept otherwise (an interrupted download, for ``--resume``);
    ``moved``: it is in place already."""
    empty = not moved and os.fstat(fd).st_size == 0
    os.close(fd)
    if discard or empty:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def update_all(digest: Any, chunks: list[bytes]) -> None:
    """Feed ``chunks`` to ``digest`` (a hashing thread's batch)."""
    for data in chunks:
        digest.update(data)


def append_all(fd: int, chunks: list[bytes]) -> None:
    """Write ``chunks`` at ``fd``'s position, each whole (a writer thread's batch).

    Raises:
        OSError: a full disk, an I/O error.
    """
    for data in chunks:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def link_into_place(partial: str, local: str) -> None:
    """Move a complete partial to ``local`` without replacing anything that appeared there.

    Raises:
        FileExistsError: ``local`` appeared during the download.
    """
    try:
        os.link(partial, local)
    except FileExistsError:
        raise FileExistsError(f"{local} appeared during the download (use --force to replace it)") from None
    os.unlink(partial)


def local_destination(directory: str, remote_relative: str) -> str:
    """Where a remote name lands under a local directory: jailed like the server's paths.

    Raises:
        PathOutsideRoot, PermissionDenied: a hostile name from the server.
    """
    return resolve_under(directory, remote_relative)
