"""The chat store: history written behind in batches survives a restart in order, is
pruned to its limits (per channel and in all), channel settings keep their order with
history rows, a row SQLite cannot take costs only itself, rows of channels that are gone
are deleted, and a version-1 database gets the version-2 index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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


def test_a_row_sqlite_cannot_take_costs_only_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with StateDB(tmp_path) as db:
        store = ChatStore(db)
        store.save_channel(Channel("#good", 1.0))
        for i in range(5):
            store.add_history("#good", _item(i))
        store.add_history("#bad", HistoryItem(1.0, "mx", "b!b@h", "PRIVMSG", "\udcff"))  # a lone surrogate
        huge = Channel("#huge", 1.0)
        huge.limit = 2**70  # more than SQLite's INTEGER: fails inside the batch
        store.save_channel(huge)
        for i in range(5, 10):
            store.add_history("#good", _item(i))
        store.close()
        rows = db.query("SELECT msgid FROM chat_history WHERE channel = '#good' ORDER BY id")
        assert [r["msgid"] for r in rows] == [f"m{i}" for i in range(10)]
        assert db.query("SELECT count(*) AS n FROM chat_history WHERE channel = '#bad'")[0]["n"] == 0
    assert not [r for r in caplog.records if r.exc_info]  # one line each, no traceback
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("chat.store")]
    assert any("cannot be stored" in m for m in messages)
    assert any("1 write(s) failed" in m for m in messages)


def test_history_of_channels_that_are_gone_is_deleted_and_the_total_is_bounded(tmp_path: Path) -> None:
    with StateDB(tmp_path) as db:
        store = ChatStore(db, keep_total=1500)
        store.save_channel(Channel("#kept", 1.0))
        store.close()
        db.executemany(  # rows whose channel is not in the table (an older version's leftovers)
            "INSERT INTO chat_history (channel, time, msgid, source, command, text) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [("#gone", 1.0, f"g{i}", "x!x@h", "PRIVMSG", "old") for i in range(100)],
        )
        store = ChatStore(db, keep_total=1500)
        store.load(ChatState(ChatConfig(server_name="irc.test"), 0.0))
        for i in range(4000):
            store.add_history(f"#r{i % 8}", _item(i))
        store.close()
        assert db.query("SELECT count(*) AS n FROM chat_history WHERE channel = '#gone'")[0]["n"] == 0
        rows = db.query("SELECT msgid FROM chat_history ORDER BY id")
    assert len(rows) <= 1500 + store_module.PRUNE_EVERY
    assert rows[-1]["msgid"] == "m3999"


def test_registered_channels_load_to_stay_and_the_others_to_linger(tmp_path: Path) -> None:
    with StateDB(tmp_path) as db:
        store = ChatStore(db)
        store.save_channel(Channel("#registered", 1.0, modes={"n", "t", "P"}, topic="kept"))
        store.save_channel(Channel("#left", 1.0, topic="for a while", creator="10.0.0.1", emptied_at=5.0))
        store.close()
    state = _reload(tmp_path)
    assert state.table.lingering == 1
    assert state.channels["#left"].emptied_at == 5.0  # its expiry runs from when it was emptied
    assert state.table.per_creator == {"10.0.0.1": 1}  # the registered one counts against nobody
    assert [c.name for c in state.table.expired(5.0 + state.config.empty_channel_ttl_s)] == ["#left"]
