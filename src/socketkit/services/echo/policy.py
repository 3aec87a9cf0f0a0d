"""UDP echo's defence against reflection, pure: which datagrams get no echo, and why.

A UDP source address is whatever the sender writes in the packet. One datagram sent to
an echo server with the source forged as another echo (or chargen, DNS...) service
starts a ping-pong between the two that never ends, and a stream of them turns the
server into a reflector aimed at a victim. Real echo services refuse three kinds of
source, and so does this policy:

- a privileged port (below 1024): that is where echo (7), chargen (19), daytime (13),
  DNS (53), NTP (123)... answer, and where no client sends from;
- one of this server's own ports: the datagram claims to come from the port we serve
  on, which is either ourselves (an echo to ourselves loops inside the process) or
  another echo server on the same port (a loop between two hosts). The host is not
  compared: a listener on a wildcard address stands for every address of the host,
  which pure code cannot list, and a client sends from an ephemeral port (32768 and up
  on Linux), never from the port of the service it asks (inetd's echo refuses the
  ports of its own datagram services in the same way);
- a source over its rate: each source address (the host; every port of it shares the
  bucket) has a token bucket of ``burst`` replies refilled at ``rate`` per second. A
  loop between two echo servers carries one datagram, so it ends at the first drop.
  On loopback each source (address and port) has its own bucket instead: the kernel
  drops loopback sources arriving from off the host, so only a local program sends
  them, and only root can forge one (a raw socket); without that, one local user
  sending from 127.0.0.77 would drain the bucket of every other local user (all of
  loopback is one peer for ``socketkit.address.limit_key``). A forged loop between two
  loopback echo servers is still one source at each end, and still ends.

The table of buckets holds at most ``max_sources`` addresses. A source whose bucket
is full again needs no entry, so the least recently seen one is evicted to make room:
forging a new source address for every datagram costs memory up to that bound, never
more.

Time comes in as ``now`` (seconds, monotonic); nothing here reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from socketkit.address import LOOPBACK_KEY, limit_key

__all__ = [
    "DROP_OWN_PORT",
    "DROP_PRIVILEGED_PORT",
    "DROP_RATE_LIMITED",
    "FIRST_UNPRIVILEGED_PORT",
    "UDP_MAX_SOURCES",
    "UDP_REPLY_BURST",
    "UDP_REPLY_RATE",
    "EchoPolicy",
]

FIRST_UNPRIVILEGED_PORT: Final = 1024
"""Ports below this need privileges to bind (POSIX): system services, not clients."""

UDP_REPLY_RATE: Final = 20.0
"""Replies per second to one source address. An echo is a probe (a ping, a round-trip
measurement): 20/s lets a tool probe every 50 ms, and caps what a forged source can
aim at one victim through us. A loop with a round trip under 1/20 s (a LAN, most of
a continent) empties the bucket within ``UDP_REPLY_BURST`` exchanges and dies."""

UDP_REPLY_BURST: Final = 40
"""Replies one source address may get at once before the rate applies: two seconds'
worth, for a burst of probes at start-up (and so a loop of two echo servers is cut
after at most 40 round trips)."""

UDP_MAX_SOURCES: Final = 4096
"""Source addresses whose buckets are remembered (~250 bytes each: about 1 MiB). A
bucket refills in ``UDP_REPLY_BURST / UDP_REPLY_RATE`` = 2 s, so 4096 sources cover
a steady 2,000 new addresses a second before a drained bucket can be forgotten early;
an attacker who rotates faster gains at most one burst per 4,096 datagrams sent."""

DROP_PRIVILEGED_PORT: Final = "privileged_port"
"""Reason: the source port is below ``FIRST_UNPRIVILEGED_PORT``."""

DROP_OWN_PORT: Final = "own_port"
"""Reason: the source port is one of the server's own listening ports."""

DROP_RATE_LIMITED: Final = "rate_limited"
"""Reason: the source address has used up its token bucket."""


class EchoPolicy:
    """Decides, per datagram, whether UDP echo answers (see the module docstring).

    Args:
        rate: replies per second per source address (refill rate of its bucket).
        burst: replies a source may get at once (the bucket's size).
        max_sources: source addresses remembered; the least recently seen is evicted.
        own_ports: the server's listening ports (``set_own_ports`` changes them).

    Raises:
        ValueError: a limit is not positive.
    """

    __slots__ = ("_buckets", "_own_ports", "burst", "max_sources", "rate")

    def __init__(
        self,
        *,
        rate: float = UDP_REPLY_RATE,
        burst: int = UDP_REPLY_BURST,
        max_sources: int = UDP_MAX_SOURCES,
        own_ports: Iterable[int] = (),
    ) -> None:
        if not rate > 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate, burst and max_sources must be positive")
        self.rate = float(rate)
        self.burst = burst
        self.max_sources = max_sources
        self._own_ports = frozenset(own_ports)
        # source -> [tokens, time of the last refill]; oldest use first. A source is the
        # peer's key, or on loopback its (address, port).
        self._buckets: OrderedDict[str | tuple[str, int], list[float]] = OrderedDict()

    @property
    def own_ports(self) -> frozenset[int]:
        """The ports datagrams may not come from (the server's own)."""
        return self._own_ports

    def set_own_ports(self, ports: Iterable[int]) -> None:
        """Replace the server's own ports (after it has bound its listeners)."""
        self._own_ports = frozenset(ports)

    def sources(self) -> int:
        """How many source addresses have a bucket."""
        return len(self._buckets)

    def check(self, host: str, port: int, now: float) -> str | None:
        """Whether to answer a datagram from ``(host, port)`` at time ``now``.

        A reply that is allowed uses one token of the source's bucket; a datagram
        refused for its port uses none (it must not drain the bucket of the address
        it was forged with).

        Returns:
            ``None`` to answer, or the reason not to (a ``DROP_*`` constant).
        """
        if port < FIRST_UNPRIVILEGED_PORT:
            return DROP_PRIVILEGED_PORT
        if port in self._own_ports:
            return DROP_OWN_PORT
        # One bucket per peer as every per-address rule counts them (IPv6 by /64;
        # ::ffff:a.b.c.d is a.b.c.d): forging addresses of the same /64 does not buy
        # more replies (cached: this runs for every datagram). A loopback source is a
        # local program's own socket: one bucket per address and port.
        key: str | tuple[str, int] = limit_key(host)
        if key == LOOPBACK_KEY:
            key = (host, port)
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)
            buckets[key] = [self.burst - 1.0, now]
            return None
        buckets.move_to_end(key)
        tokens = bucket[0]
        if now > bucket[1]:
            tokens += (now - bucket[1]) * self.rate
            if tokens > self.burst:  # noqa: PLR1730 (min() costs a call per datagram)
                tokens = self.burst
            bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return DROP_RATE_LIMITED
        bucket[0] = tokens - 1.0
        return None
