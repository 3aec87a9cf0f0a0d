"""ServerStats: the counters of one AsyncServer (what /status and /metrics report)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ServerStats"]


@dataclass(slots=True)
class ServerStats:
    """Counters of one server (``AsyncServer.stats()`` returns a snapshot)."""

    open: int = 0
    accepted: int = 0
    refused: int = 0
    closed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    datagrams_in: int = 0
    datagrams_out: int = 0
    timeouts: int = 0
    tls_failures: int = 0
    per_address: dict[str, int] = field(default_factory=dict)
    datagrams_dropped: dict[str, int] = field(default_factory=dict)  # by reason (DatagramEndpoint.drop)

    def as_dict(self) -> dict[str, int]:
        """The counters as a flat dict (JSON-friendly), without the tables (per address, drops)."""
        return {
            name: getattr(self, name)
            for name in self.__slots__
            if name not in ("per_address", "datagrams_dropped")
        }
