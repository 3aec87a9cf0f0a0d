"""ConnectionRegistry: who is connected to one server, under which caps, and what they moved.

The server asks it before taking a connection (``over_cap``, then ``reserve``: the
connection counts from its accept on, through a TLS handshake, until
``connection_closed``), and the registry keeps the per-peer counts (by the key
``socketkit.peercred`` computed once at accept and carried as ``conn.limit_key``: a
local peer is its user, IPv6 by /64), the byte
and message totals of connections already closed (for ``stats``), and ``idle``, an
event set while nothing is open or pending, which the shutdown drain waits for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from socketkit.aio.connection import Connection
from socketkit.aio.stats import ServerStats

__all__ = ["ConnectionRegistry"]


class ConnectionRegistry:
    """The open and pending connections of one server.

    Args:
        max_connections: open connections at once (pending ones included).
        max_per_address: open connections from one ``limit_key``.
    """

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self._open: dict[int, Connection[Any]] = {}
        self._pending: set[int] = set()  # accepted, transport not up yet (TLS handshake...)
        self._per_address: dict[str, int] = {}
        self._next_id = 0
        self.closed = 0
        self._totals = [0, 0, 0]  # bytes in, bytes out, messages of closed connections
        self.idle = asyncio.Event()
        self.idle.set()

    def __len__(self) -> int:
        """Open connections (not the pending ones)."""
        return len(self._open)

    def connections(self) -> list[Connection[Any]]:
        """The open connections."""
        return list(self._open.values())

    def over_cap(self, key: str) -> str | None:
        """Why a new connection from the peer ``key`` must be refused."""
        if len(self._open) + len(self._pending) >= self.max_connections:
            return f"server full ({self.max_connections} connections)"
        if self._per_address.get(key, 0) >= self.max_per_address:
            return f"too many connections from {key} ({self.max_per_address})"
        return None

    def reserve(self, key: str) -> int:
        """Count a connection accepted from the peer ``key``; return its id."""
        self._next_id += 1
        self._pending.add(self._next_id)
        self._per_address[key] = self._per_address.get(key, 0) + 1
        self.idle.clear()
        return self._next_id

    def release(self, conn_id: int, key: str) -> None:
        """Forget a reserved connection whose transport never came up."""
        self._pending.discard(conn_id)
        self._forget_address(key)
        self._check_idle()

    def opened(self, conn: Connection[Any]) -> None:
        """The transport of a reserved connection is up."""
        self._pending.discard(conn.id)
        self._open[conn.id] = conn

    def closed_connection(self, conn: Connection[Any]) -> bool:
        """Unregister ``conn``; return whether it was registered."""
        if self._open.pop(conn.id, None) is None:
            return False
        totals = self._totals
        totals[0] += conn.bytes_in
        totals[1] += conn.bytes_out
        totals[2] += conn.messages_in
        self.closed += 1
        self._forget_address(conn.limit_key)
        self._check_idle()
        return True

    def _forget_address(self, key: str) -> None:
        left = self._per_address.get(key, 0) - 1
        if left > 0:
            self._per_address[key] = left
        else:
            self._per_address.pop(key, None)

    def _check_idle(self) -> None:
        if not self._open and not self._pending:
            self.idle.set()

    def stats(self, counters: ServerStats) -> ServerStats:
        """A snapshot: the server's own ``counters`` plus what the connections moved."""
        live = list(self._open.values())
        return ServerStats(
            open=len(live),
            accepted=counters.accepted,
            refused=counters.refused,
            closed=self.closed,
            bytes_in=self._totals[0] + sum(c.bytes_in for c in live) + counters.bytes_in,
            bytes_out=self._totals[1] + sum(c.bytes_out for c in live) + counters.bytes_out,
            messages_in=self._totals[2] + sum(c.messages_in for c in live),
            datagrams_in=counters.datagrams_in,
            datagrams_out=counters.datagrams_out,
            timeouts=counters.timeouts,
            tls_failures=counters.tls_failures,
            per_address=dict(self._per_address),
            datagrams_dropped=dict(counters.datagrams_dropped),
        )
