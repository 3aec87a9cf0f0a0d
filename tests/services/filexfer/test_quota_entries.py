"""The quota counts what entries cost on disk, not only file bytes: every file,
directory and link at least one block (``quota.BLOCK``), a directory what it has
allocated; ``max_entries`` bounds the number of entries (inodes) whatever their size,
and a floor of free inodes is kept on the disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from socketkit.errors import ServiceError
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.quota import BLOCK, DEFAULT_MAX_ENTRIES, entry_cost, file_cost
from socketkit.services.filexfer.store import FileStore, StoreLimits
from tests.services.filexfer.helpers import client_run, serving

KIB = 1024
QUOTA = 1024 * KIB


def allocated(root: Path) -> int:
    """What the tree under ``root`` really takes on disk (as ``du`` counts it)."""
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


def test_directories_and_empty_files_cost_what_they_take(root: Path, tmp_path: Path) -> None:
    """2,000 directories with 246-byte names and 2,000 empty files under a 1 MiB quota:
    all were accepted and took 9.4 MB. Each now costs a block: the quota stops them."""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    async def flood(client: FileClient) -> tuple[int, int]:
        made = [0, 0]
        for i in range(2000):
            try:
                await client.mkdir("d%05d" % i + "x" * 240)
                made[0] += 1
            except ServiceError as exc:
                assert exc.code == "quota-exceeded"
            try:
                await client.put_file(str(empty), "z%05d" % i + "y" * 240)
                made[1] += 1
            except ServiceError as exc:
                assert exc.code == "quota-exceeded"
        return made[0], made[1]

    with serving(root, quota=QUOTA) as (address, store):
        dirs, files = client_run(address, flood)
        assert dirs + files == QUOTA // BLOCK
        assert store.usage.total == QUOTA
        assert store.usage.entries == dirs + files
        store.reconcile()
        assert store.usage.entries == dirs + files
    # What the disk spent is the quota, give or take what the root directory's own
    # growth takes (the root is the operator's, not charged).
    assert allocated(root) <= QUOTA
    assert len(list(root.iterdir())) == QUOTA // BLOCK


def test_the_cost_of_each_kind_of_entry(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "small").write_bytes(b"s")
    (root / "empty").write_bytes(b"")
    (root / "big").write_bytes(b"b" * (10 * BLOCK + 1))
    os.symlink("d", root / "link")
    os.mkfifo(root / "fifo")
    (root / ".abandoned.part").write_bytes(b"p" * 100)
    with FileStore(str(root), None) as store:
        # Two directories, "small", "empty", "big", then the link, the FIFO and the partial.
        assert store.usage.total == 2 * BLOCK + BLOCK + BLOCK + 11 * BLOCK + 3 * BLOCK
        assert store.usage.entries == 8
    assert file_cost(0) == file_cost(1) == BLOCK
    assert file_cost(BLOCK + 1) == 2 * BLOCK
    assert entry_cost((root / "d").lstat()) >= BLOCK


def test_uploads_mkdir_and_rm_account_bytes_and_entries(root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"x" * (3 * BLOCK - 10))
    with serving(root, quota=QUOTA) as (address, store):

        async def body(client: FileClient) -> None:
            await client.mkdir("a/b/c", parents=True)
            assert (store.usage.total, store.usage.entries) == (3 * BLOCK, 3)
            await client.put_file(str(data), "a/b/c/f")
            assert (store.usage.total, store.usage.entries) == (6 * BLOCK, 4)
            await client.put_file(str(data), "a/b/c/f", force=True)  # replaced: no new entry
            assert (store.usage.total, store.usage.entries) == (6 * BLOCK, 4)
            await client.delete("a/b", recursive=True)
            assert (store.usage.total, store.usage.entries) == (BLOCK, 1)

        client_run(address, body)
        store.reconcile()
        assert (store.usage.total, store.usage.entries) == (BLOCK, 1)


def test_max_entries_bounds_what_the_root_holds(root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"d")
    (root / "copied-in").write_bytes(b"c")  # counts too

    async def body(client: FileClient) -> None:
        await client.mkdir("a/b", parents=True)
        for name in ("a/1", "a/b/2"):
            await client.put_file(str(data), name)
        for attempt in (client.put_file(str(data), "a/3"), client.mkdir("x"), client.mkdir("a/b/c/d")):
            with pytest.raises(ServiceError) as info:
                await attempt
            assert info.value.code == "quota-exceeded"
            assert "5 files and directories" in info.value.message
        with pytest.raises(ServiceError) as info:  # its partial would be one more, for a while
            await client.put_file(str(data), "a/1", force=True)
        assert info.value.code == "quota-exceeded"
        await client.delete("a/1")
        await client.put_file(str(data), "a/3")  # room again

    with serving(root, max_entries=5) as (address, store):
        client_run(address, body)
        assert store.usage.entries == 5
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "a",
        "a/3",
        "a/b",
        "a/b/2",
        "copied-in",
    ]


def test_a_floor_of_free_inodes_is_kept(root: Path, tmp_path: Path) -> None:
    assert os.statvfs(root).f_files, "this test needs a file system that counts its inodes"
    data = tmp_path / "data"
    data.write_bytes(b"d")

    async def body(client: FileClient) -> None:
        for attempt in (client.put_file(str(data), "f"), client.mkdir("d")):
            with pytest.raises(ServiceError) as info:
                await attempt
            assert info.value.code == "disk-full"
            assert "inodes" in info.value.message

    with serving(root, min_free_inodes=os.statvfs(root).f_files) as (address, store):
        client_run(address, body)
        assert (store.usage.total, store.usage.entries) == (0, 0)
    assert list(root.iterdir()) == []


def test_the_default_entry_limit_is_the_cli_default() -> None:
    from socketkit.cli.main import build_parser
    from socketkit.cli.serve import options_for
    from socketkit.runtime.config import ConfigFile
    from socketkit.runtime.services import SERVICES

    def options(argv: list[str]) -> Any:
        return options_for(SERVICES["files"], build_parser().parse_args(argv), ConfigFile(), {})

    got = options(["serve", "files", "--root", "."])
    assert got.max_entries == DEFAULT_MAX_ENTRIES == StoreLimits().max_entries == 1_000_000  # as documented
    assert StoreLimits().min_free_inodes == 10_000
    assert options(["serve", "files", "--root", ".", "--max-entries", "7"]).max_entries == 7
    for bad in ("0", "-1", "x", "1e3"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "files", "--root", ".", "--max-entries", bad])
