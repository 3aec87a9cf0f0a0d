"""Sending a file range on a connection: ``os.sendfile`` when the kernel can, reads otherwise.

Zero-copy needs the raw socket: once everything queued on the transport has gone out,
a worker thread calls ``sendfile`` on the socket's descriptor (waiting for room with
``poll``), so neither the event loop nor Python touches the bytes. The caller must not
write to the connection meanwhile. Over TLS, or where ``sendfile`` is missing, the
range is read in chunks and sent through the transport with back-pressure.
"""

from __future__ import annotations

import asyncio
import os
import select
from collections.abc import Callable
from typing import Any

from socketkit.aio.connection import Connection
from socketkit.errors import BrokenResourceError

__all__ = ["send_file_range"]

SENDFILE_CHUNK = 4 << 20
READ_CHUNK = 256 * 1024
_STALL_S = 60.0


def _sendfile(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    while True:
        try:
            return os.sendfile(sock_fd, file_fd, offset, count)
        except BlockingIOError:
            if not poller.poll(int(_STALL_S * 1000)):
                raise TimeoutError(f"the peer read nothing for {_STALL_S:g} s") from None
        except (BrokenPipeError, ConnectionResetError):
            return 0


async def send_file_range(
    conn: Connection[Any], fd: int, offset: int, count: int, *, progress: Callable[[int], None] | None = None
) -> None:
    """Send ``count`` bytes of ``fd`` from ``offset``.

    Raises:
        BrokenResourceError: the connection broke during the transfer.
        TimeoutError: the peer stopped reading.
        OSError: the file could not be read.
    """
    transport = conn.transport
    if transport is None:
        raise BrokenResourceError("not connected")
    sock = transport.get_extra_info("socket")
    end = offset + count
    if sock is not None and transport.get_extra_info("sslcontext") is None and hasattr(os, "sendfile"):
        await conn.drain_all()
        sock_fd = sock.fileno()
        while offset < end:
            sent = await asyncio.to_thread(_sendfile, sock_fd, fd, offset, min(SENDFILE_CHUNK, end - offset))
            if sent == 0:
                raise BrokenResourceError("the connection closed during a transfer")
            offset += sent
            conn.bytes_out += sent
            if progress is not None:
                progress(sent)
        return
    while offset < end:
        chunk = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK, end - offset), offset)
        if not chunk:
            raise OSError("the file shrank while it was being sent")
        await conn.send_all(chunk)
        offset += len(chunk)
        if progress is not None:
            progress(len(chunk))
