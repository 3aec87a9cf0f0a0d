"""The terminal client's pure logic: typed commands, server messages, capability
negotiation, history replay and nick colours."""

from __future__ import annotations

import pytest

from socketkit.codec.irc import format_message, parse_message
from socketkit.services.chat.conversation import NICK_COLOURS, Conversation, nick_colour, parse_time_tag

NOW = 1_800_000_000.0


def typed(talk: Conversation, text: str) -> tuple[list[str], list[str]]:
    messages, lines = talk.command(text, NOW)
    return [format_message(m) for m in messages], [line.text for line in lines]


def heard(talk: Conversation, line: str) -> tuple[list[str], list[tuple[str, str]]]:
    replies, lines = talk.receive(parse_message(line), NOW)
    return [format_message(m) for m in replies], [(line.kind, line.text) for line in lines]


def test_hello_and_capabilities() -> None:
    talk = Conversation("alice", password="pw")
    assert [format_message(m) for m in talk.hello()] == [
        "CAP LS 302",
        "PASS pw",
        "NICK alice",
        "USER socketkit 0 * :socketkit chat",
    ]
    replies, _ = heard(talk, ":srv CAP * LS * :server-time batch")
    assert replies == []  # more to come
    replies, _ = heard(talk, ":srv CAP * LS :echo-message draft/chathistory sasl")
    assert replies == ["CAP REQ :server-time echo-message batch draft/chathistory"]
    replies, _ = heard(talk, ":srv CAP alice ACK :server-time echo-message batch draft/chathistory")
    assert replies == ["CAP END"]
    assert "echo-message" in talk.caps


def test_registration_rejoins_and_a_reconnect_retries_a_taken_nick() -> None:
    talk = Conversation("bob", channels=["#a", "#b"])
    talk.hello()
    replies, _ = heard(talk, ":srv 001 bob :Welcome")
    assert replies == ["JOIN #a", "JOIN #b"]
    # Back after a drop: the server still holds "bob" for our old connection.
    talk.hello()
    replies, lines = heard(talk, ":srv 433 * bob :Nickname is already in use")
    assert replies == ["NICK bob_"]
    assert lines[0][0] == "error"
    assert talk.refused is None  # nothing to ask: the client goes on
    replies, _ = heard(talk, ":srv 001 bob_ :Welcome")
    assert replies == ["JOIN #a", "JOIN #b"]
    assert talk.nick == "bob_"


@pytest.mark.parametrize(
    ("numeric", "reason"),
    [
        ("431 *", "No nickname given"),
        ("432 * bob", "Erroneous nickname"),
        ("433 * bob", "Nickname is already in use"),
        ("436 * bob", "Nickname collision KILL"),
        ("437 * bob", "Nick/channel is temporarily unavailable"),
    ],
)
def test_a_nick_refused_before_the_welcome_asks_for_another(numeric: str, reason: str) -> None:
    talk = Conversation("bob", channels=["#a"], current="#a")
    talk.hello()
    replies, lines = heard(talk, f":srv {numeric} :{reason}")
    assert replies == []  # no guess: the user chooses (or, in line mode, the client ends)
    assert talk.refused == f"the server refused the nickname 'bob': {reason}"
    assert lines == [("error", talk.refused), ("info", "type another nickname (or /nick NEWNICK, /quit)")]
    # A bare word is the answer; /nick works too, and so does /quit.
    assert typed(talk, "two words") == ([], ["a nickname is one word: type another one (or /quit)"])
    assert typed(talk, "bobby") == (["NICK bobby"], [])
    assert (talk.nick, talk.refused) == ("bobby", None)
    heard(talk, f":srv {numeric.replace('bob', 'bobby')} :{reason}")
    assert typed(talk, "/nick robert") == (["NICK robert"], [])
    assert talk.nick == "robert"
    replies, _ = heard(talk, ":srv 001 robert :Welcome")
    assert replies == ["JOIN #a"]
    assert typed(talk, "plain text")[0] == ["PRIVMSG #a :plain text"]  # said, not a nick, once welcomed
    assert typed(talk, "/quit bye") == (["QUIT :bye"], [])


def test_a_refused_nick_after_the_welcome_is_only_an_error() -> None:
    talk = Conversation("bob")
    talk.hello()
    heard(talk, ":srv 001 bob :Welcome")
    _, lines = heard(talk, ":srv 432 bob bad! :Erroneous nickname")
    assert lines == [("error", "bad!: Erroneous nickname")]
    assert talk.refused is None


def test_typed_commands() -> None:
    talk = Conversation("alice")
    assert typed(talk, "hello?")[1] == ["nowhere to say it: /join #room or /query NICK first"]
    assert typed(talk, "/join room key") == (["JOIN #room key"], [])
    assert talk.current == "#room"
    assert typed(talk, "hi all") == (["PRIVMSG #room :hi all"], ["hi all"])  # shown at once without echo
    assert typed(talk, "//slash") == (["PRIVMSG #room :/slash"], ["/slash"])
    assert typed(talk, "/me waves")[0] == ["PRIVMSG #room :\x01ACTION waves\x01"]
    assert typed(talk, "/msg bob psst there")[0] == ["PRIVMSG bob :psst there"]
    assert typed(talk, "/topic New topic")[0] == ["TOPIC #room :New topic"]
    assert typed(talk, "/topic")[0] == ["TOPIC #room"]
    assert typed(talk, "/names")[0] == ["NAMES #room"]
    assert typed(talk, "/nick alicia")[0] == ["NICK alicia"]
    assert typed(talk, "/away lunch")[0] == ["AWAY :lunch"]
    assert typed(talk, "/whois bob")[0] == ["WHOIS bob"]
    assert typed(talk, "/quote MODE #room +i")[0] == ["MODE #room +i"]
    assert typed(talk, "/part #room see you")[0] == ["PART #room :see you"]
    assert typed(talk, "/frob")[1] == ["unknown command /frob (try /help)"]
    assert len(typed(talk, "/help")[1]) > 5
    assert typed(talk, "/quit gone")[0] == ["QUIT :gone"]
    assert talk.quitting


def test_echo_message_shows_own_words_once() -> None:
    talk = Conversation("alice", current="#room")
    talk.caps.add("echo-message")
    assert typed(talk, "hi") == (["PRIVMSG #room :hi"], [])  # the echo will show it
    _, lines = talk.receive(parse_message(":alice!a@h PRIVMSG #room :hi"), NOW)
    assert [(line.own, line.target, line.text) for line in lines] == [(True, "#room", "hi")]


def test_server_messages_become_readable_lines() -> None:
    talk = Conversation("alice")
    assert heard(talk, "PING :token") == (["PONG token"], [])
    assert heard(talk, ":bob!b@h PRIVMSG alice :hi")[1] == [("message", "hi")]
    _, lines = talk.receive(parse_message(":bob!b@h PRIVMSG alice :hi"), NOW)
    assert lines[0].target == "bob"  # a private message belongs to its sender's window
    assert heard(talk, ":bob!b@h PRIVMSG #r :\x01ACTION dances\x01")[1] == [("action", "dances")]
    assert heard(talk, ":srv NOTICE alice :server says")[1] == [("notice", "server says")]
    assert heard(talk, ":bob!b@h JOIN #r")[1] == [("event", "bob joined #r")]
    assert heard(talk, ":bob!b@h KICK #r carol :rude")[1] == [("event", "bob kicked carol from #r (rude)")]
    assert heard(talk, ":bob!b@h NICK robert")[1] == [("event", "bob is now known as robert")]
    assert heard(talk, ":srv 401 alice ghost :No such nick/channel")[1] == [
        ("error", "ghost: No such nick/channel")
    ]
    assert heard(talk, ":srv 353 alice = #r :@bob alice")[1] == [("info", "in #r: @bob alice")]
    assert heard(talk, ":srv 366 alice #r :End of /NAMES list.")[1] == []
    assert heard(talk, "ERROR :Closing link")[1] == [("error", "Closing link")]


def test_own_join_part_and_history_replay() -> None:
    talk = Conversation("alice")
    talk.caps.update({"draft/chathistory", "batch", "server-time"})
    replies, _ = heard(talk, ":alice!a@h JOIN #r")
    assert replies == ["CHATHISTORY LATEST #r * 20"]
    assert talk.channels == ["#r"]
    assert talk.current == "#r"
    heard(talk, ":srv BATCH +x chathistory #r")
    _, lines = talk.receive(
        parse_message("@batch=x;time=2027-01-15T08:00:00.000Z :bob!b@h PRIVMSG #r :old news"), NOW
    )
    assert lines[0].history
    assert lines[0].time == parse_time_tag("2027-01-15T08:00:00.000Z")
    heard(talk, ":srv BATCH -x")
    heard(talk, ":alice!a@h PART #r")
    assert talk.channels == []
    assert talk.current is None


def test_nick_colours_are_stable_and_case_insensitive() -> None:
    assert nick_colour("Alice") == nick_colour("alice") in NICK_COLOURS
    assert len({nick_colour(f"user{i}") for i in range(100)}) == len(NICK_COLOURS)
    assert parse_time_tag("garbage") is None
