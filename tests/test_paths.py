"""The path jail: every escape refused, symlinks included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from socketkit.errors import PathOutsideRoot, PermissionDenied
from socketkit.paths import (
    MAX_NAME_LENGTH,
    display_name,
    jail_parts,
    relative_to_root,
    resolve_under,
    split_virtual,
    unsafe_character,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "root"
    (served / "sub").mkdir(parents=True)
    (served / "sub" / "file.txt").write_text("x")
    (tmp_path / "secret").write_text("outside")
    return served


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", ""),
        (".", ""),
        ("sub", "sub"),
        ("sub/file.txt", "sub/file.txt"),
        ("sub/../sub/./file.txt", "sub/file.txt"),
        ("sub//file.txt", "sub/file.txt"),
        ("sub\\file.txt", "sub/file.txt"),
        ("new/name.bin", "new/name.bin"),
        ("名前.txt", "名前.txt"),
    ],
)
def test_paths_inside_the_root(root: Path, path: str, expected: str) -> None:
    real = resolve_under(root, path)
    assert relative_to_root(root, real) == expected


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../secret",
        "sub/../../secret",
        "/etc/passwd",
        "\\\\server\\share",
        "C:\\Windows",
        "c:x",
        "sub/../..",
        "../root/sub",
    ],
)
def test_escapes_are_refused(root: Path, path: str) -> None:
    with pytest.raises(PathOutsideRoot):
        resolve_under(root, path)


@pytest.mark.parametrize(
    "path",
    ["a\x00b", "bad\x1b[31mname", "line\nbreak", "CON", "sub/nul.txt", "LPT1", "com9.log", "...", " . "],
)
def test_unsafe_names_are_refused(root: Path, path: str) -> None:
    with pytest.raises(PermissionDenied) as info:
        resolve_under(root, path)
    assert info.value.code == "bad-path"


def test_a_symlink_leading_out_is_refused_and_one_staying_in_is_fine(root: Path) -> None:
    os.symlink(root.parent / "secret", root / "escape")
    os.symlink(root.parent, root / "updir")
    os.symlink(root / "sub" / "file.txt", root / "inside")
    for path in ("escape", "updir/secret", "updir"):
        with pytest.raises(PathOutsideRoot):
            resolve_under(root, path)
    assert resolve_under(root, "inside") == str((root / "sub" / "file.txt").resolve())


def test_a_root_that_is_itself_a_symlink(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "link-to-root"
    os.symlink(root, link)
    assert resolve_under(link, "sub/file.txt") == str((root / "sub" / "file.txt").resolve())


def test_a_sibling_with_the_root_as_prefix_is_outside(tmp_path: Path, root: Path) -> None:
    (tmp_path / "root-evil").mkdir()
    os.symlink(tmp_path / "root-evil", root / "sibling")
    with pytest.raises(PathOutsideRoot):
        resolve_under(root, "sibling")


def test_long_paths_are_refused(root: Path) -> None:
    with pytest.raises(PermissionDenied):
        split_virtual("a/" * 3000)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("", []),
        (".", []),
        ("a/b/../c", ["a", "c"]),
        ("a/./b//c/", ["a", "b", "c"]),
        ("a/..", []),
        ("a\\b", ["a", "b"]),
    ],
)
def test_jail_parts_applies_dot_dot_lexically(path: str, parts: list[str]) -> None:
    assert jail_parts(path) == parts


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "a/../../a", "/etc", "C:\\x"])
def test_jail_parts_refuses_any_climb_above_the_root(path: str) -> None:
    with pytest.raises(PathOutsideRoot):
        jail_parts(path)


def test_a_name_longer_than_name_max_is_refused_with_its_own_code() -> None:
    assert jail_parts("x" * MAX_NAME_LENGTH) == ["x" * MAX_NAME_LENGTH]
    for path in ("x" * (MAX_NAME_LENGTH + 1), f"ok/{'é' * 128}/f"):  # bytes count, not characters
        with pytest.raises(PermissionDenied) as info:
            jail_parts(path)
        assert info.value.code == "name-too-long"


# What each name holds: one of every kind of character the rule refuses
# (``socketkit.paths.REFUSED_CATEGORIES``), as the red team sent them.
INVISIBLE_OR_CONTROL = {
    "C1 NEL": "nel\x85x",
    "C1 CSI": "c1\x9bx",
    "DEL": "del\x7fx",
    "bidi override (shows as rtlexe.txt)": "rtl\u202etxt.exe",
    "bidi embedding": "a\u202ab",
    "bidi isolate": "a\u2066b\u2069",
    "left-to-right mark": "a\u200eb",
    "right-to-left mark": "a\u200fb",
    "Arabic letter mark": "a\u061cb",
    "line separator": "ls\u2028FORGED INFO line",
    "paragraph separator": "ps\u2029x",
    "zero-width space": "report\u200b.pdf",
    "zero-width joiner": "rep\u200dort.pdf",
    "BOM": "\ufeffbom",
    "word joiner": "a\u2060b",
    "tag character": "flag\U000e0041",
    "private use": "pua\ue000",
    "unassigned": "un\U000effffx",
    "lone surrogate (a byte that is not UTF-8)": "bad\udcffname",
    "Hangul filler": "a\u3164b",
    "combining grapheme joiner": "e\u034fx",
    "variation selector 1": "a\ufe00",
    "Mongolian free variation selector": "a\u180bb",
    "soft hyphen": "soft\u00adhyphen",
}


@pytest.mark.parametrize("kind", sorted(INVISIBLE_OR_CONTROL))
def test_names_with_invisible_or_control_characters_are_refused(kind: str) -> None:
    name = INVISIBLE_OR_CONTROL[kind]
    for path in (name, f"dir/{name}", f"{name}/below"):
        with pytest.raises(PermissionDenied) as info:
            jail_parts(path)
        assert info.value.code == "bad-path"
        message = str(info.value)
        assert unsafe_character(message) is None, message  # the refusal quotes it escaped
    assert unsafe_character(name) is not None
    shown = display_name(name)
    assert unsafe_character(shown) is None
    assert shown.isprintable()


@pytest.mark.parametrize(
    "name",
    [
        "名前.txt",
        "café",
        "e\u0301",
        "naïve résumé",
        "😀.png",
        "\u0430pple",
        "a\u00a0b",
        "新しい\u3000フォルダ",
    ],
)
def test_visible_text_in_any_script_is_a_name(name: str) -> None:
    assert jail_parts(f"d/{name}") == ["d", name]
    assert display_name(name) == name


@pytest.mark.parametrize("name", ["\u00a0", "\u3000", "\u2800", " .\u2003.", "\t"])
def test_a_name_that_shows_as_blank_is_refused(name: str) -> None:
    with pytest.raises(PermissionDenied) as info:
        jail_parts(f"d/{name}")
    assert info.value.code == "bad-path"
    assert unsafe_character(str(info.value)) is None
    assert "\u2800" not in str(info.value)


def test_the_refusal_names_the_character() -> None:
    with pytest.raises(PermissionDenied) as info:
        jail_parts("rtl\u202etxt.exe")
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE)" in str(info.value)
    assert "'rtl\\u202etxt.exe'" in str(info.value)


def test_display_name_shows_what_a_name_really_holds() -> None:
    assert display_name("rtl\u202etxt.exe") == "rtl\\u202etxt.exe"
    assert display_name("c1\x9bx\x1b") == "c1\\x9bx\\x1b"
    assert display_name("bad\udcffname") == "bad\\xffname"  # the byte on disk
    assert display_name("flag\U000e0041") == "flag\\U000e0041"
