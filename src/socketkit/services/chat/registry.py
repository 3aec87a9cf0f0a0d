"""The channel table: which channels exist, who made them, how long empty ones stay (pure).

Any connected user can create channels, so none of them may hold a slot of the table
for good. What other servers do: ngircd forgets a channel when its last member leaves
unless an IRC operator made it persistent (mode ``+P``); ergo keeps only channels
registered to an account, the others vanish when empty, history and all. socketkit
has no accounts, so it takes ngircd's rule with one grace:

- a **registered** channel (``+P``, which only IRC operators may set or remove) is
  kept empty and across restarts, with its topic, modes, bans and history, and counts
  against no quota;
- any other channel lives while it has members. Once empty it **lingers**, with its
  settings and history, for ``empty_channel_ttl_s`` (a week by default: a room left over
  a weekend, or a server restarted, finds its topic and history again), then is
  dropped, on disk too. A lingering channel holds no slot for good: it makes room for
  a new channel, by the fair rule below;
- an empty channel with nothing worth keeping (default modes, no topic, key, limit,
  bans or history) is dropped at once, as before;
- each address (its key, ``Client.key``: the engine's per-peer key, a local user on
  loopback, IPv6 by /64) may have created at most ``max_channels_per_address`` of the
  unregistered channels that exist, lingering ones included; only channels with
  members block a new one.

**Who makes room** (``make_room``), so that no user's channels go to make room for
another's unless that other holds fewer:

1. a key at its quota drops its own oldest lingering channel, or is refused
   (``FULL_ADDRESS``): it never takes from anyone else;
2. a full table: the creator's own oldest lingering channel goes first; if it has
   none, the oldest lingering channel of the key holding the most channels goes, but
   only if that key still holds at least as many as the creator once the creator has
   its new one (``count >= mine + 2``); otherwise the JOIN is refused (``FULL_SERVER``).

A key thus never loses a channel to a key that ends up holding more, and one whose
only channel lingers never loses it to anyone else. (The old rule dropped
the oldest lingering channel of the whole server, anyone's topic and history, for
each channel made past a full table.) Filling the table needs
``max_channels / max_channels_per_address`` keys (ten by default), each holding its
channels occupied with connections (capped per key); after an attack that creates
and leaves channels, every new JOIN still works, as the attacker's own lingering
channels, the most numerous, go first. Within one key (all of a key's users look the
same here) its lingering channels go oldest first, whoever made them.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator, Sized
from typing import Final, Generic, Protocol, TypeVar

from socketkit.codec.irc import casefold

__all__ = ["EXPIRED_PER_TICK", "FULL_ADDRESS", "FULL_SERVER", "ChannelTable", "SortedKeys"]

EXPIRED_PER_TICK: Final = 100
"""Lingering channels dropped per tick at most (one tick a second): a table of 10,000
that all expire together is emptied over a couple of minutes, never in one turn."""

FULL_ADDRESS: Final = "address"
"""``ChannelTable.make_room`` refusal: the address has its quota of occupied channels."""

FULL_SERVER: Final = "server"
"""``ChannelTable.make_room`` refusal: every channel of the server is occupied."""


class SortedKeys:
    """Strings kept sorted, so that a listing can go on after the last one it sent
    (a bisection), whatever was added or removed meanwhile, without sorting anything
    per request."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: list[str] = []

    def add(self, key: str) -> None:
        """Insert ``key`` (no duplicates)."""
        keys = self._keys
        at = bisect.bisect_left(keys, key)
        if at == len(keys) or keys[at] != key:
            keys.insert(at, key)

    def discard(self, key: str) -> None:
        """Remove ``key`` if present."""
        keys = self._keys
        at = bisect.bisect_left(keys, key)
        if at < len(keys) and keys[at] == key:
            del keys[at]

    def after(self, key: str | None, count: int) -> list[str]:
        """At most ``count`` keys following ``key`` (``None``: from the start)."""
        start = 0 if key is None else bisect.bisect_right(self._keys, key)
        return self._keys[start : start + count]

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)


class _Channel(Protocol):
    """What the table reads and writes of a channel (``state.Channel``, which imports
    this module: its own type here would make an import loop)."""

    emptied_at: float | None

    @property
    def name(self) -> str: ...
    @property
    def creator(self) -> str: ...
    @property
    def registered(self) -> bool: ...
    @property
    def members(self) -> Sized: ...


Channel = TypeVar("Channel", bound=_Channel)


