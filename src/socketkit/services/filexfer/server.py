"""The file server: hello, authentication, then operations until the client leaves.

Filesystem work runs in worker threads (``asyncio.to_thread``) so that a slow disk
never stalls other connections. Uploads stream the raw body from the socket into the
partial file, hashing on the way; downloads go out with ``os.sendfile`` (zero-copy,
from a worker thread, while the connection has nothing else queued), or read-and-send
over TLS, where the kernel cannot encrypt. Every operation is in the audit log.

A refused request (a bad path, a header whose JSON is refused, an error of the file
system) gets an ERROR frame with its code and one log line, and the connection reads
the next request. A client's own ERROR frame, wherever it comes (between requests,
after "ready", instead of a commit), means it gives up: one log line, the connection
closes, and nothing is sent back (``auth.session.receive_from_client``). Paths are
logged escaped (``protocol.safe_display``). The quota is reconciled with the disk every ``reconcile_interval``
seconds by a task of the server (``on_started``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from socketkit._log import get_logger
from socketkit._oserrors import service_error_from_os
from socketkit._shutdown import wire_farewell
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.aio.listeners import Listener
from socketkit.aio.sendfile import send_file_range
from socketkit.aio.server import AsyncServer
from socketkit.aio.threads import to_thread_shielded
from socketkit.aio.wire import send_error
from socketkit.aio.writer import BatchWriter, abort_all, close_all
from socketkit.auth.exposure import check_exposure
from socketkit.auth.session import WireGate, receive_from_client
from socketkit.auth.throttle import AuthThrottle
from socketkit.codec.wire import (
    BodyChunk,
    BodyEnd,
    BodyStart,
    Control,
    WireEvent,
    encode_body_header,
    encode_control,
    encode_error,
)
from socketkit.errors import ProtocolError, RemoteProtocolError, ResourceError, ServiceError
from socketkit.limits import DEFAULT_HANDSHAKE_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S
from socketkit.services.filexfer.protocol import (
    ENTRIES_PER_FRAME,
    BadHeader,
    GetRequest,
    ListRequest,
    PathRequest,
    PutRequest,
    RequestDecoder,
    parse_commit,
    parse_request,
    safe_display,
)
from socketkit.services.filexfer.quota import RECONCILE_INTERVAL_S
from socketkit.services.filexfer.store import Download, FileStore, Unlisted, Upload

__all__ = ["DEFAULT_MAX_TRANSFERS", "FileServer", "FileSettings"]

logger = get_logger(__name__)

DEFAULT_MAX_TRANSFERS = 64
"""Uploads and downloads running at once; more get a "busy" error."""

_CONTROL_BUDGET = 48 * 1024  # bytes of entries per listing frame (the control limit is 64 KiB)


def _told(exc: BaseException) -> str:
    """``exc`` for the log line: its message and its notes (what an upload it cut kept)."""
    return "; ".join([str(exc), *getattr(exc, "__notes__", ())])


async def _receive_control(conn: Connection[WireEvent]) -> Control:
    """The client's next CONTROL frame (a ``BadHeader`` for refused JSON).

    Raises:
        BrokenResourceError: the client gave up with an ERROR frame (never answered).
        RemoteProtocolError: another frame.
        EOFError, ResourceError: the connection ended.
    """
    event = await receive_from_client(conn)
    if not isinstance(event, Control):
        raise RemoteProtocolError(f"expected a control frame, got {type(event).__name__}")
    return event


P = ParamSpec("P")
R = TypeVar("R")


async def _to_thread_settled(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``asyncio.to_thread`` for work on an upload's fds: a cancelled caller (the server
    shutting down) waits for the thread to return before it goes on to close them, so
    no thread is left using an fd that is closed, or reused, under it. The wait is
    short: file work never blocks (every open is non-blocking)."""
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(func, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if not future.cancelled() and future.exception() is None:
            result = future.result()
            if isinstance(result, Upload):
                result.close()  # opened for a caller that is gone
            elif isinstance(result, Download):
                os.close(result.fd)
        raise


@dataclass(slots=True)
class FileSettings:
    """Everything ``serve files`` is configured with."""

    store: FileStore
    token: str | None
    max_transfers: int = DEFAULT_MAX_TRANSFERS
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    reconcile_interval: float = RECONCILE_INTERVAL_S
    workers: int = 1  # processes serving it (--workers): the gate's limits are divided


class FileServer:
    """The file service (one instance per server process)."""

    def __init__(self, settings: FileSettings) -> None:
        self.settings = settings
        self.transfers = 0
        self.gate = WireGate.for_workers("files", settings.token, settings.throttle, settings.workers)

    def make_server(self, *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S, **options: Any) -> AsyncServer:
        """The ``AsyncServer`` running this service (a stalled transfer or a silent
        client is cut after ``idle_timeout`` seconds)."""
        return AsyncServer(
            handler=self.handle,
            decoder_factory=RequestDecoder,
            limits=ConnectionLimits(
                idle_timeout=idle_timeout,
                handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT_S,
                message_timeout=60.0,
                # Body chunks wait here while the disk catches up: 16 of up to 256 KiB
                # bound an upload's memory to a few MiB, whatever the file size.
                max_pending_messages=16,
            ),
            check_listener=self.check_listener,
            farewell=wire_farewell,
            **options,
        )

    def on_started(self, server: AsyncServer) -> None:
        """Run the quota's reconciliation as a task of ``server`` (stopped with it)."""
        server.spawn(self.reconcile_forever(), name="socketkit-files-reconcile")

    async def reconcile_forever(self) -> None:
        """``FileStore.reconcile`` every ``reconcile_interval`` seconds, until cancelled
        (a failed scan is logged and retried at the next tick)."""
        store = self.settings.store
        while True:
            await asyncio.sleep(self.settings.reconcile_interval)
            try:
                await asyncio.to_thread(store.reconcile)
            except OSError as exc:
                logger.warning("files: cannot measure the root for the quota: %s", exc)

    def check_listener(self, listener: Listener) -> None:
        """The exposure rule: off loopback, files needs its token.

        Raises:
            PermissionDenied: the listener would expose the files without it.
        """
        check_exposure(
            "files",
            listener.address,
            has_token=self.settings.token is not None,
            has_tls=listener.ssl is not None,
        )

    async def handle(self, conn: Connection[WireEvent]) -> None:
        """One connection: hello, auth, then operations until the client closes."""
        try:
            if not await self.gate.open(conn):
                return
            while True:
                try:
                    control = await _receive_control(conn)
                except EOFError:
                    return
                if isinstance(control, BadHeader):
                    assert control.error is not None
                    logger.info(
                        "files: %s sent a bad request: %s", conn.peer, safe_display(str(control.error))
                    )
                    conn.send(encode_error(control.error.error_code, str(control.error)))
                    continue
                # An operation under way (a transfer) completes when the server stops,
                # up to its grace; between operations the connection is idle.
                with conn.busy():
                    await self._operation(conn, control.header)
        except ProtocolError as exc:
            logger.info("files: protocol error from %s: %s", conn.peer, safe_display(_told(exc)))
            send_error(conn, exc)
        except (EOFError, ResourceError) as exc:
            logger.info("files: %s is gone (%s)", conn.peer, safe_display(_told(exc)))

    async def _operation(self, conn: Connection[WireEvent], header: dict[str, Any] | Any) -> None:
        try:
            request = parse_request(header)
        except RemoteProtocolError as exc:
            # A malformed request is refused on its own: the framing is intact, so the
            # connection goes on (a recursive upload is not lost to one odd name).
            logger.info("files: %s sent a bad request: %s", conn.peer, safe_display(str(exc)))
            conn.send(encode_error(exc.error_code, str(exc)))
            return
        started = time.monotonic()
        store = self.settings.store
        try:
            if isinstance(request, PutRequest):
                await self._put(conn, request)
            elif isinstance(request, GetRequest):
                await self._get(conn, request)
            elif isinstance(request, ListRequest):
                await self._list(conn, request)
            else:
                await self._path_op(conn, request)
        except (ServiceError, OSError) as exc:
            error = exc if isinstance(exc, ServiceError) else service_error_from_os(exc, request.path or ".")
            logger.info(
                "files: %s %s %s refused: %s",
                conn.peer,
                header.get("op"),
                safe_display(request.path),
                safe_display(str(error)),
            )
            conn.send(encode_error(error.code, error.message))
            await to_thread_shielded(
                store.audit,
                conn.peer,
                str(header.get("op")),
                request.path,
                error.code,
                duration_ms=(time.monotonic() - started) * 1000,
            )

    # --- put -------------------------------------------------------------------------

    async def _put(self, conn: Connection[WireEvent], request: PutRequest) -> None:
        store = self.settings.store
        if self.transfers >= self.settings.max_transfers:
            raise ServiceError("busy: too many transfers; try again later", code="busy")
        self.transfers += 1
        started = time.monotonic()
        upload: Upload | None = None
        cut: BaseException | None = None  # the client stopped mid-upload: say what was kept
        try:
            upload = await _to_thread_settled(
                store.begin_put,
                request.path,
                request.size,
                request.sha256,
                force=request.force,
                resume=request.resume,
                mode=request.mode,
            )
            prefix = upload.digest.hexdigest() if upload.offset else None
            conn.send(encode_control({"event": "ready", "offset": upload.offset, "prefix_sha256": prefix}))
            event = await receive_from_client(conn)
            if isinstance(event, Control) and event.header.get("op") == "restart":
                await _to_thread_settled(upload.restart)
                conn.send(encode_control({"event": "ready", "offset": 0, "prefix_sha256": None}))
                event = await receive_from_client(conn)
            if not isinstance(event, BodyStart) or event.size != upload.size - upload.offset:
                raise RemoteProtocolError(f"expected a body of {upload.size - upload.offset} bytes")
            await self._receive_body(conn, upload)
            if upload.sha256 is None:  # hashed while sending: the hash follows the body
                upload.sha256 = parse_commit((await _receive_control(conn)).header)
            await _to_thread_settled(upload.finish)
        except (EOFError, ResourceError, ProtocolError) as exc:
            cut = exc
            raise
        finally:
            self.transfers -= 1
            if upload is not None:
                # Keeps an unfinished partial that holds bytes, deletes an empty one;
                # settles the quota. In a thread: it may unlink.
                await _to_thread_settled(upload.close)
                if cut is not None:  # logged by ``handle``, with this note
                    cut.add_note(
                        f"put {request.path}: the partial keeps {upload.kept} of {upload.size} bytes"
                    )
        duration = (time.monotonic() - started) * 1000
        conn.send(
            encode_control(
                {
                    "event": "done",
                    "path": upload.path,
                    "size": upload.size,
                    "sha256": upload.sha256,
                }
            )
        )
        logger.info(
            "files: %s put %s (%d bytes, %.0f ms)",
            conn.peer,
            safe_display(request.path),
            request.size,
            duration,
        )
        await to_thread_shielded(
            store.audit,
            conn.peer,
            "put",
            request.path,
            "ok",
            size=request.size,
            sha256=request.sha256,
            transferred=upload.size - upload.offset,
            duration_ms=duration,
        )

    async def _receive_body(self, conn: Connection[WireEvent], upload: Upload) -> None:
        """Body chunks into the partial file. The event loop only receives; one worker
        thread hashes and another writes, so the three overlap (SHA-256 is the costly
        part: about 0.55 s per GiB on one core here). Memory is bounded by the two
        threads' queues.

        A client that stops sending (it closed, broke off, gave up, or broke the
        framing) leaves what it sent: the bytes still waiting for the writer are
        written before the error goes on, so the partial holds every byte received
        and ``--resume`` continues from there. Only our own failure (a full disk) or a
        cancellation (the server stopping) drops what is waiting."""
        hasher = BatchWriter(upload.hash_all)
        writer = BatchWriter(upload.write_raw)
        try:
            while True:
                event = await receive_from_client(conn)
                if isinstance(event, BodyChunk):
                    await hasher.add(event.data)
                    await writer.add(event.data)
                elif isinstance(event, BodyEnd):
                    break
                else:
                    raise RemoteProtocolError(f"unexpected {type(event).__name__} inside a body")
        except (EOFError, ResourceError, ProtocolError):
            hasher.abort()  # at once (the digest of a kept partial is computed again on resume)
            try:
                with contextlib.suppress(ServiceError):  # the partial keeps what could be written
                    await close_all(writer)  # aborts it too if this task is cancelled meanwhile
            finally:
                await abort_all(hasher)  # joins its thread
            raise
        except BaseException:
            await abort_all(hasher, writer)
            raise
        await close_all(hasher, writer)

    # --- get -------------------------------------------------------------------------

    async def _get(self, conn: Connection[WireEvent], request: GetRequest) -> None:
        store = self.settings.store
        if self.transfers >= self.settings.max_transfers:
            raise ServiceError("busy: too many transfers; try again later", code="busy")
        self.transfers += 1
        started = time.monotonic()
        try:
            download = await _to_thread_settled(
                store.open_get, request.path, request.offset, request.prefix_sha256
            )
            try:
                conn.send(
                    encode_control(
                        {
                            "event": "file",
                            "path": download.path,
                            "size": download.size,
                            "sha256": download.sha256,
                            "mtime": download.mtime,
                            "offset": download.offset,
                            "mode": download.mode,
                        }
                    )
                )
                conn.send(encode_body_header(download.size - download.offset))
                await send_file_range(conn, download.fd, download.offset, download.size - download.offset)
            finally:
                os.close(download.fd)
        finally:
            self.transfers -= 1
        duration = (time.monotonic() - started) * 1000
        logger.info(
            "files: %s got %s (%d bytes, %.0f ms)",
            conn.peer,
            safe_display(request.path),
            download.size,
            duration,
        )
        await to_thread_shielded(
            store.audit,
            conn.peer,
            "get",
            request.path,
            "ok",
            size=download.size,
            sha256=download.sha256,
            transferred=download.size - download.offset,
            duration_ms=duration,
        )

    # --- listing and changes -----------------------------------------------------------

    async def _list(self, conn: Connection[WireEvent], request: ListRequest) -> None:
        """Stream a listing: the walk advances ENTRIES_PER_FRAME entries at a time in a
        worker thread and each batch is sent (with back-pressure) before the next is
        read, so a tree of a million names costs one batch of memory, not the list.

        Names that cannot be shown (``store.unshowable``) are left out; the last frame
        says how many (``"unlisted"``), and one log line per listing names the first."""
        store = self.settings.store
        unlisted = Unlisted()
        walk = store.walk(
            request.path, recursive=request.recursive, with_hash=request.hash, unlisted=unlisted
        )
        try:
            while True:
                entries = await asyncio.to_thread(_take, walk, ENTRIES_PER_FRAME)
                last = len(entries) < ENTRIES_PER_FRAME
                batch: list[dict[str, Any]] = []
                budget = 0
                for entry in entries:
                    obj = entry.to_json()
                    size = len(obj["path"].encode()) + 120
                    if batch and budget + size > _CONTROL_BUDGET:
                        await conn.send_all(
                            encode_control({"event": "entries", "entries": batch, "more": True})
                        )
                        batch, budget = [], 0
                    batch.append(obj)
                    budget += size
                if batch or last:
                    frame: dict[str, Any] = {"event": "entries", "entries": batch, "more": not last}
                    if last and unlisted.count:
                        frame["unlisted"] = unlisted.count
                    await conn.send_all(encode_control(frame))
                if last:
                    break
        finally:
            await asyncio.to_thread(walk.close)  # releases the walk's directory fds
        if unlisted.count:
            logger.info(
                "files: listing %s for %s left out %d name(s) that cannot be shown (not UTF-8, or "
                "characters the name rule refuses), such as %s",
                safe_display(request.path or "."),
                conn.peer,
                unlisted.count,
                unlisted.example,
            )

    async def _path_op(self, conn: Connection[WireEvent], request: PathRequest) -> None:
        store = self.settings.store
        if request.op == "stat":
            entry = await asyncio.to_thread(store.stat, request.path, with_hash=request.flag)
            conn.send(encode_control({"event": "stat", "entry": entry.to_json()}))
            return
        if request.op == "delete":
            done = await asyncio.to_thread(store.delete, request.path, recursive=request.flag)
            conn.send(encode_control({"event": "deleted", "path": done}))
        else:
            done = await asyncio.to_thread(store.mkdir, request.path, parents=request.flag)
            conn.send(encode_control({"event": "created", "path": done}))
        logger.info("files: %s %s %s", conn.peer, request.op, safe_display(request.path))
        await to_thread_shielded(store.audit, conn.peer, request.op, request.path, "ok")


def _take(iterator: Iterator[R], count: int) -> list[R]:
    """Up to ``count`` items of ``iterator`` (fewer: it is exhausted)."""
    return list(itertools.islice(iterator, count))
