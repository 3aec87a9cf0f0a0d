"""``socketkit listen PORT|unix:PATH``: a netcat-style listener (the tutorial's story 1
server as a tool).

What arrives is written to standard output byte for byte; standard input is sent to the
peer. Status and errors go to standard error, each on a line of its own: when both go
to one place (a terminal, ``2>&1``) and the data stopped mid-line, a newline on standard
error comes first, so the data itself is never changed. End of input on either side
follows this table (also in docs/tools.md):

=========================  ===============================================================
event                      what listen does
=========================  ===============================================================
our stdin ends (stream)    half-close: send FIN, keep printing until the peer closes
the peer closes (stream)   close; exit 0, or with ``-k`` wait for the next client
the peer resets (stream)   note it on stderr; exit 1, or with ``-k`` the next client
stdin before a sender      held (up to MAX_PENDING_STDIN bytes, then stdin is not read
(UDP)                      until a sender comes); sent to the first sender, as ``nc -u -l``
our stdin ends (UDP)       nothing to close: keep printing datagrams (Ctrl-C ends)
a datagram arrives (UDP)   print it; stdin goes to the latest sender; without ``-k``
                           only the first sender is heard
SIGINT / SIGTERM           stop; exit 130 / 143
=========================  ===============================================================

``unix:PATH`` listens on a Unix stream socket: a stale socket file there (nobody
listening) is replaced, a live one or any other kind of file is refused, and the socket
file is removed on exit if it is still the one we created.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO, Final, TextIO

from socketkit.address import Address, format_host_port
from socketkit.cli._args import address_arg, port_arg
from socketkit.cli._listen_state import LineEnd, PendingInput
from socketkit.limits import DEFAULT_RECV_SIZE, MAX_UDP_PAYLOAD_IPV4, MAX_UDP_PAYLOAD_IPV6

__all__ = ["DEFAULT_HOST", "EXIT_TERMINATED", "add_parsers", "listen"]

DEFAULT_HOST: Final = "127.0.0.1"
"""Where ``listen PORT`` binds without ``--host``: loopback, never every interface."""

EXIT_TERMINATED: Final = 128 + signal.SIGTERM
"""Exit status after SIGTERM, as a shell reports a process killed by it."""

_DATAGRAM_BUFFER: Final = MAX_UDP_PAYLOAD_IPV6
"""recvfrom size: the largest UDP payload of either family, so nothing is truncated."""


def _listen_address(text: str) -> Address:
    """argparse type: ``PORT`` (the host comes from ``--host``) or ``unix:PATH``."""
    if text.startswith("unix:"):
        return address_arg(text)
    return Address("", port_arg(text))


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``listen``."""
    parser = commands.add_parser(
        "listen",
        help="netcat-style listener: print what arrives, send stdin",
        description=(
            "Accept a client on PORT (or on a Unix socket, unix:PATH), print what it sends, "
            "send it standard input."
        ),
    )
    parser.add_argument(
        "address",
        type=_listen_address,
        metavar="PORT|unix:PATH",
        help="port (0 picks a free one), or unix:PATH for a Unix stream socket",
    )
    parser.add_argument("--host", help=f"address to bind with a PORT (default: {DEFAULT_HOST})")
    parser.add_argument(
        "-k",
        "--keep-open",
        action="store_true",
        help="after a client leaves, wait for the next one",
    )
    parser.add_argument("--udp", action="store_true", help="receive UDP datagrams")
    parser.set_defaults(func=listen)


class _Terminated(BaseException):
    """SIGTERM arrived: unwind (closing sockets, removing our socket file) and exit."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into _Terminated while listening, so cleanup runs (Python's default
    ends the process on the spot, leaving the socket file behind)."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: whoever runs us owns the signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _same_destination(out: BinaryIO, err: TextIO) -> bool:
    """Whether standard output and standard error end up in one place (a terminal, or
    one file or pipe as with ``2>&1``); True when it cannot be told."""
    try:
        out_fd, err_fd = out.fileno(), err.fileno()
        a, b = os.fstat(out_fd), os.fstat(err_fd)
    except (AttributeError, ValueError, OSError):
        return True
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) or (os.isatty(out_fd) and os.isatty(err_fd))


class _Terminal:
    """Data to standard output byte for byte; status to standard error, a line each."""

    def __init__(self, out: BinaryIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.line = LineEnd()
        self.shared = _same_destination(out, err)

    def data(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()
        self.line.wrote(data)

    def note(self, text: str) -> None:
        self.end_line()
        self.err.write(f"{text}\n")
        self.err.flush()

    def end_line(self) -> None:
        """End the data's unfinished line on standard error, when both share a place."""
        if self.shared and (prefix := self.line.before_status()):
            self.err.write(prefix)
            self.err.flush()


