"""The quota counts what is on disk and what running uploads reserved: parallel uploads
cannot pass it together, abandoned partials count until they expire, and the total is
reconciled with the disk (at start and on the server's timer)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from socketkit.auth.connect import ServiceTarget
from socketkit.errors import ServiceError
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.quota import PARTIAL_MAX_AGE_S
from socketkit.services.filexfer.store import FileStore, StoreLimits
from tests.helpers import TIMEOUT
from tests.services.filexfer.helpers import TOKEN, client_run, request_put, send_body, serving, sha

KIB = 1024
QUOTA = 1024 * KIB


def disk_bytes(root: Path) -> int:
    """Every regular file under the root, hidden partials included."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


def test_parallel_uploads_cannot_pass_the_quota_together(root: Path) -> None:
    data = [bytes([i]) * (400 * KIB) for i in range(3)]  # 1,200 KiB asked, 1,024 allowed

    async def go() -> None:
        clients = [await FileClient.connect(ServiceTarget(address, TOKEN)) for _ in data]
        try:
            # All three are started before any body is sent: the first two reserve
            # their room, the third does not fit beside them.
            ready = [await request_put(clients[i], f"f{i}", data[i]) for i in range(2)]
            assert [r["event"] for r in ready] == ["ready", "ready"]
            with pytest.raises(ServiceError) as info:
                await request_put(clients[2], "f2", data[2])
            assert info.value.code == "quota-exceeded"
            done = await asyncio.gather(*(send_body(clients[i], data[i]) for i in range(2)))
            assert [d["event"] for d in done] == ["done", "done"]
            assert disk_bytes(root) <= QUOTA
            await clients[0].delete("f0")  # room again
            await request_put(clients[2], "f2", data[2])
            await send_body(clients[2], data[2])
        finally:
            for client in clients:
                await client.aclose()

    with serving(root, quota=QUOTA) as (address, store):
        asyncio.run(go())
        assert store.usage.total == disk_bytes(root) == 800 * KIB


def test_an_abandoned_partial_counts_until_it_expires(root: Path, tmp_path: Path) -> None:
    partial = root / ".old.bin.part"
    partial.write_bytes(b"p" * (900 * KIB))  # an upload interrupted earlier
    (tmp_path / "new").write_bytes(b"n" * (200 * KIB))
    with serving(root, quota=QUOTA) as (address, store):
        assert store.usage.total == 900 * KIB  # measured at start
        with pytest.raises(ServiceError) as info:
            client_run(address, lambda c: c.put_file(str(tmp_path / "new"), "new"))
        assert info.value.code == "quota-exceeded"
        # Untouched for longer than the partials' lifetime: the next reconcile removes it.
        old = time.time() - PARTIAL_MAX_AGE_S - 60
        os.utime(partial, (old, old))
        store.reconcile()
        assert not partial.exists()
        assert store.usage.total == 0
        client_run(address, lambda c: c.put_file(str(tmp_path / "new"), "new"))
    assert (root / "new").stat().st_size == 200 * KIB


def test_an_interrupted_upload_keeps_what_it_wrote_counted(root: Path) -> None:
    data = os.urandom(800 * KIB)
    with FileStore(str(root), None, StoreLimits(quota=QUOTA)) as store:
        upload = store.begin_put("a", len(data), sha(data), force=False, resume=False)
        assert store.usage.total == 800 * KIB  # reserved at once
        upload.write(data[: 600 * KIB])
        upload.close()  # the client went away: the partial stays, and so do its bytes
        assert store.usage.total == 600 * KIB == disk_bytes(root)
        with pytest.raises(ServiceError) as info:
            store.begin_put("b", 500 * KIB, None, force=False, resume=False)
        assert info.value.code == "quota-exceeded"
        # Its own resume fits: the partial's bytes are not counted twice.
        upload = store.begin_put("a", len(data), sha(data), force=False, resume=True)
        try:
            assert upload.offset == 600 * KIB
            upload.write(data[600 * KIB :])
            upload.finish()
        finally:
            upload.close()
        assert store.usage.total == 800 * KIB == disk_bytes(root)
        assert (root / "a").read_bytes() == data


def test_a_rejected_upload_releases_its_reservation(root: Path) -> None:
    data = b"d" * (500 * KIB)
    with FileStore(str(root), None, StoreLimits(quota=QUOTA)) as store:
        upload = store.begin_put("a", len(data), sha(b"something else"), force=False, resume=False)
        try:
            upload.write(data)
            with pytest.raises(ServiceError) as info:
                upload.finish()
            assert info.value.code == "checksum-mismatch"
        finally:
            upload.close()
        assert store.usage.total == 0 == disk_bytes(root)  # the partial was deleted
        (root / "old").write_bytes(b"o" * (300 * KIB))
        store.reconcile()
        upload = store.begin_put("old", len(data), sha(data), force=True, resume=False)
        try:
            assert store.usage.total == 800 * KIB  # the file it replaces counts until then
            upload.write(data)
            upload.finish()  # replaces 300 KiB with 500
        finally:
            upload.close()
        assert store.usage.total == 500 * KIB == disk_bytes(root)
        store.delete("old", recursive=False)
        assert store.usage.total == 0


def test_the_server_reconciles_changes_made_behind_its_back(root: Path, tmp_path: Path) -> None:
    (tmp_path / "new").write_bytes(b"n" * (200 * KIB))
    with serving(root, quota=QUOTA, settings={"reconcile_interval": 0.05}) as (address, store):
        assert store.usage.total == 0
        (root / "copied-in").write_bytes(b"c" * (900 * KIB))  # not through the service
        for _ in range(3):  # a scan that began before the write may be the next to end
            store.reconciled.clear()
            assert store.reconciled.wait(TIMEOUT)
            if store.usage.total:
                break
        assert store.usage.total == 900 * KIB
        with pytest.raises(ServiceError) as info:
            client_run(address, lambda c: c.put_file(str(tmp_path / "new"), "new"))
        assert info.value.code == "quota-exceeded"
