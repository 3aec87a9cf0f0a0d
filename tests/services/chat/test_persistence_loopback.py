"""What survives a restart, on a real server and its SQLite store: channels left behind
still make room after a restart, the time a channel was emptied is kept (its expiry),
and a line that is not UTF-8 is refused without costing anyone else's history."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from socketkit.services.chat import numerics as n
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

NOW = 1_800_000_000.0


def test_channels_left_behind_still_make_room_after_a_restart(tmp_path: Path) -> None:
    with (
        chat_server(tmp_path, max_channels=5, clock=lambda: NOW) as (address,),
        Irc(address, "filler") as filler,
    ):
        for i in range(5):
            filler.send(f"JOIN #f{i}", f"PRIVMSG #f{i} :kept for a while", f"PART #f{i}")
        filler.sync()
    with contextlib.closing(sqlite3.connect(tmp_path / "socketkit.db")) as db:
        rows = db.execute("SELECT key, creator, emptied FROM chat_channels ORDER BY key").fetchall()
    assert rows == [(f"#f{i}", f"uid:{os.geteuid()}", NOW) for i in range(5)]  # their creator: a user
    with chat_server(tmp_path, max_channels=5) as (address,), Irc(address, "legit") as legit:
        legit.send("LUSERS")
        assert legit.expect(n.RPL_LUSERCHANNELS).params[1] == "5"  # all of them lingering
        legit.send("JOIN #brandnew")
        assert legit.expect("JOIN").params == ("#brandnew",)
        legit.send("JOIN #f4")  # a lingering one is still there, with its history
        assert legit.expect(n.RPL_ENDOFNAMES, lambda m: m.params[1] == "#f4")


def test_a_line_that_is_not_utf8_is_refused_and_costs_no_one_their_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with chat_server(tmp_path) as (address,), Irc(address, "alice") as alice, Irc(address, "bad") as bad:
        alice.send("JOIN #good")
        bad.send("JOIN #bad")
        for i in range(6):
            alice.send(f"PRIVMSG #good :legit message {i}")
            bad.send(b"PRIVMSG #bad :\xff")  # a raw byte, as the report's repro sent it
        bad.send(b"TOPIC #bad :\xc3\x28", b"JOIN #b\xe9d")
        refused = [m.params[:2] for m in bad.sync() if m.command == "FAIL"]
        assert refused == [("PRIVMSG", "INVALID_UTF8")] * 6 + [
            ("TOPIC", "INVALID_UTF8"),
            ("JOIN", "INVALID_UTF8"),
        ]
        alice.sync()
    with contextlib.closing(sqlite3.connect(tmp_path / "socketkit.db")) as db:
        rows = db.execute("SELECT channel, text FROM chat_history ORDER BY id").fetchall()
    assert rows == [("#good", f"legit message {i}") for i in range(6)]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