def listen(args: argparse.Namespace) -> int:
    """Run ``listen``; returns 0, 1 when a client reset the connection (without -k),
    EXIT_TERMINATED after SIGTERM.

    Raises:
        OSError: the address cannot be bound (a non-socket file or a live server at a
            Unix path included).
        ValueError: ``--host`` or ``--udp`` with a Unix path.
    """
    address: Address = args.address
    if address.path is not None:
        if args.host is not None:
            raise ValueError("--host goes with a PORT; unix:PATH names the socket itself")
        if args.udp:
            raise ValueError("--udp listens on a PORT, not on a Unix path")
    else:
        address = Address(args.host or DEFAULT_HOST, address.port)
    term = _Terminal(sys.stdout.buffer, sys.stderr)
    with _sigterm_unwinds():
        try:
            if args.udp:
                return _listen_datagrams(address, term, keep_open=args.keep_open)
            return _listen_stream(address, term, keep_open=args.keep_open)
        except _Terminated:
            term.end_line()
            return EXIT_TERMINATED
        except BaseException:
            term.end_line()  # what the caller prints next (an error, a prompt) starts a line
            raise


def _listen_stream(address: Address, term: _Terminal, *, keep_open: bool) -> int:
    from socketkit.aio.listeners import bind_stream, bound_address, remove_unix_socket  # noqa: PLC0415

    with bind_stream(address, backlog=1) as server:
        inode: tuple[int, int] | None = None
        if address.path is not None:
            st = os.stat(address.path)
            inode = (st.st_dev, st.st_ino)
        try:
            term.note(
                f"listening on {bound_address(server)} ({'unix' if address.path is not None else 'tcp'})"
            )
            stdin_open = True
            while True:
                server.setblocking(True)
                conn, peer = server.accept()
                with conn:
                    term.note(f"connection from {_peer(peer)}")
                    status, stdin_open = _converse(conn, term, stdin_open)
                if not keep_open:
                    return status
        finally:
            remove_unix_socket(address, inode)  # only if the file is still the one we made


def _peer(address: Any) -> str:
    if isinstance(address, tuple):
        return format_host_port(address[0], address[1])
    return f"unix:{address}" if address else "a Unix socket client"


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def _converse(conn: socket.socket, term: _Terminal, stdin_open: bool) -> tuple[int, bool]:
    """Relay one stream connection; return (exit status, whether stdin is still open)."""
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
                        term.note(f"connection reset: {exc}")
                        return 1, stdin is not None
                    if not data:
                        term.note("the peer closed the connection")
                        return 0, stdin is not None
                    term.data(data)
                else:
                    data = os.read(key.fd, DEFAULT_RECV_SIZE)
                    if data:
                        try:
                            conn.sendall(data)
                        except ConnectionError as exc:
                            term.note(f"connection reset: {exc}")
                            return 1, True
                    else:
                        selector.unregister(key.fd)
                        stdin = None
                        with contextlib.suppress(OSError):
                            conn.shutdown(socket.SHUT_WR)


def _listen_datagrams(address: Address, term: _Terminal, *, keep_open: bool) -> int:
    from socketkit.aio.listeners import bind_datagram, bound_address  # noqa: PLC0415

    with bind_datagram(address) as sock:
        term.note(f"listening on {bound_address(sock)} (udp)")
        # Blocking: a reply waits for room in the send buffer instead of failing with
        # EAGAIN; reads only follow the selector's readiness, so they never wait.
        sock.setblocking(True)
        return _serve_datagrams(sock, term, keep_open=keep_open)


def _serve_datagrams(sock: socket.socket, term: _Terminal, *, keep_open: bool) -> int:
    stdin = _stdin_fd()
    pending = PendingInput()
    peer: Any = None
    paused = False  # stdin unread while the pending buffer is full
    with selectors.PollSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        if stdin is not None:
            selector.register(stdin, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is sock:
                    try:
                        data, sender = sock.recvfrom(_DATAGRAM_BUFFER)
                    except ConnectionError:
                        continue  # an ICMP error for an earlier reply
                    if peer is not None and sender != peer and not keep_open:
                        continue  # like netcat: without -k, only the first sender is heard
                    if sender != peer:
                        term.note(f"datagrams from {_peer(sender)}")
                        peer = sender
                    term.data(data)
                    for chunk in pending.take():  # what came before any sender did
                        _send(sock, chunk, peer, term)
                    if paused and stdin is not None:
                        selector.register(stdin, selectors.EVENT_READ)
                        paused = False
                    continue
                size = MAX_UDP_PAYLOAD_IPV4 if peer is not None else min(MAX_UDP_PAYLOAD_IPV4, pending.room)
                data = os.read(key.fd, size)
                if not data:
                    selector.unregister(key.fd)
                    stdin = None
                elif peer is not None:
                    _send(sock, data, peer, term)
                else:
                    if not pending.held:
                        term.note("no sender yet: standard input waits for the first datagram")
                    pending.add(data)
                    if not pending.room:
                        selector.unregister(key.fd)
                        paused = True


def _send(sock: socket.socket, data: bytes, peer: Any, term: _Terminal) -> None:
    try:
        sock.sendto(data, peer)
    except OSError as exc:  # e.g. refused: an ICMP error left by an earlier datagram
        term.note(f"cannot send to {_peer(peer)}: {exc.strerror or exc}")
