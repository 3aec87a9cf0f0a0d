"""The file client: upload, download, list, stat, delete, mkdir over one connection.

Uploads declare the file's SHA-256 (computed first, reading the local file) and send it
with ``sendfile`` where possible; resumed uploads compare the server's prefix hash with
the local file before continuing. Downloads are written to a hidden partial file next
to the destination (private, 0600, until it is complete), hashed as they arrive,
checked against the server's SHA-256, fsynced and renamed into place; a resumed
download sends the hash of what it already has, and the server refuses to continue if
its file differs. Names coming from the server are checked with the same jail as the
server's (no ``..``, no absolute paths, no control characters) before anything is
written.

Interrupted transfers are kept, as ``rsync --partial`` keeps them: a download cut by
Ctrl-C, a signal that cancels it, or a dropped connection writes out every byte it had
received and leaves its partial; a plain download to a destination whose partial holds
bytes is refused (``resumable``: ``resume`` continues it, ``force`` starts over), and
the server does the same with an upload's partial. Only a checksum mismatch (the bytes
are wrong) or an empty partial is deleted.

Permission bits travel both ways, as rsync gives them to new files without
``--perms``: the source's mode, masked by the receiver's umask, never setuid, setgid or
sticky (``protocol.masked_mode``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from socketkit.aio.connection import Connection
from socketkit.aio.sendfile import send_file_range
from socketkit.aio.writer import BatchWriter, abort_all, close_all
from socketkit.auth.connect import ServiceTarget, connect_authenticated
from socketkit.auth.session import receive_control
from socketkit.codec.wire import BodyChunk, BodyEnd, BodyStart, WireEvent, encode_body_header, encode_control
from socketkit.errors import PermissionDenied, RemoteProtocolError, ServiceError
from socketkit.paths import display_name
from socketkit.services.filexfer.local import (
    append_all,
    close_partial,
    file_sha256,
    link_into_place,
    local_destination,
    open_partial,
    resumable,
    update_all,
)
from socketkit.services.filexfer.protocol import (
    Entry,
    GetRequest,
    ListRequest,
    PathRequest,
    PutRequest,
    masked_mode,
    parse_entry,
    parse_mode,
)
from socketkit.services.filexfer.umask import process_umask

__all__ = [
    "HASH_ALGORITHM",
    "FileClient",
    "Listing",
    "Progress",
    "TransferResult",
    "check_remote_name",
    "file_sha256",
    "local_destination",
]

Progress = Callable[[int], None]
HASH_ALGORITHM = "sha256"
"""The hash every transfer is verified with, end to end (named in the final lines)."""
RESUME_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 2.0)
"""Seconds between repeats of an upload the server still sees running (about 5 s in all:
the server notices a dead connection at once, or at its idle timeout): right after an
interrupted upload, it is still settling the partial that a resume continues."""


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a put or get did."""

    path: str
    size: int
    sha256: str
    transferred: int  # bytes that crossed the network (less than size after a resume)
    algorithm: str = HASH_ALGORITHM

    @property
    def resumed_at(self) -> int:
        """Bytes that were already there (an interrupted transfer continued), or 0."""
        return self.size - self.transferred


class Listing(list[Entry]):
    """The entries of a listing, and how many the server left out (``unlisted``: names
    on its disk that cannot be shown, not UTF-8 or refused by the name rule)."""

    unlisted: int = 0


