"""The rules of a wire-v1 service's unauthenticated phase, for both engines (pure).

One ``GateRules`` per service (per process) decides, for every new connection:

- its place in that phase: at most ``max_unauthenticated`` connections per peer and
  ``max_unauthenticated_total`` in all are in it at once (``admit``, then ``release``
  however it ends). A new connection over a cap is never refused: the oldest connection
  of that peer (over the total, of the peer with the most) is evicted, one that has not
  sent its response yet first, so a client that authenticates in milliseconds always
  gets in, whoever holds slots open until the deadline. The engine tells the evicted
  one why (``eviction_notice``) and closes it;
- its ``ServerSession``: the hello and the whole authentication within ``timeout``
  seconds, plus the throttle's delay for the peer, which its verdict waits out
  (``start``);
- what its outcome means: a failed token is counted by the throttle, a success clears
  the peer's record, and one log line says what happened (``settle``).

The engines hold no rule of their own: the asyncio one is ``socketkit.auth.session.WireGate``,
the blocking one ``socketkit.server.wire.WireRequestHandler``. Peers are strings (the
engine's key, ``socketkit.peercred``: a local peer is its user); connections are the
engine's handles (any hashable object); time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Self

from socketkit.auth.throttle import AuthThrottle
from socketkit.auth.wiresession import Authenticated, Refused, ServerSession, State
from socketkit.codec.wire import WireDecoder, encode_error
from socketkit.errors import PermissionDenied, ResourceError
from socketkit.limits import (
    DEFAULT_AUTH_TIMEOUT_S,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
)

__all__ = ["EVICTED_MESSAGE", "Eviction", "GateRules", "LogLine"]

EVICTED_MESSAGE = "a newer connection took this one's place; authenticate sooner"
"""What a connection evicted from the unauthenticated phase is told (code ``busy``)."""

LogLine = tuple[str, str]
"""A log line for the engine to write: its level name (``"info"``, ``"warning"``) and text."""


@dataclass(slots=True)
class Eviction:
    """A connection ``admit`` put out of the unauthenticated phase to make room:
    ``handle`` is the engine's, ``why`` the cap it was over (for the log line)."""

    handle: Hashable
    why: str


@dataclass(slots=True)
class _Waiting:
    """A connection in the unauthenticated phase (``session``: once ``start`` made it)."""

    key: str
    session: ServerSession | None = None

    @property
    def answered(self) -> bool:
        """Whether its response is in (it may be waiting out the throttle's delay)."""
        return self.session is not None and self.session.state not in (State.HELLO, State.RESPONSE)


@dataclass(slots=True)
class GateRules:
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
    _pending: dict[str, dict[Hashable, _Waiting]] = field(default_factory=dict)  # per peer, oldest first
    _waiting: dict[Hashable, _Waiting] = field(default_factory=dict)

    @classmethod
    def for_workers(cls, service: str, token: str | None, throttle: AuthThrottle, workers: int = 1) -> Self:
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
        return len(self._waiting)

    def admit(self, key: str, handle: Hashable) -> Eviction | None:
        """Count the connection ``handle`` from peer ``key`` into the phase until
        ``release(handle)``. Over a cap, return the connection evicted to make room
        (already forgotten here): the engine sends it ``eviction_notice()`` and closes
        it."""
        if len(self._waiting) >= self.max_unauthenticated_total:
            crowd = max(self._pending.values(), key=len)
            why = f"{self.max_unauthenticated_total} connections are not authenticated yet"
        elif len(self._pending.get(key, ())) >= self.max_unauthenticated:
            crowd = self._pending[key]
            why = f"{self.max_unauthenticated} connections from it are not authenticated yet"
        else:
            crowd, why = {}, ""
        evicted = None
        if crowd:  # the oldest that has not answered; if all have, the oldest
            victim = next((h for h, w in crowd.items() if not w.answered), None) or next(iter(crowd))
            self.release(victim)
            evicted = Eviction(victim, why)
        waiting = self._waiting[handle] = _Waiting(key)
        self._pending.setdefault(key, {})[handle] = waiting
        return evicted

    def release(self, handle: Hashable) -> bool:
        """The connection ``handle`` has left the phase; ``False`` if it was not in it
        (it was evicted, and told why then)."""
        waiting = self._waiting.pop(handle, None)
        if waiting is None:
            return False
        mine = self._pending[waiting.key]
        del mine[handle]
        if not mine:
            del self._pending[waiting.key]
        return True

    @staticmethod
    def eviction_notice() -> bytes:
        """What an evicted connection is sent before it is closed (it has had our hello)."""
        return encode_error("busy", EVICTED_MESSAGE)

    def start(
        self,
        key: str,
        nonce: bytes,
        now: float,
        *,
        decoder: WireDecoder | None = None,
        handle: Hashable | None = None,
    ) -> ServerSession:
        """The session of a connection from ``key`` opened at ``now`` (``nonce``: fresh
        random bytes); its verdict waits out the throttle's delay for ``key``. With the
        ``handle`` it was admitted with, a connection whose response is in is evicted
        after those that have not answered."""
        delay = self.throttle.wait_time(key, now) if self.token is not None else 0.0
        session = ServerSession(
            self.token, nonce, self.service, now=now, timeout=self.timeout, delay=delay, decoder=decoder
        )
        waiting = self._waiting.get(handle) if handle is not None else None
        if waiting is not None:
            waiting.session = session
        return session

    def settle(
        self, key: str, peer: str, end: Authenticated | Refused, now: float, *, evicted: bool = False
    ) -> LogLine | None:
        """Record how the opening of a connection from ``key`` ended (shown as ``peer``)
        with the throttle; return the line to log (``None``: nothing worth a line; an
        ``evicted`` connection's end is not, beyond a verdict on its token)."""
        service = self.service
        if isinstance(end, Authenticated):
            if not end.verified or evicted:
                return None
            self.throttle.success(key)
            return "info", f"{service}: {peer} authenticated"
        error = end.error
        if isinstance(error, PermissionDenied) and not end.by_peer:
            blocked = self.throttle.failure(key, now)
            wait = f"; its next verdicts wait {blocked:.0f} s" if blocked else ""
            return "warning", f"{service}: authentication failed from {peer}{wait}"
        if evicted:
            return None
        if end.code == "handshake-timeout":
            return "info", f"{service}: closing {peer}: no authentication within {self.timeout:g} s"
        if end.by_peer or isinstance(error, (EOFError, ResourceError)):
            return "info", f"{service}: {peer} left before authenticating ({error})"
        return "info", f"{service}: bad opening from {peer}: {error}"
