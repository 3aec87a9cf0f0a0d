"""An upload leaves a hidden partial only when the partial holds bytes worth resuming,
and then it holds every byte the server received: a refused upload creates nothing, one
that ends before its body (a protocol error, a client that leaves) leaves nothing, and
one cut mid-body is resumed from the last byte that arrived."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.codec.wire import encode_body_header, encode_control, encode_data
from socketkit.errors import ResourceError, ServiceError
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.protocol import PutRequest
from socketkit.services.filexfer.quota import BLOCK
from socketkit.services.filexfer.store import FileStore, StoreLimits
from tests.helpers import TIMEOUT
from tests.services.filexfer.helpers import client_run, raw_session, request_put, send_body, serving, sha

KIB = 1024


def hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*"))


def test_a_refused_upload_creates_no_partial(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "taken").write_bytes(b"t")
    fill = b"f" * (1000 * KIB)

    async def body(client: FileClient) -> None:
        await request_put(client, "fill", fill)
        await send_body(client, fill)
        refusals = {
            **{f"over{i}": (600 * KIB, "quota-exceeded") for i in range(50)},
            "taken": (1, "exists"),
            "dir": (1, "is-a-directory"),
            "missing/f": (1, "not-found"),
            "huge": (1 << 30, "too-large"),
        }
        for name, (size, code) in refusals.items():
            client.conn.send(encode_control(PutRequest(name, size, None).to_header()))
            with pytest.raises(ServiceError) as info:
                await client._reply()
            assert info.value.code == code, name

    with serving(root, quota=1024 * KIB, max_file_size=1000 * KIB) as (address, store):
        client_run(address, body)
        assert hidden(root) == []
        assert sorted(p.name for p in root.iterdir()) == ["dir", "fill", "taken"]
        usage = store.usage.total, store.usage.entries
        store.reconcile()
        assert (store.usage.total, store.usage.entries) == usage  # the refusals left no trace


@pytest.mark.parametrize("how", ["protocol error", "wrong body size", "client leaves"])
def test_an_upload_that_ends_before_its_body_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()

    async def session(address: Address) -> None:
        conn = await raw_session(address, login=True)
        conn.send(encode_control(PutRequest("f", 1000, None).to_header()))
        assert (await conn.receive()).header["event"] == "ready"  # type: ignore[union-attr]
        if how == "client leaves":
            await conn.aclose()
            return
        conn.send(encode_data(b"not a body") if how == "protocol error" else encode_body_header(999))
        try:  # the server's error frame, then it closes
            while True:
                await asyncio.wait_for(conn.receive(), TIMEOUT)
        except (EOFError, ResourceError):
            pass
        finally:
            conn.abort()

    with serving(root) as (address, store):
        ended = threading.Event()  # the upload's end, as the server settles it
        release = store.usage.release
        monkeypatch.setattr(store.usage, "release", lambda *a, **k: (release(*a, **k), ended.set()))
        asyncio.run(session(address))
        assert ended.wait(TIMEOUT)
        assert hidden(root) == []
        assert store.usage.entries == 0


def test_a_client_that_closes_mid_body_keeps_every_byte_it_sent(tmp_path: Path) -> None:
    """300 KB of a 500 KB body, then the client closes: the partial holds the 300 KB
    (they were waiting for the writer thread, not yet on disk), and --resume sends only
    the rest."""
    data = os.urandom(500_000)
    (tmp_path / "local").write_bytes(data)
    root = tmp_path / "root"
    root.mkdir()

    async def cut(address: Address) -> None:
        conn = await raw_session(address, login=True)
        conn.send(encode_control(PutRequest("half", len(data), sha(data)).to_header()))
        assert (await conn.receive()).header["event"] == "ready"  # type: ignore[union-attr]
        await conn.send_all(encode_body_header(len(data)) + data[:300_000])
        await conn.aclose()

    async def resume(client: FileClient) -> Any:
        return await client.put_file(str(tmp_path / "local"), "half", resume=True)

    with serving(root) as (address, store):
        asyncio.run(cut(address))
        result = client_run(address, resume)  # retried while the server ends the first
        assert result.transferred == 200_000
        assert (root / "half").read_bytes() == data
        assert hidden(root) == []
        assert store.usage.total == -(-len(data) // BLOCK) * BLOCK


class _Wait(logging.Handler):
    """Collects the file server's log lines; ``seen`` is set by the first that holds ``needle``."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.lines: list[str] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if self.needle in self.lines[-1]:
            self.seen.set()


def test_the_log_says_how_many_bytes_a_cut_upload_kept(tmp_path: Path) -> None:
    """100,000 bytes of a 200,000-byte body, then the client closes: the one log line
    says the partial keeps 100,000 of 200,000 bytes (it said "after 0 bytes": the count
    of an unfinished frame, which a body never has)."""
    data = os.urandom(200_000)
    root = tmp_path / "root"
    root.mkdir()

    async def cut(address: Address) -> None:
        conn = await raw_session(address, login=True)
        conn.send(encode_control(PutRequest("dual.bin", len(data), sha(data)).to_header()))
        assert (await conn.receive()).header["event"] == "ready"  # type: ignore[union-attr]
        await conn.send_all(encode_body_header(len(data)) + data[:100_000])
        await conn.aclose()

    wait = _Wait("protocol error from")
    server_log = logging.getLogger("socketkit.services.filexfer.server")
    server_log.addHandler(wait)
    try:
        with serving(root) as (address, _):
            asyncio.run(cut(address))
            assert wait.seen.wait(TIMEOUT)
    finally:
        server_log.removeHandler(wait)
    (line,) = [line for line in wait.lines if "dual.bin" in line]
    assert "stream ended inside a body 100000 bytes before its end" in line
    assert "the partial keeps 100000 of 200000 bytes" in line
    assert "after 0 bytes" not in line
    assert (root / ".dual.bin.part").stat().st_size == 100_000


def test_an_upload_closed_empty_deletes_its_partial_and_its_entry(tmp_path: Path) -> None:
    with FileStore(str(tmp_path), None, StoreLimits(quota=1 << 20)) as store:
        upload = store.begin_put("a", 100 * KIB, None, force=False, resume=False)
        try:
            assert (tmp_path / ".a.part").exists()
        finally:
            upload.close()
        assert not (tmp_path / ".a.part").exists()
        assert (store.usage.total, store.usage.entries) == (0, 0)
        upload = store.begin_put("b", 100 * KIB, None, force=False, resume=False)
        upload.write(b"b" * 5000)
        upload.close()
        assert (tmp_path / ".b.part").stat().st_size == 5000
        assert (store.usage.total, store.usage.entries) == (2 * BLOCK, 1)  # kept, counted


def test_an_empty_partial_left_by_a_crash_is_removed_by_the_next_scan(tmp_path: Path) -> None:
    (tmp_path / ".crashed.part").write_bytes(b"")  # the server died before writing to it
    (tmp_path / ".started.part").write_bytes(b"s")
    with FileStore(str(tmp_path), None) as store:  # a scan when the store opens
        assert hidden(tmp_path) == [".started.part"]
        assert (store.usage.total, store.usage.entries) == (BLOCK, 1)
        upload = store.begin_put("running", 10, None, force=False, resume=False)
        try:
            store.reconcile()  # an upload in progress keeps its (still empty) partial
            assert hidden(tmp_path) == [".running.part", ".started.part"]
        finally:
            upload.close()
    assert hidden(tmp_path) == [".started.part"]
