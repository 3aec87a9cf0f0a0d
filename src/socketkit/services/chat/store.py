"""Chat persistence in the embedded SQLite state: channels (topic, modes, bans) and history.

Loaded once at start; afterwards written behind by one worker thread, so the event loop
never waits for the disk. History rows are gathered on the loop side and handed over in
batches (``flush``, once per event-loop turn), so a busy channel costs the loop a list
append per message, not a queue hand-off and a thread wake-up. The write queue is
bounded: if the disk falls far behind, history rows are dropped (and that is logged)
rather than memory growing or the server stalling; channel settings are always kept.

Bounds on disk: ``KEEP_PER_CHANNEL`` rows per channel (the oldest go first, pruned
every ``PRUNE_EVERY`` inserts into it) and ``MAX_HISTORY_ROWS`` in all, shared fairly as
in memory: past it, the channels holding the most rows are cut to an equal share (the
newest rows kept), down to ``PRUNE_HEADROOM`` below the bound, so one user's flood of
many channels never erases a quiet channel's rows (the oldest rows of the whole server
used to go first, whichever channel they were in). The rows of each channel are counted
here (from the database at start, then as they are queued), so finding the share needs
no scan. A channel that is dropped takes its rows with it, and rows whose channel is
gone (left by older versions) are deleted at start. Memory's bound never deletes rows:
a channel whose lines left memory keeps them on disk (``Channel.logged``).

A bad row never costs the others: what SQLite cannot take (text with NUL, CR, LF or a
lone surrogate, a number too large) is refused before it is queued, and if a batch still
fails, its operations are written one by one and only the failing ones are dropped, with
one log line and no traceback.

History rows holding NUL, CR or LF (stored before the codec refused such lines; no
line can be sent with them) are never loaded: they are deleted at start, with one log
line, so that CHATHISTORY cannot replay them; a channel's topic, key or bans holding
them are cleared the same way.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Final

from socketkit._log import get_logger
from socketkit.codec.irc import casefold
from socketkit.services.chat.history import HistoryItem
from socketkit.services.chat.state import Channel, ChatState
from socketkit.state import StateDB

__all__ = ["KEEP_PER_CHANNEL", "MAX_HISTORY_ROWS", "PRUNE_HEADROOM", "ChatStore", "fair_share"]

logger = get_logger(__name__)

_SCHEMA = [
    """CREATE TABLE chat_channels (
        key TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL, topic TEXT, topic_setter TEXT,
        topic_time REAL, modes TEXT, chan_key TEXT, chan_limit INTEGER, bans TEXT
    )""",
    """CREATE TABLE chat_history (
        id INTEGER PRIMARY KEY, channel TEXT NOT NULL, time REAL NOT NULL, msgid TEXT NOT NULL,
        source TEXT NOT NULL, command TEXT NOT NULL, text TEXT NOT NULL
    )""",
    "CREATE INDEX chat_history_channel_time ON chat_history (channel, time)",
]
# Version 2: history is read newest-first by id and pruned by id; an index on (channel,
# id) makes the prune a range delete instead of a sort (0.7 ms, not 7.5, per 1000 rows).
_SCHEMA_V2 = [
    "DROP INDEX IF EXISTS chat_history_channel_time",
    "CREATE INDEX IF NOT EXISTS chat_history_channel_id ON chat_history (channel, id)",
]
# Version 3: who created a channel (its address's quota) and when it was emptied (its
# expiry), so that both survive a restart.
_SCHEMA_V3 = [
    "ALTER TABLE chat_channels ADD COLUMN creator TEXT",
    "ALTER TABLE chat_channels ADD COLUMN emptied REAL",
]

MAX_BATCH_ROWS = 500  # history rows per hand-over to the writer thread
MAX_QUEUE = 200  # hand-overs waiting (so at most 100,000 rows) before rows are dropped
MAX_TRANSACTION_ROWS = 5_000  # rows per commit
KEEP_PER_CHANNEL: Final = 10_000
"""History rows kept on disk per channel (older ones are pruned)."""
MAX_HISTORY_ROWS: Final = 1_000_000
"""History rows kept on disk in all, the oldest pruned first: a few hundred MB at most,
whatever the number of channels (10,000 channels of 10,000 rows would be 100 million)."""
PRUNE_EVERY = 1_000  # inserts into a channel between two prunes of it
PRUNE_HEADROOM: Final = 20
"""A prune of the total frees a twentieth of ``keep_total`` (50,000 rows by default): a
flood pays for one prune (a range delete in each channel above the share) per 50,000
rows, not per row."""
_STOP = object()
_Op = Callable[[StateDB], object] | list[tuple[Any, ...]]  # a statement, or history rows
_WRITE_ERRORS = (sqlite3.Error, ValueError, TypeError, OverflowError)
"""What a write can fail with because of what it writes (UnicodeEncodeError is a
ValueError); anything else is a bug and propagates."""


_KEEP_NEWEST = (
    "DELETE FROM chat_history WHERE channel = ? AND id <= (SELECT id FROM chat_history "
    "WHERE channel = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
)
"""Delete a channel's rows but its newest N (a walk of the (channel, id) index)."""


