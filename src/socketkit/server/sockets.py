"""TCPServer, UDPServer and the Unix servers: binding, listening, accepting, closing.

socketserver-compatible (class attributes set the policy, as in the standard library),
with safer defaults and the fixes the stdlib lacks:

- ``request_queue_size`` 128 instead of 5; ``allow_reuse_address`` on POSIX, so a
  restarted server does not fail on TIME_WAIT (off for UDP, as in the stdlib: there it
  would let another local socket bind the same port and take the datagrams);
- IPv6 literals pick ``AF_INET6`` by themselves; ``"::"`` serves IPv4 and IPv6 at once
  (``dualstack_ipv6``);
- TLS: ``ssl_context=`` wraps each stream request; the handshake runs in
  ``finish_request`` (the handler's thread or child, never the accept loop) with
  ``tls_handshake_timeout``;
- a handler that keeps calling ``recv()`` after the peer closed (the tutorial's echo
  server loops on ``b""`` forever) gets ``ConnectionResetError`` after
  ``max_reads_after_eof`` reads instead of spinning a core (see ``_eofguard``);
- UDP takes datagrams up to 65,507 bytes and detects truncation (MSG_TRUNC): a datagram
  larger than ``max_packet_size`` is dropped and logged, never delivered cut short;
- a Unix server removes its socket file when it closes (if the file is still its own).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from socketkit._log import get_logger
from socketkit.address import format_peer
from socketkit.limits import (
    DEFAULT_MAX_READS_AFTER_EOF,
    DEFAULT_REQUEST_QUEUE_SIZE,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT_S,
    MAX_UDP_PAYLOAD_IPV4,
    MAX_UDP_PAYLOAD_IPV6,
)
from socketkit.server import _eofguard
from socketkit.server.base import BaseServer

if TYPE_CHECKING:
    import ssl

    from socketkit.server.handlers import BaseRequestHandler

__all__ = ["TCPServer", "UDPServer", "UnixDatagramServer", "UnixStreamServer"]

logger = get_logger(__name__)


def _is_ipv6_literal(host: object) -> bool:
    if not isinstance(host, str) or ":" not in host:
        return False
    try:
        socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    except OSError:
        return False
    return True


class TCPServer(BaseServer):
    """A stream server on an address family (``AF_INET`` unless told otherwise).

    Args:
        server_address: ``(host, port)``; port 0 picks a free port (read it back from
            ``server_address``). An IPv6 literal host selects ``AF_INET6``.
        RequestHandlerClass: the handler class.
        bind_and_activate: bind and listen now (``False``: call ``server_bind()`` and
            ``server_activate()`` yourself, as in the standard library).
        ssl_context: serve TLS with this server-side context.

    Raises:
        OSError: binding or listening failed (the socket is closed first).
    """

    address_family: socket.AddressFamily = socket.AF_INET
    socket_type: socket.SocketKind = socket.SOCK_STREAM
    request_queue_size: int = DEFAULT_REQUEST_QUEUE_SIZE
    allow_reuse_address: bool = os.name == "posix"
    allow_reuse_port: bool = False
    dualstack_ipv6: bool = True
    ssl_context: ssl.SSLContext | None = None
    tls_handshake_timeout: float | None = DEFAULT_TLS_HANDSHAKE_TIMEOUT_S
    max_reads_after_eof: int | None = DEFAULT_MAX_READS_AFTER_EOF
    _watch_eof: bool = False  # ThreadingMixIn: guard lazily (see _eofguard)

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: type[BaseRequestHandler],  # noqa: N803 (stdlib name)
        bind_and_activate: bool = True,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(server_address, RequestHandlerClass)
        if ssl_context is not None:
            self.ssl_context = ssl_context
        if (
            self.address_family == socket.AF_INET
            and isinstance(server_address, tuple)
            and _is_ipv6_literal(server_address[0])
        ):
            self.address_family = socket.AF_INET6
        self.socket = socket.socket(self.address_family, self.socket_type)
        self._eof_watch: _eofguard.EofWatch | None = None
        if (
            self._watch_eof
            and self.max_reads_after_eof is not None
            and self.socket_type == socket.SOCK_STREAM
            and _eofguard.is_supported()
        ):
            self._eof_watch = _eofguard.EofWatch(self.max_reads_after_eof)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        """Apply the socket options the class asks for, bind, and record the address."""
        sock = self.socket
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if self.address_family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
            wildcard = isinstance(self.server_address, tuple) and self.server_address[0] in (
                "::",
                "",
            )
            if wildcard:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if self.dualstack_ipv6 else 1)
        sock.bind(self.server_address)
        self.server_address = sock.getsockname()

    def server_activate(self) -> None:
        """Start listening with a backlog of ``request_queue_size``."""
        self.socket.listen(self.request_queue_size)

    def server_close(self) -> None:
        """Close the listening socket (mix-ins then drain their handlers)."""
        self.socket.close()
        if self._eof_watch is not None:
            self._eof_watch.close()
            self._eof_watch = None
        super().server_close()

    def _selectables(self) -> list[tuple[Any, Callable[[], None]]]:
        if self._eof_watch is None:
            return []
        return [(self._eof_watch, self._eof_watch.handle_events)]

    def fileno(self) -> int:
        """Return the listening socket's file descriptor."""
        return self.socket.fileno()

    def _socket_timeout(self) -> float | None:
        return self.socket.gettimeout()

    def get_request(self) -> tuple[Any, Any]:
        """Accept one connection.

        Returns:
            ``(connection, client_address)``.

        Raises:
            OSError: from ``accept()``.
        """
        request, address = self.socket.accept()
        if self.max_reads_after_eof is not None:
            if self._eof_watch is not None:
                self._eof_watch.add(request)
            else:
                _eofguard.guard(request, self.max_reads_after_eof)
        return request, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Run the handler; with ``ssl_context``, on the TLS connection after its handshake."""
        if self.ssl_context is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        tls = self._tls_handshake(request, client_address)
        try:
            self._connection_replaced(request, tls)
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_WR)
            tls.close()

    def _tls_handshake(self, request: socket.socket, client_address: Any) -> ssl.SSLSocket:
        import ssl  # noqa: PLC0415 (loaded already: an SSLContext exists)

        assert self.ssl_context is not None
        tls = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:
            tls.settimeout(self.tls_handshake_timeout)
            tls.do_handshake()
            tls.settimeout(None)
        except (ssl.SSLError, TimeoutError) as exc:
            tls.close()
            raise ConnectionAbortedError(
                errno.ECONNABORTED,
                f"TLS handshake with {format_peer(client_address)} failed: {exc}",
            ) from exc
        except BaseException:
            tls.close()
            raise
        return tls

    def _connection_replaced(self, old: Any, new: Any) -> None:
        """Mix-ins that track live connections (to close them at shutdown) follow TLS here."""

    def shutdown_request(self, request: Any) -> None:
        """Half-close the connection (so the peer reads to the end), then close it."""
        if self._eof_watch is not None:
            self._eof_watch.discard(request)
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Close the connection."""
        request.close()


