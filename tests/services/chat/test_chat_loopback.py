"""The chat server over loopback: several clients, error numerics, misbehaving clients
(floods, garbage, never reading, never registering), restart persistence and TLS."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.services.chat import numerics as n
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server


@pytest.fixture
def address() -> Iterator[Address]:
    with chat_server() as (addr,):
        yield addr


def test_several_clients_talk(address: Address) -> None:
    with Irc(address, "alice") as alice, Irc(address, "bob") as bob, Irc(address, "carol") as carol:
        alice.send("JOIN #room")
        alice.expect("366")
        bob.send("JOIN #room")
        names = bob.expect(n.RPL_NAMREPLY)
        assert names.params[-1].split() == ["@alice", "bob"]
        alice.expect("JOIN", lambda m: m.source is not None and m.source.startswith("bob!"))
        alice.send("PRIVMSG #room :hello, room")
        said = bob.expect("PRIVMSG")
        assert (said.source or "").startswith("alice!")
        assert said.params == ("#room", "hello, room")
        carol.send("PRIVMSG alice :psst")
        assert alice.expect("PRIVMSG").params == ("alice", "psst")
        bob.send("PART #room :later")
        assert alice.expect("PART").params == ("#room", "later")
        carol.send("JOIN #room")
        alice.expect("JOIN")
        carol.send("QUIT :bye")
        assert carol.closed_reason().endswith("(Quit: bye)")
        assert alice.expect("QUIT").params == ("Quit: bye",)
        # bob heard his own PART and nothing after it: he left the room.
        assert [m.command for m in bob.sync() if m.command != "PRIVMSG"] == ["PART"]


def test_error_numerics_over_the_wire(address: Address) -> None:
    with Irc(address) as early:
        early.send("JOIN #x")
        assert early.expect(n.ERR_NOTREGISTERED)
    with Irc(address, "alice") as alice:
        alice.send("PRIVMSG nobody :x", "PRIVMSG #nowhere :x", "BOGUS", "KICK #x", "MODE #nowhere +i")
        codes = [m.command for m in alice.sync()]
        assert codes == [
            n.ERR_NOSUCHNICK,
            n.ERR_NOSUCHCHANNEL,
            n.ERR_UNKNOWNCOMMAND,
            n.ERR_NEEDMOREPARAMS,
            n.ERR_NOSUCHCHANNEL,
        ]


def test_over_long_line_is_answered_and_the_client_stays(address: Address) -> None:
    with Irc(address, "alice") as alice, Irc(address, "bob") as bob:
        alice.send("PRIVMSG bob :" + "x" * 600, "PRIVMSG bob :still here")
        assert alice.expect(n.ERR_INPUTTOOLONG)
        assert bob.expect("PRIVMSG").params == ("bob", "still here")


def test_garbage_bytes_never_hurt_anyone(address: Address) -> None:
    with Irc(address, "alice") as alice, Irc(address, "bob") as bob:
        alice.send(
            b"\x00\xff\xfe garbage \x01\x02",
            b":only-a-prefix",
            b"   ",
            b"\xc3\x28 PRIVMSG",
            b"PRIVMSG bob :\xe9t\xe9",  # Latin-1: refused (UTF8ONLY), never relayed
            "PRIVMSG bob :été",
        )
        assert bob.expect("PRIVMSG").params == ("bob", "été")
        refused = [m for m in alice.sync() if m.command == "FAIL"]
        assert [m.params[:2] for m in refused] == [("*", "INVALID_UTF8"), ("PRIVMSG", "INVALID_UTF8")]
        assert bob.sync() == []


def test_half_registered_clients_time_out_alone() -> None:
    with (
        chat_server(registration_timeout_s=0.2) as (address,),
        Irc(address) as lurker,
        Irc(address, "alice") as alice,
    ):
        lurker.send("NICK lurker")
        assert lurker.closed_reason().endswith("(Registration timed out)")
        alice.sync()  # unaffected


def test_flood_is_slowed_then_cut() -> None:
    with (
        chat_server(flood_burst=5, flood_rate=200.0, flood_queue=50) as (addr,),
        Irc(addr, "fast") as fast,
        Irc(addr, "reader") as reader,
    ):
        # 30 lines over a burst of 5: held back and delivered at the bucket's pace, in order.
        fast.send(*(f"PRIVMSG reader :{i}" for i in range(30)))
        assert [reader.expect("PRIVMSG").params[1] for _ in range(30)] == [str(i) for i in range(30)]
        flood = Irc(addr, "flood")
        with flood:
            flood.send(*(f"PRIVMSG reader :spam {i}" for i in range(500)))
            assert flood.closed_reason().endswith("(Excess Flood)")
        fast.send("PRIVMSG reader :after the flood")
        assert reader.expect("PRIVMSG", lambda m: m.params[1] == "after the flood")


def test_a_client_that_never_reads_is_dropped_without_slowing_others() -> None:
    count, text = 30_000, "y" * 400  # 12 MB: more than every socket buffer on the way
    with (
        chat_server(flood_burst=10**9, flood_rate=1e9, server_options={"sendq": 256 * 1024}) as (address,),
        Irc(address, "sender") as sender,
        Irc(address, "reader") as reader,
        Irc(address, "stuck", rcvbuf=4096) as stuck,
    ):
        for c in (sender, reader, stuck):
            c.send("JOIN #busy")
            c.expect("366")
        sender.sync()
        got: list[str] = []

        def read_all() -> None:
            while len(got) < count:
                got.append(reader.expect("PRIVMSG").params[1])

        thread = threading.Thread(target=read_all)
        thread.start()
        batch = 1000
        for start in range(0, count, batch):
            sender.send(*(f"PRIVMSG #busy :{i} {text}" for i in range(start, start + batch)))
        thread.join(60)
        assert not thread.is_alive()
        assert [int(line.split()[0]) for line in got] == list(range(count))
        reader.sync()
        quits = [m for m in reader.seen if m.command == "QUIT"]
        assert [(m.source or "").split("!")[0] for m in quits] == ["stuck"]
        assert quits[0].params == ("SendQ exceeded",)


def test_max_connections_refuses_with_an_error_line() -> None:
    with (
        chat_server(server_options={"max_connections": 2}) as (address,),
        Irc(address, "one"),
        Irc(address, "two"),
        Irc(address) as third,
    ):
        assert "Closing link" in third.closed_reason()


def test_channels_and_history_survive_a_restart(tmp_path: Path) -> None:
    with chat_server(tmp_path) as (address,), Irc(address, "alice") as alice:
        alice.send("JOIN #keep", "TOPIC #keep :Persistent topic", "MODE #keep +k sesame")
        for i in range(3):
            alice.send(f"PRIVMSG #keep :message {i}")
        alice.sync()
    with (
        chat_server(tmp_path) as (address,),
        Irc(address, "bob", caps="server-time batch message-tags draft/chathistory") as bob,
    ):
        bob.send("JOIN #keep")
        assert bob.expect(n.ERR_BADCHANNELKEY)
        bob.send("JOIN #keep sesame")
        assert bob.expect(n.RPL_TOPIC).params[-1] == "Persistent topic"
        assert "@bob" in bob.expect(n.RPL_NAMREPLY).params[-1].split()  # first one in: operator
        bob.send("CHATHISTORY LATEST #keep * 10")
        bob.expect("BATCH")  # +ref chathistory #keep
        replay = [m for m in bob.collect("BATCH") if m.command == "PRIVMSG"]  # up to -ref
        assert [m.params[1] for m in replay] == ["message 0", "message 1", "message 2"]
        assert all(m.tags["time"].endswith("Z") and (m.source or "").startswith("alice!") for m in replay)


def test_tls_listener(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    listeners = [Listener(Address("127.0.0.1", 0)), Listener(Address("127.0.0.1", 0), "tcp", server_context)]
    with (
        chat_server(listeners=listeners) as (plain_address, tls_address),
        Irc(tls_address, "secure", tls=client_context) as secure,
        Irc(plain_address, "plain") as plain,
    ):
        secure.send("PRIVMSG plain :over TLS")
        assert plain.expect("PRIVMSG").params == ("plain", "over TLS")


def test_bursts_are_delivered_whole_and_in_order_across_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clients each send 2,000 lines in one write; with a small per-turn output budget
    their input is handled over many event-loop turns, interleaved, and every member still
    gets every line, each sender's in order."""
    from socketkit.services.chat import server as chat_server_module

    monkeypatch.setattr(chat_server_module, "TURN_OUTPUT_BUDGET", 4096)
    count = 2000
    with chat_server(flood_burst=10**9, flood_rate=1e9) as (address,):
        clients = [Irc(address, nick) for nick in ("s1", "s2", "r1", "r2")]
        try:
            for client in clients:
                client.send("JOIN #burst")
                client.expect("366")
            for client in clients:
                client.sync()  # everyone's JOIN has been seen
            senders = [
                threading.Thread(
                    target=client.send, args=[f"PRIVMSG #burst :{client.nick} {i}" for i in range(count)]
                )
                for client in clients[:2]
            ]
            for thread in senders:
                thread.start()
            for receiver in clients[2:]:
                texts = [receiver.expect("PRIVMSG").params[1] for _ in range(2 * count)]
                for nick in ("s1", "s2"):
                    mine = [t for t in texts if t.startswith(nick + " ")]
                    assert mine == [f"{nick} {i}" for i in range(count)]
            for thread in senders:
                thread.join()
            got = [clients[0].expect("PRIVMSG").params[1] for _ in range(count)]
            assert got == [f"s2 {i}" for i in range(count)]
        finally:
            for client in clients:
                client.close()