def fair_share(counts: list[int], room: int) -> int:
    """The largest share ``s`` such that every count cut to ``s`` (``min(count, s)``)
    fits in ``room``: the channels above ``s`` are cut, the others keep all they have.

    Args:
        counts: rows per channel.
        room: rows the channels may hold together (0 or more).
    """
    ordered = sorted(counts, reverse=True)
    rest = sum(ordered)
    for k, count in enumerate(ordered, 1):
        rest -= count  # what the channels below the k largest hold
        share = (room - rest) // k
        below = ordered[k] if k < len(ordered) else 0
        if share >= below:
            return max(share, 0)
    return 0


def _sendable(text: str) -> bool:
    return "\0" not in text and "\r" not in text and "\n" not in text


def _storable(text: str | None) -> bool:
    """Text SQLite can store and a reply can carry: no NUL, CR, LF or lone surrogate."""
    if text is None:
        return True
    if not _sendable(text):
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(channel: Channel) -> bool:
    """Drop what no reply could carry (a topic, key or ban holding NUL, CR or LF);
    whether anything was dropped."""
    dirty = False
    if not (_sendable(channel.topic) and _sendable(channel.topic_setter)):
        channel.topic, channel.topic_setter, dirty = "", "", True
    if channel.key is not None and not _sendable(channel.key):
        channel.key, dirty = None, True
    bans = [ban for ban in channel.bans if _sendable(ban[0]) and _sendable(ban[1])]
    if len(bans) != len(channel.bans):
        channel.bans, dirty = bans, True
    return dirty


