"""Partial files (``.NAME.part``) are invisible to clients: never listed, never addressable
by any operation, as a file or as a directory on the way; only ``--resume`` of an upload
to NAME reaches one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from socketkit.errors import ServiceError
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.quota import BLOCK
from socketkit.services.filexfer.store import FileStore
from tests.services.filexfer.helpers import client_run, serving, sha

RESERVED = [
    ".big.bin.part",
    "sub/.x.part",
    ".dir.part",
    ".dir.part/inner",
    "sub/.x.part/../y",
    "sub/../.big.bin.part",
    ".part",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "root"
    (served / "sub").mkdir(parents=True)
    (served / ".big.bin.part").write_bytes(os.urandom(3 << 20))  # an interrupted upload
    (served / "sub" / ".x.part").write_bytes(b"partial")
    (served / ".dir.part").mkdir()  # made on the machine: hidden as well
    (served / ".dir.part" / "inner").write_bytes(b"inner")
    (served / "sub" / "visible").write_bytes(b"visible")
    return served


@pytest.mark.parametrize("path", RESERVED)
def test_no_operation_reaches_a_partial(root: Path, tmp_path: Path, path: str) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "data").write_bytes(b"data")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    async def body(client: FileClient) -> None:
        attempts: list[Any] = [
            client.get_file(path, str(local / "got")),
            client.put_file(str(local / "data"), path),
            client.put_file(str(local / "data"), path, force=True),
            client.put_file(str(local / "data"), path, resume=True),
            client.stat(path),
            client.list(path),
            client.list(path, recursive=True),
            client.delete(path),
            client.delete(path, recursive=True),
            client.mkdir(path),
            client.mkdir(f"{path}/below"),
        ]
        for attempt in attempts:
            with pytest.raises(ServiceError) as info:
                await attempt
            assert info.value.code == "bad-path", info.value

    with serving(root) as (address, _):
        client_run(address, body)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert not (local / "got").exists()


def test_listings_never_show_partials_and_resume_still_finds_its_own(root: Path, tmp_path: Path) -> None:
    data = (root / ".big.bin.part").read_bytes() + os.urandom(1 << 20)
    (tmp_path / "big.bin").write_bytes(data)

    async def body(client: FileClient) -> Any:
        for recursive in (False, True):
            for with_hash in (False, True):
                listed = [e.path for e in await client.list("", recursive=recursive, with_hash=with_hash)]
                assert listed == (["sub", "sub/visible"] if recursive else ["sub"])
        assert [e.path for e in await client.list("sub")] == ["sub/visible"]
        return await client.put_file(str(tmp_path / "big.bin"), "big.bin", resume=True)

    with serving(root) as (address, _):
        result = client_run(address, body)
    assert result.transferred == 1 << 20  # continued from its partial
    assert (root / "big.bin").read_bytes() == data
    assert not (root / ".big.bin.part").exists()


def test_rm_of_a_directory_with_partials(tmp_path: Path) -> None:
    """A directory holding only abandoned partials looks empty to clients, so rm removes
    it; one with an upload running into it is refused, even with -r, and the upload is
    left whole."""
    root = tmp_path / "root"
    (root / "old").mkdir(parents=True)
    (root / "old" / ".abandoned.part").write_bytes(b"x" * 1000)
    (root / "busy").mkdir()
    with FileStore(str(root), None) as store:
        assert store.usage.total == 3 * BLOCK  # two directories and the partial, a block each
        store.delete("old", recursive=False)
        assert not (root / "old").exists()
        assert store.usage.total == BLOCK  # "busy"
        assert store.usage.entries == 1
        upload = store.begin_put("busy/f", 4, sha(b"data"), force=False, resume=False)
        try:
            for recursive in (False, True):
                with pytest.raises(ServiceError) as info:
                    store.delete("busy", recursive=recursive)
                assert info.value.code == "upload-in-progress"
            upload.write(b"data")
            upload.finish()
        finally:
            upload.close()
        assert (root / "busy" / "f").read_bytes() == b"data"
