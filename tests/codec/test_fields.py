"""The validation layer of request headers: types, ranges, sizes, valid text."""

from __future__ import annotations

from typing import Any

import pytest

from socketkit.codec.fields import Fields
from socketkit.errors import RemoteProtocolError


def refused(header: dict[str, Any], read: Any) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        read(Fields(header))
    assert info.value.error_code == "bad-request"
    return str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 0, "1", True, [], 1e9])
def test_numbers_must_be_finite_and_in_range(value: Any) -> None:
    message = refused({"timeout": value}, lambda f: f.optional_number("timeout", minimum=0.001, maximum=1e6))
    assert "timeout" in message


def test_numbers_in_range_are_floats_and_absent_is_none() -> None:
    fields = Fields({"timeout": 5, "t2": 2.5, "t3": None})
    assert fields.optional_number("timeout", minimum=0.001, maximum=10) == 5.0
    assert isinstance(fields.optional_number("timeout", minimum=0.001, maximum=10), float)
    assert fields.number("t2", minimum=0, maximum=10) == 2.5
    assert fields.optional_number("t3", minimum=0, maximum=1) is None
    assert fields.number("missing", minimum=0, maximum=1, default=0.5) == 0.5
    refused({}, lambda f: f.number("missing", minimum=0, maximum=1))


@pytest.mark.parametrize("value", [True, 1.0, "3", -1, 2**63])
def test_integers_refuse_bools_floats_and_out_of_range(value: Any) -> None:
    refused({"size": value}, lambda f: f.integer("size", minimum=0, maximum=2**62))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a\0b", "NUL"),
        ("\udcff", "surrogate"),
        ("x" * 101, "100 bytes"),
        ("é" * 51, "100 bytes"),  # 102 bytes in UTF-8
        (5, "a string"),
    ],
)
def test_text_checks(value: Any, why: str) -> None:
    assert why in refused({"path": value}, lambda f: f.text("path", max_bytes=100))


def test_control_characters_are_refused_only_where_asked() -> None:
    assert Fields({"argv0": "a\nb"}).text("argv0") == "a\nb"
    refused({"op": "a\nb"}, lambda f: f.text("op", allow_control=False))
    refused({"op": "a\x9bb"}, lambda f: f.text("op", allow_control=False))  # C1 CSI
    refused({"op": ""}, lambda f: f.text("op", allow_empty=False))


def test_lists_and_maps() -> None:
    fields = Fields({"argv": ["ls", "-l"], "env": {"LANG": "C"}})
    assert fields.text_list("argv", max_items=4) == ("ls", "-l")
    assert fields.text_map("env", max_items=4) == {"LANG": "C"}
    refused({"argv": ["a"] * 5}, lambda f: f.text_list("argv", max_items=4))
    refused({"argv": ["a", 1]}, lambda f: f.text_list("argv", max_items=4))
    refused({"argv": "ls"}, lambda f: f.text_list("argv", max_items=4))
    refused({"argv": ["\udcff"]}, lambda f: f.text_list("argv", max_items=4))
    refused({"env": {"A": 1}}, lambda f: f.text_map("env", max_items=4))
    refused({"env": {"": "x"}}, lambda f: f.text_map("env", max_items=4))
    refused({"env": {"A\nB": "x"}}, lambda f: f.text_map("env", max_items=4))
    refused({"env": ["A"]}, lambda f: f.text_map("env", max_items=4))


def test_flags_and_choices() -> None:
    fields = Fields({"force": True, "mode": "a"})
    assert fields.flag("force") is True
    assert fields.flag("absent", default=True) is True
    assert fields.choice("mode", frozenset({"a", "b"})) == "a"
    refused({"force": 1}, lambda f: f.flag("force"))
    refused({"mode": "c"}, lambda f: f.choice("mode", frozenset({"a", "b"})))


def test_the_code_is_configurable() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Fields({"path": 1}, code="bad-path").text("path")
    assert info.value.error_code == "bad-path"
