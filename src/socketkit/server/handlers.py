"""Request handlers: the stdlib's three, plus FramedRequestHandler for any codec.

``BaseRequestHandler``, ``StreamRequestHandler`` and ``DatagramRequestHandler`` keep
the standard library's attributes and setup/handle/finish order, so handlers written
for ``socketserver`` run unchanged. ``FramedRequestHandler`` is the blocking glue that
drives a ``socketkit.codec`` decoder: read up to ``recv_size`` bytes, feed, hand out
complete messages, write replies; it has an idle timeout by default (the stdlib
handlers wait forever) and reports bad input through ``protocol_error()``. When its
server stops, it ends between requests (at once if it is at rest, after its request if
not, at the drain timeout in any case: ``socketkit.server.drain``) and says why in
``farewell()``. Socket errors become ``BrokenResourceError`` with the ``OSError`` as
cause (``socketkit._oserrors.translate_os_errors``).
"""

from __future__ import annotations

import contextlib
import io
import socket
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from socketkit._log import get_logger
from socketkit._oserrors import translate_os_errors
from socketkit.address import format_peer
from socketkit.codec.base import END_OF_STREAM, NEED_DATA, Decoder
from socketkit.errors import RemoteProtocolError, ResourceError
from socketkit.limits import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_RECV_SIZE

__all__ = [
    "BaseRequestHandler",
    "DatagramRequestHandler",
    "FramedRequestHandler",
    "StreamRequestHandler",
]

logger = get_logger(__name__)

T = TypeVar("T")


class BaseRequestHandler:
    """One instance per request: ``setup()``, ``handle()``, then always ``finish()``.

    Attributes:
        request: the connection (stream servers) or ``(data, socket)`` (datagrams).
        client_address: the peer's address.
        server: the server that accepted the request.
    """

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        """Prepare for ``handle()``; may be overridden."""

    def handle(self) -> None:
        """Serve the request; override it."""

    def finish(self) -> None:
        """Clean up after ``handle()``, even when it raised; may be overridden."""


class _SocketWriter(io.BufferedIOBase):
    """A write-only file on a socket whose ``write()`` sends everything (``sendall``)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


class StreamRequestHandler(BaseRequestHandler):
    """A stream handler with ``rfile`` and ``wfile`` file objects on the connection.

    Attributes:
        rbufsize: ``rfile`` buffer size (-1: default buffering).
        wbufsize: ``wfile`` buffer size (0: unbuffered, every write is sent at once).
        timeout: socket timeout for the connection (``None``: none, as in the stdlib).
        disable_nagle_algorithm: set ``TCP_NODELAY``.
    """

    rbufsize: int = -1
    wbufsize: int = 0
    timeout: float | None = None
    disable_nagle_algorithm: bool = False

    def setup(self) -> None:
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.rfile: io.BufferedIOBase = self.connection.makefile("rb", self.rbufsize)
        self.wfile: io.BufferedIOBase
        if self.wbufsize == 0:
            self.wfile = _SocketWriter(self.connection)
        else:
            self.wfile = self.connection.makefile("wb", self.wbufsize)

    def finish(self) -> None:
        if not self.wfile.closed:
            # The peer may be gone; what was not sent cannot be sent now.
            with contextlib.suppress(OSError):
                self.wfile.flush()
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    """A datagram handler: ``rfile`` reads the datagram, ``wfile`` collects the reply,
    which ``finish()`` sends back to the client (an empty one too, as the stdlib does)."""

    def setup(self) -> None:
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        self.socket.sendto(self.wfile.getvalue(), self.client_address)


class FramedRequestHandler(BaseRequestHandler, Generic[T]):
    """Blocking glue between a stream connection and a ``socketkit.codec`` decoder.

    Subclasses implement ``make_decoder()`` and ``handle_message()``, and call
    ``send()`` to reply. Bad input raises a ``RemoteProtocolError`` inside the decoder;
    it is logged with the peer address, passed to ``protocol_error()`` (to tell the
    peer in-protocol, e.g. an ERROR frame), and the connection is closed: the server
    goes on serving everyone else.

    Attributes:
        timeout: idle timeout in seconds for each read and write (``None``: none).
        recv_size: most bytes read per ``recv()``; the decoder bounds what is kept.
        in_request: set it while a request spans several messages (an upload's header,
            chunks and end): a stopping server then lets the request finish, up to its
            drain timeout, instead of ending the connection between two of them.
    """

    timeout: float | None = DEFAULT_IDLE_TIMEOUT_S
    recv_size: int = DEFAULT_RECV_SIZE
    in_request: bool = False

    def make_decoder(self) -> Decoder[T]:
        """Return a fresh decoder for this connection; override it."""
        raise NotImplementedError

    def handle_message(self, message: T) -> None:
        """Act on one complete message; override it."""
        raise NotImplementedError

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        """Tell the peer about bad input before the connection closes; default: nothing."""

    def farewell(self, reason: str) -> None:
        """The server stops serving this connection (it is shutting down; ``reason`` says
        why, and whether the drain timeout ran out): tell the peer in its protocol, if
        it has a way (an ERROR frame, an IRC ERROR line), with ``send()``. Default:
        nothing (the connection just closes)."""

    def setup(self) -> None:
        self.decoder = self.make_decoder()
        self.request.settimeout(self.timeout)

    def handle(self) -> None:
        try:
            for message in self.messages():
                self.handle_message(message)
        except RemoteProtocolError as exc:
            logger.warning("protocol error from %s: %s", format_peer(self.client_address), exc)
            with contextlib.suppress(OSError, ResourceError, TimeoutError):
                self.protocol_error(exc)

    def messages(self) -> Iterator[T]:
        """Yield complete messages until the peer ends the stream.

        Raises:
            RemoteProtocolError: bad input (including end of stream mid-message).
            BrokenResourceError: the connection broke.
            TimeoutError: nothing arrived within ``timeout``.
        """
        decoder = self.decoder
        # Whether the last bytes read completed no message: one is arriving, so the
        # connection is not at rest (a drain lets it complete).
        arriving = False
        wait = getattr(self.server, "wait_for_input", None)  # a stdlib server has none
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                with translate_os_errors():
                    if wait is not None:
                        reason = wait(self.request, self.timeout, at_rest=not (arriving or self.in_request))
                        if reason is not None:
                            self._stopped(reason)
                            return
                    decoder.feed(self.request.recv(self.recv_size))
                arriving = True
            elif event is END_OF_STREAM:
                return
            else:
                arriving = False
                yield event

    def _stopped(self, reason: str) -> None:
        logger.debug("closing %s: %s", format_peer(self.client_address), reason)
        with contextlib.suppress(OSError, ResourceError, TimeoutError):
            self.farewell(reason)

    def send(self, data: bytes) -> None:
        """Send all of ``data``.

        Raises:
            BrokenResourceError: the connection broke.
            TimeoutError: the peer did not read within ``timeout``.
        """
        with translate_os_errors():
            self.request.sendall(data)
