"""Sending a file range on a connection: ``os.sendfile`` when the kernel can, reads otherwise.

Zero-copy needs the raw socket: once everything queued on the transport has gone out,
a worker thread calls ``sendfile`` on the socket (waiting for room with ``poll``), so
neither the event loop nor Python touches the bytes. The caller must not write to the
connection meanwhile. Over TLS, or where ``sendfile`` is missing, the range is read in
chunks and sent through the transport with back-pressure.

The thread works on a duplicate of the socket's descriptor, never on the transport's
own number: when the transport closes its descriptor (a timeout, shutdown, the peer
gone) that number can be given to the next accepted connection at once, and a thread
still holding it would send the file to a stranger. A cancelled transfer (shutdown, a
dropped client) wakes the thread through a pipe it polls beside the socket, and is
waited for before the duplicate is closed; a peer that takes nothing for the
connection's write timeout ends the transfer the same way.

A body cut short leaves the stream in the middle of a frame: nothing more can be said on
it (an ERROR frame would be read as file bytes), so a transfer that ends early for any
reason aborts the connection. A peer that went away raises ``BrokenResourceError`` with
the ``OSError`` as its cause (``socketkit._oserrors.resource_error``); an error of the
file itself stays an ``OSError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
from collections.abc import Callable
from typing import Any

from socketkit._oserrors import resource_error
from socketkit.aio.connection import Connection
from socketkit.errors import BrokenResourceError, ClosedResourceError
from socketkit.limits import DEFAULT_WRITE_TIMEOUT_S

__all__ = ["send_file_range"]

SENDFILE_CHUNK = 4 << 20
"""Bytes handed to one ``sendfile`` job: large enough to keep the kernel busy, small
enough that progress and cancellation are seen every few milliseconds at GB/s."""

READ_CHUNK = 256 * 1024
"""Bytes read per step where ``sendfile`` cannot be used (TLS)."""


class _Cancelled(Exception):
    """The transfer was called off while the thread waited."""


def _sendfile(sock_fd: int, file_fd: int, offset: int, count: int, wake_fd: int, stall_s: float) -> int:
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    poller.register(wake_fd, select.POLLIN)
    timeout_ms = int(stall_s * 1000)
    while True:
        try:
            return os.sendfile(sock_fd, file_fd, offset, count)
        except BlockingIOError:
            ready = poller.poll(timeout_ms)
            if not ready:
                raise TimeoutError(f"the peer read nothing for {stall_s:g} s") from None
            if any(fd == wake_fd for fd, _ in ready):
                raise _Cancelled from None


async def send_file_range(
    conn: Connection[Any], fd: int, offset: int, count: int, *, progress: Callable[[int], None] | None = None
) -> None:
    """Send ``count`` bytes of ``fd`` from ``offset``; if it ends early for any reason
    (an error, a cancellation), the connection is aborted: the stream is mid-body.

    Raises:
        BrokenResourceError: the connection broke during the transfer.
        ClosedResourceError: it was closed on our side meanwhile.
        TimeoutError: the peer stopped reading for the connection's write timeout.
        OSError: the file could not be read (or shrank).
    """
    transport = conn.transport
    if transport is None:
        raise ClosedResourceError("not connected")
    done = False
    try:
        if transport.get_extra_info("sslcontext") is None and hasattr(os, "sendfile"):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                await _zero_copy(conn, sock.fileno(), fd, offset, count, progress)
                done = True
                return
        end = offset + count
        while offset < end:
            chunk = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK, end - offset), offset)
            if not chunk:
                raise OSError("the file shrank while it was being sent")
            await conn.send_all(chunk)
            offset += len(chunk)
            if progress is not None:
                progress(len(chunk))
        done = True
    finally:
        if not done:
            conn.abort()


async def _zero_copy(
    conn: Connection[Any],
    sock_no: int,
    fd: int,
    offset: int,
    count: int,
    progress: Callable[[int], None] | None,
) -> None:
    await conn.drain_all()
    _check_open(conn)
    stall = conn.limits.write_timeout if conn.limits.write_timeout is not None else DEFAULT_WRITE_TIMEOUT_S
    end = offset + count
    sock_fd = os.dup(sock_no)
    wake_r, wake_w = os.pipe()
    try:
        while offset < end:
            try:
                sent = await _in_thread(
                    wake_w, _sendfile, sock_fd, fd, offset, min(SENDFILE_CHUNK, end - offset), wake_r, stall
                )
            except ConnectionError as exc:  # EPIPE, ECONNRESET: the peer's side, not the file's
                raise resource_error(exc, f"connection with {conn.peer}") from exc
            _check_open(conn)
            if sent == 0:
                raise OSError("the file shrank while it was being sent")
            offset += sent
            conn.bytes_out += sent
            if progress is not None:
                progress(sent)
    finally:
        for descriptor in (sock_fd, wake_r, wake_w):
            os.close(descriptor)


def _check_open(conn: Connection[Any]) -> None:
    """Raise what ended the connection while the thread was sending, if it ended."""
    if conn.is_closing:
        error = conn.error
        if isinstance(error, BrokenResourceError):
            raise error
        raise ClosedResourceError(f"connection with {conn.peer} closed during a transfer")


async def _in_thread(wake_w: int, func: Callable[..., int], *args: Any) -> int:
    """Run ``func`` in a thread; if the caller is cancelled, wake the thread and wait for
    it to let go of the descriptors before passing the cancellation on."""
    job = asyncio.get_running_loop().run_in_executor(None, func, *args)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        os.write(wake_w, b"x")
        # The thread ends at once now; wait for it even through further cancellations
        # (the descriptors it holds are closed right after).
        while not job.done():
            with contextlib.suppress(asyncio.CancelledError, _Cancelled, OSError, TimeoutError):
                await asyncio.shield(job)
        raise
