"""The file protocol's pure parts: reserved partial names, and refused JSON as an event."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from socketkit.codec.wire import Control, FrameType, encode_control, encode_hello
from socketkit.errors import FrameTooLarge, PathOutsideRoot, PermissionDenied
from socketkit.services.filexfer.protocol import (
    BadHeader,
    RequestDecoder,
    is_partial,
    partial_name,
    request_parts,
)


@pytest.mark.parametrize("name", ["f", "file.txt", ".bashrc", "名前"])
def test_a_partial_name_is_reserved(name: str) -> None:
    assert is_partial(partial_name(name))
    assert not is_partial(name)
    for path in (
        partial_name(name),
        f"d/{partial_name(name)}",
        f"{partial_name(name)}/x",
        f"d/{partial_name(name)}/..",
    ):
        with pytest.raises(PermissionDenied) as info:
            request_parts(path)
        assert info.value.code == "bad-path"


def test_request_parts_is_the_jail_plus_the_reserved_names() -> None:
    assert request_parts("a/b/../c.part") == ["a", "c.part"]  # no leading dot: an ordinary name
    with pytest.raises(PathOutsideRoot):
        request_parts("a/../../b")


def control(payload: bytes) -> bytes:
    return struct.pack(">IBB", len(payload), FrameType.CONTROL, 0) + payload


def test_refused_json_is_an_event_and_the_frames_after_it_decode() -> None:
    stream = (
        encode_hello() + control(b'{"op": "\\ud800"}') + control(b"[" * 1000) + encode_control({"op": "list"})
    )
    for split in range(1, len(stream)):  # every split point gives the same events
        decoder = RequestDecoder()
        events: list[Any] = []
        for piece in (stream[:split], stream[split:]):
            decoder.feed(piece)
            events.extend(decoder)
        assert [type(e) for e in events[1:]] == [BadHeader, BadHeader, Control]
        assert all(e.error is not None and e.error.error_code == "bad-json" for e in events[1:3])
        assert events[3].header == {"op": "list"}


def test_a_frame_too_large_still_ends_the_stream() -> None:
    decoder = RequestDecoder()
    decoder.feed(encode_hello() + struct.pack(">IBB", 1 << 30, FrameType.CONTROL, 0))
    with pytest.raises(FrameTooLarge):
        list(decoder)