class UDPServer(TCPServer):
    """A datagram server; each request is ``(data, server_socket)``.

    ``max_packet_size`` is 65,507 (any IPv4 datagram; 65,527 for IPv6). A larger
    datagram is detected with MSG_TRUNC, logged and dropped, never delivered truncated.
    """

    allow_reuse_address = False
    socket_type = socket.SOCK_DGRAM
    max_packet_size: int = MAX_UDP_PAYLOAD_IPV4

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: type[BaseRequestHandler],  # noqa: N803 (stdlib name)
        bind_and_activate: bool = True,
    ) -> None:
        self.truncated_datagrams = 0
        super().__init__(server_address, RequestHandlerClass, bind_and_activate)
        if self.address_family == socket.AF_INET6 and self.max_packet_size == MAX_UDP_PAYLOAD_IPV4:
            self.max_packet_size = MAX_UDP_PAYLOAD_IPV6

    def get_request(self) -> tuple[Any, Any]:
        """Receive one datagram.

        Returns:
            ``((data, server_socket), client_address)``.

        Raises:
            OSError: from the receive; ``EMSGSIZE`` for a dropped, truncated datagram.
        """
        if not hasattr(self.socket, "recvmsg"):  # Windows: one spare byte shows truncation
            data, address = self.socket.recvfrom(self.max_packet_size + 1)
            truncated = len(data) > self.max_packet_size
        else:
            data, _, flags, address = self.socket.recvmsg(self.max_packet_size)
            truncated = bool(flags & getattr(socket, "MSG_TRUNC", 0))
        if truncated:
            self.truncated_datagrams += 1
            count = self.truncated_datagrams
            if count & (count - 1) == 0:  # 1st, 2nd, 4th, 8th...: visible, never a log flood
                logger.warning(
                    "dropped a datagram from %s larger than max_packet_size=%d bytes (%d so far)",
                    format_peer(address),
                    self.max_packet_size,
                    count,
                )
            raise OSError(errno.EMSGSIZE, "datagram truncated")
        return (data, self.socket), address

    def server_activate(self) -> None:
        """Datagram sockets do not listen."""

    def shutdown_request(self, request: Any) -> None:
        """Nothing to shut down: the request shares the server socket."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Nothing to close: the request shares the server socket."""


class _UnixSocketFile:
    """Remove a Unix server's socket file at close, if it is still the one we bound."""

    socket: socket.socket
    server_address: Any
    _bound_inode: tuple[int, int] | None = None

    def server_bind(self) -> None:
        super().server_bind()  # type: ignore[misc]
        path = self.server_address
        if isinstance(path, str) and path and not path.startswith("\0"):
            st = os.stat(path)
            self._bound_inode = (st.st_dev, st.st_ino)

    def server_close(self) -> None:
        super().server_close()  # type: ignore[misc]
        if self._bound_inode is not None:
            with contextlib.suppress(OSError):
                st = os.stat(self.server_address)
                if (st.st_dev, st.st_ino) == self._bound_inode:
                    os.unlink(self.server_address)
            self._bound_inode = None


if hasattr(socket, "AF_UNIX"):

    class UnixStreamServer(_UnixSocketFile, TCPServer):
        """A stream server on a Unix socket path."""

        address_family = socket.AF_UNIX

    class UnixDatagramServer(_UnixSocketFile, UDPServer):
        """A datagram server on a Unix socket path."""

        address_family = socket.AF_UNIX
