"""``socketkit send ADDR [MESSAGE]``: the tutorial's story 1 as a tool (one message, one reply).

TCP or Unix: connect, send MESSAGE (or all of standard input), half-close so the server
sees the end of the request, print everything the server sends until it closes.
UDP: send one datagram, print the one that comes back.

Exit status: 0 once a reply (or an orderly close) came; 1 when the peer is unreachable,
refuses, resets, or sends nothing within ``--timeout`` seconds; 2 for usage errors.
The reply is written to standard output byte for byte (no decoding).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from typing import BinaryIO

from socketkit._oserrors import connect_error
from socketkit._stdio import hint_terminal_input
from socketkit.address import Address
from socketkit.cli._args import address_arg, positive_float
from socketkit.errors import BrokenResourceError
from socketkit.limits import DEFAULT_RECV_SIZE, MAX_UDP_PAYLOAD_IPV4

__all__ = ["add_parsers", "send"]

DEFAULT_TIMEOUT_S = 10.0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``send``."""
    send_parser = commands.add_parser(
        "send",
        help="send a message, print the reply",
        description="Send MESSAGE (or standard input) to ADDR and print the reply.",
    )
    send_parser.add_argument(
        "address", type=address_arg, metavar="ADDR", help="HOST:PORT, [v6]:PORT or unix:PATH"
    )
    send_parser.add_argument("message", nargs="?", help="the message (default: standard input)")
    send_parser.add_argument("--udp", action="store_true", help="send one UDP datagram")
    send_parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to connect, and to wait for each part of the reply (default: {DEFAULT_TIMEOUT_S:g})",
    )
    send_parser.add_argument("-n", "--newline", action="store_true", help="append a newline to MESSAGE")
    send_parser.set_defaults(func=send)


def send(args: argparse.Namespace) -> int:
    """Run ``send``; see the module docstring for exit statuses.

    Raises:
        ConnectError: unreachable or refused (it names the address and what to try).
        BrokenResourceError: the connection was reset during the exchange.
        TimeoutError: no reply within the timeout.
        ValueError: a datagram over 65,507 bytes, or --udp with a Unix address.
    """
    if args.message is not None:
        payload = args.message.encode() + (b"\n" if args.newline else b"")
    else:
        hint_terminal_input("the message")
        payload = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    address: Address = args.address
    if args.udp:
        return _send_datagram(address, payload, args.timeout, out)
    return _send_stream(address, payload, args.timeout, out)


def _connect(address: Address, timeout: float) -> socket.socket:
    try:
        if address.path is None:
            return socket.create_connection((address.host, address.port), timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address.path)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:  # TimeoutError too
        raise connect_error(exc, address, timeout=timeout) from exc
    return sock


def _broken(exc: OSError, address: Address) -> BrokenResourceError:
    """The connection broke under the exchange: say to whom, and how."""
    if isinstance(exc, ConnectionResetError):
        how = "was reset by the peer"
    elif isinstance(exc, BrokenPipeError):
        how = "was closed by the peer before it took the whole message"
    else:
        how = f"broke: {exc.strerror or exc}"
    return BrokenResourceError(f"the connection to {address} {how}")


def _send_stream(address: Address, payload: bytes, timeout: float, out: BinaryIO) -> int:
    with _connect(address, timeout) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(payload)
        except TimeoutError:
            raise TimeoutError(f"{address} took nothing for {timeout:g} s (not reading?)") from None
        except OSError as exc:
            raise _broken(exc, address) from exc
        with contextlib.suppress(OSError):  # the server may have closed already
            sock.shutdown(socket.SHUT_WR)
        received = 0
        while True:
            try:
                chunk = sock.recv(DEFAULT_RECV_SIZE)
            except TimeoutError:
                if received:
                    return 0  # the reply came; the server just keeps the connection open
                raise TimeoutError(f"no reply from {address} within {timeout:g} s") from None
            except OSError as exc:
                raise _broken(exc, address) from exc
            if not chunk:
                return 0
            received += len(chunk)
            out.write(chunk)
            out.flush()


def _send_datagram(address: Address, payload: bytes, timeout: float, out: BinaryIO) -> int:
    if address.path is not None:
        raise ValueError("--udp needs HOST:PORT, not a Unix path")
    if len(payload) > MAX_UDP_PAYLOAD_IPV4:
        raise ValueError(f"a datagram carries at most {MAX_UDP_PAYLOAD_IPV4} bytes, not {len(payload)}")
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_DGRAM)
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(sockaddr)  # so an ICMP "port unreachable" shows up as a refusal
        try:
            sock.send(payload)
            reply = sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(f"no reply from {address} within {timeout:g} s") from None
        except OSError as exc:  # ICMP "port unreachable": nobody listens there
            raise connect_error(exc, f"{address} (udp)") from exc
        out.write(reply)
        out.flush()
    return 0
