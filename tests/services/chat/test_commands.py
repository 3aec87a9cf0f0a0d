"""The chat command table, pure: registration, messaging, channels, modes, queries,
operators, timeouts and history, with a fake clock and no sockets."""

from __future__ import annotations

import pytest

from socketkit.services.chat import numerics as n
from socketkit.services.chat.commands import COMMANDS
from socketkit.services.chat.replies import StoreChannel, StoreHistory
from socketkit.services.chat.session import TokenBucket, hash_password, verify_password
from tests.services.chat.harness import SERVER, Net

# --- registration ---------------------------------------------------------------------


def test_welcome_burst_and_isupport() -> None:
    net = Net()
    client = net.connect()
    net.send(client, "NICK alice")
    assert net.take(client) == []
    net.send(client, "USER al 0 * :Alice Liddell")
    replies = net.take(client)
    codes = [m.command for m in replies]
    assert codes[:5] == ["001", "002", "003", "004", "005"]
    assert codes[-3:] == ["375", "372", "376"]
    assert all(m.source == SERVER and m.params[0] == "alice" for m in replies)
    assert replies[0].params[-1].endswith("alice!~al@127.0.0.1")
    tokens = {t.split("=")[0]: t for m in replies if m.command == "005" for t in m.params[1:-1]}
    for name in (
        "CASEMAPPING",
        "CHANTYPES",
        "CHANMODES",
        "PREFIX",
        "NICKLEN",
        "CHANNELLEN",
        "TOPICLEN",
        "MODES",
    ):
        assert name in tokens
    assert tokens["CASEMAPPING"] == "CASEMAPPING=rfc1459"
    assert tokens["PREFIX"] == "PREFIX=(ov)@+"
    assert tokens["CHANMODES"] == "CHANMODES=b,k,l,Pimnst"
    assert "UTF8ONLY" in tokens
    assert "SAFELIST" in tokens


def test_commands_before_registration_are_refused() -> None:
    net = Net()
    client = net.connect()
    net.send(client, "PRIVMSG #a :hi")
    net.send(client, "FROBNICATE")
    assert net.codes(client) == [n.ERR_NOTREGISTERED, n.ERR_NOTREGISTERED]
    net.send(client, "PING abc")
    assert net.lines(client) == [f":{SERVER} PONG {SERVER} abc"]


def test_unknown_command_and_missing_parameters() -> None:
    net = Net()
    alice = net.register("alice")
    net.send(alice, "FROBNICATE x")
    net.send(alice, "JOIN")
    net.send(alice, "USER a b c d")
    net.send(alice, "NICK")
    assert net.codes(alice) == [
        n.ERR_UNKNOWNCOMMAND,
        n.ERR_NEEDMOREPARAMS,
        n.ERR_ALREADYREGISTERED,
        n.ERR_NONICKNAMEGIVEN,
    ]
    for verb, command in COMMANDS.items():  # the table is complete: every entry has a handler
        assert callable(command.handler), verb


def test_cap_negotiation_holds_registration_until_end() -> None:
    net = Net()
    client = net.connect()
    net.send(client, "CAP LS 302")
    (ls,) = net.take(client)
    assert ls.params[:2] == ("*", "LS")
    assert "server-time" in ls.params[2].split()
    net.send(client, "NICK bob")
    net.send(client, "USER bob 0 * :Bob")
    assert not client.registered
    net.send(client, "CAP REQ :server-time echo-message")
    net.send(client, "CAP REQ :server-time sasl-nonsense")
    acks = net.take(client)
    assert [m.params[1] for m in acks] == ["ACK", "NAK"]
    assert client.caps == {"server-time", "echo-message"}  # all or nothing: the NAK added none
    net.send(client, "CAP LIST")
    assert net.take(client)[0].params[2] == "echo-message server-time"
    net.send(client, "CAP END")
    assert client.registered
    welcome = net.take(client)[0]
    assert welcome.command == "001"
    assert "time" in welcome.tags