class ChatStore:
    """Persistence for one chat server."""

    def __init__(
        self, db: StateDB, *, keep_per_channel: int = KEEP_PER_CHANNEL, keep_total: int = MAX_HISTORY_ROWS
    ) -> None:
        self.db = db
        self.keep_per_channel = keep_per_channel
        self.keep_total = keep_total
        self._inserts: dict[str, int] = {}
        db.ensure_schema("chat", 1, _SCHEMA)
        db.ensure_schema("chat", 2, _SCHEMA_V2)
        db.ensure_schema("chat", 3, _SCHEMA_V3)
        # Rows per channel, on disk or queued (one index scan at start).
        self._rows_of: dict[str, int] = {
            row["channel"]: row["n"]
            for row in db.query("SELECT channel, count(*) AS n FROM chat_history GROUP BY channel")
        }
        self._row_total = sum(self._rows_of.values())
        self._rows: list[tuple[Any, ...]] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=MAX_QUEUE)
        self._dropped = 0
        self._refused = 0
        self._thread = threading.Thread(target=self._run, name="socketkit-chat-store", daemon=True)
        self._thread.start()

    # --- loading ---------------------------------------------------------------------

    def load(self, state: ChatState) -> None:
        """Put the persisted channels (without members) and their recent history in
        ``state``: registered ones to stay, the others lingering from when they were
        emptied (or from now, if they had members when the server stopped)."""
        limit = state.config.history_per_channel
        unsendable: list[int] = []
        keys: set[str] = set()
        loaded: list[Channel] = []
        for row in self.db.query("SELECT * FROM chat_channels"):
            channel = Channel(row["name"], row["created"] or 0.0)
            channel.topic = row["topic"] or ""
            channel.topic_setter = row["topic_setter"] or ""
            channel.topic_time = row["topic_time"] or 0.0
            channel.modes = set(row["modes"] or "")
            channel.key = row["chan_key"]
            channel.limit = row["chan_limit"]
            channel.bans = [(str(m), str(s), float(t)) for m, s, t in json.loads(row["bans"] or "[]")]
            channel.creator = row["creator"] or ""
            channel.emptied_at = row["emptied"] if row["emptied"] is not None else state.created_at
            if _clean(channel):
                logger.warning("chat store: %s had settings holding NUL, CR or LF; cleared", channel.name)
                self.save_channel(channel)
            rows = self.db.query(
                "SELECT id, time, msgid, source, command, text FROM chat_history WHERE channel = ? "
                "ORDER BY id DESC LIMIT ?",
                (row["key"], limit),
            )
            for item in reversed(rows):
                if (
                    not _sendable(item["text"])
                    or not _sendable(item["source"])
                    or not _sendable(item["msgid"])
                ):
                    unsendable.append(item["id"])
                    self._uncount(row["key"], 1)
                    continue
                state.history.append(
                    channel.history,
                    HistoryItem(item["time"], item["msgid"], item["source"], item["command"], item["text"]),
                )
                channel.logged = True
            loaded.append(channel)
            keys.add(row["key"])
        for channel in sorted(loaded, key=lambda c: c.emptied_at or 0.0):  # the table's expiry order
            state.table.add(channel)
        if unsendable:
            logger.warning("chat store: %d history row(s) holding NUL, CR or LF deleted", len(unsendable))
            ids = [(row_id,) for row_id in unsendable]
            self._submit(
                lambda db: db.executemany("DELETE FROM chat_history WHERE id = ?", ids), essential=True
            )
        # Rows of channels that no longer exist (dropped by an older version, or whose drop
        # was lost), and rows beyond the server-wide bound.
        for key in [key for key in self._rows_of if key not in keys]:
            self._uncount(key, self._rows_of[key])
        self._submit(
            lambda db: db.execute(
                "DELETE FROM chat_history WHERE channel NOT IN (SELECT key FROM chat_channels)"
            ),
            essential=True,
        )
        self._prune_total()

    # --- writing -----------------------------------------------------------------------

    def save_channel(self, channel: Channel) -> None:
        """Persist a channel's settings (a snapshot is taken now, written later)."""
        row = (
            casefold(channel.name),
            channel.name,
            channel.created,
            channel.topic,
            channel.topic_setter,
            channel.topic_time,
            "".join(sorted(channel.modes)),
            channel.key,
            channel.limit,
            json.dumps(channel.bans),
            channel.creator,
            channel.emptied_at,
        )
        if not all(_storable(v) for v in row if isinstance(v, str)):
            self._refuse(f"channel {channel.name!r}")
            return
        self._submit(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO chat_channels (key, name, created, topic, topic_setter, topic_time, "
                "modes, chan_key, chan_limit, bans, creator, emptied) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            ),
            essential=True,
        )

    def drop_channel(self, name: str) -> None:
        """Forget a channel and its history."""
        key = casefold(name)
        self._inserts.pop(key, None)
        self._uncount(key, self._rows_of.get(key, 0))
        self._submit(
            lambda db: (
                db.execute("DELETE FROM chat_channels WHERE key = ?", (key,)),
                db.execute("DELETE FROM chat_history WHERE channel = ?", (key,)),
            ),
            essential=True,
        )

    def add_history(self, channel: str, item: HistoryItem) -> None:
        """Persist one channel message (written at the next ``flush``)."""
        key = casefold(channel)
        if not (_storable(key) and _storable(item.msgid) and _storable(item.source) and _storable(item.text)):
            self._refuse(f"a history row of {channel!r}")
            return
        rows = self._rows
        rows.append((key, item.time, item.msgid, item.source, item.command, item.text))
        count = self._inserts[key] = self._inserts.get(key, 0) + 1
        self._rows_of[key] = self._rows_of.get(key, 0) + 1
        self._row_total += 1
        if count % PRUNE_EVERY == 0:
            keep = self.keep_per_channel
            self.flush()  # the rows go before the prune that counts them
            if self._submit(lambda db: db.execute(_KEEP_NEWEST, (key, key, keep))):
                self._uncount(key, max(0, self._rows_of.get(key, 0) - keep))
        if self._row_total > self.keep_total:
            self.flush()
            self._prune_total()
        elif len(rows) >= MAX_BATCH_ROWS:
            self.flush()

    def _prune_total(self) -> None:
        """Past ``keep_total`` rows, cut the channels holding the most to an equal share
        (``fair_share``) that leaves ``keep_total / PRUNE_HEADROOM`` rows free; each keeps
        its newest rows. One operation for all of them."""
        if self._row_total <= self.keep_total:
            return
        share = fair_share(list(self._rows_of.values()), self.keep_total - self.keep_total // PRUNE_HEADROOM)
        cuts = [(key, key, share) for key, count in self._rows_of.items() if count > share]
        if self._submit(lambda db: db.executemany(_KEEP_NEWEST, cuts)):
            for key, _, _ in cuts:
                self._uncount(key, self._rows_of[key] - share)

    def _uncount(self, key: str, rows: int) -> None:
        """``rows`` of channel ``key`` are no longer on disk (or will not be)."""
        left = self._rows_of.get(key, 0) - rows
        self._row_total -= min(rows, self._rows_of.get(key, 0))
        if left > 0:
            self._rows_of[key] = left
        else:
            self._rows_of.pop(key, None)

    def flush(self) -> None:
        """Hand the gathered history rows to the writer thread."""
        if self._rows:
            rows, self._rows = self._rows, []
            self._submit(rows)

    def _refuse(self, what: str) -> None:
        """Something SQLite cannot store was not queued: one line (the first, then at
        each power of two), never the row itself."""
        self._refused += 1
        if self._refused & (self._refused - 1) == 0:
            logger.warning(
                "chat store: %s holds text that cannot be stored (NUL, CR, LF or not UTF-8); "
                "not written (%d so far)",
                what,
                self._refused,
            )

    def _submit(self, op: _Op, *, essential: bool = False) -> bool:
        """Queue ``op`` for the writer; whether it was (history rows that were not are
        no longer counted)."""
        try:
            if essential:
                self.flush()  # keep the order of rows and settings
                self._queue.put(op, timeout=5)  # settings are small and rare: wait briefly
            else:
                self._queue.put_nowait(op)
        except queue.Full:
            self._dropped += len(op) if isinstance(op, list) else 1
            if isinstance(op, list):
                for row in op:
                    self._uncount(row[0], 1)
            if self._dropped & (self._dropped - 1) == 0 or isinstance(op, list):
                logger.warning("chat store is behind: %d history row(s) dropped so far", self._dropped)
            return False
        return True

    def _run(self) -> None:
        while True:
            ops = [self._queue.get()]
            count = len(ops[0]) if isinstance(ops[0], list) else 1
            # Whatever else is waiting goes in the same transaction: one commit per batch.
            while count < MAX_TRANSACTION_ROWS:
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
                ops.append(op)
                count += len(op) if isinstance(op, list) else 1
            stop = any(op is _STOP for op in ops)
            work = [op for op in ops if op is not _STOP]
            try:
                self._write(work)
            except _WRITE_ERRORS:
                self._write_each(work)  # rolled back: again one by one, so only the bad ones fail
            if stop:
                return

    def _write(self, ops: list[Any]) -> None:
        with self.db.transaction():
            rows: list[tuple[Any, ...]] = []
            for op in ops:
                if isinstance(op, list):
                    rows.extend(op)
                    continue
                self._insert(rows)  # keep the order: rows before a later operation
                op(self.db)
            self._insert(rows)

    def _write_each(self, ops: list[Any]) -> None:
        """Write ``ops`` one operation (and one history row) at a time; log the failures
        on one line."""
        failed = 0
        first: BaseException | None = None
        for op in ops:
            for one in [[row] for row in op] if isinstance(op, list) else [op]:
                try:
                    self._write([one])
                except _WRITE_ERRORS as exc:
                    failed += 1
                    first = first or exc
        if failed:
            logger.error(
                "chat store: %d write(s) failed and were dropped, the rest of the batch was written: %s",
                failed,
                first,
            )

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.db.executemany(
                "INSERT INTO chat_history (channel, time, msgid, source, command, text) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            rows.clear()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self.flush()
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=30)
        self._thread.join(30)
