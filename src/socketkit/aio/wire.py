"""Wire-format-v1 connections on the asyncio engine: the opening and error reports.

Every framed service (talk, exec, files) opens through a ``socketkit.auth.wiresession``
object, driven here: its bytes go out, the connection's frames go in (with the
session's deadline), a server's verdict waits out its ``not_before``. The rules of the
opening are the session's; this module only moves bytes and waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from socketkit._log import get_logger
from socketkit.aio.connection import Connection
from socketkit.auth.wiresession import Authenticated, HelloReceived, Refused, SessionEvent, WireSession
from socketkit.codec.base import NEED_DATA
from socketkit.codec.wire import WireEvent, encode_error
from socketkit.errors import ProtocolError, ResourceError, ServiceError

__all__ = ["exchange_hello", "run_opening", "send_error"]

logger = get_logger(__name__)


async def run_opening(
    conn: Connection[WireEvent],
    session: WireSession,
    on_event: Callable[[SessionEvent], None] | None = None,
) -> HelloReceived | Authenticated | Refused:
    """Drive ``session`` over ``conn`` until it is open or refused; return the event that
    ended the opening (``on_event`` sees every event first). A refusal's ERROR frame has
    been sent, and the connection closed, when the session reported one; frames that
    arrived behind the opening stay in ``conn`` for the service.

    Never raises for what the peer does (that is a ``Refused``); cancellation passes.
    """
    loop = asyncio.get_running_loop()
    try:
        conn.send(session.data_to_send())
    except ResourceError as exc:
        return Refused(exc, by_peer=True)
    while True:
        event = session.next_event()
        if event is NEED_DATA:
            await _receive_into(conn, session, loop)
            continue
        assert isinstance(event, SessionEvent), event  # frames come only once it is open
        if isinstance(event, (Authenticated, Refused)):
            hold = event.not_before - loop.time()
            if hold > 0:  # the verdict waits out the delay announced for this peer
                await asyncio.sleep(hold)
        if on_event is not None:
            on_event(event)
        data = session.data_to_send()
        if isinstance(event, Refused):
            with contextlib.suppress(ResourceError):
                if data and not conn.is_closing:
                    conn.send(data)
            if event.reported:
                conn.close()
            return event
        try:
            if data:
                conn.send(data)
        except ResourceError as exc:
            return Refused(exc, by_peer=True)
        if session.is_open:
            assert isinstance(event, (HelloReceived, Authenticated)), event  # what opens it
            return event


async def _receive_into(
    conn: Connection[WireEvent], session: WireSession, loop: asyncio.AbstractEventLoop
) -> None:
    try:
        async with asyncio.timeout_at(session.deadline):
            frame = await conn.receive()
    except TimeoutError:
        session.check_deadline(loop.time())
    except (ProtocolError, EOFError, ResourceError) as exc:
        session.receive_error(exc)
    else:
        session.receive_frame(frame)


async def exchange_hello(conn: Connection[WireEvent]) -> int:
    """Send our hello, read the peer's, and return the version both speak (the opening
    of a service without authentication, either side).

    Raises:
        HandshakeError: the peer is not a wire-v1 peer, or no version is common (an
            ERROR frame has been sent and the connection closed).
        EOFError: the peer closed before its hello.
        RemoteProtocolError, BrokenResourceError: bad input, or the connection broke.
    """
    session = WireSession()
    end = await run_opening(conn, session)
    if isinstance(end, Refused):
        raise end.error
    assert session.version is not None
    return session.version


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
