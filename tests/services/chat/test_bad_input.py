"""Hostile input never turns into a reply that cannot be sent, a traceback in the log, or a
history entry: NUL and bare CR are refused at the codec with ERR_UNKNOWNERROR, and
whatever else a client types is echoed back in a sendable form."""

from __future__ import annotations

import itertools
import logging
import sqlite3
from pathlib import Path

import pytest

from socketkit.codec.irc import encode_message, parse_message
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands import COMMANDS, handle
from socketkit.services.chat.replies import Send
from tests.services.chat.harness import Net
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

MIDDLES = ["#room", "bob", "*", "0", "#", "+o", "-", "#room,#x", "x:y", "LS"]
TRAILINGS = ["", " ", "a b", ":x", "::", "#room", "bob", "#a b"]


def _lines(verb: str) -> list[str]:
    """Every line of up to three parameters over the words above, as the parser sees them."""
    lines = [verb]
    for last in TRAILINGS:
        lines.append(f"{verb} :{last}")
        for count in (1, 2):
            lines += [f"{verb} {' '.join(m)} :{last}" for m in itertools.product(MIDDLES, repeat=count)]
    return lines


def test_every_reply_a_client_can_provoke_can_be_sent() -> None:
    net = Net(opers={"root": "plain"}, defer_checks=True)
    alice = net.register("alice", caps="message-tags server-time echo-message batch draft/chathistory")
    bob = net.register("bob")
    net.send(alice, "JOIN #room")
    net.send(bob, "JOIN #room")
    net.send(alice, "PRIVMSG #room :some history")
    unsendable = []
    for verb in sorted(set(COMMANDS) - {"QUIT", "KILL"}):  # those two end the client
        for line in _lines(verb):
            effects = handle(net.state, alice, parse_message(line), net.now)
            for effect in effects:
                if isinstance(effect, Send):
                    try:
                        encode_message(effect.message)
                    except Exception as exc:
                        unsendable.append((line, str(exc)))
            net.apply(effects)
            net.closed.pop(alice.id, None)
            net.pending.clear()
            alice.auth_pending = None
    assert unsendable == []


def test_words_that_cannot_be_sent_back_are_echoed_as_a_star() -> None:
    net = Net()
    alice = net.register("alice")
    for line in ("WHOIS :a b", "WHOIS :", "NICK ::x", "CAP :a b"):
        net.send(alice, line)
        replies = net.take(alice)
        assert replies, line
        for reply in replies:
            assert reply.params[1] == "*", (line, reply)
            encode_message(reply)


def test_nul_and_bare_cr_are_refused_the_client_stays_and_history_stays_clean(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with (
        chat_server(tmp_path) as (address,),
        Irc(address, "alice") as alice,
        Irc(address, "bob", caps="batch server-time message-tags") as bob,
    ):
        alice.send("JOIN #room")
        alice.expect(n.RPL_ENDOFNAMES)
        bob.send("JOIN #room")
        bob.expect(n.RPL_ENDOFNAMES)
        alice.send("PRIVMSG #room :before")
        alice.send(b"PRIVMSG #room :nul\x00inside")
        alice.send(b"PRIVMSG #room :bare\rcr")
        alice.send(b"TOPIC #room :\x00")
        alice.send("PRIVMSG #room :after")
        for _ in range(3):
            refused = alice.expect(n.ERR_UNKNOWNERROR)
            assert refused.params == (
                "alice",
                "*",
                "Line refused: NUL and CR are not allowed inside a message",
            )
        alice.sync()  # still connected, still served
        assert [m.params[-1] for m in bob.sync() if m.command == "PRIVMSG"] == ["before", "after"]
        bob.send("CHATHISTORY LATEST #room * 10")
        bob.collect("BATCH")  # the opening
        batch = bob.collect("BATCH")  # up to the closing
        assert [m.params[-1] for m in batch if m.command == "PRIVMSG"] == ["before", "after"]
    refusals = [r for r in caplog.records if "protocol error" in r.getMessage()]
    assert len(refusals) == 2  # one line per refused line, repeats sampled (1st, 2nd, 4th...) ...
    assert not any(r.exc_info for r in caplog.records)  # ... and never a traceback
    assert "Traceback" not in caplog.text
    with sqlite3.connect(tmp_path / "socketkit.db") as db:
        texts = [row[0] for row in db.execute("SELECT text FROM chat_history ORDER BY id")]
    assert texts == ["before", "after"]


def test_history_stored_before_the_fix_is_never_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with chat_server(tmp_path) as (address,), Irc(address, "alice") as alice:
        alice.send("JOIN #room", "TOPIC #room :fine", "PRIVMSG #room :clean")
        alice.sync()
    # What the old server stored: a NUL in a message, a CR in another, and in the topic.
    with sqlite3.connect(tmp_path / "socketkit.db") as db:
        db.execute(
            "INSERT INTO chat_history (channel, time, msgid, source, command, text) VALUES "
            "('#room', 1.0, 'x1', 'eve!e@h', 'PRIVMSG', 'a' || char(0) || 'b'), "
            "('#room', 2.0, 'x2', 'eve!e@h', 'PRIVMSG', 'a' || char(13) || 'b')"
        )
        db.execute(
            "UPDATE chat_channels SET topic = 'bad' || char(0), chan_key = 'k' || char(13), "
            'bans = \'[["bad\\u0000!*@*", "op", 1.0], ["good!*@*", "op", 1.0]]\''
        )
    caplog.set_level(logging.INFO)
    with (
        chat_server(tmp_path) as (address,),
        Irc(address, "bob", caps="batch") as bob,
    ):
        bob.send("JOIN #room")  # no key needed: the poisoned key was cleared
        joined = bob.collect(n.RPL_ENDOFNAMES)
        assert n.RPL_TOPIC not in [m.command for m in joined]  # the poisoned topic was cleared
        bob.send("MODE #room b")
        bans = bob.collect(n.RPL_ENDOFBANLIST)
        assert [m.params[2] for m in bans if m.command == n.RPL_BANLIST] == ["good!*@*"]
        bob.send("CHATHISTORY LATEST #room * 10")
        bob.collect("BATCH")
        batch = bob.collect("BATCH")
        assert [m.params[-1] for m in batch if m.command == "PRIVMSG"] == ["clean"]
    assert "2 history row(s) holding NUL, CR or LF deleted" in caplog.text
    assert "#room had settings holding NUL, CR or LF; cleared" in caplog.text
    assert not any(r.exc_info for r in caplog.records)
    with sqlite3.connect(tmp_path / "socketkit.db") as db:
        assert [row[0] for row in db.execute("SELECT text FROM chat_history")] == ["clean"]
        assert list(db.execute("SELECT topic, chan_key FROM chat_channels")) == [("", None)]
