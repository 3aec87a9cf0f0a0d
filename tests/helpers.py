"""Small client-side helpers shared by the loopback tests (every socket has a timeout)."""

from __future__ import annotations

import socket
from typing import Any

TIMEOUT = 10.0


def connect(address: Any, family: int = socket.AF_INET, timeout: float = TIMEOUT) -> socket.socket:
    """A connected client socket with a timeout (TCP or Unix)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes or fail."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise AssertionError(f"peer closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def recv_until_closed(sock: socket.socket) -> bytes:
    """Read until the peer closes (a reset counts as closed)."""
    chunks = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(chunks)
        if not chunk:
            return bytes(chunks)
        chunks += chunk


def recv_line(sock: socket.socket) -> bytes:
    """Read one LF-terminated line byte by byte (tests only: simple, not fast)."""
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"peer closed mid-line after {bytes(line)!r}")
        line += chunk
    return bytes(line)
