"""Authenticating a wire-v1 connection on the asyncio engine (server and client side).

The glue around ``socketkit.auth.handshake``: fresh nonces from ``secrets``, the
throttle consulted with the loop's clock, every attempt logged (never the token).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from socketkit.aio.connection import Connection
from socketkit.auth.handshake import NONCE_SIZE, ClientAuth, ServerAuth
from socketkit.auth.throttle import AuthThrottle
from socketkit.codec.wire import Control, ErrorFrame, WireEvent, encode_control, encode_error
from socketkit.errors import PermissionDenied, RemoteProtocolError, ServiceError

__all__ = ["authenticate_client", "authenticate_server", "receive_control"]

logger = logging.getLogger(__name__)


async def receive_control(conn: Connection[WireEvent]) -> Control:
    """The next CONTROL frame; an ERROR frame from the peer becomes a ``ServiceError``.

    Raises:
        ServiceError: the peer reported an error (its code and message).
        RemoteProtocolError: anything but a CONTROL frame.
        EOFError, ResourceError: the connection ended.
    """
    event = await conn.receive()
    if isinstance(event, ErrorFrame):
        raise ServiceError(event.message, code=event.code)
    if not isinstance(event, Control):
        raise RemoteProtocolError(f"expected a control frame, got {type(event).__name__}")
    return event


async def authenticate_server(
    conn: Connection[WireEvent], token: str | None, throttle: AuthThrottle, service: str
) -> bool:
    """Run the server side; return whether the client may go on.

    On failure an ERROR frame (``auth-failed``, ``auth-throttled`` or ``bad-auth``) has
    been sent and the connection closed.
    """
    host = conn.host or conn.peer
    now = asyncio.get_running_loop().time()
    wait = throttle.wait_time(host, now)
    if token is not None and wait > 0:
        logger.warning("%s: refused %s: too many failed attempts (retry in %.0f s)", service, conn.peer, wait)
        conn.send(encode_error("auth-throttled", f"too many failed attempts: retry in {wait:.0f} s"))
        conn.close()
        return False
    auth = ServerAuth(token, secrets.token_bytes(NONCE_SIZE))
    conn.send(encode_control(auth.challenge()))
    if token is None:
        return True
    try:
        response = await receive_control(conn)
        ok = auth.verify(response.header)
    except PermissionDenied as exc:
        blocked = throttle.failure(host, asyncio.get_running_loop().time())
        logger.warning(
            "%s: authentication failed from %s%s",
            service,
            conn.peer,
            f"; blocked for {blocked:.0f} s" if blocked else "",
        )
        conn.send(encode_error(exc.code, str(exc)))
        conn.close()
        return False
    except RemoteProtocolError as exc:
        logger.warning("%s: bad authentication exchange from %s: %s", service, conn.peer, exc)
        conn.send(encode_error(exc.error_code, str(exc)))
        conn.close()
        return False
    throttle.success(host)
    conn.send(encode_control(ok))
    logger.info("%s: %s authenticated", service, conn.peer)
    return True


async def authenticate_client(
    conn: Connection[WireEvent], token: str | None, *, pipelined: dict[str, Any] | None = None
) -> None:
    """Run the client side; ``pipelined`` (a request header) is sent right behind our
    response, saving a round trip. Returns once the server has proven itself.

    Raises:
        PermissionDenied: we have no token for a server that wants one, or the server
            could not prove it knows the token.
        ServiceError: the server refused us (``auth-failed``, ``auth-throttled``...).
        RemoteProtocolError, EOFError, ResourceError: the exchange broke.
    """
    auth = ClientAuth(token, secrets.token_bytes(NONCE_SIZE))
    challenge = await receive_control(conn)
    response = auth.respond(challenge.header)
    if response is not None:
        conn.send(encode_control(response))
    if pipelined is not None:
        conn.send(encode_control(pipelined))
    if response is not None:
        ok = await receive_control(conn)
        auth.check_ok(ok.header)