class ChannelTable(Generic[Channel]):
    """The channels by casefolded name, with their index, quotas and lingering ones."""

    def __init__(self, *, max_channels: int, max_per_address: int, ttl_s: float) -> None:
        self.max_channels = max_channels
        self.max_per_address = max_per_address
        self.ttl_s = ttl_s
        self.by_name: dict[str, Channel] = {}
        self.index = SortedKeys()
        self.per_creator: dict[str, int] = {}  # unregistered channels by creator's address
        self._lingering: OrderedDict[str, None] = OrderedDict()  # emptied longest ago first
        self._lingering_of: dict[str, OrderedDict[str, None]] = {}
        # The creators with lingering channels, by how many channels they hold (sorted,
        # so a full table finds the one holding the most at once), and the count each
        # is filed under.
        self._ranked: list[tuple[int, str]] = []
        self._rank: dict[str, int] = {}

    def add(self, channel: Channel) -> None:
        """A new channel (its creator joins it next), or one loaded from disk (with
        ``emptied_at`` set: lingering unless registered; load them in that order)."""
        key = casefold(channel.name)
        self.by_name[key] = channel
        self.index.add(key)
        if not channel.registered:
            self._count(channel.creator, 1)
            if channel.emptied_at is not None and not channel.members:
                self._linger(key, channel)

    def remove(self, channel: Channel) -> None:
        """Forget a channel."""
        key = casefold(channel.name)
        if self.by_name.get(key) is not channel:
            return
        del self.by_name[key]
        self.index.discard(key)
        if not channel.registered:
            self._count(channel.creator, -1)
        self._unlinger(key, channel)

    def registration_changed(self, channel: Channel) -> None:
        """``+P`` was just set or removed on ``channel``."""
        key = casefold(channel.name)
        if channel.registered:
            self._count(channel.creator, -1)
            self._unlinger(key, channel)
        else:
            self._count(channel.creator, 1)
            if not channel.members:
                self._linger(key, channel)

    def emptied(self, channel: Channel, now: float) -> None:
        """The last member left a channel that is kept for now."""
        channel.emptied_at = now
        if not channel.registered:
            self._linger(casefold(channel.name), channel)

    def occupied(self, channel: Channel) -> None:
        """Someone joined an empty channel: it lingers no more."""
        channel.emptied_at = None
        self._unlinger(casefold(channel.name), channel)

    def make_room(self, creator: str) -> tuple[list[Channel], str | None]:
        """What to drop so that ``creator`` may create a channel (the rule of the module
        docstring): ``(channels, None)``, or ``([], FULL_ADDRESS | FULL_SERVER)`` if it
        may not."""
        mine = self.per_creator.get(creator, 0)
        own = self._lingering_of.get(creator)
        if mine >= self.max_per_address:
            if not own:
                return [], FULL_ADDRESS
            return [self.by_name[next(iter(own))]], None  # a swap: the table keeps its size
        if len(self.by_name) < self.max_channels:
            return [], None
        if own:
            return [self.by_name[next(iter(own))]], None
        if self._ranked:
            count, richest = self._ranked[-1]
            if count >= mine + 2:  # it still holds as many as the creator afterwards
                return [self.by_name[next(iter(self._lingering_of[richest]))]], None
        return [], FULL_SERVER

    def expired(self, now: float) -> list[Channel]:
        """Lingering channels past their time (at most ``EXPIRED_PER_TICK``)."""
        found: list[Channel] = []
        for key in self._lingering:
            channel = self.by_name[key]
            if channel.emptied_at is None or now - channel.emptied_at < self.ttl_s:
                break
            found.append(channel)
            if len(found) >= EXPIRED_PER_TICK:
                break
        return found

    @property
    def lingering(self) -> int:
        """Empty channels kept for now."""
        return len(self._lingering)

    def _count(self, creator: str, delta: int) -> None:
        count = self.per_creator.get(creator, 0) + delta
        if count > 0:
            self.per_creator[creator] = count
        else:
            self.per_creator.pop(creator, None)
        if creator in self._rank or creator in self._lingering_of:
            self._rerank(creator)

    def _linger(self, key: str, channel: Channel) -> None:
        if key in self._lingering:
            return
        self._lingering[key] = None
        self._lingering_of.setdefault(channel.creator, OrderedDict())[key] = None
        self._rerank(channel.creator)

    def _unlinger(self, key: str, channel: Channel) -> None:
        if key not in self._lingering:
            return
        del self._lingering[key]
        own = self._lingering_of.get(channel.creator)
        if own is not None:
            own.pop(key, None)
            if not own:
                del self._lingering_of[channel.creator]
                self._rerank(channel.creator)

    def _rerank(self, creator: str) -> None:
        """File ``creator`` in ``_ranked`` under its count now (out, with no lingering
        channel): O(log n) to find, a memmove to insert."""
        ranked = self._ranked
        old = self._rank.pop(creator, None)
        if old is not None:
            del ranked[bisect.bisect_left(ranked, (old, creator))]
        if creator in self._lingering_of:
            count = self._rank[creator] = self.per_creator.get(creator, 0)
            bisect.insort(ranked, (count, creator))
