"""socketkit wire format v1: exact bytes both ways, every split, limits, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketkit.codec import (
    END_OF_STREAM,
    NEED_DATA,
    BodyChunk,
    BodyEnd,
    BodyStart,
    Control,
    Data,
    ErrorFrame,
    Hello,
    WireDecoder,
    encode,
    encode_data,
    encode_hello,
    negotiate_version,
)
from socketkit.codec.wire import data_header, encode_control, encode_error
from socketkit.errors import (
    FrameTooLarge,
    HandshakeError,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
)
from socketkit.testing import check_decoder, decode_all, decode_chunks

HELLO = bytes.fromhex("89534b57 01 01 0000")

# (event, exact wire bytes): the same rows as docs/protocol.md, checked both ways.
FRAMES = [
    (Data(b"hi"), bytes.fromhex("00000002 02 00") + b"hi"),
    (Data(b"", channel=2), bytes.fromhex("00000000 02 02")),
    (
        Control({"op": "get", "path": "a.txt"}),
        bytes.fromhex("0000001b 01 00") + b'{"op":"get","path":"a.txt"}',
    ),
    (
        ErrorFrame("busy", "try later"),
        bytes.fromhex("00000025 03 00") + b'{"code":"busy","message":"try later"}',
    ),
    (BodyStart(5), bytes.fromhex("00000008 04 00 0000000000000005")),
]


def _explode_bodies(events: list[object]) -> list[object]:
    """Body chunk boundaries carry no meaning: compare bodies byte by byte."""
    out: list[object] = []
    for event in events:
        if isinstance(event, BodyChunk):
            out.extend(BodyChunk(event.data[i : i + 1]) for i in range(len(event.data)))
        else:
            out.append(event)
    return out


def test_hello_bytes() -> None:
    assert encode_hello() == HELLO
    assert decode_all(WireDecoder(), HELLO) == [Hello(1, 1)]


@pytest.mark.parametrize(("event", "wire"), FRAMES, ids=lambda v: type(v).__name__)
def test_frame_bytes_both_ways(event: Control | Data | ErrorFrame | BodyStart, wire: bytes) -> None:
    assert encode(event) == wire
    decoded = decode_all(
        WireDecoder(expect_hello=False), wire + (b"hello" if isinstance(event, BodyStart) else b"")
    )
    assert decoded[0] == event


def test_body_is_streamed_raw_then_framing_resumes() -> None:
    wire = HELLO + encode(BodyStart(5, channel=1)) + b"hello" + encode_data(b"after")
    expected = [Hello(1, 1), BodyStart(5, 1), BodyChunk(b"hello"), BodyEnd(1), Data(b"after")]
    check_decoder(WireDecoder, wire, expected, normalize=_explode_bodies)


def test_empty_body() -> None:
    wire = encode(BodyStart(0)) + encode_data(b"x")
    assert decode_all(WireDecoder(expect_hello=False), wire) == [
        BodyStart(0),
        BodyEnd(0),
        Data(b"x"),
    ]


def test_a_whole_conversation_survives_every_split() -> None:
    events = [
        Control({"op": "exec", "argv": ["ls", "-l"]}),
        Data(b"out", 1),
        Data(b"err", 2),
        Data(b"", 1),
        ErrorFrame("timeout", "killed after 5 s"),
    ]
    wire = HELLO + b"".join(encode(e) for e in events)
    check_decoder(WireDecoder, wire, [Hello(1, 1), *events])


def test_body_remaining_tracks_the_raw_part() -> None:
    decoder = WireDecoder(expect_hello=False)
    decoder.feed(encode(BodyStart(10)) + b"abc")
    assert decoder.next_event() == BodyStart(10)
    assert decoder.body_remaining == 10
    assert decoder.next_event() == BodyChunk(b"abc")
    assert decoder.body_remaining == 7
    assert decoder.next_event() is NEED_DATA


def test_declared_length_over_limit_is_refused_from_the_header_alone() -> None:
    decoder = WireDecoder(max_frame_size=1024, expect_hello=False)
    decoder.feed(bytes.fromhex("ffffffff 02 00"))  # claims 4 GiB; nothing else sent
    with pytest.raises(FrameTooLarge) as info:
        decoder.next_event()
    assert (info.value.limit, info.value.size) == (1024, 0xFFFFFFFF)


def test_exactly_at_limit_passes_and_control_has_its_own_limit() -> None:
    assert decode_all(WireDecoder(max_frame_size=4, expect_hello=False), encode_data(b"1234")) == [
        Data(b"1234")
    ]
    with pytest.raises(FrameTooLarge):
        decode_all(WireDecoder(max_frame_size=4, expect_hello=False), encode_data(b"12345"))
    big = encode_control({"pad": "x" * 100})
    with pytest.raises(FrameTooLarge):
        decode_all(WireDecoder(max_control_size=64, expect_hello=False), big)


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n\r\n", b"NICK bob\r\n", b"\x89SKX", b"\x00"])
def test_not_a_wire_peer_is_told_at_the_first_wrong_byte(garbage: bytes) -> None:
    decoder = WireDecoder()
    decoder.feed(garbage[:4])
    with pytest.raises(HandshakeError) as info:
        decoder.next_event()
    assert info.value.error_code == "bad-magic"


def test_version_negotiation() -> None:
    assert negotiate_version(Hello(1, 3)) == 1
    assert negotiate_version(Hello(1, 3), 1, 2) == 2
    with pytest.raises(HandshakeError, match=r"we speak 1\.\.1, the peer speaks 2\.\.3"):
        negotiate_version(Hello(2, 3))
    with pytest.raises(HandshakeError):
        decode_all(WireDecoder(), bytes.fromhex("89534b57 03 02 0000"))


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (bytes.fromhex("00000001 09 00 00"), "bad-frame-type"),
        (bytes.fromhex("00000002 01 00") + b"[]", "bad-json"),
        (bytes.fromhex("00000002 01 00") + b"\xff{", "bad-json"),
        (bytes.fromhex("00000002 03 00") + b"{}", "bad-json"),
        (bytes.fromhex("00000001 04 00 00"), "protocol-error"),
    ],
)
def test_malformed_frames_raise_typed_errors(wire: bytes, code: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(WireDecoder(expect_hello=False), wire)
    assert info.value.error_code == code


def test_truncation_raises_incomplete_with_partial() -> None:
    wire = encode_data(b"abcdef")
    with pytest.raises(IncompleteFrame) as info:
        decode_chunks(WireDecoder(expect_hello=False), [wire[:-2]])
    assert info.value.partial == wire[:-2]
    with pytest.raises(IncompleteFrame):
        decode_chunks(WireDecoder(expect_hello=False), [encode(BodyStart(9)) + b"abc"])


def test_after_eof_at_a_boundary_the_decoder_stays_ended() -> None:
    decoder = WireDecoder()
    decoder.feed(HELLO)
    decoder.feed(b"")
    assert decoder.next_event() == Hello(1, 1)
    assert decoder.next_event() is END_OF_STREAM


def test_encoder_refusals() -> None:
    with pytest.raises(LocalProtocolError):
        encode_data(b"x", channel=256)
    with pytest.raises(LocalProtocolError):
        encode_control({"x": object()})
    with pytest.raises(LocalProtocolError):
        encode_control({"x": "y" * 100}, max_size=32)
    with pytest.raises(ValueError, match="version range"):
        encode_hello(2, 1)
    with pytest.raises(TypeError):
        encode(Hello(1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_frame_size"):
        WireDecoder(max_frame_size=0)


def test_long_error_messages_are_shortened_not_refused() -> None:
    frame = encode_error("oops", "é" * 100_000, max_size=1000)
    (event,) = decode_all(WireDecoder(expect_hello=False), frame)
    assert isinstance(event, ErrorFrame)
    assert event.code == "oops"
    assert event.message.endswith("...")


def test_data_header_matches_encode_data() -> None:
    assert data_header(3, 7) + b"abc" == encode_data(b"abc", 7)


events_strategy = st.lists(
    st.one_of(
        st.builds(Data, st.binary(max_size=50), st.integers(0, 255)),
        st.builds(
            Control,
            st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=10), max_size=3),
        ),
        st.builds(ErrorFrame, st.text(max_size=10), st.text(max_size=30)),
    ),
    max_size=10,
)


@given(events=events_strategy, data=st.data())
def test_any_chunking_decodes_to_the_same_events(
    events: list[Data | Control | ErrorFrame], data: st.DataObject
) -> None:
    wire = HELLO + b"".join(encode(e) for e in events)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if a < b]
    got, ended = decode_chunks(WireDecoder(), chunks)
    assert ended
    assert got == [Hello(1, 1), *events]
