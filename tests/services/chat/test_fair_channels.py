"""Who makes room in a full channel table (red team round 2, finding 2): a user never
loses a lingering channel (its topic and history) to make room for another user's new
one unless that user holds fewer channels, a user at its quota takes only from itself,
and someone filling the table with occupied channels destroys nothing of anyone else's.
Users are told apart by their key (``Client.key``); non-loopback addresses here."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from socketkit.services.chat import numerics as n
from socketkit.services.chat.registry import FULL_ADDRESS, FULL_SERVER, ChannelTable
from socketkit.services.chat.replies import DropChannel
from socketkit.services.chat.state import Channel
from tests.services.chat.harness import Net


def _victim_room(net: Net, host: str = "10.0.0.5") -> None:
    """#victimroom with a topic and a line, left: it lingers."""
    victim = net.register("victim", host=host)
    net.send(victim, "JOIN #victimroom")
    net.send(victim, "TOPIC #victimroom :our topic")
    net.send(victim, "PRIVMSG #victimroom :remember this")
    net.send(victim, "PART #victimroom")
    net.send(victim, "QUIT")
    assert net.state.table.lingering == 1


def _hold(net: Net, host: str, prefix: str, count: int, *, leave: bool = False) -> list[str]:
    """Clients from ``host`` join ``count`` new channels (50 each) and stay, or set a
    topic and leave (``leave``); the 405 refusals they got."""
    refused: list[str] = []
    for start in range(0, count, 50):
        client = net.register(f"{prefix}{start}", host=host)
        for i in range(start, min(count, start + 50)):
            net.send(client, f"JOIN #{prefix}{i}")
            if leave:
                net.send(client, f"TOPIC #{prefix}{i} :t")
                net.send(client, f"PART #{prefix}{i}")
        refused += [m.params[-1] for m in net.take(client) if m.command == n.ERR_TOOMANYCHANNELS]
    return refused


def _victim_room_is_intact(net: Net) -> None:
    again = net.register("back", host="10.0.0.5", caps="batch server-time draft/chathistory")
    net.send(again, "JOIN #victimroom")
    net.send(again, "CHATHISTORY LATEST #victimroom * 10")
    replies = net.take(again)
    assert any(m.command == n.RPL_TOPIC and m.params[-1] == "our topic" for m in replies)
    assert "remember this" in [m.params[-1] for m in replies if m.command == "PRIVMSG"]
    assert DropChannel("#victimroom") not in net.stored


def test_filling_the_table_with_occupied_channels_destroys_no_one_elses() -> None:
    """What /tmp/rt3/chq.py did, from four addresses (a table of 100, 30 per address):
    the fourth finds the table full; it used to drop the victim's lingering room for
    each channel past it, topic and history gone. Now it is refused, and the room,
    the victim's only channel, stays."""
    net = Net(max_channels=100, max_channels_per_address=30)
    _victim_room(net)
    refused = [r for i in range(4) for r in _hold(net, f"10.9.{i}.1", f"a{i}x", 30)]
    assert len(net.state.channels) == 100
    assert "#victimroom" in net.state.channels
    assert refused == ["The server has too many channels"] * 21  # 91 fitted beside the victim's
    _victim_room_is_intact(net)


def test_channels_made_and_left_make_room_from_the_one_who_left_them() -> None:
    """An address creates channels with a topic and leaves them until the table is
    full (and beyond: its quota). The lingering channels that go, to make room for its
    new ones and for a newcomer's, are its own; the victim's single room stays."""
    net = Net(max_channels=100, max_channels_per_address=100)
    _victim_room(net)
    assert _hold(net, "10.9.0.1", "m", 300, leave=True) == []  # always room: its own
    assert len(net.state.channels) == 100
    newcomer = net.register("newcomer", host="10.1.1.1")
    net.send(newcomer, "JOIN #fresh")
    assert any(m.command == "JOIN" for m in net.take(newcomer))
    assert net.state.table.per_creator["10.9.0.1"] == 98  # it gave the newcomer a slot
    _victim_room_is_intact(net)


