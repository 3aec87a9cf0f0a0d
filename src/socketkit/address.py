"""Parse and format the addresses the command line takes: HOST:PORT, [v6]:PORT, unix:PATH.

Pure string handling (no name resolution): ``parse_address`` says what the user wrote,
and the engines resolve it when they bind or connect.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IPV6_PREFIX",
    "LOOPBACK_KEY",
    "MAX_PORTS",
    "Address",
    "format_host_port",
    "format_peer",
    "limit_key",
    "parse_address",
    "parse_port",
    "parse_ports",
]

MAX_PORTS = 65536
"""A port list can name each port once at most."""


@dataclass(frozen=True, slots=True)
class Address:
    """A stream or datagram endpoint: a host and port, or a Unix socket path."""

    host: str = ""
    port: int = 0
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        """Whether this is a Unix socket path."""
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return format_host_port(self.host, self.port)


def format_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets (``[::1]:80``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer(address: Any) -> str:
    """A socket address as both engines and every log line show it: ``host:port``,
    ``[v6]:port``, ``unix:PATH``, or ``unix`` for a Unix peer without a name (a client
    socket is not bound to a path)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return format_host_port(str(address[0]), int(address[1]))
    if isinstance(address, bytes):
        address = address.decode("utf-8", errors="backslashreplace")
    if isinstance(address, str) and address:
        return f"unix:{address}"
    return "unix"


def parse_port(text: str) -> int:
    """Return a port number 0..65535 (0: let the system pick).

    Raises:
        ValueError: not a number in range (the message says which).
    """
    if not text.isdigit():
        raise ValueError(f"port must be a number 0-65535, not {text!r}")
    port = int(text)
    if port > 65535:
        raise ValueError(f"port must be 0-65535, not {port}")
    return port


def parse_address(text: str, *, default_host: str = "127.0.0.1") -> Address:
    """Parse ``HOST:PORT``, ``[v6]:PORT``, ``:PORT``, ``PORT`` or ``unix:PATH``.

    Args:
        text: what the user wrote.
        default_host: the host for ``:PORT`` and ``PORT``.

    Returns:
        the address.

    Raises:
        ValueError: the text is none of those forms (the message shows the forms).
    """
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a path, as in unix:/tmp/socketkit.sock")
        if "\0" in path:
            raise ValueError("a Unix socket path may not contain NUL")
        return Address(path=path)
    if text.isdigit():
        return Address(default_host, parse_port(text))
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise ValueError(f"expected [IPv6]:PORT, not {text!r}")
        return Address(host, parse_port(rest[1:]))
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, [IPv6]:PORT or unix:PATH, not {text!r}")
    if ":" in host:
        raise ValueError(f"put an IPv6 address in brackets, as in [{host}]:{port}")
    return Address(host or default_host, parse_port(port))


def parse_ports(text: str) -> list[int]:
    """Parse a port list such as ``22,80,8000-8100`` (ranges inclusive) in order, no repeats.

    Raises:
        ValueError: an empty item, a bad number, or a range whose end is before its start.
    """
    ports: list[int] = []
    seen: set[int] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"empty item in port list {text!r}")
        first, sep, last = item.partition("-")
        low = parse_port(first.strip())
        high = parse_port(last.strip()) if sep else low
        if high < low:
            raise ValueError(f"port range {item!r} ends before it starts")
        for port in range(low, high + 1):
            if port not in seen:
                seen.add(port)
                ports.append(port)
    return ports


LOOPBACK_KEY = "loopback"
"""The one key every loopback address shares (127.0.0.0/8 and ::1)."""

IPV6_PREFIX = 64
"""IPv6 peers are grouped by their /64: one subscriber (one LAN, one host) gets a whole
/64 and can pick any address in it, so a per-address limit per /128 limits nothing."""


@functools.lru_cache(maxsize=8192)  # per accept and per datagram: parse each host once
def limit_key(host: str | None) -> str:
    """Who a peer is for per-address limits, caps and throttles, from its address alone.

    Every local user can connect from any address in 127.0.0.0/8 (and from ::1), so all
    of loopback is one peer; an IPv6 peer is its /64; an IPv4 peer is its address (an
    IPv4-mapped IPv6 address counts as the IPv4 one). Anything else (a Unix socket's
    ``uid:N``, a name) is itself. The engine tells local users apart on top of this
    (``socketkit.peercred``: a loopback connection is keyed by the user owning it).
    """
    if not host:
        return "unix"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK_KEY
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
