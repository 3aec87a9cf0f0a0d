"""Strict JSON for headers: what json.loads lets through is refused with bad-json."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketkit.codec.jsonvalue import loads_object
from socketkit.codec.wire import Control, ErrorFrame, WireDecoder, encode_control, encode_error
from socketkit.errors import RemoteProtocolError
from socketkit.limits import MAX_JSON_DEPTH


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"timeout": NaN}', "NaN"),
        (b'{"timeout": Infinity}', "Infinity"),
        (b'{"timeout": -Infinity}', "Infinity"),
        (b'{"timeout": 1e400}', "out of range"),
        (b'{"path": "\\udcff"}', "surrogate"),
        (b'{"\\ud800": 1}', "surrogate"),
        (b'{"argv": ["ok", "\\udfff"]}', "surrogate"),
        (b'{"a": 1, "a": 2}', "duplicate"),
        (b"[1, 2]", "object"),
        (b'"text"', "object"),
        (b'{"a": "\xff"}', "utf-8"),
        (b'{"a": ', "Expecting"),
        (b'{"n": 1' + b"0" * 5000 + b"}", "digits"),
    ],
)
def test_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        loads_object(payload)
    assert info.value.error_code == "bad-json"
    assert reason.lower() in str(info.value).lower()


@pytest.mark.parametrize("depth", [30_000, 2_000, MAX_JSON_DEPTH])
def test_deep_nesting_is_refused_without_recursion_error(depth: int) -> None:
    payload = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(RemoteProtocolError, match="nested deeper"):
        loads_object(payload)
    levels = depth + 1  # objects only: the top one is a level too
    nested_objects = b'{"a":' * levels + b"1" + b"}" * levels
    with pytest.raises(RemoteProtocolError, match="nested deeper"):
        loads_object(nested_objects)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    inner = MAX_JSON_DEPTH - 1  # the top object is level 1
    payload = b'{"a": ' + b"[" * inner + b"]" * inner + b"}"
    assert loads_object(payload) == json.loads(payload)


def test_valid_unicode_and_surrogate_pairs_pass() -> None:
    assert loads_object('{"name": "\\ud83d\\ude00 caf\u00e9"}'.encode()) == {"name": "\U0001f600 caf\u00e9"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_every_ordinary_object_round_trips(obj: dict[str, Any]) -> None:
    payload = json.dumps(obj, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
    try:
        expected = json.loads(payload)
    except (ValueError, RecursionError):
        return
    if _depth(obj) > MAX_JSON_DEPTH or _has_surrogate(obj):
        with pytest.raises(RemoteProtocolError):
            loads_object(payload)
    else:
        assert loads_object(payload) == expected


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def test_the_wire_decoder_uses_it_for_control_and_error_frames() -> None:
    for frame in (b'{"op": NaN}', b'{"a": "\\udcff"}'):
        decoder = WireDecoder(expect_hello=False)
        decoder.feed(len(frame).to_bytes(4, "big") + b"\x01\x00" + frame)
        with pytest.raises(RemoteProtocolError) as info:
            decoder.next_event()
        assert info.value.error_code == "bad-json"
    decoder = WireDecoder(expect_hello=False)
    decoder.feed(encode_control({"op": "ok", "n": 1.5}))
    assert decoder.next_event() == Control({"op": "ok", "n": 1.5})


def test_an_error_message_quoting_a_surrogate_is_still_sent() -> None:
    frame = encode_error("bad-path", "no such file: \udcff")
    decoder = WireDecoder(expect_hello=False)
    decoder.feed(frame)
    event = decoder.next_event()
    assert isinstance(event, ErrorFrame)
    assert event.code == "bad-path"
    assert "\\udcff" in event.message
