"""Who a connecting peer is for per-peer limits: on this machine, its user; else its address.

Every local user can connect from any address in 127.0.0.0/8 (and from ::1), so a
loopback address tells nothing about who is connecting, and counting loopback
addresses apart would let one user dodge every per-address cap. Counting all of
loopback as one peer closes that, but makes every cap a budget that all local users
share, so one of them can starve the others. The kernel knows better: it knows which
user owns the other end of a local connection.

- A Unix socket peer: ``SO_PEERCRED`` (``uid:N``).
- A TCP peer on loopback: an exact ``NETLINK_SOCK_DIAG`` look-up (``sock_diag(7)``,
  ``inet_diag_req_v2`` with the connection's 4-tuple seen from the peer's side); the
  reply's ``idiag_uid`` owns the peer's socket (``uid:N``, the same key as that user's
  Unix connections). Root is one key like any other user (it can forge anything).
- Where the owner cannot be found, all of loopback stays one peer (``loopback``): the
  look-up is unavailable (not Linux; netlink refused by a sandbox), or the peer's socket
  is gone already (closed before we accepted: a time-wait socket has no owner).
- Any other peer: ``socketkit.address.limit_key`` of its address (IPv6 by /64).

Cost: one request and one reply on a netlink socket per loopback accept. The kernel
answers within the ``send`` itself, so the ``recv`` never waits (it does not block
either: an answer that is not there yet means "not known"). ``bench/bench_peercred.py``
measures it against accepting without it.

Resource handling: a ``PeerKeys`` opens its netlink socket at the first loopback
accept and keeps it until ``close()`` (its owner's, the asyncio server's, lifetime); a
process forked from the opener opens its own, since replies go to whichever process
reads the shared socket first. It is used from one thread (its server's event loop).
The blocking engine, a thread per connection, uses ``peer_key``: a netlink socket of
its own for the one look-up (a few µs more, beside a thread's start).

Error handling: a failed look-up is never an error: the peer gets the fallback key.
Only a netlink socket that cannot be opened is logged, once per ``PeerKeys``.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
from typing import Any, Final

from socketkit._log import get_logger
from socketkit._peercred import unix_peer_key
from socketkit.address import LOOPBACK_KEY, limit_key

__all__ = ["NETLINK_SOCK_DIAG", "SOCK_DIAG_BY_FAMILY", "PeerKeys", "peer_key"]

logger = get_logger(__name__)

NETLINK_SOCK_DIAG: Final = 4
"""The netlink family of socket diagnostics (``linux/netlink.h``)."""

SOCK_DIAG_BY_FAMILY: Final = 20
"""The sock_diag request type (``linux/sock_diag.h``)."""

_NLM_F_REQUEST = 1
_NO_COOKIE = 0xFFFFFFFF  # INET_DIAG_NOCOOKIE: match any socket with this 4-tuple
_ALL_STATES = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
# nlmsghdr, then inet_diag_req_v2: family, protocol, extensions, pad, states, and the
# sockid: ports (big-endian on the wire: passed through htons), source and destination
# addresses (network order, 16 bytes), interface, cookie (two words).
_REQUEST = struct.Struct("=IHHIIBBBBIHH16s16sIII")
_SOCKID_SIZE = 48
_UID_INODE = struct.Struct("=II")  # inet_diag_msg's idiag_uid and idiag_inode
# inet_diag_msg: family, state, timer, retrans; the sockid; expires, rqueue, wqueue; uid.
_UID_OFFSET = _NLMSGHDR.size + 4 + _SOCKID_SIZE + 12

REPLY_BUFFER: Final = 1024
"""Bytes read for one reply: an ``inet_diag_msg`` without extensions is 72 bytes and
the kernel adds a few small attributes (124 bytes in all on Linux 6.x)."""

MAX_STALE_REPLIES: Final = 4
"""Replies to earlier requests skipped before giving up on this one. There is none in
practice (every request is answered within its ``send``); the bound keeps a confused
socket from costing more than a few reads per accept."""


@functools.lru_cache(maxsize=1024)  # per accept: a few local addresses, pack each once
def _packed(family: int, host: str) -> bytes:
    return socket.inet_pton(family, host.split("%", 1)[0]).ljust(16, b"\0")


class PeerKeys:
    """Works out each accepted connection's key for per-peer limits (module docstring)."""

    __slots__ = ("_netlink", "_opened_by", "_sequence", "_unavailable")

    def __init__(self) -> None:
        self._netlink: socket.socket | None = None
        self._opened_by = 0
        self._sequence = 0
        self._unavailable = not hasattr(socket, "AF_NETLINK")

    def key(self, sock: socket.socket, addr: Any) -> str:
        """The key of the peer of ``sock``, just accepted from ``addr``."""
        if not isinstance(addr, tuple):
            return unix_peer_key(sock)
        key = limit_key(addr[0])
        if key != LOOPBACK_KEY:
            return key
        uid = self.loopback_owner(sock, addr)
        return LOOPBACK_KEY if uid is None else f"uid:{uid}"

    def loopback_owner(self, sock: socket.socket, peer: Any) -> int | None:
        """The user owning the other end of the TCP connection ``sock`` (from ``peer``),
        or ``None`` where it cannot be found."""
        netlink = self._open()
        if netlink is None:
            return None
        self._sequence = sequence = (self._sequence + 1) & 0xFFFFFFFF
        try:
            local = sock.getsockname()
            family = sock.family
            # The peer's socket, seen from its side: it is the source, we the destination.
            request = _REQUEST.pack(
                _REQUEST.size,
                SOCK_DIAG_BY_FAMILY,
                _NLM_F_REQUEST,
                sequence,
                0,
                family,
                socket.IPPROTO_TCP,
                0,
                0,
                _ALL_STATES,
                socket.htons(peer[1]),
                socket.htons(local[1]),
                _packed(family, peer[0]),
                _packed(family, local[0]),
                0,
                _NO_COOKIE,
                _NO_COOKIE,
            )
            netlink.send(request)
            for _ in range(MAX_STALE_REPLIES + 1):
                reply = netlink.recv(REPLY_BUFFER, socket.MSG_DONTWAIT)
                if len(reply) < _NLMSGHDR.size:
                    return None
                _, kind, _, seq, _ = _NLMSGHDR.unpack_from(reply)
                if seq != sequence:
                    continue  # an answer to an earlier request that gave up
                if kind != SOCK_DIAG_BY_FAMILY or len(reply) < _UID_OFFSET + _UID_INODE.size:
                    return None  # NLMSG_ERROR: no such socket (it is gone already)
                uid, inode = _UID_INODE.unpack_from(reply, _UID_OFFSET)
                # A time-wait socket (closed by its owner) reports uid 0 and no inode.
                return uid if inode else None
        except (OSError, ValueError, IndexError):
            return None
        return None

    def _open(self) -> socket.socket | None:
        if self._unavailable:
            return None
        pid = os.getpid()
        if self._netlink is not None and self._opened_by == pid:
            return self._netlink
        self.close()  # inherited across fork: the parent's replies could land in our reads
        try:
            netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        except OSError as exc:
            self._unavailable = True
            logger.warning(
                "cannot tell local users apart (sock_diag: %s): all of loopback is one peer for its limits",
                exc,
            )
            return None
        netlink.setblocking(False)
        self._netlink, self._opened_by = netlink, pid
        return netlink

    def close(self) -> None:
        """Close the netlink socket (the next look-up opens a new one)."""
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None


def peer_key(sock: socket.socket, addr: Any) -> str:
    """The key of the peer of ``sock`` (accepted from ``addr``), with a netlink socket of
    its own, closed before it returns: for engines without one owner thread."""
    keys = PeerKeys()
    try:
        return keys.key(sock, addr)
    finally:
        keys.close()
