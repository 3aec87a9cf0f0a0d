"""Big replies on a real server: a LIST of every channel does not hold up anyone, the
lister included, and a lister that does not read is paused, not fed until its send queue
overflows. Shown by the order of events, never by timing."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from socketkit.services.chat import commands
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands.listings import LISTING_PAGE
from socketkit.services.chat.server import LISTING_TURN_BUDGET, ChatServer, ChatSession
from socketkit.services.chat.state import Channel, ChatConfig
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT
from tests.services.chat.ircclient import Irc

TOPIC = "a topic long enough to make the listing large: " + "x" * 150


@contextlib.contextmanager
def _server(channels: int, **options: Any) -> Iterator[tuple[Any, ChatServer]]:
    """A chat server (no flood limit: the paging alone is under test) with ``channels``
    registered channels, as loaded from disk."""
    chat = ChatServer(ChatConfig(server_name="irc.test", flood_burst=10**9, flood_rate=1e9))
    for i in range(channels):
        chat.state.table.add(Channel(f"#c{i:05d}", 0.0, topic=TOPIC, modes={"n", "t", "P"}))
    try:
        with server_thread(lambda: chat.make_server(**options), on_started=chat.start_ticker) as (address,):
            yield address, chat
    finally:
        chat.close()


def test_the_lister_itself_gets_its_pong_before_its_list_ends() -> None:
    with _server(5_000) as (address, _), Irc(address, "lister") as lister:
        lister.send("LIST", "PING between")  # one write: the PING waits behind the LIST's first page only
        before_pong = lister.collect("PONG")
        listed = [m for m in before_pong if m.command == n.RPL_LIST]
        assert len(listed) <= LISTING_PAGE
        assert not any(m.command == n.RPL_LISTEND for m in before_pong)
        rest = lister.collect(n.RPL_LISTEND)
        names = [m.params[1] for m in listed + [m for m in rest if m.command == n.RPL_LIST]]
        assert names == [f"#c{i:05d}" for i in range(5_000)]


def test_a_lister_that_does_not_read_is_paused_and_others_are_served_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = 20_000  # some 5 MB of 322 lines: more than the send queue and the socket buffers
    events: list[tuple[str, str]] = []
    paused = threading.Event()
    real_resume, real_handle = commands.resume, commands.handle
    real_after_drain = ChatSession.listing_after_drain

    def resume(state: Any, client: Any, now: float, budget: int = LISTING_PAGE) -> Any:
        events.append(("page", client.target))
        return real_resume(state, client, now, budget)

    def handle(state: Any, client: Any, message: Any, now: float) -> Any:
        events.append((message.verb, client.target))
        return real_handle(state, client, message, now)

    def after_drain(self: ChatSession) -> None:
        events.append(("paused", "lister"))
        paused.set()
        real_after_drain(self)

    monkeypatch.setattr(commands, "resume", resume)
    monkeypatch.setattr(commands, "handle", handle)
    monkeypatch.setattr(ChatSession, "listing_after_drain", after_drain)
    with (
        _server(count, sendq=1 << 20) as (address, chat),
        Irc(address, "lister", rcvbuf=4096) as lister,
        Irc(address, "other") as other,
    ):
        lister.send("LIST")
        assert paused.wait(TIMEOUT), "the listing never waited for the lister to read"
        other.sync()  # answered while the listing waits
        ping = events.index(("PING", "other"))
        assert ("page", "lister") in events[:ping]
        waiting = chat.state.client_by_nick("lister")
        assert waiting is not None
        assert waiting.listings  # unfinished: it waits for the lister, not the other way round
        got = lister.collect(n.RPL_LISTEND)  # reading lets it go on, to the end
        names = [m.params[1] for m in got if m.command == n.RPL_LIST]
        assert len(names) == count
        assert len(set(names)) == count
        assert ("page", "lister") in events[ping:]  # it went on after the other was served
        lister.sync()  # and the lister is still connected (no "SendQ exceeded")


def test_many_listers_at_once_get_a_bounded_share_of_each_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight clients LIST 4,000 channels at once, with no flood limit: the pages after the
    commands' own are spread over many event-loop turns, never more than
    ``LISTING_TURN_BUDGET`` units in one, and every lister gets all of its list."""
    listers, count = 8, 4_000
    work: dict[int, int] = {}
    real_resume = commands.resume
    holder: dict[str, ChatServer] = {}

    def resume(state: Any, client: Any, now: float, budget: int = LISTING_PAGE) -> Any:
        turn = holder["chat"].turn
        work[turn] = work.get(turn, 0) + budget
        return real_resume(state, client, now, budget)

    monkeypatch.setattr(commands, "resume", resume)
    with _server(count) as (address, chat):
        holder["chat"] = chat
        clients = [Irc(address, f"l{i}") for i in range(listers)]
        try:
            for client in clients:
                client.send("LIST")
            for client in clients:
                got = client.collect(n.RPL_LISTEND)
                assert len([m for m in got if m.command == n.RPL_LIST]) == count
        finally:
            for client in clients:
                client.close()
    assert max(work.values()) <= LISTING_TURN_BUDGET
    assert len(work) >= (listers * count - listers * LISTING_PAGE) // LISTING_TURN_BUDGET
