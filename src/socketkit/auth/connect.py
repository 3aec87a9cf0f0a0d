"""Clients of authenticated services: connect, check the certificate pin, hello, auth."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.aio.connection import Connection
from socketkit.auth.session import authenticate_client
from socketkit.codec.wire import WireDecoder, WireEvent
from socketkit.limits import (
    DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_FRAME_SIZE,
)
from socketkit.tls import check_fingerprint

__all__ = ["ServiceTarget", "connect_authenticated"]


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """Where and how to reach an exec or file server."""

    address: Address
    token: str | None = None
    ssl: ssl.SSLContext | None = None
    fingerprint: str | None = None
    server_hostname: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    handshake_timeout: float = DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S


async def connect_authenticated(
    target: ServiceTarget,
    *,
    service: str = "",
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    pipelined: dict[str, Any] | None = None,
) -> Connection[WireEvent]:
    """Open a connection to the ``service`` server and authenticate; ``pipelined`` is a
    first request sent right behind our auth response (one round trip saved).

    Raises:
        ConnectError: unreachable, refused, or too slow to connect (an OSError).
        HandshakeError: the address does not speak the service's protocol (it answered
            something else, or nothing within ``target.handshake_timeout``).
        PermissionDenied: certificate pin mismatch, no token, or an impostor server.
        ServiceError: the server refused us (wrong token, throttled...).
        ProtocolError: not a socketkit server.
    """
    conn: Connection[WireEvent] = await open_connection(
        target.address,
        WireDecoder(max_frame_size=max_frame_size),
        ssl=target.ssl,
        server_hostname=target.server_hostname,
        timeout=target.connect_timeout,
        service=service or None,
    )
    try:
        if target.fingerprint is not None:
            transport = conn.transport
            check_fingerprint(
                transport.get_extra_info("ssl_object") if transport else None, target.fingerprint
            )
        await authenticate_client(
            conn, target.token, service=service, pipelined=pipelined, timeout=target.handshake_timeout
        )
    except BaseException:
        conn.abort()
        raise
    return conn
