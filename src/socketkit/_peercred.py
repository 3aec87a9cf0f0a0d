"""Who is on the other end of a Unix socket, for per-peer rules (both engines)."""

from __future__ import annotations

import contextlib
import socket
import struct

__all__ = ["unix_peer_key"]

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def unix_peer_key(sock: socket.socket | None) -> str:
    """``uid:N`` for the user connected to a Unix socket (``SO_PEERCRED``), or ``unix``
    where the kernel does not say (every such peer is then one)."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is not None and peercred is not None:
        with contextlib.suppress(OSError):
            _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, peercred, _PEERCRED.size))
            return f"uid:{uid}"
    return "unix"
