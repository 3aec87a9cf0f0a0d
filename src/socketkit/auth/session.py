"""Opening an authenticated wire-v1 connection on the asyncio engine (server and client).

The glue around ``socketkit.auth.handshake``: fresh nonces from ``secrets``, the throttle
consulted with the loop's clock, every attempt logged (never the token or a MAC).

Servers open every connection through one ``WireGate`` per service, which owns the rules
of the unauthenticated phase:

- the hello and the whole authentication finish within ``timeout`` seconds of the
  connection opening (plus the throttle delay announced to that client), whatever the
  idle timeout of an authenticated session is;
- at most ``max_unauthenticated`` connections per address are in that phase at once
  (Unix-socket peers are told apart by their user id);
- failed attempts delay the verdicts for that address (``AuthThrottle``): the server
  still answers, later, so the holder of the token gets in after the delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit.address import limit_key
from socketkit.aio.connection import Connection
from socketkit.aio.wire import exchange_hello
from socketkit.auth.handshake import NONCE_SIZE, ClientAuth, ServerAuth
from socketkit.auth.throttle import AuthThrottle
from socketkit.codec.wire import Control, ErrorFrame, WireEvent, encode_control, encode_error, encode_hello
from socketkit.errors import (
    BrokenResourceError,
    HandshakeError,
    PermissionDenied,
    ProtocolError,
    RemoteProtocolError,
    ResourceError,
    ServiceError,
)
from socketkit.limits import (
    AUTH_MAX_DELAY_S,
    DEFAULT_AUTH_TIMEOUT_S,
    DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
)

__all__ = ["WireGate", "authenticate_client", "receive_control", "receive_from_client"]

logger = get_logger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


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


_SHOWN_ERROR = 200
"""Characters of a client's ERROR message quoted in our log line (it may be 64 KiB)."""


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
        raise BrokenResourceError(
            f"it gave up with an error frame ({event.code[:40]!r}: {event.message[:_SHOWN_ERROR]!r})"
        )
    return event


def peer_key(conn: Connection[Any]) -> str:
    """Who the peer is for per-address rules: ``socketkit.address.limit_key`` of its IP
    (all of loopback is one peer, IPv6 by /64), or ``uid:N`` on a Unix socket."""
    if conn.host is not None:
        return limit_key(conn.host)
    sock = conn.transport.get_extra_info("socket") if conn.transport is not None else None
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is not None and peercred is not None:
        with contextlib.suppress(OSError):
            _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, peercred, _PEERCRED.size))
            return f"uid:{uid}"
    return "unix"


