"""Opening an authenticated wire-v1 connection on the asyncio engine (server and client).

The glue around the pure ``socketkit.auth.wiresession`` objects and the rules of
``socketkit.auth.gate``: fresh nonces from ``secrets``, the loop's clock, every attempt
logged (never the token or a MAC). ``socketkit.aio.wire.run_opening`` moves the bytes.

Servers open every connection through one ``WireGate`` per service, which owns the rules
of the unauthenticated phase (``GateRules``):

- the hello and the whole authentication finish within ``timeout`` seconds of the
  connection opening (plus the throttle delay announced to that client), whatever the
  idle timeout of an authenticated session is;
- at most ``max_unauthenticated`` connections per peer are in that phase at once (a
  local peer is its user: ``socketkit.peercred``); over the cap the peer's oldest one
  is evicted (``busy``) to make room for the new one;
- failed attempts delay the verdicts for that address (``AuthThrottle``): the server
  still answers, later, so the holder of the token gets in after the delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit.address import limit_key
from socketkit.aio.connection import Connection
from socketkit.aio.wire import run_opening
from socketkit.auth.gate import GateRules
from socketkit.auth.handshake import NONCE_SIZE
from socketkit.auth.wiresession import (
    ChallengeReceived,
    ClientSession,
    HelloReceived,
    Refused,
    SessionEvent,
    gave_up,
)
from socketkit.codec.wire import Control, ErrorFrame, WireEvent
from socketkit.errors import HandshakeError, RemoteProtocolError, ResourceError, ServiceError
from socketkit.limits import AUTH_MAX_DELAY_S, DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S

__all__ = ["WireGate", "authenticate_client", "receive_control", "receive_from_client"]

logger = get_logger(__name__)


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


async def receive_from_client(conn: Connection[WireEvent]) -> WireEvent:
    """The next event from a client, for servers: a client's ERROR frame means it gives
    up and closes, so it ends the connection like EOF does (``BrokenResourceError``,
    whose message quotes the client's code and message, escaped and cut short). It is
    never answered: an error frame sent back would echo the client's own words.

    Raises:
        BrokenResourceError: the client sent an ERROR frame, or the connection broke.
        EOFError, RemoteProtocolError, ClosedResourceError: see ``Connection.receive``.
    """
    event = await conn.receive()
    if isinstance(event, ErrorFrame):
        raise gave_up(event)
    return event


def peer_key(conn: Connection[Any]) -> str:
    """Who the peer is for per-peer rules: the key the engine worked out when it accepted
    the connection (``socketkit.peercred``: a local peer's user, else its address)."""
    return conn.limit_key or limit_key(conn.host)  # a connection no AsyncServer accepted


@dataclass(slots=True)
class WireGate(GateRules):
    """The unauthenticated phase of one service's connections on the asyncio engine
    (the rules and arguments are ``GateRules``'s)."""

    async def open(self, conn: Connection[WireEvent]) -> bool:
        """Hello and authentication; return whether the client may go on.

        On ``False`` the connection has been closed, after an ERROR frame where the peer
        can read one, and one line has been logged.
        """
        key = peer_key(conn)
        eviction = self.admit(key, conn)
        if eviction is not None:
            victim = eviction.handle
            assert isinstance(victim, Connection)
            count = REFUSALS.count(f"{self.service} unauthenticated")
            if sampled(count):
                logger.warning(
                    "%s: evicted %s for a newer connection: %s (%d so far)",
                    self.service,
                    victim.peer,
                    eviction.why,
                    count,
                )
            with contextlib.suppress(ResourceError):
                if not victim.is_closing:
                    victim.send(self.eviction_notice())
            victim.close()  # its own open() sees the close and returns False
        loop = asyncio.get_running_loop()
        try:
            session = self.start(key, secrets.token_bytes(NONCE_SIZE), loop.time(), handle=conn)
            end = await run_opening(conn, session)
            assert not isinstance(end, HelloReceived)  # a ServerSession ends authenticated
        finally:
            kept = self.release(conn)
        line = self.settle(key, conn.peer, end, loop.time(), evicted=not kept)
        if line is not None:
            level, text = line
            logger.log(logging.getLevelNamesMapping()[level.upper()], "%s", text)
        if isinstance(end, Refused) or not kept:
            conn.close()
            return False
        return True


async def authenticate_client(
    conn: Connection[WireEvent],
    token: str | None,
    *,
    service: str = "",
    pipelined: dict[str, Any] | None = None,
    timeout: float = DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S,
) -> None:
    """Run the client side, hello included; ``pipelined`` (a request header) is sent right
    behind our response, saving a round trip. Returns once the server has proven itself.

    Raises:
        HandshakeError: the peer does not speak the protocol of ``service`` (it answered
            with something else, or nothing within ``timeout`` seconds plus any delay
            the server announced).
        PermissionDenied: we have no token for a server that wants one, or the server
            could not prove it knows the token.
        ServiceError: the server refused us (``auth-failed``, ``busy``...).
        RemoteProtocolError, EOFError, ResourceError: the exchange broke.
    """
    what = f"the socketkit {service} protocol" if service else "socketkit wire v1"
    loop = asyncio.get_running_loop()
    session = ClientSession(
        token,
        secrets.token_bytes(NONCE_SIZE),
        service,
        now=loop.time(),
        timeout=timeout,
        pipelined=pipelined,
        max_delay=AUTH_MAX_DELAY_S,
    )

    def on_event(event: SessionEvent) -> None:
        if isinstance(event, ChallengeReceived) and event.delay:
            logger.warning(
                "%s delays authentication by %.0f s (failed attempts from this address)",
                conn.peer,
                event.delay,
            )

    end = await run_opening(conn, session, on_event)
    if isinstance(end, Refused):
        error = end.error
        if isinstance(error, HandshakeError) and error.error_code != "wrong-service":
            raise HandshakeError(
                f"{conn.peer} does not speak {what} ({error})", error_code=error.error_code
            ) from None
        raise error
