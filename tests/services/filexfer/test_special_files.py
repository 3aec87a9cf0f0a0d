"""FIFOs, sockets and devices in the served root: listed as "other", refused as
``not-a-file``, and never opened in a way that blocks a thread, another client or the
server's shutdown (a FIFO opened for reading without O_NONBLOCK waits for a writer
forever; with enough of them every worker thread was stuck and SIGTERM hung)."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketkit.auth.connect import ServiceTarget
from socketkit.errors import ServiceError
from socketkit.services.filexfer.client import FileClient
from tests.helpers import TIMEOUT
from tests.services.filexfer.helpers import TOKEN, request_put, serving

BLOCKERS = 12
"""Concurrent downloads of a FIFO: more than the default thread pool's workers
(min(32, CPUs + 4)), so that opens that block would leave no thread for anyone else."""


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    served = tmp_path / "root"
    served.mkdir()
    os.mkfifo(served / "pipe")
    os.mkfifo(served / "pipe2")
    os.mkfifo(served / ".up.bin.part")  # where an upload to up.bin would write
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(served / "sock"))
    (served / "file").write_bytes(b"a regular file")
    try:
        yield served
    finally:
        sock.close()


SPECIAL = ["pipe", "sock"]


def test_fifos_and_sockets_are_refused_and_block_no_one(root: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "data").write_bytes(b"x" * 100_000)

    async def connect() -> FileClient:
        return await FileClient.connect(ServiceTarget(address, TOKEN))

    async def blocker(client: FileClient, i: int) -> str:
        try:
            await client.get_file("pipe", str(local / f"blocked-{i}"))
        except ServiceError as exc:
            return exc.code
        finally:
            await client.aclose()
        return "ok"

    async def go() -> None:
        clients = [await connect() for _ in range(BLOCKERS)]  # one by one: the auth phase is capped
        blockers = [asyncio.ensure_future(blocker(c, i)) for i, c in enumerate(clients)]
        async with await connect() as other:
            # Served while the FIFO downloads are on (they would hold every thread).
            put = other.put_file(str(local / "data"), "uploaded")
            await asyncio.wait_for(put, TIMEOUT)
            await asyncio.wait_for(other.get_file("file", str(local / "file")), TIMEOUT)
        assert await asyncio.gather(*blockers) == ["not-a-file"] * BLOCKERS

        (local / ".resumed.part").write_bytes(b"x")  # a resumed download asks from offset 1
        async with await connect() as client:
            for name in SPECIAL:
                for resume in (False, True):  # --force: start over; the partial stays as it was
                    with pytest.raises(ServiceError) as info:
                        await client.get_file(name, str(local / "resumed"), resume=resume, force=not resume)
                    assert info.value.code == "not-a-file"
                for with_hash in (False, True):
                    entry = await client.stat(name, with_hash=with_hash)
                    assert (entry.type, entry.size, entry.sha256) == ("other", 0, None)
            for with_hash in (False, True):
                listed = {e.path: (e.type, e.sha256) for e in await client.list("", with_hash=with_hash)}
                assert listed["pipe"] == listed["pipe2"] == listed["sock"] == ("other", None)
                assert listed["file"][0] == "file"
            listed_r = {e.path: e.type for e in await client.list("", recursive=True, with_hash=True)}
            assert listed_r["pipe"] == "other"
            # An upload whose partial name is taken by a FIFO: refused, not read or written.
            for resume in (False, True):
                with pytest.raises(ServiceError) as info:
                    await request_put(client, "up.bin", b"data", resume=resume)
                assert info.value.code == "not-a-file"
            with pytest.raises(ServiceError) as info:
                await client.put_file(str(local / "data"), "pipe")
            assert info.value.code == "exists"
            await client.put_file(str(local / "data"), "pipe2", force=True)  # replaces the FIFO
            await client.delete("pipe")
            await client.delete("sock")

    with serving(root) as (address, _):
        asyncio.run(go())
    # Leaving the block stopped the server and joined its thread: nothing was left
    # waiting on a FIFO (the autouse fixture also finds no stray thread).
    assert (root / "pipe2").read_bytes() == (local / "data").read_bytes()
    assert not os.path.lexists(root / "pipe")
    assert not os.path.lexists(root / "sock")
    assert stat.S_ISFIFO(os.lstat(root / ".up.bin.part").st_mode)  # left alone


def test_a_device_is_refused_without_being_read(tmp_path: Path) -> None:
    """A character device (/dev/zero's numbers): reading it would never end."""
    root = tmp_path / "root"
    root.mkdir()
    try:
        os.mknod(root / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    except PermissionError:
        # Without CAP_MKNOD (an unprivileged user, a container): a device cannot be put
        # in the root at all, which is also what this test is about.
        with pytest.raises(PermissionError):
            os.mknod(root / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
        return
    local = tmp_path / "local"
    local.mkdir()

    async def body(client: FileClient) -> None:
        with pytest.raises(ServiceError) as info:
            await client.get_file("zero", str(local / "zero"))
        assert info.value.code == "not-a-file"
        assert (await client.stat("zero", with_hash=True)).type == "other"

    with serving(root) as (address, _):

        async def go() -> None:
            async with await FileClient.connect(ServiceTarget(address, TOKEN)) as client:
                await body(client)

        asyncio.run(go())
