"""IRC message codec: the public ircdocs parser vectors, round trips, limits, splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from socketkit.codec.irc import (
    FORBIDDEN_CHARACTER,
    INVALID_UTF8,
    InvalidText,
    IRCDecoder,
    IRCMessage,
    casefold,
    encode_message,
    format_message,
    parse_message,
)
from socketkit.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from socketkit.testing import check_decoder, decode_chunks

DATA = Path(__file__).with_name("data")
SPLIT = yaml.safe_load((DATA / "irc-msg-split.yaml").read_text())["tests"]
JOIN = yaml.safe_load((DATA / "irc-msg-join.yaml").read_text())["tests"]


def atoms_of(message: IRCMessage) -> dict[str, Any]:
    return {
        "tags": dict(message.tags) or None,
        "source": message.source,
        "verb": message.command,
        "params": list(message.params),
    }


@pytest.mark.parametrize("case", SPLIT, ids=[c["input"][:40] for c in SPLIT])
def test_split_vectors(case: dict[str, Any]) -> None:
    atoms = case["atoms"]
    expected = {
        "tags": atoms.get("tags"),
        "source": atoms.get("source"),
        "verb": atoms["verb"],
        "params": atoms.get("params", []),
    }
    assert atoms_of(parse_message(case["input"], max_body=None)) == expected


@pytest.mark.parametrize("case", JOIN, ids=[c.get("desc", "")[:40] for c in JOIN])
def test_join_vectors(case: dict[str, Any]) -> None:
    atoms = case["atoms"]
    message = IRCMessage(
        atoms["verb"], tuple(atoms.get("params", [])), atoms.get("source"), atoms.get("tags") or {}
    )
    assert format_message(message) in case["matches"]


def test_invalid_utf8_survives_a_round_trip_when_asked_to() -> None:
    raw = b":nick!u@h PRIVMSG #chan :caf\xe9 \xff\xfe ok"
    message = parse_message(raw, text_errors="surrogateescape")
    assert encode_message(message) == raw + b"\r\n"
    assert parse_message(raw, text_errors="replace").params[1] == "caf\ufffd \ufffd\ufffd ok"


@pytest.mark.parametrize(
    ("raw", "command"),
    [
        (b"PRIVMSG #bad :\xff", "PRIVMSG"),
        (b"@+x=\xff :n!u@h privmsg #a :ok", "PRIVMSG"),  # in a tag, after a source
        (b"TOPIC #caf\xe9 :x", "TOPIC"),
        (b"NO\xffTICE #a :x", "*"),  # the command itself: nothing to name
        ("PRIVMSG #a :\udcff", "PRIVMSG"),  # text holding a lone surrogate
    ],
)
def test_lines_that_are_not_utf8_are_refused_by_default(raw: str | bytes, command: str) -> None:
    with pytest.raises(InvalidText) as refused:
        parse_message(raw)
    assert refused.value.command == command
    assert refused.value.error_code == INVALID_UTF8


def test_the_decoder_refuses_a_line_that_is_not_utf8_and_goes_on() -> None:
    decoder = IRCDecoder()
    decoder.feed(b"PRIVMSG #a :\xe9t\xe9\r\nPRIVMSG #a :\xc3\xa9t\xc3\xa9\r\n")
    with pytest.raises(InvalidText) as refused:
        decoder.next_event()
    assert refused.value.recoverable
    assert decoder.next_event() == IRCMessage("PRIVMSG", ("#a", "été"))
    with pytest.raises(ValueError, match="text_errors"):
        IRCDecoder(text_errors="ignore")


def test_message_part_limit_and_tags_allowance() -> None:
    body = "PRIVMSG #c :" + "x" * (510 - 12)
    assert len(parse_message(body).params[1]) == 498
    with pytest.raises(FrameTooLarge):
        parse_message(body + "x")
    tagged = "@" + "k=" + "v" * 8000 + " " + body  # long tags do not count against 510
    assert parse_message(tagged).tags["k"] == "v" * 8000


def test_decoder_skips_empty_lines_accepts_lf_and_goes_on_after_a_long_line() -> None:
    decoder = IRCDecoder()
    decoder.feed(b"\r\nNICK a\nUSER u 0 * :Real\r\n" + b"PRIVMSG #c :" + b"y" * 600 + b"\r\nPING x\r\n")
    got: list[object] = []
    errors = 0
    while True:
        try:
            event = decoder.next_event()
        except FrameTooLarge:
            errors += 1
            continue
        if not isinstance(event, IRCMessage):
            break
        got.append(event.verb)
    assert got == ["NICK", "USER", "PING"]
    assert errors == 1


def test_every_split_point() -> None:
    wire = b"@time=2026-01-01T00:00:00Z :a!b@c PRIVMSG #x :hi there\r\nPING :tok\r\nJOIN #a,#b key\n"
    expected = [parse_message(line) for line in wire.replace(b"\r\n", b"\n").split(b"\n") if line]
    check_decoder(IRCDecoder, wire, expected)


def test_format_refuses_what_cannot_be_sent() -> None:
    for bad in (
        IRCMessage("PRIVMSG", ("two words", "x")),
        IRCMessage("PRIVMSG", ("", "x")),
        IRCMessage("PRIVMSG", (":colon", "x")),
        IRCMessage("PRIVMSG", ("#c", "a\r\nQUIT")),
        IRCMessage(""),
    ):
        with pytest.raises(LocalProtocolError):
            format_message(bad)


def test_rfc1459_casemapping() -> None:
    assert casefold("Nick[Away]\\~") == "nick{away}|^"
    assert casefold("#Chan") == casefold("#CHAN")


params = st.lists(
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n\0 :", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=10,
    ),
    max_size=5,
)


@given(
    command=st.sampled_from(["PRIVMSG", "NOTICE", "001", "JOIN"]),
    middle=params,
    last=st.text(
        alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), max_size=30
    ),
    tags=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
        st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=10),
        max_size=3,
    ),
)
def test_format_then_parse_is_identity(
    command: str, middle: list[str], last: str, tags: dict[str, str]
) -> None:
    message = IRCMessage(command, (*middle, last), "n!u@h", tags)
    assert parse_message(format_message(message), max_body=None) == message


@given(data=st.data())
def test_any_chunking(data: st.DataObject) -> None:
    wire = b"NICK a\r\nUSER u 0 * :R\r\nPRIVMSG #c :hello world\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(1, len(wire) - 1), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if a < b]
    got, ended = decode_chunks(IRCDecoder(), chunks)
    assert ended
    assert [m.verb for m in got] == ["NICK", "USER", "PRIVMSG"]


# --- NUL and CR inside a line ----------------------------------------------------------

FORBIDDEN_LINES = [
    "PRIVMSG #c :a\0b",  # in the trailing parameter
    "PRIVMSG #c\0 :ab",  # in a middle parameter
    "PRIV\0MSG #c :ab",  # in the command
    ":n\0ick!u@h PRIVMSG #c :ab",  # in the source
    "@k=v\0 PRIVMSG #c :ab",  # in a tag value
    "PRIVMSG #c :a\rb",  # a bare CR
    "PRIVMSG #c :ab\r",  # a CR left over from CR CR LF
    "\0",  # nothing but NUL
]


@pytest.mark.parametrize("line", FORBIDDEN_LINES, ids=repr)
def test_nul_and_cr_are_refused_in_every_part_of_a_message(line: str) -> None:
    for raw in (line, line.encode()):
        with pytest.raises(RemoteProtocolError) as caught:
            parse_message(raw)
        assert caught.value.error_code == FORBIDDEN_CHARACTER
    with pytest.raises(RemoteProtocolError):
        parse_message(line.replace("\r", "\n").replace("\0", "\n"))  # LF in text handed over whole


def test_escaped_cr_and_lf_in_a_tag_value_stay_allowed_and_are_sent_escaped() -> None:
    message = parse_message(r"@+note=two\r\nlines PRIVMSG #c :ok")
    assert message.tags["+note"] == "two\r\nlines"
    assert format_message(message) == r"@+note=two\r\nlines PRIVMSG #c :ok"


def _decode_with_errors(decoder: IRCDecoder, chunks: list[bytes]) -> list[object]:
    """Messages (as verbs and last params) and refusals, in order, as the glue drains."""
    got: list[object] = []
    for chunk in [*chunks, b""]:
        decoder.feed(chunk)
        while True:
            try:
                event = decoder.next_event()
            except RemoteProtocolError as exc:
                assert exc.recoverable, "one bad line must not end the stream"
                got.append(exc.error_code)
                continue
            if not isinstance(event, IRCMessage):
                break
            got.append((event.verb, event.params[-1]))
    return got


def test_refused_lines_at_every_split_point_leave_the_others_intact() -> None:
    wire = (
        b"PRIVMSG #c :one\r\n"
        b"PRIVMSG #c :nul\x00inside\r\n"
        b"PRIVMSG #c :two\n"
        b"PRIVMSG #c :bare\rcr\r\n"
        b"PRIVMSG #c :cr cr\r\r\n"
        b"PRIVMSG #c :three\r\n"
    )
    expected = [
        ("PRIVMSG", "one"),
        FORBIDDEN_CHARACTER,
        ("PRIVMSG", "two"),
        FORBIDDEN_CHARACTER,
        FORBIDDEN_CHARACTER,
        ("PRIVMSG", "three"),
    ]
    assert _decode_with_errors(IRCDecoder(), [wire]) == expected
    for cut in range(1, len(wire)):
        assert _decode_with_errors(IRCDecoder(), [wire[:cut], wire[cut:]]) == expected, cut
    assert _decode_with_errors(IRCDecoder(), [wire[i : i + 1] for i in range(len(wire))]) == expected
