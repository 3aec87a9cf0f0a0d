"""The channel table cannot be filled for good (pure): channels left behind with history
or a topic linger and make room, each address has a quota, registered (``+P``) channels
are an IRC operator's decision, lingering ones expire, and history is bounded across
the server."""

from __future__ import annotations

from socketkit.services.chat import numerics as n
from socketkit.services.chat.registry import EXPIRED_PER_TICK
from socketkit.services.chat.replies import DropChannel
from tests.services.chat.harness import Net


def _fill(net: Net, host: str, prefix: str, count: int, *, stay: bool = False) -> None:
    """What /tmp/rt/chfill.py did: clients from ``host`` create ``count`` channels, one
    message each, then leave (or ``stay``)."""
    for start in range(0, count, 50):  # 50 channels per client (CHANLIMIT)
        client = net.register(f"{prefix}{start}", host=host)
        for i in range(start, min(count, start + 50)):
            net.send(client, f"JOIN #{prefix}{i}")
            net.send(client, f"PRIVMSG #{prefix}{i} :x")
        if not stay:
            net.send(client, "QUIT")
        net.take(client)


def _joined(net: Net, nick: str, channel: str, host: str = "127.0.0.1") -> bool:
    client = net.register(nick, host=host)
    net.send(client, f"JOIN {channel}")
    replies = net.take(client)
    return any(m.command == "JOIN" for m in replies)


def test_channels_left_with_history_do_not_keep_anyone_out() -> None:
    net = Net(max_channels=200, max_channels_per_address=120)
    for host in ("127.0.20.1", "127.0.20.2", "10.0.0.1", "10.0.0.2"):  # loopback is one address
        _fill(net, host, f"f{host.replace('.', '')}x", 100)
    assert len(net.state.channels) <= 200
    assert net.state.table.lingering == len(net.state.channels)  # all empty, none holding a slot
    assert _joined(net, "legit", "#brandnew")
    assert _joined(net, "remote", "#another", host="10.0.0.9")
    assert any(isinstance(e, DropChannel) for e in net.stored)  # the oldest made room, on disk too


def test_an_address_has_a_quota_of_channels_and_loopback_is_one_address() -> None:
    net = Net(max_channels=1000, max_channels_per_address=100)
    _fill(net, "127.0.30.1", "a", 100, stay=True)  # held open: members keep them
    for host in ("127.0.0.1", "127.9.9.9", "::1"):  # any local user, any source address
        client = net.register(f"local{host.replace('.', '').replace(':', '')}", host=host)
        net.send(client, "JOIN #mine")
        (refused,) = net.take(client)
        assert refused.command == n.ERR_TOOMANYCHANNELS
        assert refused.params[-1] == "Your address has too many channels"
        assert "#mine" not in net.state.channels
    assert _joined(net, "elsewhere", "#theirs", host="10.1.2.3")
    assert _joined(net, "sixish", "#v6", host="2001:db8::1")
    # An IPv6 /64 is one address too.
    _fill(net, "2001:db8:0:1::1", "six", 100, stay=True)
    assert not _joined(net, "samenet", "#more", host="2001:db8:0:1:ffff::2")
    assert _joined(net, "othernet", "#more", host="2001:db8:0:2::2")


def test_a_full_server_refuses_only_when_every_channel_is_occupied() -> None:
    net = Net(max_channels=60, max_channels_per_address=1000)
    _fill(net, "10.0.0.1", "h", 60, stay=True)
    client = net.register("late", host="10.0.0.2")
    net.send(client, "JOIN #late")
    assert net.take(client)[0].params[-1] == "The server has too many channels"


def test_lingering_channels_expire_with_their_history() -> None:
    net = Net(empty_channel_ttl_s=3600)
    alice = net.register("alice")
    net.send(alice, "JOIN #kept")
    net.send(alice, "TOPIC #kept :a topic")
    net.send(alice, "PRIVMSG #kept :remember me")
    net.send(alice, "PART #kept")
    net.tick(1800)
    assert "#kept" in net.state.channels  # lingers: rejoining finds topic and history
    net.send(alice, "JOIN #kept")
    assert any(m.command == n.RPL_TOPIC for m in net.take(alice))
    net.send(alice, "PART #kept")
    net.tick(3599)
    assert "#kept" in net.state.channels  # the clock starts again at the last PART
    net.tick(2)
    assert "#kept" not in net.state.channels
    assert net.state.history.total == 0
    assert DropChannel("#kept") in net.stored


def test_expiry_is_spread_over_ticks() -> None:
    net = Net(empty_channel_ttl_s=10, max_channels_per_address=10_000)
    _fill(net, "10.0.0.1", "e", 3 * EXPIRED_PER_TICK)
    net.tick(11)
    assert len(net.state.channels) == 2 * EXPIRED_PER_TICK
    net.tick(1)
    net.tick(1)
    assert not net.state.channels


def test_registered_channels_are_an_operators_decision_and_stay() -> None:
    net = Net(max_channels=3, max_channels_per_address=2, empty_channel_ttl_s=60, opers={"root": "pw"})
    alice = net.register("alice")
    net.send(alice, "JOIN #home")
    net.take(alice)
    net.send(alice, "MODE #home +P")
    assert net.codes(alice) == [n.ERR_NOPRIVILEGES]  # a channel operator is not enough
    net.send(alice, "OPER root pw")
    net.send(alice, "MODE #home +P")
    assert net.take(alice)[-1].params[1:] == ("+P",)
    net.send(alice, "PART #home")
    net.tick(3600)
    assert "#home" in net.state.channels  # never expires
    for name in ("#a", "#b"):  # the quota does not count it
        net.send(alice, f"JOIN {name}")
        net.send(alice, f"TOPIC {name} :t")
        net.send(alice, f"PART {name}")
    net.send(alice, "JOIN #c")  # a full table drops a lingering channel, never #home
    assert "#home" in net.state.channels
    assert "#c" in net.state.channels
    assert len(net.state.channels) == 3


def test_history_is_bounded_across_the_server() -> None:
    net = Net(history_per_channel=50, max_history=120)
    alice = net.register("alice")
    for room in ("#a", "#b", "#c"):
        net.send(alice, f"JOIN {room}")
    for i in range(100):
        for room in ("#a", "#b", "#c"):
            net.send(alice, f"PRIVMSG {room} :{room} {i}")
    kept = {room: [h.text for h in net.state.channels[room].history] for room in ("#a", "#b", "#c")}
    assert sum(map(len, kept.values())) == net.state.history.total == 120
    assert all(texts == [f"{room} {i}" for i in range(60, 100)] for room, texts in kept.items())


def test_whowas_looks_at_one_nick_and_answers_a_few() -> None:
    net = Net(whowas_size=1000)
    watcher = net.register("watcher")
    for i in range(30):
        client = net.register("flip")
        net.send(client, f"NICK flop{i}")
        net.send(client, "QUIT")
    net.send(watcher, "WHOWAS flip 999999")
    codes = net.codes(watcher)
    assert codes.count(n.RPL_WHOWASUSER) == 10  # WHOWAS_REPLIES, whatever was asked
    net.send(watcher, "WHOWAS flop7 ²")  # not an ASCII number: the default count
    assert net.codes(watcher) == [n.RPL_WHOWASUSER, n.RPL_WHOISSERVER, n.RPL_ENDOFWHOWAS]
