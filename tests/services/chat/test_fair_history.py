"""History bounds are shared fairly (red team round 2, finding 3): a flood of many
channels brings the longest histories down to an equal share and never takes a line
from a channel below it, in memory and on disk; memory's bound never costs the disk a
row (a channel whose lines left memory still lingers, rows and all)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from socketkit.services.chat.history import HistoryBook, HistoryItem
from socketkit.services.chat.replies import DropChannel
from socketkit.services.chat.state import Channel
from socketkit.services.chat.store import PRUNE_HEADROOM, ChatStore, fair_share
from socketkit.state import StateDB
from tests.services.chat.harness import Net


def _item(i: int) -> HistoryItem:
    return HistoryItem(1000.0 + i, f"m{i}", "x!x@h", "PRIVMSG", f"line {i}")


def test_a_flood_of_many_channels_leaves_a_quiet_channels_history_alone() -> None:
    """What /tmp/rt3/histflood.py did, scaled down: the victim says 5 lines and stays;
    50 flooders from 50 addresses say 100 lines each in channels of their own, 5,000
    lines for a bound of 1,000. The victim's 5 lines stay; each flood channel keeps its
    share (the newest lines)."""
    net = Net(history_per_channel=100, max_history=1000, flood_burst=1000)
    victim = net.register("victim", caps="batch server-time draft/chathistory")
    net.send(victim, "JOIN #victim2")
    for i in range(5):
        net.send(victim, f"PRIVMSG #victim2 :precious line {i}")
    flooders = [net.register(f"hf{i}", host=f"10.0.{i}.1") for i in range(50)]
    for i, client in enumerate(flooders):
        net.send(client, f"JOIN #hf{i}")
    for k in range(100):
        for i, client in enumerate(flooders):
            net.send(client, f"PRIVMSG #hf{i} :filler {k}")
    net.take(victim)
    net.send(victim, "CHATHISTORY LATEST #victim2 * 10")
    texts = [m.params[1] for m in net.take(victim)[1:-1]]
    assert texts == [f"precious line {i}" for i in range(5)]
    floods = [net.state.channels[f"#hf{i}"].history for i in range(50)]
    assert net.state.history.total == 1000
    assert {len(h) for h in floods} <= {19, 20}  # (1,000 - 5) / 50, give or take the last line
    assert all(h[-1].text == "filler 99" for h in floods)


def test_a_channel_whose_lines_left_memory_keeps_them_on_disk() -> None:
    """With more channels than the memory bound has lines, a channel's every line can
    leave memory: it still has lines on disk, so leaving it lets it linger instead of
    dropping it (and its rows) as if nothing had been said."""
    net = Net(history_per_channel=10, max_history=2)
    alice = net.register("alice")
    for room in ("#a", "#b", "#c"):
        net.send(alice, f"JOIN {room}")
        net.send(alice, f"PRIVMSG {room} :said in {room}")
    assert not net.state.channels["#a"].history  # the first to reach the longest length
    net.send(alice, "PART #a")
    assert "#a" in net.state.channels
    assert net.state.table.lingering == 1
    assert DropChannel("#a") not in net.stored


def test_the_longest_history_gives_the_line_and_a_shorter_one_never_does() -> None:
    book = HistoryBook(per_channel=50, total=60)
    small, big, bigger = deque[HistoryItem](), deque[HistoryItem](), deque[HistoryItem]()
    for i in range(10):
        book.append(small, _item(i))
    for i in range(40):
        book.append(big, _item(100 + i))
    for i in range(200):
        book.append(bigger, _item(1000 + i))  # per channel 50, then the share
    assert (len(small), len(big), len(bigger)) == (10, 25, 25)
    assert book.total == 60
    assert [h.msgid for h in small] == [f"m{i}" for i in range(10)]
    assert bigger[-1].msgid == "m1199"
    book.forget(bigger)
    for i in range(30):
        book.append(big, _item(200 + i))  # the room a dropped channel left
    assert (len(small), len(big), book.total) == (10, 50, 60)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 19).map(lambda n: n == 0)), max_size=200))
def test_the_bounds_hold_and_the_shortest_histories_are_never_cut(ops: list[tuple[int, bool]]) -> None:
    """Any mix of appends and forgets over 4 channels: the totals add up, no channel is
    over its bound, and when the server bound cuts, no history that lost a line is
    shorter than one that kept more (a line leaves only the longest)."""
    book = HistoryBook(per_channel=6, total=12)
    histories = [deque[HistoryItem]() for _ in range(4)]
    for n, (index, forget) in enumerate(ops):
        history = histories[index]
        if forget:
            book.forget(history)
            continue
        before = [len(h) for h in histories]
        book.append(history, _item(n))
        after = [len(h) for h in histories]
        assert book.total == sum(after) <= 12
        assert max(after) <= 6
        for i, (was, now) in enumerate(zip(before, after, strict=True)):
            if now < was + (i == index):  # this one lost a line to the server bound
                assert now >= max(after) - 1


def test_the_disk_keeps_a_quiet_channels_rows_through_a_flood(tmp_path: Path) -> None:
    """5 rows of #quiet, then 8 flood channels of 1,000 rows each for a disk bound of
    2,000: #quiet keeps all 5 (the old prune deleted the oldest rows of the server, its
    rows first), every flood channel keeps the same share of its newest rows, and the
    total stays under the bound; a restart counts the rows again."""
    with StateDB(tmp_path) as db:
        store = ChatStore(db, keep_total=2000)
        store.save_channel(Channel("#quiet", 1.0))
        for i in range(5):
            store.add_history("#quiet", _item(i))
        for i in range(8000):
            store.add_history(f"#flood{i % 8}", _item(100 + i))
        store.close()
        count = "SELECT channel, count(*) AS n, max(msgid) AS last FROM chat_history GROUP BY channel"
        rows = {row["channel"]: row["n"] for row in db.query(count)}
        assert rows.pop("#quiet") == 5
        assert sum(rows.values()) + 5 <= 2000
        assert max(rows.values()) - min(rows.values()) <= 1
        assert min(rows.values()) >= (2000 - 2000 // PRUNE_HEADROOM - 5) // 8 - 1
        newest = db.query("SELECT msgid FROM chat_history WHERE channel = '#flood7' ORDER BY id DESC LIMIT 1")
        assert newest[0]["msgid"] == "m8099"
        store = ChatStore(db, keep_total=2000)  # counted from the database at start
        for i in range(200):
            store.add_history("#flood0", _item(9000 + i))
        store.close()
        assert db.query("SELECT count(*) AS n FROM chat_history")[0]["n"] <= 2000
        assert db.query("SELECT count(*) AS n FROM chat_history WHERE channel = '#quiet'")[0]["n"] == 5


@given(st.lists(st.integers(1, 1000), max_size=30), st.integers(0, 10_000))
def test_the_fair_share_fits_and_is_the_largest_that_does(counts: list[int], room: int) -> None:
    share = fair_share(counts, room)
    assert share >= 0
    kept = sum(min(c, share) for c in counts)
    assert kept <= room
    if any(c > share for c in counts):
        assert sum(min(c, share + 1) for c in counts) > room