@dataclass(slots=True)
class WireGate:
    """The unauthenticated phase of one service's connections (see the module docstring).

    Args:
        service: the service's name (logs, and the challenge, so clients can tell).
        token: the shared secret, or ``None`` for an auth-less (loopback-only) server.
        throttle: the failure bookkeeping (shared by every connection of the service).
        timeout: seconds for the hello and the authentication.
        max_unauthenticated: connections per peer in that phase at once.
        max_unauthenticated_total: connections in that phase at once, all peers.
    """

    service: str
    token: str | None
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    timeout: float = DEFAULT_AUTH_TIMEOUT_S
    max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
    max_unauthenticated_total: int = DEFAULT_MAX_UNAUTHENTICATED
    _pending: dict[str, int] = field(default_factory=dict)
    _pending_total: int = 0

    @classmethod
    def for_workers(
        cls, service: str, token: str | None, throttle: AuthThrottle, workers: int = 1
    ) -> WireGate:
        """The gate of one of ``workers`` processes serving the service (``--workers``).

        Each worker keeps its own throttle and unauthenticated counts, and the kernel
        spreads an address's connections over the workers, so each gets its share of
        the limits (at least one): together they keep the documented ones.
        """
        workers = max(workers, 1)
        if workers > 1:
            throttle = AuthThrottle(
                free_failures=max(1, throttle.free_failures // workers),
                window_s=throttle.window_s,
                max_delay_s=throttle.max_delay_s,
                max_addresses=throttle.max_addresses,
            )
        return cls(
            service,
            token,
            throttle,
            max_unauthenticated=max(1, DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS // workers),
            max_unauthenticated_total=max(1, DEFAULT_MAX_UNAUTHENTICATED // workers),
        )

    def unauthenticated(self) -> int:
        """Connections in the unauthenticated phase now (for status pages)."""
        return self._pending_total

    async def open(self, conn: Connection[WireEvent]) -> bool:
        """Hello and authentication; return whether the client may go on.

        On ``False`` the connection has been closed, after an ERROR frame where the peer
        can read one, and one line has been logged.
        """
        key = peer_key(conn)
        if self._pending_total >= self.max_unauthenticated_total:
            refusal = f"{self.max_unauthenticated_total} connections are not authenticated yet"
        elif self._pending.get(key, 0) >= self.max_unauthenticated:
            refusal = f"{self.max_unauthenticated} connections from it are not authenticated yet"
        else:
            refusal = ""
        if refusal:
            count = REFUSALS.count(f"{self.service} unauthenticated")
            if sampled(count):
                logger.warning("%s: refused %s: %s (%d so far)", self.service, conn.peer, refusal, count)
            # Our hello first, so the client reads the refusal as ours, not as garbage.
            conn.send(encode_hello())
            self._refuse(conn, "busy", "too many unauthenticated connections; try again")
            return False
        self._pending[key] = self._pending.get(key, 0) + 1
        self._pending_total += 1
        loop = asyncio.get_running_loop()
        delay = self.throttle.wait_time(key, loop.time()) if self.token is not None else 0.0
        try:
            async with asyncio.timeout(self.timeout + delay):
                await exchange_hello(conn)
                return await self._authenticate(conn, key, delay)
        except TimeoutError:
            logger.info(
                "%s: closing %s: no authentication within %g s", self.service, conn.peer, self.timeout
            )
            self._refuse(
                conn, "handshake-timeout", f"authentication did not finish within {self.timeout:g} s"
            )
            return False
        except (ProtocolError, ServiceError) as exc:
            code = exc.error_code if isinstance(exc, ProtocolError) else exc.code
            if not isinstance(exc, HandshakeError):  # exchange_hello reported those itself
                self._refuse(conn, code, str(exc))
            logger.info("%s: bad opening from %s: %s", self.service, conn.peer, exc)
            conn.close()
            return False
        except (EOFError, ResourceError) as exc:
            logger.info("%s: %s left before authenticating (%s)", self.service, conn.peer, exc)
            conn.close()
            return False
        finally:
            self._pending_total -= 1
            left = self._pending.get(key, 1) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)

    async def _authenticate(self, conn: Connection[WireEvent], key: str, delay: float) -> bool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        auth = ServerAuth(self.token, secrets.token_bytes(NONCE_SIZE), self.service)
        conn.send(encode_control(auth.challenge(delay)))
        if self.token is None:
            return True
        response = await receive_from_client(conn)
        if not isinstance(response, Control):
            raise RemoteProtocolError(f"expected the authentication, got {type(response).__name__}")
        hold = started + delay - loop.time()
        if hold > 0:  # the verdict waits out the delay announced for this address
            await asyncio.sleep(hold)
        try:
            ok = auth.verify(response.header)
        except PermissionDenied as exc:
            blocked = self.throttle.failure(key, loop.time())
            logger.warning(
                "%s: authentication failed from %s%s",
                self.service,
                conn.peer,
                f"; its next verdicts wait {blocked:.0f} s" if blocked else "",
            )
            self._refuse(conn, exc.code, str(exc))
            return False
        self.throttle.success(key)
        conn.send(encode_control(ok))
        logger.info("%s: %s authenticated", self.service, conn.peer)
        return True

    @staticmethod
    def _refuse(conn: Connection[WireEvent], code: str, message: str) -> None:
        with contextlib.suppress(ResourceError, OSError):
            if not conn.is_closing:
                conn.send(encode_error(code, message))
        conn.close()


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
    try:
        async with asyncio.timeout(timeout) as deadline:
            await exchange_hello(conn)
            auth = ClientAuth(token, secrets.token_bytes(NONCE_SIZE), service)
            challenge = await receive_control(conn)
            delay = ClientAuth.announced_delay(challenge.header, AUTH_MAX_DELAY_S)
            if delay:
                logger.warning(
                    "%s delays authentication by %.0f s (failed attempts from this address)", conn.peer, delay
                )
                deadline.reschedule(loop.time() + timeout + delay)
            response = auth.respond(challenge.header)
            if response is not None:
                conn.send(encode_control(response))
            if pipelined is not None:
                conn.send(encode_control(pipelined))
            if response is not None:
                ok = await receive_control(conn)
                auth.check_ok(ok.header)
    except TimeoutError:
        raise HandshakeError(
            f"{conn.peer} does not speak {what}: no answer within {timeout:g} s",
            error_code="handshake-timeout",
        ) from None
    except HandshakeError as exc:
        if exc.error_code == "wrong-service":
            raise
        raise HandshakeError(
            f"{conn.peer} does not speak {what} ({exc})", error_code=exc.error_code
        ) from None
