"""The talk service's pure parts: which language a peer speaks (its first byte), plain
text as lines or as it comes, and the keepalive the welcome announces."""

from __future__ import annotations

import pytest

from socketkit.codec.base import END_OF_STREAM
from socketkit.codec.wire import Control, Data, Hello, encode_control, encode_data, encode_hello
from socketkit.limits import DEFAULT_IDLE_TIMEOUT_S
from socketkit.services.talk.protocol import (
    KEEPALIVE_FRACTION,
    MIN_KEEPALIVE_INTERVAL_S,
    Bye,
    Ping,
    Pong,
    Welcome,
    encode_bye,
    encode_ping,
    encode_plain_bye,
    encode_plain_message,
    encode_pong,
    encode_welcome,
    keepalive_interval,
    parse_event,
)
from socketkit.services.talk.text import PlainText, PlainTextDecoder, TalkDecoder, TextTooLong, utf8_prefix
from socketkit.testing import check_decoder
from socketkit.testing.check_decoder import decode_chunks


def test_the_first_byte_chooses_wire_v1_or_plain_text() -> None:
    wire = TalkDecoder()
    assert wire.plain is None  # nothing yet: undecided
    wire.feed(encode_hello() + encode_data(b"hi"))
    assert list(wire) == [Hello(1, 1), Data(b"hi")]
    assert wire.plain is False
    text = TalkDecoder()
    text.feed("你好".encode())
    assert list(text) == [PlainText("你好")]
    assert text.plain is True
    silent = TalkDecoder()
    silent.feed(b"")
    assert silent.next_event() is END_OF_STREAM
    assert silent.plain is None


def test_a_wire_v1_talk_stream_decodes_the_same_at_every_split() -> None:
    stream = encode_hello() + encode_data("第一".encode()) + encode_ping() + encode_data(b"x" * 300)
    check_decoder(
        TalkDecoder,
        stream,
        [Hello(1, 1), Data("第一".encode()), Control({"event": "ping"}), Data(b"x" * 300)],
    )


def test_text_without_newlines_is_shown_as_it_comes_and_never_splits_a_character() -> None:
    # The tutorial's client: each input() sent as it is, then it waits for the answer.
    text = "俺喜欢你 🙂 exit"
    data = text.encode()
    for cut in range(1, len(data)):
        pieces, ended = decode_chunks(PlainTextDecoder(), [data[:cut], data[cut:]])
        assert ended
        shown = [p.text for p in pieces]
        assert "".join(shown) == text, (cut, shown)
        assert all("\ufffd" not in piece for piece in shown), (cut, shown)
    whole, _ = decode_chunks(PlainTextDecoder(), [b"exit"])
    assert whole == [PlainText("exit")]  # the tutorial's goodbye, as one message


def test_lines_after_the_first_newline_decode_the_same_at_every_split() -> None:
    first, rest = b"first\n", "second 行\r\nthird\n\nlast".encode()
    for cut in range(len(rest) + 1):
        pieces, _ = decode_chunks(PlainTextDecoder(), [first + rest[:cut], rest[cut:]])
        assert pieces == [PlainText(t) for t in ("first", "second 行", "third", "", "last")], cut


def test_invalid_utf8_is_replaced_never_an_error() -> None:
    pieces, _ = decode_chunks(PlainTextDecoder(), [b"caf\xe9 au lait\n\xff\xfe\n\xc3"])
    assert pieces == [PlainText("caf\ufffd au lait"), PlainText("\ufffd\ufffd"), PlainText("\ufffd")]


def test_an_overlong_line_is_dropped_once_and_the_next_goes_on() -> None:
    first, rest = b"ok\n", b"x" * 25 + b"\n" + b"y" * 10 + b"\r\nnext\n"
    bytewise = [first] + [rest[i : i + 1] for i in range(len(rest))]
    for chunks in [[first + rest[:cut], rest[cut:]] for cut in range(len(rest))] + [bytewise]:
        pieces, _ = decode_chunks(PlainTextDecoder(max_line=10), chunks)
        assert pieces == [PlainText("ok"), TextTooLong(10), PlainText("y" * 10), PlainText("next")], chunks
    # A client that sends no newlines: an over-long read is dropped, the next one shown.
    pieces, _ = decode_chunks(PlainTextDecoder(max_line=10), [b"z" * 30, b"short"])
    assert pieces == [TextTooLong(10), PlainText("short")]


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        (b"", 0),
        (b"a", 1),
        (b"\xc3", 0),
        (b"\xc3\xa9", 2),
        (b"\xe4\xbd", 0),
        (b"a\xf0\x9f\x99", 1),
        (b"\xff", 1),
    ],
)
def test_utf8_prefix_keeps_only_an_incomplete_last_character(data: bytes, complete: int) -> None:
    assert utf8_prefix(data) == complete


def test_the_welcome_announces_the_idle_timeout_the_keepalive_beats() -> None:
    def welcome(frame: bytes) -> Welcome:
        decoder = TalkDecoder()
        decoder.feed(encode_hello() + frame)
        _, event = list(decoder)
        parsed = parse_event(event)
        assert isinstance(parsed, Welcome)
        return parsed

    assert welcome(encode_welcome(3, 300.0)) == Welcome(3, 300.0, announced=True)
    assert keepalive_interval(welcome(encode_welcome(3, 300.0))) == 300.0 * KEEPALIVE_FRACTION
    assert keepalive_interval(welcome(encode_welcome(3, None))) is None  # the server drops nobody
    assert keepalive_interval(welcome(encode_welcome(3, 0.001))) == MIN_KEEPALIVE_INTERVAL_S
    old = welcome(encode_control({"event": "welcome", "id": 3}))  # an older server says nothing
    assert old == Welcome(3)
    assert keepalive_interval(old) == DEFAULT_IDLE_TIMEOUT_S * KEEPALIVE_FRACTION
    for bad in ("300", -1, 0, True, [5]):
        assert welcome(encode_control({"event": "welcome", "id": 3, "idle_timeout": bad})) == Welcome(3)


def test_keepalive_bye_and_plain_text_frames() -> None:
    decoder = TalkDecoder()
    decoder.feed(encode_hello() + encode_ping() + encode_pong() + encode_bye("idle for 300 s"))
    assert [parse_event(e) for e in list(decoder)[1:]] == [Ping(), Pong(), Bye("idle for 300 s")]
    assert encode_plain_message("滚蛋!") == "滚蛋!\n".encode()
    assert encode_plain_bye("kicked by the operator") == b"* disconnected: kicked by the operator\n"
