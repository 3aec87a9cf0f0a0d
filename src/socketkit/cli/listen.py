"""``socketkit listen PORT``: a netcat-style listener (the tutorial's story 1 server as a tool).

What arrives is written to standard output byte for byte; standard input is sent to the
peer. Status and errors go to standard error, so output can be piped. End of input on
either side follows this table (also in docs/tools.md):

=========================  ===============================================================
event                      what listen does
=========================  ===============================================================
our stdin ends (TCP)       half-close: send FIN, keep printing until the peer closes
the peer closes (TCP)      close; exit 0, or with ``-k`` wait for the next client
the peer resets (TCP)      note it on stderr; exit 1, or with ``-k`` the next client
our stdin ends (UDP)       nothing to close: keep printing datagrams (Ctrl-C ends)
a datagram arrives (UDP)   print it; replies (stdin) go to the latest sender; without
                           ``-k`` only the first sender is heard
=========================  ===============================================================
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import socket
import sys
from typing import Any, BinaryIO

from socketkit.address import Address, format_host_port
from socketkit.cli._args import port_arg
from socketkit.limits import DEFAULT_RECV_SIZE

__all__ = ["add_parsers", "listen"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``listen``."""
    parser = commands.add_parser(
        "listen",
        help="netcat-style listener: print what arrives, send stdin",
        description="Accept a client on PORT, print what it sends, send it standard input.",
    )
    parser.add_argument("port", type=port_arg, metavar="PORT", help="port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "-k",
        "--keep-open",
        action="store_true",
        help="after a client leaves, wait for the next one",
    )
    parser.add_argument("--udp", action="store_true", help="receive UDP datagrams")
    parser.set_defaults(func=listen)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def listen(args: argparse.Namespace) -> int:
    """Run ``listen``; returns 0, or 1 when a client reset the connection (without -k).

    Raises:
        OSError: the port cannot be bound.
    """
    from socketkit.aio.listeners import bind_datagram, bind_stream, bound_address  # noqa: PLC0415

    address = Address(args.host, args.port)
    out = sys.stdout.buffer
    if args.udp:
        with bind_datagram(address) as sock:
            _note(f"listening on {bound_address(sock)} (udp)")
            return _serve_datagrams(sock, out, keep_open=args.keep_open)
    with bind_stream(address, backlog=1) as server:
        _note(f"listening on {bound_address(server)} (tcp)")
        stdin_open = True
        while True:
            server.setblocking(True)
            conn, peer = server.accept()
            with conn:
                _note(f"connection from {_peer(peer)}")
                status, stdin_open = _converse(conn, out, stdin_open)
            if not args.keep_open:
                return status


def _peer(address: Any) -> str:
    return format_host_port(address[0], address[1]) if isinstance(address, tuple) else str(address)


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def _converse(conn: socket.socket, out: BinaryIO, stdin_open: bool) -> tuple[int, bool]:
    """Relay one TCP connection; return (exit status, whether stdin is still open)."""
    stdin = _stdin_fd() if stdin_open else None
    # poll, not epoll: epoll refuses regular files, and stdin may be one.
    with selectors.PollSelector() as selector:
        selector.register(conn, selectors.EVENT_READ)
        if stdin is not None:
            selector.register(stdin, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is conn:
                    try:
                        data = conn.recv(DEFAULT_RECV_SIZE)
                    except ConnectionError as exc:
                        _note(f"connection reset: {exc}")
                        return 1, stdin is not None
                    if not data:
                        _note("the peer closed the connection")
                        return 0, stdin is not None
                    out.write(data)
                    out.flush()
                else:
                    data = os.read(key.fd, DEFAULT_RECV_SIZE)
                    if data:
                        try:
                            conn.sendall(data)
                        except ConnectionError as exc:
                            _note(f"connection reset: {exc}")
                            return 1, True
                    else:
                        selector.unregister(key.fd)
                        stdin = None
                        with contextlib.suppress(OSError):
                            conn.shutdown(socket.SHUT_WR)


def _serve_datagrams(sock: socket.socket, out: BinaryIO, *, keep_open: bool) -> int:
    stdin = _stdin_fd()
    peer: Any = None
    with selectors.PollSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        if stdin is not None:
            selector.register(stdin, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is sock:
                    try:
                        data, sender = sock.recvfrom(65536)
                    except ConnectionError:
                        continue  # an ICMP error for an earlier reply
                    if peer is not None and sender != peer and not keep_open:
                        continue  # like netcat: without -k, only the first sender is heard
                    if sender != peer:
                        _note(f"datagrams from {_peer(sender)}")
                    peer = sender
                    out.write(data)
                    out.flush()
                else:
                    data = os.read(key.fd, 65507)
                    if not data:
                        selector.unregister(key.fd)
                    elif peer is None:
                        _note("no sender yet: nowhere to send standard input")
                    else:
                        sock.sendto(data, peer)
