"""Replies that grow with the server (LIST, WHO, NAMES) are made a page at a time and paid
for in the flood budget (pure): a command does at most a page of work before the glue
takes over, each later page is at most its budget, the whole reply is complete and in
order, and channels made or dropped meanwhile are shown once or not at all."""

from __future__ import annotations

import pytest

from socketkit.codec.irc import IRCMessage, parse_message
from socketkit.services.chat import commands
from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands.listings import (
    LISTING_PAGE,
    MAX_LISTINGS,
    MEMBERS_PER_UNIT,
    NAMES_MEMBERS_PER_UNIT,
    WORK_PER_TOKEN,
)
from socketkit.services.chat.replies import ListingPending, Send
from socketkit.services.chat.state import Channel, Client
from tests.services.chat.harness import Net


def _channels(net: Net, count: int) -> None:
    """``count`` registered channels (kept empty), created as a store would load them."""
    for i in range(count):
        net.state.table.add(Channel(f"#c{i:05d}", net.now, topic=f"topic {i}", modes={"n", "t", "P"}))


def _sent(effects: list[object], command: str) -> list[IRCMessage]:
    return [e.message for e in effects if isinstance(e, Send) and e.message.command == command]


def _list_by_pages(net: Net, client: Client, line: str, budget: int) -> list[list[object]]:
    """Handle ``line``, then resume page after page as the glue would; the effects of each."""
    pages: list[list[object]] = [list(commands.handle(net.state, client, _parse(line), net.now))]
    while client.listings:
        pages.append(list(commands.resume(net.state, client, net.now, budget)))
    return pages


def _parse(line: str) -> IRCMessage:
    return parse_message(line)


def test_list_is_made_a_page_at_a_time_complete_and_in_order() -> None:
    net = Net()
    _channels(net, 2_345)
    alice = net.register("alice")
    pages = _list_by_pages(net, alice, "LIST", 150)
    first, rest = pages[0], pages[1:]
    assert len(_sent(first, n.RPL_LIST)) == LISTING_PAGE  # the command's own page, no more
    assert any(isinstance(e, ListingPending) for e in first)
    assert all(len(_sent(page, n.RPL_LIST)) <= 150 for page in rest)
    listed = [m.params[1] for page in pages for m in _sent(page, n.RPL_LIST)]
    assert listed == [f"#c{i:05d}" for i in range(2_345)]  # each once, in name order
    assert [m.command for page in pages for m in _sent(page, n.RPL_LISTEND)] == [n.RPL_LISTEND]
    assert _sent(pages[-1], n.RPL_LISTEND)
    assert not any(isinstance(e, ListingPending) for e in pages[-1])


def test_listing_work_is_paid_for_in_the_flood_budget() -> None:
    net = Net(flood_burst=20, flood_rate=5.0)
    _channels(net, 4_000)
    alice = net.register("alice")
    before = alice.flood.tokens
    _list_by_pages(net, alice, "LIST", LISTING_PAGE)
    # The LIST line itself is taken by the glue; the work is charged here: 4,000 units
    # (and the last page, which finds no more, counts as one).
    assert alice.flood.tokens == pytest.approx(before - 4_001 / WORK_PER_TOKEN)
    assert alice.flood.wait_time(net.now) > 0  # in debt: what it sends next waits
    bob = net.register("bob")
    before = bob.flood.tokens
    net.send(bob, "LIST #c00001,#c00002")  # a short LIST costs next to nothing
    assert bob.flood.tokens == pytest.approx(before - 2 / WORK_PER_TOKEN)


