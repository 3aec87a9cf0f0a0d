"""A drop-in ``socketserver``: ``import socketkit.server as socketserver``.

Every public name of the standard library's module is here with the same meaning, so
the tutorial's programs and code written for the stdlib run unchanged. What is better
(see each module): prompt ``shutdown()`` through a wake-up fd, a bounded graceful stop
that leaks no thread, fd or child, worker and connection caps, TLS, logging instead of
printing, IPv6/dual-stack, a 128 backlog, UDP truncation detection, and
``FramedRequestHandler`` to drive ``socketkit.codec`` decoders.
"""

import os as _os
import socket as _socket

from socketkit.server.base import BaseServer
from socketkit.server.forking import ForkingMixIn
from socketkit.server.handlers import (
    BaseRequestHandler,
    DatagramRequestHandler,
    FramedRequestHandler,
    StreamRequestHandler,
)
from socketkit.server.sockets import TCPServer, UDPServer
from socketkit.server.threads import ThreadingMixIn

__all__ = [
    "BaseServer",
    "TCPServer",
    "UDPServer",
    "ThreadingUDPServer",
    "ThreadingTCPServer",
    "BaseRequestHandler",
    "StreamRequestHandler",
    "DatagramRequestHandler",
    "FramedRequestHandler",
    "ThreadingMixIn",
]


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    """A UDP server handling each datagram in a thread."""


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    """A TCP server handling each connection in a thread."""


if hasattr(_socket, "AF_UNIX"):
    from socketkit.server.sockets import UnixDatagramServer, UnixStreamServer

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
        """A Unix stream server handling each connection in a thread."""

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
        """A Unix datagram server handling each datagram in a thread."""

    __all__ += [
        "UnixStreamServer",
        "UnixDatagramServer",
        "ThreadingUnixStreamServer",
        "ThreadingUnixDatagramServer",
    ]

if hasattr(_os, "fork"):

    class ForkingUDPServer(ForkingMixIn, UDPServer):
        """A UDP server handling each datagram in a child process."""

    class ForkingTCPServer(ForkingMixIn, TCPServer):
        """A TCP server handling each connection in a child process."""

    __all__ += ["ForkingUDPServer", "ForkingTCPServer", "ForkingMixIn"]

    if hasattr(_socket, "AF_UNIX"):

        class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
            """A Unix stream server handling each connection in a child process."""

        class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
            """A Unix datagram server handling each datagram in a child process."""

        __all__ += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]
