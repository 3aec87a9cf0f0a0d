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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
from collections.abc import Callable
from typing import Any

from socketkit.aio.connection import Connection
from socketkit.errors import BrokenResourceError
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
        except (BrokenPipeError, ConnectionResetError):
            return 0


async def send_file_range(
    conn: Connection[Any], fd: int, offset: int, count: int, *, progress: Callable[[int], None] | None = None
) -> None:
    """Send ``count`` bytes of ``fd`` from ``offset``.

    Raises:
        BrokenResourceError: the connection broke during the transfer.
        TimeoutError: the peer stopped reading for the connection's write timeout.
        OSError: the file could not be read.
    """
    transport = conn.transport
    if transport is None:
        raise BrokenResourceError("not connected")
    sock = transport.get_extra_info("socket")
    end = offset + count
    if sock is not None and transport.get_extra_info("sslcontext") is None and hasattr(os, "sendfile"):
        await conn.drain_all()
        if conn.is_closing:
            raise BrokenResourceError("the connection closed during a transfer")
        stall = (
            conn.limits.write_timeout if conn.limits.write_timeout is not None else DEFAULT_WRITE_TIMEOUT_S
        )
        sock_fd = os.dup(sock.fileno())
        wake_r, wake_w = os.pipe()
        try:
            while offset < end:
                sent = await _in_thread(
                    wake_w, _sendfile, sock_fd, fd, offset, min(SENDFILE_CHUNK, end - offset), wake_r, stall
                )
                if sent == 0 or conn.is_closing:
                    raise BrokenResourceError("the connection closed during a transfer")
                offset += sent
                conn.bytes_out += sent
                if progress is not None:
                    progress(sent)
        finally:
            for descriptor in (sock_fd, wake_r, wake_w):
                os.close(descriptor)
        return
    while offset < end:
        chunk = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK, end - offset), offset)
        if not chunk:
            raise OSError("the file shrank while it was being sent")
        await conn.send_all(chunk)
        offset += len(chunk)
        if progress is not None:
            progress(len(chunk))


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
