"""The chat store: history written behind in batches survives a restart in order, is
pruned to its limit, channel settings keep their order with history rows, and a
version-1 database gets the version-2 index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from socketkit.services.chat import store as store_module
from socketkit.services.chat.state import Channel, ChatConfig, ChatState, HistoryItem
from socketkit.services.chat.store import ChatStore
from socketkit.state import StateDB


def _item(i: int) -> HistoryItem:
    return HistoryItem(1000.0 + i, f"m{i}", "alice!a@h", "PRIVMSG", f"line {i}")


def _reload(state_dir: Path, history: int = 50) -> ChatState:
    state = ChatState(ChatConfig(server_name="irc.test", history_per_channel=history), 0.0)
    with StateDB(state_dir) as db:
        store = ChatStore(db)
        try:
            store.load(state)
        finally:
            store.close()
    return state


def test_history_survives_a_restart_in_order(tmp_path: Path) -> None:
    with StateDB(tmp_path) as db:
        store = ChatStore(db)
        store.save_channel(Channel("#Room", 1.0))
        for i in range(1234):  # several hand-overs, and rows left for close to flush
            store.add_history("#Room", _item(i))
        store.close()
    channel = _reload(tmp_path).channels["#room"]
    assert channel.name == "#Room"
    assert [h.msgid for h in channel.history] == [f"m{i}" for i in range(1184, 1234)]


def test_history_on_disk_is_pruned_to_its_limit(tmp_path: Path) -> None:
    with StateDB(tmp_path) as db:
        store = ChatStore(db, keep_per_channel=1500)
        store.save_channel(Channel("#a", 1.0))
        for i in range(4000):
            store.add_history("#a", _item(i))
        store.close()
        rows = db.query("SELECT msgid FROM chat_history WHERE channel = '#a' ORDER BY id")
    # Pruned every PRUNE_EVERY inserts: at most keep + PRUNE_EVERY rows, the newest ones.
    assert 1500 <= len(rows) <= 1500 + store_module.PRUNE_EVERY
    assert rows[-1]["msgid"] == "m3999"
    assert [r["msgid"] for r in rows] == [f"m{i}" for i in range(4000 - len(rows), 4000)]


def test_dropping_a_channel_also_drops_rows_not_yet_written(tmp_path: Path) -> None:
    with StateDB(tmp_path) as db:
        store = ChatStore(db)
        store.save_channel(Channel("#gone", 1.0))
        for i in range(10):
            store.add_history("#gone", _item(i))  # still on the loop side
        store.drop_channel("#gone")  # must be ordered after them
        store.close()
        assert db.query("SELECT count(*) AS n FROM chat_history")[0]["n"] == 0
    assert "#gone" not in _reload(tmp_path).channels


def test_a_version_1_database_gets_the_id_index(tmp_path: Path) -> None:
    with StateDB(tmp_path) as db:
        db.ensure_schema("chat", 1, store_module._SCHEMA)
    with StateDB(tmp_path) as db:
        ChatStore(db).close()
    conn = sqlite3.connect(tmp_path / "socketkit.db")
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()
    assert "chat_history_channel_id" in names
    assert "chat_history_channel_time" not in names
