"""Line codec: round trips, every split, limits, truncation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketkit.codec import END_OF_STREAM, NEED_DATA, LineDecoder, encode_line
from socketkit.errors import FrameTooLarge, IncompleteFrame, LocalProtocolError
from socketkit.testing import check_decoder, decode_all, decode_chunks

# (lines, wire bytes): checked both ways.
ROUND_TRIPS = [
    ([], b""),
    ([b""], b"\n"),
    ([b"hello"], b"hello\n"),
    ([b"a", b"b", b""], b"a\nb\n\n"),
    ([b"\xe4\xbf\xba\xe5\x96\x9c\xe6\xac\xa2\xe4\xbd\xa0"], "俺喜欢你\n".encode()),
    ([b"tab\there", b"\x00nul"], b"tab\there\n\x00nul\n"),
]


@pytest.mark.parametrize(("lines", "wire"), ROUND_TRIPS)
def test_round_trip(lines: list[bytes], wire: bytes) -> None:
    assert b"".join(encode_line(line) for line in lines) == wire
    assert decode_all(LineDecoder(), wire) == lines


@pytest.mark.parametrize(("lines", "wire"), ROUND_TRIPS)
def test_every_split_decodes_the_same(lines: list[bytes], wire: bytes) -> None:
    check_decoder(LineDecoder, wire, lines)


def test_crlf_and_lf_mixed() -> None:
    wire = b"one\r\ntwo\nthree\r\n"
    check_decoder(LineDecoder, wire, [b"one", b"two", b"three"])
    assert encode_line(b"x", terminator=b"\r\n") == b"x\r\n"


def test_crlf_only_mode_keeps_bare_lf_in_content() -> None:
    check_decoder(lambda: LineDecoder(accept_bare_lf=False), b"a\nb\r\nc\r\n", [b"a\nb", b"c"])


def test_bare_cr_inside_a_line_is_content() -> None:
    assert decode_all(LineDecoder(), b"a\rb\n") == [b"a\rb"]


def test_exactly_at_limit_passes() -> None:
    assert decode_all(LineDecoder(8), b"12345678\n12345678\r\n") == [b"12345678"] * 2


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_limit_plus_one_raises_with_sizes(terminator: bytes) -> None:
    with pytest.raises(FrameTooLarge) as info:
        decode_all(LineDecoder(8), b"123456789" + terminator)
    assert (info.value.limit, info.value.size) == (8, 9)
    assert info.value.error_code == "frame-too-large"


def test_too_long_is_detected_before_the_terminator_arrives() -> None:
    decoder = LineDecoder(8)
    decoder.feed(b"123456789")  # limit + CR could still be fine ...
    assert decoder.next_event() is NEED_DATA
    decoder.feed(b"0")  # ... but limit + 2 bytes without LF cannot
    with pytest.raises(FrameTooLarge):
        decoder.next_event()


def test_never_buffers_more_than_limit_plus_one_chunk() -> None:
    decoder = LineDecoder(100)
    with pytest.raises(FrameTooLarge) as info:
        for _ in range(10_000):  # a peer that never sends a newline
            decoder.feed(b"x" * 7)
            assert decoder.next_event() is NEED_DATA
    assert info.value.size <= 100 + 1 + 7


def test_after_too_long_the_rest_of_that_line_is_skipped() -> None:
    decoder = LineDecoder(4)
    messages: list[object] = []
    errors = 0
    for chunk in [b"ok\n", b"waaaaay", b"too long", b"\r", b"\nnext\n", b""]:
        decoder.feed(chunk)
        while True:
            try:
                event = decoder.next_event()
            except FrameTooLarge:
                errors += 1
                continue
            if event is NEED_DATA or event is END_OF_STREAM:
                break
            messages.append(event)
    assert messages == [b"ok", b"next"]
    assert errors == 1


def test_eof_mid_line_raises_with_partial() -> None:
    decoder = LineDecoder()
    decoder.feed(b"done\nhalf")
    decoder.feed(b"")
    assert decoder.next_event() == b"done"
    with pytest.raises(IncompleteFrame) as info:
        decoder.next_event()
    assert info.value.partial == b"half"


def test_eof_at_boundary_is_end_of_stream_and_stays_so() -> None:
    decoder = LineDecoder()
    decoder.feed(b"a\n")
    decoder.feed(b"")
    assert list(decoder) == [b"a"]
    assert decoder.next_event() is END_OF_STREAM
    assert decoder.next_event() is END_OF_STREAM


@pytest.mark.parametrize("bad", [b"a\nb", b"a\rb", b"\n", b"end\r"])
def test_encode_refuses_terminators_inside(bad: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        encode_line(bad)


def test_encode_refuses_over_limit_and_bad_terminator() -> None:
    with pytest.raises(LocalProtocolError):
        encode_line(b"x" * 9, max_line_length=8)
    with pytest.raises(ValueError, match="terminator"):
        encode_line(b"x", terminator=b"\r")
    with pytest.raises(ValueError, match="max_line_length"):
        LineDecoder(0)


def test_long_line_fed_bytewise_is_linear() -> None:
    # Rescanning from the start on every feed would be ~2*10^9 byte comparisons here.
    decoder = LineDecoder(200_000)
    for _ in range(200_000):
        decoder.feed(b"x")
        assert decoder.next_event() is NEED_DATA
    decoder.feed(b"\n")
    assert decoder.next_event() == b"x" * 200_000


lines_strategy = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")), max_size=20
)


@given(lines=lines_strategy, crlf=st.booleans(), data=st.data())
def test_any_chunking_decodes_to_the_same_lines(lines: list[bytes], crlf: bool, data: st.DataObject) -> None:
    wire = b"".join(encode_line(line, terminator=b"\r\n" if crlf else b"\n") for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if a < b]
    got, ended = decode_chunks(LineDecoder(), chunks)
    assert ended
    assert got == lines