def test_server_password() -> None:
    net = Net(password=hash_password("sesame", b"0123456789abcdef", rounds=1000))
    wrong = net.connect()
    net.send(wrong, "PASS guess")
    net.send(wrong, "NICK mallory")
    net.send(wrong, "USER m 0 * :M")
    assert net.codes(wrong) == [n.ERR_PASSWDMISMATCH]
    assert net.closed[wrong.id] == "Bad password"
    right = net.connect()
    net.send(right, "PASS sesame")
    net.send(right, "NICK alice")
    net.send(right, "USER a 0 * :A")
    assert right.registered
    missing = net.connect()
    net.send(missing, "NICK bob")
    net.send(missing, "USER b 0 * :B")
    assert not missing.registered
    assert missing.id in net.closed


def test_nick_rules_and_rfc1459_case_mapping() -> None:
    net = Net()
    net.register("[alice]")
    bob = net.register("bob")
    net.send(bob, "NICK {ALICE}")  # {} are the lower case of [] in rfc1459
    net.send(bob, "NICK 1bad")
    net.send(bob, "NICK " + "x" * 31)
    assert net.codes(bob) == [n.ERR_NICKNAMEINUSE, n.ERR_ERRONEUSNICKNAME, n.ERR_ERRONEUSNICKNAME]
    newcomer = net.connect()
    net.send(newcomer, "NICK [ALICE]")
    assert net.codes(newcomer) == [n.ERR_NICKNAMEINUSE]


# modern.ircdocs.horse: a nick has no space, comma, asterisk, question mark, exclamation
# mark or at sign, and starts with no dollar, colon, channel type or membership prefix;
# RFC 2812 (what the server keeps to) also refuses dots, non-ASCII, controls and a digit
# or dash first. Each gets 432 (one word as a trailing parameter too) and changes nothing.
_BAD_NICKS = [
    "a b",  # a space: only sendable as a trailing parameter
    " ab",
    "ab ",
    "a,b",
    "a*b",
    "a?b",
    "bad!",
    "a@b",
    "$ab",
    ":ab",
    "#ab",
    "&ab",
    "@ab",
    "+ab",
    "%ab",
    "~ab",
    "a.b",
    "1ab",
    "-ab",
    "a\x01b",
    "a\x07",
    "caf\u00e9",
    "a\u00a0b",
    "a\u200bb",
    "x" * 31,  # over NICKLEN
]


@pytest.mark.parametrize("bad", _BAD_NICKS)
def test_an_erroneous_nick_gets_432_before_and_after_registration(bad: str) -> None:
    net = Net()
    newcomer = net.connect()
    net.send(newcomer, f"NICK :{bad}")
    (reply,) = net.take(newcomer)
    assert reply.command == n.ERR_ERRONEUSNICKNAME
    assert reply.params[-1] == "Erroneous nickname"
    assert newcomer.nick is None
    net.send(newcomer, "USER n 0 * :N")
    assert not newcomer.registered
    alice = net.register("alice")
    net.send(alice, f"NICK :{bad}")
    assert net.codes(alice) == [n.ERR_ERRONEUSNICKNAME]
    assert alice.nick == "alice"


def test_an_empty_nick_gets_431() -> None:
    net = Net()
    client = net.connect()
    for line in ("NICK", "NICK :", "NICK :", "NICK  "):
        net.send(client, line)
    assert net.codes(client) == [n.ERR_NONICKNAMEGIVEN] * 4


def test_nick_change_is_seen_by_channel_neighbours() -> None:
    net = Net()
    alice, bob, carol = net.register("alice"), net.register("bob"), net.register("carol")
    for c in (alice, bob):
        net.send(c, "JOIN #room")
    for c in (alice, bob, carol):
        net.take(c)
    net.send(bob, "NICK robert")
    assert net.lines(alice) == [":bob!~bob@127.0.0.1 NICK robert"]
    assert net.lines(bob) == [":bob!~bob@127.0.0.1 NICK robert"]
    assert net.lines(carol) == []  # shares no channel
    net.send(carol, "WHOWAS bob")
    assert net.codes(carol) == [n.RPL_WHOWASUSER, n.RPL_WHOISSERVER, n.RPL_ENDOFWHOWAS]


