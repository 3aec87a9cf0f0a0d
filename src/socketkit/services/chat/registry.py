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
  dropped, on disk too. A lingering channel holds nobody's slot: when an address is at
  its quota, or the table is full, the oldest lingering channel (of that address,
  then of the server) is dropped to make room;
- an empty channel with nothing worth keeping (default modes, no topic, key, limit,
  bans or history) is dropped at once, as before;
- each address (``socketkit.address.limit_key``: all of loopback is one, IPv6 by /64)
  may have created at most ``max_channels_per_address`` of the unregistered channels
  that exist; only channels with members block a new one.

So after an attack that creates and leaves channels, every new JOIN still works;
one that keeps channels occupied needs connections (capped per address) and fills
at most its address's share.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from socketkit.codec.irc import casefold

if TYPE_CHECKING:
    from socketkit.services.chat.state import Channel

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


class ChannelTable:
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
        """What to drop so that ``creator`` may create a channel: ``(channels, None)``, or
        ``([], FULL_ADDRESS | FULL_SERVER)`` if it may not."""
        evict: list[str] = []
        if self.per_creator.get(creator, 0) >= self.max_per_address:
            own = self._lingering_of.get(creator)
            if not own:
                return [], FULL_ADDRESS
            evict.append(next(iter(own)))
        if len(self.by_name) - len(evict) >= self.max_channels:
            # The oldest lingering channel, unless it is the one already chosen (then the next).
            oldest = next((k for k in self._lingering if k not in evict), None)
            if oldest is None:
                return [], FULL_SERVER
            evict.append(oldest)
        return [self.by_name[key] for key in evict], None

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

    def _linger(self, key: str, channel: Channel) -> None:
        if key in self._lingering:
            return
        self._lingering[key] = None
        self._lingering_of.setdefault(channel.creator, OrderedDict())[key] = None

    def _unlinger(self, key: str, channel: Channel) -> None:
        if key not in self._lingering:
            return
        del self._lingering[key]
        own = self._lingering_of.get(channel.creator)
        if own is not None:
            own.pop(key, None)
            if not own:
                del self._lingering_of[channel.creator]
