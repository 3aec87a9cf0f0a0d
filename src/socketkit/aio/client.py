"""Client connections on the asyncio engine, with the same Connection glue as servers."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, TypeVar

from socketkit._oserrors import connect_error
from socketkit.address import Address
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.codec.base import Decoder
from socketkit.limits import DEFAULT_CONNECT_TIMEOUT_S

if TYPE_CHECKING:
    import ssl

__all__ = ["open_connection"]

T = TypeVar("T")

# Clients have no sweeper: their timeouts are the caller's (asyncio.timeout around calls).
_CLIENT_LIMITS = ConnectionLimits(
    idle_timeout=None, handshake_timeout=None, message_timeout=None, write_timeout=None
)


async def open_connection(
    address: Address,
    decoder: Decoder[T] | None,
    *,
    ssl: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT_S,
    limits: ConnectionLimits = _CLIENT_LIMITS,
    service: str | None = None,
) -> Connection[T]:
    """Connect and return a task-style ``Connection`` (``async for message in conn``).

    Args:
        address: ``host:port`` or a Unix path.
        decoder: the codec for what the server sends (``None``: raw chunks).
        ssl: a client TLS context.
        server_hostname: the name to verify (default: the host).
        timeout: seconds to connect (and finish the TLS handshake).
        limits: buffer caps (timeouts are the caller's).
        service: the socketkit service expected there (``chat``, ``exec``...), named in
            the error's hint when nothing answers.

    Raises:
        ConnectError: refused, unreachable, not resolved, no answer within ``timeout``,
            or a failed TLS handshake: an ``OSError`` naming the address, the reason and
            what to try.
    """
    loop = asyncio.get_running_loop()
    conn: Connection[T] = Connection(decoder=decoder, limits=limits)
    try:
        async with asyncio.timeout(timeout):
            if address.path is not None:
                await loop.create_unix_connection(
                    lambda: conn,
                    address.path,
                    ssl=ssl,
                    server_hostname=server_hostname if ssl else None,
                )
            else:
                await loop.create_connection(
                    lambda: conn,
                    address.host,
                    address.port,
                    ssl=ssl,
                    server_hostname=(server_hostname or address.host) if ssl else None,
                )
    except (OSError, TimeoutError) as exc:
        raise connect_error(exc, address, service=service, timeout=timeout) from exc
    transport = conn.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn
