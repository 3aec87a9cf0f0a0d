"""The rules of a wire-v1 service's unauthenticated phase, for both engines (pure).

One ``GateRules`` per service (per process) decides, for every new connection:

- whether it may start authenticating: at most ``max_unauthenticated`` connections per
  peer and ``max_unauthenticated_total`` in all are in that phase at once (``admit``,
  then ``release`` however it ends);
- its ``ServerSession``: the hello and the whole authentication within ``timeout``
  seconds, plus the throttle's delay for the peer, which its verdict waits out
  (``start``);
- what its outcome means: a failed token is counted by the throttle, a success clears
  the peer's record, and one log line says what happened (``settle``).

The engines hold no rule of their own: the asyncio one is ``socketkit.auth.session.WireGate``,
the blocking one ``socketkit.server.wire.WireRequestHandler``. Peers are strings (see
``socketkit.address.limit_key``); time comes in as ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from socketkit.auth.throttle import AuthThrottle
from socketkit.auth.wiresession import Authenticated, Refused, ServerSession, opening_refusal
from socketkit.codec.wire import WireDecoder
from socketkit.errors import PermissionDenied, ResourceError
from socketkit.limits import (
    DEFAULT_AUTH_TIMEOUT_S,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
)

__all__ = ["BUSY_MESSAGE", "GateRules", "LogLine"]

BUSY_MESSAGE = "too many unauthenticated connections; try again"
"""What a connection over the unauthenticated caps is told (code ``busy``)."""

LogLine = tuple[str, str]
"""A log line for the engine to write: its level name (``"info"``, ``"warning"``) and text."""


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
    _pending: dict[str, int] = field(default_factory=dict)
    _pending_total: int = 0

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
        return self._pending_total

    def admit(self, key: str) -> str:
        """Let a connection from peer ``key`` start authenticating: ``""`` when it may
        (it is counted until ``release(key)``), else why not (for the log line; the
        peer gets ``busy_refusal()``)."""
        if self._pending_total >= self.max_unauthenticated_total:
            return f"{self.max_unauthenticated_total} connections are not authenticated yet"
        if self._pending.get(key, 0) >= self.max_unauthenticated:
            return f"{self.max_unauthenticated} connections from it are not authenticated yet"
        self._pending[key] = self._pending.get(key, 0) + 1
        self._pending_total += 1
        return ""

    def release(self, key: str) -> None:
        """A connection ``admit`` let in has left the unauthenticated phase."""
        self._pending_total -= 1
        left = self._pending.get(key, 1) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    @staticmethod
    def busy_refusal() -> bytes:
        """The bytes for a connection ``admit`` refused: our hello, then ERROR ``busy``."""
        return opening_refusal("busy", BUSY_MESSAGE)

    def start(
        self, key: str, nonce: bytes, now: float, *, decoder: WireDecoder | None = None
    ) -> ServerSession:
        """The session of a connection from ``key`` opened at ``now`` (``nonce``: fresh
        random bytes); its verdict waits out the throttle's delay for ``key``."""
        delay = self.throttle.wait_time(key, now) if self.token is not None else 0.0
        return ServerSession(
            self.token, nonce, self.service, now=now, timeout=self.timeout, delay=delay, decoder=decoder
        )

    def settle(self, key: str, peer: str, end: Authenticated | Refused, now: float) -> LogLine | None:
        """Record how the opening of a connection from ``key`` ended (shown as ``peer``)
        with the throttle; return the line to log (``None``: nothing worth a line)."""
        service = self.service
        if isinstance(end, Authenticated):
            if not end.verified:
                return None
            self.throttle.success(key)
            return "info", f"{service}: {peer} authenticated"
        error = end.error
        if isinstance(error, PermissionDenied) and not end.by_peer:
            blocked = self.throttle.failure(key, now)
            wait = f"; its next verdicts wait {blocked:.0f} s" if blocked else ""
            return "warning", f"{service}: authentication failed from {peer}{wait}"
        if end.code == "handshake-timeout":
            return "info", f"{service}: closing {peer}: no authentication within {self.timeout:g} s"
        if end.by_peer or isinstance(error, (EOFError, ResourceError)):
            return "info", f"{service}: {peer} left before authenticating ({error})"
        return "info", f"{service}: bad opening from {peer}: {error}"
