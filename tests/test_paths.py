"""The path jail: every escape refused, symlinks included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from socketkit.errors import PathOutsideRoot, PermissionDenied
from socketkit.paths import MAX_NAME_LENGTH, jail_parts, relative_to_root, resolve_under, split_virtual


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
