"""The file store's jail, one operation at a time: a symlink planted at every position of a
path is never followed (to outside the root or inside it), on both resolution backends."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from socketkit._oserrors import service_error_from_os
from socketkit.errors import ServiceError
from socketkit.fsjail import Jail, openat2_available
from socketkit.services.filexfer.store import FileStore


def _backends() -> list[bool]:
    jail = Jail("/")
    try:
        return [True, False] if openat2_available(jail.fd) else [False]
    finally:
        jail.close()


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS, ids=lambda v: "openat2" if v else "openat")
def use_openat2(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def snapshot(top: Path) -> dict[str, Any]:
    """Every entry under ``top``: file contents, link targets, directories."""
    out: dict[str, Any] = {}
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(directory) / name
            rel = str(path.relative_to(top))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", path.read_bytes())
    return out


def outcome(call: Callable[[], Any]) -> str:
    """``ok``, or the error code the server would send."""
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    except ServiceError as exc:
        return exc.code
    except OSError as exc:
        return service_error_from_os(exc, "path").code
    return "ok"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/a/b/c/f inside; the same shape outside (out/) and in a second tree inside the
    root (root/mirror/), so that following a symlink would always find something."""
    for top, content in ((tmp_path / "root", b"inside"), (tmp_path / "out", b"OUTSIDE")):
        (top / "a" / "b" / "c" / "d").mkdir(parents=True)
        (top / "a" / "b" / "c" / "f").write_bytes(content)
        (top / "a" / "b" / "c" / "d" / "g").write_bytes(content)
    (tmp_path / "root" / "mirror" / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "root" / "mirror" / "a" / "b" / "c" / "f").write_bytes(b"mirror")
    return tmp_path


COMPONENTS = ["a", "b", "c", "f"]


def plant(tree: Path, position: int, target: str) -> None:
    """Replace component ``position`` of a/b/c/f with a symlink to the same entry in
    ``out`` (outside the root) or ``root/mirror`` (inside)."""
    prefix = COMPONENTS[: position + 1]
    entry = tree.joinpath("root", *prefix)
    base = tree / "out" if target == "outside" else tree / "root" / "mirror"
    if entry.is_dir():
        entry.rename(entry.with_name(entry.name + "-moved"))
    else:
        entry.unlink()
    entry.symlink_to(base.joinpath(*prefix))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(store: FileStore, path: str, data: bytes, *, force: bool = False) -> None:
    upload = store.begin_put(path, len(data), sha(data), force=force, resume=False)
    try:
        upload.write(data)
        upload.finish()
    finally:
        upload.close()


OPERATIONS_ON_THE_WAY: dict[str, Callable[[FileStore], Any]] = {
    "get": lambda s: os.close(s.open_get("a/b/c/f", 0, None).fd),
    "get-resume": lambda s: os.close(s.open_get("a/b/c/f", 1, sha(b"i")).fd),
    "put": lambda s: put(s, "a/b/c/new", b"data"),
    "put-force": lambda s: put(s, "a/b/c/f", b"data", force=True),
    "stat": lambda s: s.stat("a/b/c/f", with_hash=True),
    "ls": lambda s: s.walk("a/b/c/f", recursive=False, with_hash=False),
    "ls-dir": lambda s: s.walk("a/b/c/d/", recursive=True, with_hash=True),
    "rm": lambda s: s.delete("a/b/c/f", recursive=False),
    "rm-r": lambda s: s.delete("a/b/c/d", recursive=True),
    "mkdir": lambda s: s.mkdir("a/b/c/new", parents=False),
    "mkdir-p": lambda s: s.mkdir("a/b/c/new/deeper", parents=True),
}


@pytest.mark.parametrize("target", ["outside", "inside"])
@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("op", sorted(OPERATIONS_ON_THE_WAY))
def test_a_symlink_on_the_way_is_never_followed(
    tree: Path, use_openat2: bool, op: str, position: int, target: str
) -> None:
    plant(tree, position, target)
    before = snapshot(tree)
    with FileStore(str(tree / "root"), None, use_openat2=use_openat2) as store:
        assert outcome(lambda: OPERATIONS_ON_THE_WAY[op](store)) == "path-outside-root"
    assert snapshot(tree) == before  # nothing read through it, created or removed anywhere