def test_quit_tells_neighbours_and_frees_the_nick() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob")
    net.send(alice, "JOIN #room")
    net.send(bob, "JOIN #room")
    net.take(alice)
    net.send(bob, "QUIT :gone fishing")
    assert net.closed[bob.id] == "Quit: gone fishing"
    assert net.lines(alice) == [":bob!~bob@127.0.0.1 QUIT :Quit: gone fishing"]
    again = net.register("bob")
    assert again.nick == "bob"


# --- pings and timeouts ------------------------------------------------------------------


def test_idle_client_is_pinged_then_dropped() -> None:
    net = Net(ping_interval_s=60, ping_timeout_s=30)
    alice, bob = net.register("alice"), net.register("bob")
    net.tick(30)
    assert net.take(alice) == []
    net.tick(31)
    (ping,) = net.take(alice)
    assert ping.command == "PING"
    net.take(bob)
    net.send(alice, f"PONG {SERVER} {ping.params[0]}")
    net.tick(31)
    assert alice.id not in net.closed
    assert net.closed[bob.id].startswith("Ping timeout")


def test_registration_timeout() -> None:
    net = Net(registration_timeout_s=10)
    half = net.connect()
    net.send(half, "NICK halfway")
    net.tick(11)
    assert net.closed[half.id] == "Registration timed out"
    assert net.state.client_by_nick("halfway") is None


