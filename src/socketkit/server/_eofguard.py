"""The EOF-spin guard: end a handler that keeps reading a connection its peer closed.

The tutorial's concurrent echo handler loops ``recv()`` / ``sendall()`` with no check
for ``b""``; on the stdlib it spins a core forever once its client leaves. A guarded
socket counts reads that return end of stream and raises ``ConnectionResetError``
after ``limit`` of them; correct code reads at end of stream once or twice.

Counting needs a Python-level ``recv`` (about 100 ns more per call), so threaded servers
on Linux do not pay it up front: ``EofWatch`` registers each connection in an epoll set
for EPOLLRDHUP, and only a connection whose peer has closed its side is switched to
the counting class (``__class__`` assignment; the layouts are identical). Elsewhere, and
for servers that run handlers on the serve loop or in children, connections are guarded
from the start with ``guard()``.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
import weakref
from typing import Any

__all__ = ["EofWatch", "guard", "is_supported"]

_recv = socket.socket.recv  # the C methods, called directly: super() would cost 3x more
_recv_into = socket.socket.recv_into

# socket -> [reads at EOF so far, limit]; weak, so closed sockets vanish with their objects.
_counts: weakref.WeakKeyDictionary[socket.socket, list[int]] = weakref.WeakKeyDictionary()


def _at_eof(sock: socket.socket) -> None:
    state = _counts.get(sock)
    if state is None:
        return
    state[0] += 1
    if state[0] > state[1]:
        raise ConnectionResetError(
            errno.ECONNRESET,
            f"the peer closed the connection and the handler read {state[0]} more times; "
            "ending it (see max_reads_after_eof)",
        )


class _GuardedSocket(socket.socket):
    """A connection whose reads at end of stream are counted."""

    __slots__ = ()  # same layout as socket.socket, so __class__ can be switched

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = _recv(self, bufsize, flags)
        if data or not bufsize:
            return data
        _at_eof(self)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        received: int = _recv_into(self, buffer, nbytes, flags)
        if received or not (nbytes or len(buffer)):
            return received
        _at_eof(self)
        return received


def guard(sock: socket.socket, limit: int) -> None:
    """Count ``sock``'s reads at end of stream from now on; raise after ``limit``."""
    if type(sock) in (socket.socket, _GuardedSocket):
        _counts[sock] = [0, limit]
        sock.__class__ = _GuardedSocket


def is_supported() -> bool:
    """Whether ``EofWatch`` can work here (Linux epoll with EPOLLRDHUP)."""
    return hasattr(select, "epoll") and hasattr(select, "EPOLLRDHUP")


class EofWatch:
    """An epoll set that tells which connections' peers have closed; pollable itself,
    so the serve loop waits on it with the listener.

    Args:
        limit: reads at end of stream allowed once a connection is guarded.
    """

    def __init__(self, limit: int) -> None:
        self._epoll = select.epoll()
        self._limit = limit
        self._lock = threading.Lock()
        self._sockets: dict[int, socket.socket] = {}

    def fileno(self) -> int:
        """The epoll fd (readable when some watched peer has closed)."""
        return self._epoll.fileno()

    def add(self, sock: socket.socket) -> None:
        """Watch a newly accepted connection (it may already be closed by its peer)."""
        fd = sock.fileno()
        with self._lock:
            if self._epoll.closed:
                return
            self._sockets[fd] = sock  # replaces a stale entry of a reused fd number
            try:
                self._epoll.register(fd, select.EPOLLRDHUP | select.EPOLLET)
            except FileExistsError:  # the fd was reused before epoll dropped the old file
                self._epoll.modify(fd, select.EPOLLRDHUP | select.EPOLLET)

    def discard(self, sock: socket.socket) -> None:
        """Stop watching a connection about to be closed (also after ``close()``: handlers
        finish while the server drains, after the serve loop and this watch are gone)."""
        fd = sock.fileno()
        with self._lock:
            if fd < 0 or self._epoll.closed:
                return
            if self._sockets.get(fd) is sock:
                del self._sockets[fd]
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def handle_events(self) -> None:
        """Guard every connection whose peer closed since the last call."""
        with self._lock:
            if self._epoll.closed:
                return
            ready = [self._sockets.pop(fd, None) for fd, _ in self._epoll.poll(0)]
        for sock in ready:
            if sock is not None:
                self.discard(sock)
                guard(sock, self._limit)

    def close(self) -> None:
        """Close the epoll fd; later calls of the other methods do nothing."""
        with self._lock:
            self._sockets.clear()
            self._epoll.close()