def test_who_of_everyone_is_paged_and_hides_the_invisible() -> None:
    net = Net()
    alice = net.register("alice")
    for i in range(700):
        net.register(f"u{i:03d}")
    hidden = net.register("zhidden")
    net.send(hidden, "MODE zhidden +i")
    pages = _list_by_pages(net, alice, "WHO *", 100)
    users = 702  # alice, the 700, zhidden
    assert len(pages) == 1 + -(-(users - LISTING_PAGE) // 100)  # a page with the command, then 100 each
    nicks = [m.params[5] for page in pages for m in _sent(page, n.RPL_WHOREPLY)]
    assert nicks == ["alice", *[f"u{i:03d}" for i in range(700)]]  # nick order, once each
    net.send(hidden, "JOIN #shared")
    net.send(alice, "JOIN #shared")
    net.take(alice)
    net.send(alice, "WHO z*")  # visible to who shares a channel with it
    assert [m.params[5] for m in net.take(alice) if m.command == n.RPL_WHOREPLY] == ["zhidden"]


def test_names_of_a_big_channel_is_paged_and_lists_everyone_once() -> None:
    net = Net()
    first = net.register("m0000")
    net.send(first, "JOIN #big")
    big = net.state.channels["#big"]
    for i in range(1, 3_000):  # the others join without each JOIN going to everyone (the test's time)
        member = net.register(f"m{i:04d}")
        big.add_member(member.id, set())
        member.channels.add("#big")
    late = net.register("late")
    effects = commands.handle(net.state, late, _parse("JOIN #big"), net.now)
    assert sum(len(m.params[-1].split()) for m in _sent(effects, n.RPL_NAMREPLY)) <= (
        LISTING_PAGE * NAMES_MEMBERS_PER_UNIT
    )
    assert _sent(effects, "JOIN")  # the JOIN itself is at once
    pages = [effects]
    while late.listings:
        pages.append(commands.resume(net.state, late, net.now, 50))
    names = [
        nick.lstrip("@")
        for page in pages
        for m in _sent(page, n.RPL_NAMREPLY)
        for nick in m.params[-1].split()
    ]
    assert sorted(names) == sorted([f"m{i:04d}" for i in range(3_000)] + ["late"])
    assert _sent(pages[-1], n.RPL_ENDOFNAMES)


def test_channels_made_and_dropped_during_a_list_are_shown_once_or_not_at_all() -> None:
    net = Net()
    _channels(net, 1_000)
    alice = net.register("alice")
    pages = [list(commands.handle(net.state, alice, _parse("LIST"), net.now))]
    bob = net.register("bob")
    net.send(bob, "JOIN #a-early")  # before the cursor: not shown
    net.send(bob, "JOIN #zz-late")  # after it: shown when the listing gets there
    net.send(bob, "JOIN #c00000")  # already listed: not again
    net.state.drop_channel(net.state.channels["#c00999"])  # dropped before its turn: not shown
    while alice.listings:
        pages.append(list(commands.resume(net.state, alice, net.now)))
    listed = [m.params[1] for page in pages for m in _sent(page, n.RPL_LIST)]
    assert len(listed) == len(set(listed))
    assert "#zz-late" in listed
    assert "#a-early" not in listed
    assert "#c00999" not in listed


def test_too_many_waiting_listings_are_refused_with_try_again() -> None:
    net = Net()
    _channels(net, 20_000)  # each LIST is 100 pages: none finishes below
    alice = net.register("alice")
    for _ in range(MAX_LISTINGS):  # what a client sends without reading, the glue not resuming
        effects = commands.handle(net.state, alice, _parse("LIST"), net.now)
        assert not _sent(effects, n.RPL_TRYAGAIN)
    effects = commands.handle(net.state, alice, _parse("LIST"), net.now)
    assert [m.params[1] for m in _sent(effects, n.RPL_TRYAGAIN)] == ["LIST"]
    assert len(alice.listings) == MAX_LISTINGS


def test_work_that_nobody_sees_is_paid_for_too() -> None:
    """AWAY goes through every member of the user's channels to find the away-notify
    ones, a STATUSMSG or TAGMSG filters a channel's members: maybe no line comes of it,
    but the work grows with the channels, so it is charged."""
    net = Net()
    alice = net.register("alice", caps="message-tags")
    others = [net.register(f"m{i:04d}") for i in range(1_000)]  # no away-notify, no message-tags
    for room in ("#a", "#b", "#c"):
        net.send(alice, f"JOIN {room}")
        channel = net.state.channels[room]
        for other in others:
            channel.add_member(other.id, set())
            other.channels.add(room)
    net.take(alice)
    for line, members in (
        ("AWAY :gone", 3 * 1_001),
        ("PRIVMSG @#a :ops only", 1_001),
        ("@+typing=active TAGMSG #b", 1_001),
    ):
        before = alice.flood.tokens
        net.send(alice, line)
        charged = before - alice.flood.tokens
        assert charged == pytest.approx((members // MEMBERS_PER_UNIT) / WORK_PER_TOKEN), line
