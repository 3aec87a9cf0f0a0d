"""Failed authentication attempts slow down per address (pure; time comes in as ``now``).

Only failures count. After ``free_failures`` failures in ``window_s``, the address is
delayed: 1 s, then doubling with each further failure up to ``max_delay_s``. A delay
never refuses anyone: the server still takes the next attempt, and gives its verdict
only once the delay is over, so a client with the right token gets in after the wait
even while someone at the same address (every local user shares 127.0.0.1) keeps
guessing; a guesser gets one verdict per delay and connection, with the connections
per address bounded. A success clears the record. The table holds at most
``max_addresses`` entries (the oldest is forgotten first), so an attacker rotating
addresses cannot exhaust memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from socketkit.limits import AUTH_FAILURE_WINDOW_S, AUTH_FREE_FAILURES, AUTH_MAX_ADDRESSES, AUTH_MAX_DELAY_S

__all__ = ["AuthThrottle"]


@dataclass(slots=True)
class _Record:
    failures: int
    first_at: float
    blocked_until: float = 0.0


@dataclass(slots=True)
class AuthThrottle:
    """Per-address failure bookkeeping."""

    free_failures: int = AUTH_FREE_FAILURES
    window_s: float = AUTH_FAILURE_WINDOW_S
    max_delay_s: float = AUTH_MAX_DELAY_S
    max_addresses: int = AUTH_MAX_ADDRESSES
    _records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)

    def wait_time(self, address: str, now: float) -> float:
        """Seconds until ``address`` may have a verdict (0: at once)."""
        record = self._records.get(address)
        if record is None:
            return 0.0
        return max(0.0, record.blocked_until - now)

    def failure(self, address: str, now: float) -> float:
        """Record a failure; return how long the address is now blocked (0: not yet)."""
        record = self._records.pop(address, None)
        expired = record is not None and now - record.first_at > self.window_s
        if record is None or (expired and now >= record.blocked_until):
            record = _Record(0, now)
        record.failures += 1
        excess = record.failures - self.free_failures
        if excess > 0:
            # The exponent is capped: an address failing for days must not overflow a float.
            delay = min(self.max_delay_s, 2.0 ** min(excess - 1, 62))
            record.blocked_until = now + delay
        self._records[address] = record  # most recent last
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)
        return max(0.0, record.blocked_until - now)

    def success(self, address: str) -> None:
        """Forget the address's failures."""
        self._records.pop(address, None)
