"""What the server remembers, within bounds: channel history and nicks that left (pure).

Channel history is kept per channel (``history_per_channel`` lines, for CHATHISTORY) and
across the server (``max_history`` lines in all): without the second bound, 10,000
channels of 1,000 lines each would hold ten million messages in memory, and any user
can create channels and talk in them. The server-wide bound is shared fairly: when it
is reached, the oldest line of the channel holding the most lines goes (of those
holding as many, the one that reached that length first). A channel with fewer lines
than the others never loses one to make room for theirs, so a flood of many channels
brings every channel down to an equal share (``max_history`` over the channels that
have history) and no further; a quiet channel below its share keeps all it has. (The
old rule, the oldest line of the whole server first, let one user's filler erase
every other channel's history.)

WHOWAS entries are kept ``whowas_size`` in all, oldest forgotten first, and indexed by
nick, so a ``WHOWAS`` looks at the entries of that nick only, never at all of them.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Final

from socketkit.codec.irc import casefold

__all__ = ["WHOWAS_REPLIES", "HistoryBook", "HistoryItem", "WhowasBook", "WhowasEntry"]

WHOWAS_REPLIES: Final = 10
"""Entries one WHOWAS answers at most, whatever count it asks for (a nick changed back
and forth could otherwise have the whole table answered for it in one line)."""


@dataclass(slots=True)
class HistoryItem:
    """One stored channel message (for CHATHISTORY)."""

    time: float
    msgid: str
    source: str
    command: str  # PRIVMSG or NOTICE
    text: str


@dataclass(slots=True)
class WhowasEntry:
    """A nick that left."""

    nick: str
    user: str
    host: str
    realname: str
    time: float


class HistoryBook:
    """Appends to channel histories, keeping both bounds (see the module docstring).

    The histories are bucketed by length (``_by_length[n]``: the histories holding ``n``
    lines, in the order they reached ``n``), so the longest is found in O(1) amortised:
    ``_longest`` only moves down by steps, and a length changes by one line at a time.
    Histories are told apart by identity (a deque cannot be hashed); the buckets hold
    them, so an identity is never reused while it is here. Lines leave a history only
    through ``append`` and ``forget``.
    """

    def __init__(self, per_channel: int, total: int) -> None:
        self.per_channel = per_channel
        self.limit = total
        self.total = 0  # lines kept, all channels
        self._by_length: list[dict[int, deque[HistoryItem]]] = [{} for _ in range(max(per_channel, 0) + 1)]
        self._longest = 0  # no history is longer (the bucket may be empty: look further down)

    def append(self, history: deque[HistoryItem], item: HistoryItem) -> None:
        """Add ``item`` to a channel's ``history``; then, past the server-wide bound, the
        oldest line of the longest history goes."""
        if self.per_channel <= 0 or self.limit <= 0:
            return
        key = id(history)
        buckets = self._by_length
        if history:
            buckets[len(history)].pop(key, None)
        history.append(item)
        self.total += 1
        while len(history) > self.per_channel:
            history.popleft()
            self.total -= 1
        buckets[len(history)][key] = history
        self._longest = max(self._longest, len(history))
        while self.total > self.limit:
            self._evict()

    def _evict(self) -> None:
        buckets = self._by_length
        while not buckets[self._longest]:
            self._longest -= 1
        bucket = buckets[self._longest]
        key = next(iter(bucket))
        history = bucket.pop(key)
        history.popleft()
        self.total -= 1
        if history:
            buckets[len(history)][key] = history

    def forget(self, history: deque[HistoryItem]) -> None:
        """A channel is gone: its lines no longer count."""
        if history:
            self._by_length[len(history)].pop(id(history), None)
        self.total -= len(history)
        history.clear()


class WhowasBook:
    """Nicks that left, ``size`` in all, by casefolded nick."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[str] = deque()  # the key of each entry, oldest first
        self._by_nick: dict[str, deque[WhowasEntry]] = {}

    def add(self, entry: WhowasEntry) -> None:
        """Remember ``entry`` (the oldest entry goes when the book is full)."""
        if self.size <= 0:
            return
        key = casefold(entry.nick)
        self._by_nick.setdefault(key, deque()).append(entry)
        self._order.append(key)
        if len(self._order) > self.size:
            old = self._order.popleft()
            entries = self._by_nick[old]
            entries.popleft()
            if not entries:
                del self._by_nick[old]

    def find(self, nick: str, count: int) -> list[WhowasEntry]:
        """The newest ``count`` (at most ``WHOWAS_REPLIES``) entries of ``nick``."""
        entries = self._by_nick.get(casefold(nick))
        if not entries:
            return []
        return list(itertools.islice(reversed(entries), max(1, min(count, WHOWAS_REPLIES))))

    def __len__(self) -> int:
        return len(self._order)
