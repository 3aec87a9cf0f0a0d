"""What the server remembers, within bounds: channel history and nicks that left (pure).

Channel history is kept per channel (``history_per_channel`` lines, for CHATHISTORY) and
across the server (``max_history`` lines in all): without the second bound, 10,000
channels of 1,000 lines each would hold ten million messages in memory, and any user
can create channels and talk in them. When the server-wide bound is reached, the
oldest line of the whole server goes first, whichever channel it is in.

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
    """Appends to channel histories, keeping both bounds.

    Every line appended is remembered once in a server-wide queue, in order. The queue
    is never longer than ``total``: past it, its oldest entry leaves, and if that line
    is still the oldest of its channel (it was not pruned by the channel's own bound, or
    with its channel) it goes too. Lines leave a channel only from its old end, so a
    line still kept is always the oldest of its channel when its turn comes: at most
    ``total`` lines are kept, and each append costs O(1).
    """

    def __init__(self, per_channel: int, total: int) -> None:
        self.per_channel = per_channel
        self.limit = total
        self.total = 0  # lines kept, all channels
        self._order: deque[tuple[deque[HistoryItem], HistoryItem]] = deque()

    def append(self, history: deque[HistoryItem], item: HistoryItem) -> None:
        """Add ``item`` to a channel's ``history``."""
        history.append(item)
        self.total += 1
        self._order.append((history, item))
        while len(history) > self.per_channel:
            history.popleft()
            self.total -= 1
        while len(self._order) > self.limit:
            oldest_history, oldest = self._order.popleft()
            if oldest_history and oldest_history[0] is oldest:
                oldest_history.popleft()
                self.total -= 1

    def forget(self, history: deque[HistoryItem]) -> None:
        """A channel is gone: its lines no longer count (their queue entries lapse)."""
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
