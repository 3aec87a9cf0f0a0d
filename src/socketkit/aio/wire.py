"""Wire-format-v1 connections on the asyncio engine: the hello exchange and error reports.

Every framed service (talk, exec, files) starts the same way: send our hello at once,
read the peer's, agree on a version, or send an ERROR frame saying why not and close.
"""

from __future__ import annotations

import contextlib
from typing import Any

from socketkit._log import get_logger
from socketkit.aio.connection import Connection
from socketkit.codec.wire import Hello, WireEvent, encode_error, encode_hello, negotiate_version
from socketkit.errors import HandshakeError, ProtocolError, ResourceError, ServiceError

__all__ = ["exchange_hello", "send_error"]

logger = get_logger(__name__)


async def exchange_hello(conn: Connection[WireEvent]) -> int:
    """Send our hello, read the peer's, and return the version both speak.

    Raises:
        HandshakeError: the peer is not a wire-v1 peer, or no version is common (an
            ERROR frame has been sent).
        EOFError: the peer closed before its hello.
        RemoteProtocolError, BrokenResourceError: bad input, or the connection broke.
    """
    conn.send(encode_hello())
    try:
        first = await conn.receive()
        if not isinstance(first, Hello):
            raise HandshakeError(f"expected a hello, got {type(first).__name__}")
        return negotiate_version(first)
    except HandshakeError as exc:
        send_error(conn, exc)
        raise


def send_error(conn: Connection[Any], exc: ProtocolError | ServiceError | Exception) -> None:
    """Report ``exc`` to the peer in an ERROR frame, then close (best effort: the peer
    may be gone already)."""
    if isinstance(exc, ProtocolError):
        code = exc.error_code
    elif isinstance(exc, ServiceError):
        code = exc.code
    else:
        code = "internal-error"
    with contextlib.suppress(ResourceError, OSError):
        if not conn.is_closing:
            conn.send(encode_error(code, str(exc)))
    conn.close()