@pytest.mark.parametrize("target", ["outside", "inside"])
def test_the_last_component_as_a_symlink_is_described_or_removed_never_followed(
    tree: Path, use_openat2: bool, target: str
) -> None:
    plant(tree, 3, target)  # a/b/c/f -> .../a/b/c/f
    link_target = os.readlink(tree / "root" / "a" / "b" / "c" / "f")
    with FileStore(str(tree / "root"), None, use_openat2=use_openat2) as store:
        assert outcome(lambda: store.open_get("a/b/c/f", 0, None)) == "path-outside-root"
        assert store.stat("a/b/c/f", with_hash=True).type == "link"
        assert store.stat("a/b/c/f", with_hash=True).sha256 is None
        listed = list(store.walk("a/b/c", recursive=True, with_hash=True))
        assert [(e.path, e.type, e.sha256) for e in listed if e.path.startswith("a/b/c/f")] == [
            ("a/b/c/f", "link", None)
        ]
        assert outcome(lambda: put(store, "a/b/c/f", b"new")) == "exists"
        put(store, "a/b/c/f", b"new", force=True)  # replaces the link itself
        assert (tree / "root" / "a" / "b" / "c" / "f").read_bytes() == b"new"
        os.unlink(tree / "root" / "a" / "b" / "c" / "f")
        os.symlink(link_target, tree / "root" / "a" / "b" / "c" / "f")
        store.delete("a/b/c/f", recursive=False)  # the link goes, not its target
        assert not os.path.lexists(tree / "root" / "a" / "b" / "c" / "f")
    assert (tree / "out" / "a" / "b" / "c" / "f").read_bytes() == b"OUTSIDE"
    assert (tree / "root" / "mirror" / "a" / "b" / "c" / "f").read_bytes() == b"mirror"


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_directory_symlink_as_the_last_component(tree: Path, use_openat2: bool, position: int) -> None:
    plant(tree, position, "outside")
    path = "/".join(COMPONENTS[: position + 1])
    with FileStore(str(tree / "root"), None, use_openat2=use_openat2) as store:
        # listed as the link it is, never entered
        listed = store.walk(path, recursive=True, with_hash=True)
        assert [(e.path, e.type) for e in listed] == [(path, "link")]
        assert outcome(lambda: store.mkdir(path, parents=True)) == "path-outside-root"
        store.delete(path, recursive=True)  # removes the link only
        assert not os.path.lexists(tree.joinpath("root", *COMPONENTS[: position + 1]))
    assert (tree / "out" / "a" / "b" / "c" / "f").read_bytes() == b"OUTSIDE"


def test_rm_r_and_listings_do_not_enter_symlinks_inside_the_tree(tree: Path, use_openat2: bool) -> None:
    root = tree / "root"
    (root / "a" / "b" / "to-out").symlink_to(tree / "out" / "a")
    (root / "a" / "b" / "c" / "to-mirror").symlink_to(root / "mirror")
    outside = snapshot(tree / "out")
    mirror = snapshot(root / "mirror")
    with FileStore(str(root), None, use_openat2=use_openat2) as store:
        listed = {e.path: e.type for e in store.walk("a", recursive=True, with_hash=True)}
        assert listed == {
            "a/b": "dir",
            "a/b/to-out": "link",
            "a/b/c": "dir",
            "a/b/c/d": "dir",
            "a/b/c/d/g": "file",
            "a/b/c/f": "file",
            "a/b/c/to-mirror": "link",
        }
        store.delete("a", recursive=True)
        assert not (root / "a").exists()
    assert snapshot(tree / "out") == outside
    assert snapshot(root / "mirror") == mirror


def test_dot_dot_is_applied_before_the_kernel_sees_the_path(tree: Path, use_openat2: bool) -> None:
    plant(tree, 1, "outside")  # a/b is a symlink; a/b/.. must not mean out/a
    with FileStore(str(tree / "root"), None, use_openat2=use_openat2) as store:
        listed = store.walk("a/b/../", recursive=False, with_hash=False)
        assert {e.path for e in listed} == {"a/b", "a/b-moved"}
        assert outcome(lambda: store.stat("a/../../out", with_hash=False)) == "path-outside-root"


def test_an_upload_whose_directory_is_swapped_meanwhile_lands_nowhere_outside(
    tree: Path, use_openat2: bool
) -> None:
    data = b"uploaded"
    before = snapshot(tree / "out")
    with FileStore(str(tree / "root"), None, use_openat2=use_openat2) as store:
        upload = store.begin_put("a/b/c/new", len(data), sha(data), force=False, resume=False)
        try:
            upload.write(data)
            plant(tree, 1, "outside")  # a/b is now a symlink to out/a/b
            assert outcome(upload.finish) == "path-outside-root"
        finally:
            upload.close()
        # The partial stayed where it was written (the renamed directory, in the root).
        assert (tree / "root" / "a" / "b-moved" / "c" / ".new.part").read_bytes() == data
    assert snapshot(tree / "out") == before


def test_an_upload_whose_partial_is_replaced_meanwhile_is_not_moved_in(tree: Path, use_openat2: bool) -> None:
    data = b"uploaded"
    directory = tree / "root" / "a" / "b" / "c"
    with FileStore(str(tree / "root"), None, use_openat2=use_openat2) as store:
        upload = store.begin_put("a/b/c/new", len(data), sha(data), force=False, resume=False)
        try:
            upload.write(data)
            (directory / ".new.part").unlink()
            (directory / ".new.part").write_bytes(data)  # same bytes, another file
            assert outcome(upload.finish) == "conflict"
        finally:
            upload.close()
    assert not (directory / "new").exists()
