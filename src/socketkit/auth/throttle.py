"""Failed authentication attempts slow down per address (pure; time comes in as ``now``).

After ``free_failures`` failures in ``window_s``, an address must wait before its next
attempt: 1 s, then doubling up to ``max_delay_s``. A success clears its record. The
table holds at most ``max_addresses`` entries (the oldest is forgotten first), so an
attacker rotating addresses cannot exhaust memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["AuthThrottle"]


@dataclass(slots=True)
class _Record:
    failures: int
    first_at: float
    blocked_until: float = 0.0


@dataclass(slots=True)
class AuthThrottle:
    """Per-address failure bookkeeping."""

    free_failures: int = 5
    window_s: float = 60.0
    max_delay_s: float = 300.0
    max_addresses: int = 10_000
    _records: OrderedDict[str, _Record] = field(default_factory=OrderedDict)

    def wait_time(self, address: str, now: float) -> float:
        """Seconds ``address`` must still wait before trying (0: go ahead)."""
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
            delay = min(self.max_delay_s, 2.0 ** (excess - 1))
            record.blocked_until = now + delay
        self._records[address] = record  # most recent last
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)
        return max(0.0, record.blocked_until - now)

    def success(self, address: str) -> None:
        """Forget the address's failures."""
        self._records.pop(address, None)