def test_a_full_table_takes_from_the_user_holding_the_most_and_never_from_a_poorer_one() -> None:
    """Three users left 3, 2 and 1 channels; a fourth holds the rest occupied. Each
    newcomer (a new address) takes a slot from a user holding the most, until each
    holds one: then the next is refused. A newcomer that holds a channel already
    cannot take from a user holding two (that user would end up poorer than it)."""
    net = Net(max_channels=20, max_channels_per_address=20)
    _hold(net, "10.3.0.1", "three", 3, leave=True)
    _hold(net, "10.2.0.1", "two", 2, leave=True)
    _hold(net, "10.1.0.1", "one", 1, leave=True)
    _hold(net, "10.4.0.1", "occupied", 14)
    table = net.state.table
    owners = ("10.3.0.1", "10.2.0.1", "10.1.0.1")
    assert len(table.by_name) == 20

    clients = {i: net.register(f"new{i}", host=f"10.0.0.{i}") for i in range(1, 5)}

    def join(i: int, channel: str) -> str:
        net.send(clients[i], f"JOIN {channel}")
        replies = net.take(clients[i])
        return "joined" if any(m.command == "JOIN" for m in replies) else replies[0].params[-1]

    assert join(1, "#a") == "joined"
    assert [table.per_creator[k] for k in owners] == [2, 2, 1]
    assert join(1, "#b") == "The server has too many channels"
    assert join(2, "#c") == "joined"
    assert sorted(table.per_creator[k] for k in owners) == [1, 1, 2]
    assert join(3, "#d") == "joined"
    assert [table.per_creator[k] for k in owners] == [1, 1, 1]
    assert join(4, "#e") == "The server has too many channels"
    assert [table.per_creator[k] for k in owners] == [1, 1, 1]


def _channel(name: str, creator: str) -> Channel:
    return Channel(name, 0.0, topic="kept", creator=creator)


@given(
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["make", "make", "leave", "back"])), max_size=100),
)
def test_a_key_never_loses_a_channel_to_a_key_that_ends_up_holding_more(ops: list[tuple[int, str]]) -> None:
    """Any mix of making, leaving and rejoining channels by four keys in a table of 6,
    3 per key: every channel dropped to make room is a lingering one, the key's own when
    it has one, and otherwise one whose key still holds at least as many as the
    creator afterwards; a refusal only when no such channel exists."""
    table = ChannelTable(max_channels=6, max_per_address=3, ttl_s=1e9)
    made = 0
    for key_index, op in ops:
        key = f"k{key_index}"
        mine = [c for c in table.by_name.values() if c.creator == key]
        if op == "leave" and (occupied := [c for c in mine if c.emptied_at is None]):
            table.emptied(occupied[0], 1.0)
        elif op == "back" and (left := [c for c in mine if c.emptied_at is not None]):
            table.occupied(left[0])
        elif op == "make":
            before = dict(table.per_creator)
            own_left = any(c.emptied_at is not None for c in mine)
            evict, full = table.make_room(key)
            if full is not None:
                assert not evict
                if full == FULL_ADDRESS:
                    assert before.get(key, 0) >= 3
                    assert not own_left
                else:
                    assert full == FULL_SERVER
                    assert len(table.by_name) >= 6
                    assert not own_left
                    holders = {c.creator for c in table.by_name.values() if c.emptied_at is not None}
                    assert all(before[h] < before.get(key, 0) + 2 for h in holders)
                continue
            for old in evict:
                assert old.emptied_at is not None  # only lingering channels make room
                if own_left:
                    assert old.creator == key
                else:
                    assert before[old.creator] - 1 >= before.get(key, 0) + 1
                table.remove(old)
            made += 1
            table.add(_channel(f"#c{made}", key))
        assert len(table.by_name) <= 6
        assert all(count <= 3 for count in table.per_creator.values())