def check_remote_name(path: str) -> None:
    """Refuse, before anything is sent, a remote path that is not valid Unicode text (a
    local name that is not UTF-8 decodes to lone surrogates, which no request can
    carry).

    Raises:
        PermissionDenied: code ``bad-path``.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise PermissionDenied(
            f"the remote name '{display_name(path)}' is not valid UTF-8 (remote names are Unicode text)",
            code="bad-path",
        ) from None


class FileClient:
    """One authenticated connection to a file server (operations run one at a time)."""

    def __init__(self, conn: Connection[WireEvent]) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, target: ServiceTarget) -> FileClient:
        """Connect and authenticate.

        Raises:
            OSError, TimeoutError, PermissionDenied, ServiceError, ProtocolError: see
            ``connect_authenticated``.
        """
        return cls(await connect_authenticated(target, service="files"))

    async def aclose(self) -> None:
        """Close the connection."""
        await self.conn.aclose()

    async def __aenter__(self) -> FileClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.conn.abort()

    async def _reply(self) -> dict[str, Any]:
        return dict((await receive_control(self.conn)).header)

    # --- uploads -------------------------------------------------------------------

    async def _request_upload(self, request: PutRequest) -> dict[str, Any]:
        """Send the put request; its answer ("ready" and the offset to resume from).

        A request right after an interrupted upload can reach the server before it has
        noticed that the old connection is gone, while it still holds the partial
        file: then the request is repeated for a few seconds (``RESUME_RETRY_DELAYS``),
        so that a resume continues it and a plain put is told it could.

        Raises:
            ServiceError: the server refused.
        """
        check_remote_name(request.path)
        delays = iter(RESUME_RETRY_DELAYS)
        while True:
            self.conn.send(encode_control(request.to_header()))
            try:
                return await self._reply()
            except ServiceError as exc:
                delay = next(delays, None)
                if exc.code != "upload-in-progress" or delay is None:
                    raise
            await asyncio.sleep(delay)

    async def put_file(
        self,
        local: str,
        remote: str,
        *,
        force: bool = False,
        resume: bool = False,
        progress: Progress | None = None,
        keep_mode: bool = True,
    ) -> TransferResult:
        """Upload one local file, declaring its permission bits (``keep_mode``; off for
        a spooled standard input, whose temporary file's mode means nothing).

        The file is hashed while it is being sent (a worker thread reads it from the
        page cache as ``sendfile`` sends it), and the hash follows the body.

        Raises:
            OSError: the local file cannot be read.
            ServiceError: the server refused (exists, quota, checksum-mismatch, an
                interrupted upload to it is kept: ``resumable``...).
        """
        fd = os.open(local, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            mode = stat.S_IMODE(st.st_mode) if keep_mode else None
            request = PutRequest(remote, st.st_size, None, force, resume, mode)
            return await self._put_fd(fd, request, progress=progress)
        finally:
            os.close(fd)

    async def _put_fd(self, fd: int, request: PutRequest, *, progress: Progress | None) -> TransferResult:
        conn, size, sha = self.conn, request.size, request.sha256
        ready = await self._request_upload(request)
        offset = int(ready.get("offset") or 0)
        if offset:
            local_prefix = (await asyncio.to_thread(file_sha256, fd, offset)).hexdigest()
            if local_prefix != ready.get("prefix_sha256"):
                conn.send(encode_control({"op": "restart"}))
                ready = await self._reply()
                offset = 0
        if progress is not None and offset:
            progress(offset)
        stop = threading.Event()
        hashing = None
        if sha is None:
            hashing = asyncio.ensure_future(asyncio.to_thread(file_sha256, fd, size, stop=stop))
        try:
            conn.send(encode_body_header(size - offset))
            await send_file_range(conn, fd, offset, size - offset, progress=progress)
        except BaseException:
            if hashing is not None:
                stop.set()  # the thread ends at its next chunk; wait for it (no stray thread)
                await asyncio.wait([hashing])
            raise
        if hashing is not None:
            sha = (await hashing).hexdigest()
            conn.send(encode_control({"op": "commit", "sha256": sha}))
        done = await self._reply()
        if done.get("event") != "done" or done.get("sha256") != sha:
            raise RemoteProtocolError(f"unexpected reply to an upload: {done}")
        return TransferResult(str(done.get("path", request.path)), size, str(sha), size - offset)

    # --- downloads -----------------------------------------------------------------

    async def get_file(
        self,
        remote: str,
        local: str,
        *,
        force: bool = False,
        resume: bool = False,
        progress: Progress | None = None,
        on_size: Callable[[int], None] | None = None,
    ) -> TransferResult:
        """Download one file to ``local`` (atomically: a partial file, then a rename),
        with the server file's permission bits masked by our umask.

        An interruption (cancelled, the connection lost) keeps the partial with every
        byte received, for ``resume``.

        Raises:
            FileExistsError: ``local`` exists and ``force`` is off.
            ServiceError: the server refused (not found...); an interrupted download's
                partial holds bytes and neither ``resume`` nor ``force`` was given
                (``resumable``; it is left as it was); or the checksum differs (code
                ``checksum-mismatch``; the partial is removed).
            OSError: the local file cannot be written.
        """
        fd, partial = open_partial(local, force=force)
        outcome = "kept"  # kept (for a resume, unless empty), moved (in place), discarded (bad bytes)
        try:
            held = os.fstat(fd).st_size
            if held and not (resume or force):
                raise resumable(held, partial)
            result = await self._download(fd, remote, local, held if resume else 0, progress, on_size)
            if isinstance(result, ServiceError):
                outcome = "discarded"
                raise result
            os.replace(partial, local) if force else link_into_place(partial, local)
            outcome = "moved"
            return result
        finally:
            close_partial(fd, partial, discard=outcome == "discarded", moved=outcome == "moved")

    async def _download(
        self,
        fd: int,
        remote: str,
        local: str,
        offset: int,
        progress: Progress | None,
        on_size: Callable[[int], None] | None,
    ) -> TransferResult | ServiceError:
        """Receive ``remote`` into the partial ``fd`` from ``offset`` (what it holds, if
        it matches the server's file), verify it, give it its mode and mtime, fsync it;
        a checksum mismatch is returned (the caller discards the partial)."""
        digest = await asyncio.to_thread(file_sha256, fd, offset)
        try:
            header = await self._request_file(remote, offset, digest.hexdigest() if offset else None)
        except ServiceError as exc:
            if exc.code != "resume-mismatch":
                raise
            offset, digest = 0, hashlib.sha256()
            header = await self._request_file(remote, 0, None)
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        size, sha, mode = int(header["size"]), str(header["sha256"]), parse_mode(header)
        if on_size is not None:
            on_size(size)
        if progress is not None and offset:
            progress(offset)
        # The loop receives; one thread hashes, another writes: the three overlap.
        hasher = BatchWriter(lambda chunks: update_all(digest, chunks))
        writer = BatchWriter(lambda chunks: append_all(fd, chunks))

        async def store(data: bytes) -> None:
            await hasher.add(data)
            await writer.add(data)

        try:
            await self._receive_body(store, None, size - offset, progress)
        except BaseException:
            # Interrupted: what was received is written out (a prefix of the file, in
            # order) for a resume; the hash is computed again from the disk then.
            hasher.abort()
            try:
                with contextlib.suppress(OSError):
                    await close_all(writer)  # aborts it too if cancelled again meanwhile
            finally:
                await abort_all(hasher)
            raise
        await close_all(hasher, writer)
        if digest.hexdigest() != sha:
            return ServiceError(
                f"{remote}: checksum mismatch after download (expected {sha})", code="checksum-mismatch"
            )
        os.fchmod(fd, masked_mode(mode, process_umask()))
        os.fsync(fd)
        mtime = header.get("mtime")
        if isinstance(mtime, (int, float)):
            os.utime(fd, (mtime, mtime))
        return TransferResult(local, size, sha, size - offset)

    async def get_stream(
        self, remote: str, out: BinaryIO, *, progress: Progress | None = None
    ) -> TransferResult:
        """Download to a stream (standard output): written as it arrives, verified at the end.

        Raises:
            ServiceError: refused, or the checksum differs (after the data was written).
        """
        header = await self._request_file(remote, 0, None)
        size, sha = int(header["size"]), str(header["sha256"])
        digest = hashlib.sha256()

        async def write(data: bytes) -> None:
            out.write(data)

        await self._receive_body(write, digest, size, progress)
        out.flush()
        if digest.hexdigest() != sha:
            raise ServiceError(f"{remote}: checksum mismatch after download", code="checksum-mismatch")
        return TransferResult("-", size, sha, size)

    async def _request_file(self, remote: str, offset: int, prefix: str | None) -> dict[str, Any]:
        check_remote_name(remote)
        self.conn.send(encode_control(GetRequest(remote, offset, prefix).to_header()))
        header = await self._reply()
        if (
            header.get("event") != "file"
            or not isinstance(header.get("size"), int)
            or not isinstance(header.get("sha256"), str)
        ):
            raise RemoteProtocolError(f"unexpected reply to a download: {header}")
        return header

    async def _receive_body(
        self, write: Callable[[bytes], Awaitable[None]], digest: Any, expected: int, progress: Progress | None
    ) -> None:
        start = await self.conn.receive()
        if not isinstance(start, BodyStart) or start.size != expected:
            raise RemoteProtocolError(f"expected a body of {expected} bytes")
        while True:
            event = await self.conn.receive()
            if isinstance(event, BodyChunk):
                if digest is not None:
                    digest.update(event.data)
                await write(event.data)
                if progress is not None:
                    progress(len(event.data))
            elif isinstance(event, BodyEnd):
                return
            else:
                raise RemoteProtocolError(f"unexpected {type(event).__name__} inside a body")

    # --- the rest --------------------------------------------------------------------

    async def list(self, path: str = "", *, with_hash: bool = False, recursive: bool = False) -> Listing:
        """Entries under ``path`` (or the entry of a file), with the count of those the
        server could not show.

        Raises:
            ServiceError: not found; ``bad-path`` for a path that is not UTF-8.
        """
        check_remote_name(path)
        self.conn.send(encode_control(ListRequest(path, with_hash, recursive).to_header()))
        entries = Listing()
        while True:
            reply = await self._reply()
            if reply.get("event") != "entries" or not isinstance(reply.get("entries"), list):
                raise RemoteProtocolError(f"unexpected reply to a listing: {reply}")
            entries.extend(parse_entry(e) for e in reply["entries"])
            if not reply.get("more"):
                unlisted = reply.get("unlisted", 0)
                entries.unlisted = unlisted if isinstance(unlisted, int) and unlisted > 0 else 0
                return entries

    async def stat(self, path: str, *, with_hash: bool = False) -> Entry:
        """One entry.

        Raises:
            ServiceError: not found.
        """
        check_remote_name(path)
        self.conn.send(encode_control(PathRequest("stat", path, with_hash).to_header()))
        return parse_entry((await self._reply()).get("entry"))

    async def delete(self, path: str, *, recursive: bool = False) -> str:
        """Remove a file or directory.

        Raises:
            ServiceError: not found, not empty, read-only.
        """
        check_remote_name(path)
        self.conn.send(encode_control(PathRequest("delete", path, recursive).to_header()))
        return str((await self._reply()).get("path", path))

    async def mkdir(self, path: str, *, parents: bool = True) -> str:
        """Create a directory.

        Raises:
            ServiceError: exists as a file, read-only.
        """
        check_remote_name(path)
        self.conn.send(encode_control(PathRequest("mkdir", path, parents).to_header()))
        return str((await self._reply()).get("path", path))