def test_token_bucket() -> None:
    bucket = TokenBucket()
    bucket.configure(3, 2.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0  # one token back after 1/rate seconds
    assert bucket.take(10.0) == 0.0
    assert bucket.tokens == pytest.approx(2.0)


# --- messages ------------------------------------------------------------------------------


def test_channel_message_reaches_members_but_not_the_sender() -> None:
    net = Net()
    alice, bob, carol = net.register("alice"), net.register("bob"), net.register("carol")
    for c in (alice, bob):
        net.send(c, "JOIN #room")
        net.take(c)
    net.take(alice)
    net.send(alice, "PRIVMSG #room :hello")
    assert net.lines(bob) == [":alice!~alice@127.0.0.1 PRIVMSG #room :hello"]
    assert net.lines(alice) == []
    assert net.lines(carol) == []
    assert isinstance(net.stored[-1], StoreHistory)


def test_message_errors() -> None:
    net = Net()
    alice = net.register("alice")
    net.send(alice, "PRIVMSG nobody :hi")
    net.send(alice, "PRIVMSG #nowhere :hi")
    net.send(alice, "PRIVMSG")
    net.send(alice, "PRIVMSG alice")
    net.send(alice, "PRIVMSG a,b,c,d,e :hi")
    assert net.codes(alice) == [
        n.ERR_NOSUCHNICK,
        n.ERR_NOSUCHCHANNEL,
        n.ERR_NORECIPIENT,
        n.ERR_NOTEXTTOSEND,
        n.ERR_TOOMANYTARGETS,
    ]
    net.send(alice, "NOTICE nobody :hi")  # NOTICE is never answered
    assert net.codes(alice) == []


def test_multiple_targets_and_private_messages() -> None:
    net = Net()
    alice, bob, carol = net.register("alice"), net.register("bob"), net.register("carol")
    net.send(alice, "PRIVMSG bob,carol :hi both")
    assert net.lines(bob) == [":alice!~alice@127.0.0.1 PRIVMSG bob :hi both"]  # each sees itself as target
    assert net.lines(carol) == [":alice!~alice@127.0.0.1 PRIVMSG carol :hi both"]


def test_external_and_moderated_channels() -> None:
    net = Net()
    op, voiced, plain, outsider = (net.register(x) for x in ("op", "voiced", "plain", "outsider"))
    for c in (op, voiced, plain):
        net.send(c, "JOIN #room")
    net.send(op, "MODE #room +mv voiced")
    for c in (op, voiced, plain):
        net.take(c)
    net.send(outsider, "PRIVMSG #room :let me in")  # +n: no external messages
    net.send(plain, "PRIVMSG #room :can I talk?")  # +m: only voiced and operators
    assert net.codes(outsider) == [n.ERR_CANNOTSENDTOCHAN]
    assert net.codes(plain) == [n.ERR_CANNOTSENDTOCHAN]
    net.send(voiced, "PRIVMSG #room :I can")
    assert [m.params[1] for m in net.take(op)] == ["I can"]
    net.take(plain)
    net.send(op, "PRIVMSG @#room :ops only")  # STATUSMSG
    assert net.lines(voiced) == []
    assert net.lines(plain) == []


def test_away_and_away_notify() -> None:
    net = Net()
    alice = net.register("alice")
    bob = net.register("bob", caps="away-notify")
    net.send(alice, "JOIN #room")
    net.send(bob, "JOIN #room")
    net.take(alice)
    net.take(bob)
    net.send(alice, "AWAY :lunch")
    assert net.codes(alice) == [n.RPL_NOWAWAY]
    assert net.lines(bob) == [":alice!~alice@127.0.0.1 AWAY :lunch"]
    net.send(bob, "PRIVMSG alice :there?")
    replies = net.take(bob)
    assert replies[0].command == n.RPL_AWAY
    assert replies[0].params[1:] == ("alice", "lunch")
    assert [m.params[1] for m in net.take(alice)] == ["there?"]
    net.send(alice, "AWAY")
    assert net.codes(alice) == [n.RPL_UNAWAY]
    assert net.lines(bob) == [":alice!~alice@127.0.0.1 AWAY"]


def test_ircv3_tags_echo_and_server_time() -> None:
    net = Net()
    alice = net.register("alice", caps="echo-message server-time message-tags")
    bob = net.register("bob")
    carol = net.register("carol", caps="message-tags")
    for c in (alice, bob, carol):
        net.send(c, "JOIN #room")
    for c in (alice, bob, carol):
        net.take(c)
    net.send(alice, "@+draft/reply=x;secret=1 PRIVMSG #room :tagged")
    (echo,) = net.take(alice)
    assert echo.params == ("#room", "tagged")
    assert echo.tags["time"].endswith("Z")
    assert echo.tags["+draft/reply"] == "x"
    assert "secret" not in echo.tags
    (plain,) = net.take(bob)
    assert plain.tags == {}
    (tagged,) = net.take(carol)
    assert tagged.tags["msgid"] == echo.tags["msgid"]
    assert tagged.tags["+draft/reply"] == "x"
    net.send(carol, "@+typing=active TAGMSG #room")
    assert net.take(bob) == []  # TAGMSG only reaches message-tags clients
    assert net.take(alice)[0].command == "TAGMSG"


# --- channels ------------------------------------------------------------------------------


def test_join_creator_is_operator_and_names() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob", caps="multi-prefix")
    net.send(alice, "JOIN #Room")
    assert net.lines(alice) == [
        ":alice!~alice@127.0.0.1 JOIN #Room",
        f":{SERVER} 353 alice = #Room :@alice",
        f":{SERVER} 366 alice #Room :End of /NAMES list.",
    ]
    net.send(alice, "MODE #room +v alice")
    net.send(bob, "JOIN #ROOM")  # the same channel in another case
    assert f":{SERVER} 353 bob = #Room :@+alice bob" in net.lines(bob)
    net.send(bob, "NAMES #room,#nothing")
    assert net.codes(bob) == [n.RPL_NAMREPLY, n.RPL_ENDOFNAMES, n.RPL_ENDOFNAMES]


def test_join_several_with_keys_and_join_zero() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob")
    net.send(alice, "JOIN #a,#b")
    net.send(alice, "MODE #b +k sekrit")
    net.send(bob, "JOIN #a,#b,bad")
    assert [m.command for m in net.take(bob) if m.command.isdigit() and m.command >= "400"] == [
        n.ERR_BADCHANNELKEY,
        n.ERR_NOSUCHCHANNEL,
    ]
    net.send(bob, "JOIN #b sekrit")
    assert bob.channels == {"#a", "#b"}
    net.take(alice)
    net.send(bob, "JOIN 0")
    assert bob.channels == set()
    assert [m.command for m in net.take(alice)] == ["PART", "PART"]


def test_channel_limits_invites_and_bans() -> None:
    net = Net(max_channels_per_client=2)
    op, bob, eve = net.register("op"), net.register("bob"), net.register("eve", user="evil")
    net.send(op, "JOIN #room")
    net.send(op, "MODE #room +l 2")
    net.send(bob, "JOIN #room")
    net.send(eve, "JOIN #room")
    assert n.ERR_CHANNELISFULL in net.codes(eve)
    net.send(op, "MODE #room -l+i")
    net.send(eve, "JOIN #room")
    assert n.ERR_INVITEONLYCHAN in net.codes(eve)
    net.send(op, "MODE #room -i+b *!~evil@*")
    net.send(eve, "JOIN #room")
    assert n.ERR_BANNEDFROMCHAN in net.codes(eve)
    net.send(op, "INVITE eve #room")
    assert net.codes(op)[-1] == n.RPL_INVITING
    assert net.lines(eve) == [":op!~op@127.0.0.1 INVITE eve #room"]
    net.send(eve, "JOIN #room")  # an invitation overrides the ban
    assert "#room" in eve.channels
    net.send(eve, "JOIN #two,#three")
    assert n.ERR_TOOMANYCHANNELS in net.codes(eve)


def test_part_and_errors() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob")
    net.send(alice, "JOIN #room")
    net.send(bob, "PART #room")
    net.send(bob, "PART #nowhere")
    assert net.codes(bob) == [n.ERR_NOTONCHANNEL, n.ERR_NOSUCHCHANNEL]
    net.send(bob, "JOIN #room")
    net.take(alice)
    net.send(bob, "PART #room :bye now")
    assert net.lines(alice) == [":bob!~bob@127.0.0.1 PART #room :bye now"]


def test_topic() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob")
    net.send(alice, "JOIN #room")
    net.send(bob, "JOIN #room")
    net.send(bob, "TOPIC #room")
    net.take(alice)
    assert net.codes(bob)[-1] == n.RPL_NOTOPIC
    net.send(bob, "TOPIC #room :mine")  # +t by default
    assert net.codes(bob) == [n.ERR_CHANOPRIVSNEEDED]
    net.now += 5
    net.send(alice, "TOPIC #room :Welcome all")
    assert net.lines(bob) == [":alice!~alice@127.0.0.1 TOPIC #room :Welcome all"]
    net.send(bob, "TOPIC #room")
    topic, whotime = net.take(bob)
    assert topic.params == ("bob", "#room", "Welcome all")
    assert whotime.params == ("bob", "#room", "alice!~alice@127.0.0.1", str(int(net.now)))
    assert isinstance(net.stored[-1], StoreChannel)


def test_list_hides_secret_channels() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob")
    net.send(alice, "JOIN #open,#hidden")
    net.send(alice, "MODE #hidden +s")
    net.send(alice, "TOPIC #open :all welcome")
    net.send(bob, "LIST")
    listed = [m.params[1:] for m in net.take(bob) if m.command == n.RPL_LIST]
    assert listed == [("#open", "1", "all welcome")]


def test_kick() -> None:
    net = Net()
    op, bob, _carol = net.register("op"), net.register("bob"), net.register("carol")
    for c in (op, bob):
        net.send(c, "JOIN #room")
    net.send(bob, "KICK #room op")
    assert net.codes(bob)[-1] == n.ERR_CHANOPRIVSNEEDED
    net.send(op, "KICK #room carol")
    assert net.codes(op)[-1] == n.ERR_USERNOTINCHANNEL
    net.send(op, "KICK #room bob :behave")
    assert net.lines(bob) == [":op!~op@127.0.0.1 KICK #room bob :behave"]
    assert "#room" not in bob.channels


# --- modes ---------------------------------------------------------------------------------


def test_channel_modes() -> None:
    net = Net()
    op, bob = net.register("op"), net.register("bob")
    net.send(op, "JOIN #room")
    net.send(bob, "JOIN #room")
    net.take(op)
    net.send(op, "MODE #room")
    is_, created = net.take(op)
    assert (is_.command, is_.params[1:]) == (n.RPL_CHANNELMODEIS, ("#room", "+nt"))
    assert created.command == n.RPL_CREATIONTIME
    net.send(op, "MODE #room +ko-t key bob")
    assert net.lines(bob)[-1] == ":op!~op@127.0.0.1 MODE #room +ko-t key bob"
    net.send(bob, "MODE #room")
    assert net.take(bob)[0].params[2:] == ("+nk", "key")
    net.send(op, "MODE #room +b nasty")
    net.send(op, "MODE #room +b")
    assert [m.command for m in net.take(op)][-2:] == [n.RPL_BANLIST, n.RPL_ENDOFBANLIST]
    net.send(op, "MODE #room +y")
    net.send(op, "MODE #room +l nope")
    assert net.codes(op) == [n.ERR_UNKNOWNMODE, n.ERR_INVALIDMODEPARAM]
    carol = net.register("carol")
    net.send(carol, "MODE #room +i")
    net.send(op, "MODE #room -o bob")
    net.send(bob, "MODE #room +i")
    assert net.codes(carol) == [n.ERR_NOTONCHANNEL]
    assert net.codes(bob)[-1] == n.ERR_CHANOPRIVSNEEDED


def test_user_modes() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob")
    net.send(alice, "MODE alice +i")
    assert net.lines(alice) == [":alice!~alice@127.0.0.1 MODE alice +i"]
    net.send(alice, "MODE alice +o")  # operator status only through OPER
    net.send(alice, "MODE alice")
    assert net.take(alice)[-1].params == ("alice", "+i")
    net.send(alice, "MODE bob +i")
    assert net.codes(alice) == [n.ERR_USERSDONTMATCH]
    net.send(bob, "WHO *")
    assert [m.params[5] for m in net.take(bob) if m.command == n.RPL_WHOREPLY] == ["bob"]  # alice is +i


# --- queries ---------------------------------------------------------------------------


def test_who_whois() -> None:
    net = Net()
    alice, bob = net.register("alice"), net.register("bob")
    net.send(alice, "JOIN #room")
    net.send(bob, "JOIN #room")
    net.send(bob, "AWAY :out")
    net.take(bob)
    net.send(alice, "WHO #room")
    who = [m.params for m in net.take(alice) if m.command == n.RPL_WHOREPLY]
    assert [(p[5], p[6]) for p in who] == [("alice", "H@"), ("bob", "G")]
    net.now += 42
    net.send(alice, "WHOIS bob")
    replies = net.take(alice)
    assert [m.command for m in replies] == [
        n.RPL_WHOISUSER,
        n.RPL_WHOISCHANNELS,
        n.RPL_WHOISSERVER,
        n.RPL_AWAY,
        n.RPL_WHOISIDLE,
        n.RPL_ENDOFWHOIS,
    ]
    assert replies[4].params[2] == "42"
    net.send(alice, "WHOIS ghost")
    assert net.codes(alice) == [n.ERR_NOSUCHNICK, n.RPL_ENDOFWHOIS]
    net.send(alice, "WHOWAS ghost")
    assert net.codes(alice) == [n.ERR_WASNOSUCHNICK, n.RPL_ENDOFWHOWAS]
    net.send(alice, "ISON bob ghost alice")
    assert net.take(alice)[0].params[1] == "bob alice"


# --- operators -------------------------------------------------------------------------


def test_oper_and_kill() -> None:
    stored = hash_password("hunter2", b"saltsaltsaltsalt", rounds=1000)
    net = Net(opers={"root": stored, "plain": "letmein"})
    alice, bob = net.register("alice"), net.register("bob")
    net.send(bob, "KILL alice :bye")
    assert net.codes(bob) == [n.ERR_NOPRIVILEGES]
    net.send(bob, "OPER root wrong")
    net.send(bob, "OPER nobody hunter2")
    assert net.codes(bob) == [n.ERR_PASSWDMISMATCH, n.ERR_PASSWDMISMATCH]
    net.send(bob, "OPER root hunter2")
    assert net.codes(bob) == [n.RPL_YOUREOPER, "MODE"]
    net.send(alice, "WHOIS bob")
    assert n.RPL_WHOISOPERATOR in net.codes(alice)
    net.send(bob, "KILL alice :spamming")
    assert net.lines(alice) == [":bob!~bob@127.0.0.1 KILL alice :Killed (bob (spamming))"]
    assert net.closed[alice.id] == "Killed (bob (spamming))"
    carol = net.register("carol")
    net.send(carol, "OPER plain letmein")
    assert "o" in carol.modes

    def operators_online() -> str:
        net.send(carol, "LUSERS")
        (line,) = [m for m in net.take(carol) if m.command == n.RPL_LUSEROP]
        return line.params[1]

    assert operators_online() == "2"  # bob and carol
    net.send(carol, "MODE carol -o")
    assert operators_online() == "1"
    net.send(bob, "QUIT :done")
    assert operators_online() == "0"


def test_password_hashes() -> None:
    stored = hash_password("pw", b"0" * 16, rounds=1000)
    assert stored.startswith("pbkdf2-sha256$1000$")
    assert verify_password(stored, "pw")
    assert not verify_password(stored, "PW")
    assert verify_password("plain", "plain")
    assert not verify_password("plain", "plai")
    assert not verify_password("pbkdf2-sha256$broken", "x")


# --- history -----------------------------------------------------------------------------


def test_chathistory_latest_before_after() -> None:
    net = Net()
    alice = net.register("alice", caps="batch server-time message-tags draft/chathistory")
    bob = net.register("bob")
    net.send(alice, "JOIN #room")
    net.send(bob, "JOIN #room")
    for i in range(5):
        net.now += 1
        net.send(bob, f"PRIVMSG #room :m{i}")
    net.take(alice)
    net.send(alice, "CHATHISTORY LATEST #room * 3")
    start, *items, end = net.take(alice)
    assert (start.command, start.params[1:]) == ("BATCH", ("chathistory", "#room"))
    assert [m.params[1] for m in items] == ["m2", "m3", "m4"]
    assert all(m.tags["batch"] == start.params[0][1:] for m in items)
    assert end.params == ("-" + start.params[0][1:],)
    third = items[0]
    net.send(alice, f"CHATHISTORY BEFORE #room msgid={third.tags['msgid']} 10")
    assert [m.params[1] for m in net.take(alice)[1:-1]] == ["m0", "m1"]
    net.send(alice, f"CHATHISTORY AFTER #room timestamp={third.tags['time']} 1")
    assert [m.params[1] for m in net.take(alice)[1:-1]] == ["m3"]
    net.take(bob)
    net.send(bob, "CHATHISTORY LATEST #room * 10")  # bob has no batch/server-time: plain lines
    assert [m.tags for m in net.take(bob)] == [{}] * 5
    carol = net.register("carol")
    net.send(carol, "CHATHISTORY LATEST #room * 10")
    assert net.take(carol)[0].params[:2] == ("CHATHISTORY", "INVALID_TARGET")


def test_history_is_bounded() -> None:
    net = Net(history_per_channel=3)
    alice = net.register("alice")
    net.send(alice, "JOIN #room")
    for i in range(10):
        net.send(alice, f"PRIVMSG #room :{i}")
    (channel,) = net.state.channels.values()
    assert [h.text for h in channel.history] == ["7", "8", "9"]
