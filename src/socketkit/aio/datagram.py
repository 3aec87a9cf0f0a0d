"""DatagramEndpoint: the asyncio glue for UDP (and Unix datagram) listeners.

Each datagram is handed whole to the service's handler, inline on the event loop (no
task per datagram; the stdlib's ThreadingUDPServer starts a thread per datagram). A
handler exception is logged with the sender's address and the endpoint goes on.

The endpoint reads and writes its socket itself (``loop.add_reader``, ``recvfrom_into``,
``sendto``) instead of through ``loop.create_datagram_endpoint``, because both event
loops' datagram transports change what a UDP service must guarantee:

- uvloop hands the socket to libuv's ``uv_udp_open``, which sets SO_REUSEADDR on it, so
  any local user who sets it too can bind our address and port and receive our
  datagrams (clearing it afterwards leaves a window at every start);
- both transports' ``sendto`` return without sending when given ``b""`` (CPython fixed
  it in 3.13; uvloop copies the old behaviour), and an empty datagram is a datagram
  (RFC 862 echoes it; time and daytime clients ask with one);
- both buffer replies without bound while the socket's send buffer is full; UDP may
  lose a datagram, and a flood must not grow our memory, so a reply that does not fit
  is dropped and counted.

Datagrams are read in batches of ``_READ_BATCH`` per readiness event, each UDP one as a
64 KiB read that holds any IPv4 or IPv6 payload; Unix datagrams (no IP size bound) go
into a 256 KiB buffer, and a larger one is detected (MSG_TRUNC), counted and dropped,
never delivered cut short.

A datagram that gets no answer is counted by reason in the server's stats
(``ServerStats.datagrams_dropped``): the engine's reasons are ``truncated``,
``send_buffer_full`` and ``send_failed``; a service adds its own with ``drop(reason)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys
from typing import Any, Final, Protocol

from socketkit._log import get_logger
from socketkit.address import format_peer
from socketkit.aio.stats import ServerStats

__all__ = ["DatagramEndpoint", "DatagramHandler"]

logger = get_logger(__name__)

_RECV_BUFFER: Final = 65_536
"""Bytes read per UDP datagram: every UDP payload fits (65,507 on IPv4, 65,527 on IPv6)."""

_RECV_BUFFER_UNIX: Final = 262_144
"""Bytes read per Unix datagram, which has no IP limit: what asyncio's transports read
(256 KiB), above Linux's default socket buffer (208 KiB) that bounds what a sender can
send unless it raises its SO_SNDBUF."""

_READ_BATCH: Final = 64
"""Datagrams read per readiness event: drains a burst in one callback without keeping
the loop from its other sockets for long (64 x ~2 us)."""

# Linux returns a datagram's real length with MSG_TRUNC, even when it did not fit.
_MSG_TRUNC: Final = socket.MSG_TRUNC if sys.platform == "linux" else 0
_SEND_FULL = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})

DROP_TRUNCATED: Final = "truncated"
"""Drop reason: the datagram was larger than the receive buffer."""
DROP_SEND_BUFFER_FULL: Final = "send_buffer_full"
"""Drop reason: the reply did not fit in the socket's send buffer."""
DROP_SEND_FAILED: Final = "send_failed"
"""Drop reason: the system refused to send the reply (no route, bad address...)."""


class DatagramHandler(Protocol):
    """What a UDP service implements."""

    def __call__(self, data: bytes, addr: Any, endpoint: DatagramEndpoint) -> None:
        """Handle one datagram from ``addr``; reply with ``endpoint.sendto``."""


class DatagramEndpoint:
    """One bound datagram socket of a server; reading starts at once on the running loop.

    Args:
        sock: the bound, non-blocking datagram socket (the endpoint closes it).
        handler: the service's datagram handler.
        stats: the server's counters.
    """

    __slots__ = ("_buffer", "_closed", "_fd", "_handler", "_loop", "_sendto", "_sock", "_stats", "_view")

    def __init__(self, sock: socket.socket, handler: DatagramHandler, stats: ServerStats) -> None:
        self._sock = sock
        self._sendto = sock.sendto
        self._handler = handler
        self._stats = stats
        unix = sock.family == getattr(socket, "AF_UNIX", None)
        # Unix datagrams have no IP size bound: read into a buffer and detect truncation.
        self._buffer = bytearray(_RECV_BUFFER_UNIX) if unix else None
        self._view = memoryview(self._buffer) if self._buffer is not None else None
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        if self._buffer is None:
            self._read_ip()
        else:
            self._read_unix()

    def _read_ip(self) -> None:
        # The hot path of UDP services: a UDP payload (65,507 bytes at most on IPv4,
        # 65,527 on IPv6) always fits the 64 KiB asked for, so nothing can be cut and
        # recvfrom's own bytes object is handed on as it is. Counters are added once
        # per batch.
        recvfrom, handler = self._sock.recvfrom, self._handler
        received = size = 0
        try:
            for _ in range(_READ_BATCH):
                if self._closed:  # a handler closed us
                    return
                try:
                    data, addr = recvfrom(_RECV_BUFFER)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    # An ICMP error queued for an earlier reply concerns one peer only.
                    logger.debug("datagram receive error: %s", exc)
                    return
                received += 1
                size += len(data)
                try:
                    handler(data, addr, self)
                except Exception:
                    logger.exception("error handling a datagram from %s", format_peer(addr))
        finally:
            stats = self._stats
            stats.datagrams_in += received
            stats.bytes_in += size

    def _read_unix(self) -> None:
        assert self._view is not None
        sock, view, stats, handler = self._sock, self._view, self._stats, self._handler
        for _ in range(_READ_BATCH):
            if self._closed:  # a handler closed us
                return
            try:
                size, addr = sock.recvfrom_into(view, 0, _MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("datagram receive error: %s", exc)
                return
            stats.datagrams_in += 1
            stats.bytes_in += size
            if size > len(view):
                count = self.drop(DROP_TRUNCATED)
                if count & (count - 1) == 0:  # 1st, 2nd, 4th...: visible, never a flood
                    logger.warning(
                        "dropped a %d-byte datagram from %s: larger than %d bytes (%d so far)",
                        size,
                        format_peer(addr),
                        len(view),
                        count,
                    )
                continue
            try:
                handler(bytes(view[:size]), addr, self)
            except Exception:
                logger.exception("error handling a datagram from %s", format_peer(addr))

    def sendto(self, data: bytes, addr: Any) -> None:
        """Send one datagram, empty ones included. One that does not fit in the socket's
        send buffer, or that the system refuses (no route...), is dropped and counted."""
        if self._closed:
            return
        try:
            self._sendto(data, addr)
        except OSError as exc:
            reason = DROP_SEND_BUFFER_FULL if exc.errno in _SEND_FULL else DROP_SEND_FAILED
            count = self.drop(reason)
            if count & (count - 1) == 0:
                logger.info("no reply to %s: %s (%d so far)", format_peer(addr), exc, count)
            return
        stats = self._stats
        stats.datagrams_out += 1
        stats.bytes_out += len(data)

    def drop(self, reason: str) -> int:
        """Count a datagram that gets no answer; return the count for ``reason`` (so a
        service can log the 1st, 2nd, 4th, 8th... and never flood the log)."""
        dropped = self._stats.datagrams_dropped
        count = dropped[reason] = dropped.get(reason, 0) + 1
        return count

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, OSError, RuntimeError):  # the loop may be closed
            self._loop.remove_reader(self._fd)
        self._sock.close()
