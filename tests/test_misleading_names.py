"""Names that look like something they are not (``socketkit.paths.misleading``): names
that show as nothing, as blanks or as dots, names that start with a combining mark, and
names that hold a path separator's look-alike are refused; visible names in any script
still pass. The red team's names first, then the rule over generated names."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketkit.errors import PermissionDenied
from socketkit.paths import (
    DOT_LIKE,
    INVISIBLE,
    SLASH_LIKE,
    check_name,
    jail_parts,
    misleading,
    unsafe_character,
)


def _refused(name: str) -> str:
    with pytest.raises(PermissionDenied) as info:
        jail_parts(f"d/{name}")
    assert info.value.code in ("bad-path", "name-too-long")
    return str(info.value)


# What /tmp/rt3 put, and the same class: nothing to see, only blanks, only dots.
SHOWS_AS_NOTHING_OR_DOTS = {
    "two combining acute accents": "\u0301\u0301",
    "VARIATION SELECTOR-16 alone": "\ufe0f",
    "hair space and a combining grave": "\u200a\u0300",
    "braille blank and a combining acute": "\u2800\u0301",
    "ideographic space and a diaeresis": "\u3000\u0308",
    "ONE DOT LEADER twice (looks like ..)": "\u2024\u2024",
    "TWO DOT LEADER (looks like ..)": "\u2025",
    "FULLWIDTH FULL STOP (looks like .)": "\uff0e",
    "ARABIC-INDIC DIGIT ZERO (a dot)": "\u0660",
    "dots with an accent": "..\u0301",
    "a blank between dot leaders": "\u2024 \u2024",
}


@pytest.mark.parametrize("kind", sorted(SHOWS_AS_NOTHING_OR_DOTS))
def test_names_that_show_as_nothing_blanks_or_dots_are_refused(kind: str) -> None:
    name = SHOWS_AS_NOTHING_OR_DOTS[kind]
    message = _refused(name)
    assert unsafe_character(message) is None
    assert name not in message  # shown escaped: the message itself is not blank
    assert misleading(name) is not None


@pytest.mark.parametrize("name", ["\u0301abc", "\ufe0fx", "\u20ddx", "\u0903x", "\u0308.txt"])
def test_a_name_may_not_start_with_a_combining_mark(name: str) -> None:
    """Non-spacing (Mn, the variation selectors too), enclosing (Me) and spacing (Mc)
    marks are drawn on what is before them: at the start of a name, that is the column
    shown before it."""
    assert "joins what is shown before it" in _refused(name)


@pytest.mark.parametrize(
    "char", sorted(SLASH_LIKE | {"\uff0f", "\uff3c", "\ufe68", "\u2105"}), ids=lambda c: f"U+{ord(c):04X}"
)
def test_path_separator_look_alikes_are_refused(char: str) -> None:
    message = _refused(f"a{char}b")
    assert "looks like a path separator" in message
    assert unicodedata.name(char) in message
    assert f"\\u{ord(char):04x}" in message or f"\\U{ord(char):08x}" in message


def test_the_red_teams_division_slash_is_named_in_the_refusal() -> None:
    message = _refused("a\u2215b")
    assert "'a\\u2215b'" in message
    assert "U+2215 (DIVISION SLASH)" in message


@pytest.mark.parametrize(
    "name", ["½.txt", "ノート", "\u4e3f", "❤️", "e\u0301", "café ", "a\u00a0b", ".hidden", "x..y"]
)
def test_visible_names_that_hold_such_characters_inside_are_names(name: str) -> None:
    """Marks after a letter, blanks between words, dots in a name, letters that resemble
    a slash (KATAKANA LETTER NO, U+4E3F), and U+00BD (whose NFKC form holds FRACTION
    SLASH, but which is drawn as one glyph) are fine."""
    check_name(name)
    assert misleading(name) is None


def _invisible(char: str) -> bool:
    return any(low <= ord(char) <= high for low, high in INVISIBLE)


_MARKS = st.characters(categories=["Mn", "Mc", "Me"]).filter(lambda c: c not in SLASH_LIKE)
_BLANKS = st.sampled_from([" ", "\u00a0", "\u2000", "\u2003", "\u200a", "\u202f", "\u3000", "\u2800"])
_DOTS = st.sampled_from([".", "\u2024", "\u2025", "\u2026", "\ufe52", "\uff0e", *sorted(DOT_LIKE)])


@given(
    st.text(st.one_of(_MARKS, _BLANKS, _DOTS), min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))
)
def test_a_name_of_marks_blanks_and_dots_only_is_always_refused(name: str) -> None:
    """Whatever the mix: nothing in such a name is visible of its own but dots."""
    _refused(name)


_LETTERS = st.characters(categories=["L", "N"]).filter(
    lambda c: not _invisible(c) and c not in DOT_LIKE and unsafe_character(c) is None
)


@given(
    st.text(st.one_of(_LETTERS, _MARKS, _BLANKS, st.just(".")), max_size=30),
    st.sampled_from(sorted(SLASH_LIKE | {"\uff0f", "\uff3c", "\ufe68"})),
    st.integers(min_value=0, max_value=30),
)
def test_a_slash_look_alike_anywhere_in_a_name_is_refused(text: str, slash: str, at: int) -> None:
    _refused(f"x{text[:at]}{slash}{text[at:]}")


@given(
    st.text(
        st.one_of(_LETTERS, _MARKS.filter(lambda c: not _invisible(c)), st.just(" "), st.just(".")),
        max_size=30,
    )
)
def test_a_name_that_starts_with_a_letter_is_a_name(rest: str) -> None:
    """Letters and digits of any script, with marks, spaces and dots after a first
    letter: always a name (the rule refuses appearances, not scripts)."""
    name = f"x{rest}"
    assert jail_parts(f"d/{name}") == ["d", name]
