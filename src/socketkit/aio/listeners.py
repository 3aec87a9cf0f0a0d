"""Listening sockets for the asyncio engine: TCP (IPv4, IPv6, dual stack), UDP and Unix.

The engine binds its own sockets instead of letting ``loop.create_server`` do it, for
what asyncio does not offer: one ``"::"`` socket serving IPv4 and IPv6 (asyncio sets
IPV6_V6ONLY), SO_REUSEPORT groups for ``--workers``, a stale Unix socket file told
apart from a live server, and the backlog of socketkit.limits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from socketkit._oserrors import listen_error
from socketkit.address import Address
from socketkit.limits import DEFAULT_REQUEST_QUEUE_SIZE

if TYPE_CHECKING:
    import ssl

__all__ = [
    "Listener",
    "bind_datagram",
    "bind_stream",
    "bound_address",
    "remove_unix_socket",
    "resolve_bind",
]


@dataclass(frozen=True, slots=True)
class Listener:
    """Where and how to listen.

    Attributes:
        address: host and port (port 0: any free port), or a Unix path.
        kind: ``"tcp"`` (stream; Unix stream for a path) or ``"udp"`` (datagrams).
        ssl: serve TLS on this stream listener.
        reuse_port: join an SO_REUSEPORT group (several processes on one port).
    """

    address: Address
    kind: Literal["tcp", "udp"] = "tcp"
    ssl: ssl.SSLContext | None = None
    reuse_port: bool = False


def resolve_bind(address: Address, sock_type: int) -> tuple[int, Any]:
    """Return ``(family, sockaddr)`` to bind a host/port (``""``/``*``: every address).

    Raises:
        OSError: the host does not resolve (socket.gaierror).
    """
    host = address.host
    if host in ("", "*"):
        host = "::" if socket.has_ipv6 else "0.0.0.0"
    infos = socket.getaddrinfo(host, address.port, type=sock_type, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


# SO_REUSEADDR means different things per socket type. On a TCP listener it only lets a
# restarted server bind while connections of the old one sit in TIME_WAIT (every server
# sets it: nginx, Go's net, trio, asyncio). On a UDP socket there is no TIME_WAIT, and it
# lets any other socket that sets it too (on Linux, of any user) bind the same address
# and port: datagrams are then delivered to the newest, so a local user steals them.
# UDP sockets get neither option, except SO_REUSEPORT inside a --workers group, which
# Linux restricts to sockets of the same effective user. (uvloop's libuv would set
# SO_REUSEADDR again on a socket handed to it: the engine reads its datagram sockets
# itself, see aio/datagram.py.)
def _prepare(sock: socket.socket, family: int, sockaddr: Any, reuse_port: bool) -> None:
    if family != getattr(socket, "AF_UNIX", None) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available on this system")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6 and sockaddr[0] == "::":
        # One socket for both families, where asyncio would need two.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


def _unlink_stale_unix_socket(path: str) -> None:
    """Remove a socket file nobody listens on; refuse to take over a live one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
    raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")


def bind_stream(
    address: Address, *, backlog: int = DEFAULT_REQUEST_QUEUE_SIZE, reuse_port: bool = False
) -> socket.socket:
    """Return a non-blocking listening stream socket.

    Raises:
        ListenError: resolving, binding or listening failed (the socket is closed first);
            it names the address and says why in words.
    """
    try:
        return _bind_stream(address, backlog, reuse_port)
    except OSError as exc:
        raise listen_error(exc, address, "tcp") from exc


def _bind_stream(address: Address, backlog: int, reuse_port: bool) -> socket.socket:
    if address.path is not None:
        _unlink_stale_unix_socket(address.path)
        family: int = socket.AF_UNIX
        sockaddr: Any = address.path
    else:
        family, sockaddr = resolve_bind(address, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        _prepare(sock, family, sockaddr, reuse_port)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_datagram(address: Address, *, reuse_port: bool = False) -> socket.socket:
    """Return a non-blocking bound datagram socket (UDP, or Unix datagram for a path).

    Raises:
        ListenError: resolving or binding failed (the socket is closed first); it names
            the address and says why in words.
    """
    try:
        return _bind_datagram(address, reuse_port)
    except OSError as exc:
        raise listen_error(exc, address, "udp") from exc


def _bind_datagram(address: Address, reuse_port: bool) -> socket.socket:
    if address.path is not None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(address.path).st_mode):
                os.unlink(address.path)
        family: int = socket.AF_UNIX
        sockaddr: Any = address.path
    else:
        family, sockaddr = resolve_bind(address, socket.SOCK_DGRAM)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        _prepare(sock, family, sockaddr, reuse_port)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_address(sock: socket.socket) -> Address:
    """The address a socket is bound to, as an ``Address`` (port 0 resolved)."""
    name = sock.getsockname()
    if isinstance(name, tuple):
        return Address(str(name[0]), int(name[1]))
    return Address(path=name if isinstance(name, str) else os.fsdecode(name))


def remove_unix_socket(address: Address, inode: tuple[int, int] | None) -> None:
    """Unlink a Unix socket file we bound, if it is still ours."""
    if address.path is None or inode is None:
        return
    with contextlib.suppress(OSError):
        st = os.stat(address.path)
        if (st.st_dev, st.st_ino) == inode:
            os.unlink(address.path)
