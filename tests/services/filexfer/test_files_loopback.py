"""Files on loopback: round trips, trees, jail, overwrite, resume, crashes, limits, auth."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.auth.connect import ServiceTarget
from socketkit.auth.session import authenticate_client
from socketkit.cli.main import main
from socketkit.codec.wire import Control, ErrorFrame, WireDecoder, WireEvent, encode_control, encode_hello
from socketkit.errors import ResourceError, ServiceError
from socketkit.services.filexfer.client import FileClient, file_sha256
from socketkit.services.filexfer.server import FileServer, FileSettings
from socketkit.services.filexfer.store import FileStore, StoreLimits
from socketkit.state import StateDB
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT, connect, recv_until_closed

TOKEN = "f00d" * 16
GONE = (ResourceError, OSError, EOFError, ServiceError)  # how a cut connection surfaces


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def local(tmp_path: Path) -> Path:
    (tmp_path / "local").mkdir()
    return tmp_path / "local"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB(tmp_path / "state") as database:
        yield database


@contextmanager
def start(root: Path, db: StateDB | None = None, **limits: Any) -> Iterator[list[Address]]:
    with FileStore(str(root), db, StoreLimits(**limits)) as store:
        service = FileServer(FileSettings(store=store, token=TOKEN))
        with server_thread(service.make_server, on_started=service.on_started) as addresses:
            yield addresses


@pytest.fixture
def server(root: Path, db: StateDB) -> Iterator[Address]:
    with start(root, db) as (address,):
        yield address


def client_run(address: Address, body: Any, token: str = TOKEN) -> Any:
    async def go() -> Any:
        client = await FileClient.connect(ServiceTarget(address, token))
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("size", [0, 1, 100_000])
def test_round_trip_small_and_empty(server: Address, root: Path, local: Path, size: int) -> None:
    source = local / "src.bin"
    source.write_bytes(os.urandom(size))

    async def body(client: FileClient) -> None:
        put = await client.put_file(str(source), "copy.bin")
        assert (put.size, put.sha256) == (size, sha(source))
        got = await client.get_file("copy.bin", str(local / "back.bin"))
        assert got.sha256 == put.sha256

    client_run(server, body)
    assert (root / "copy.bin").read_bytes() == source.read_bytes() == (local / "back.bin").read_bytes()


def test_one_gib_sparse_file_round_trip(server: Address, root: Path, local: Path) -> None:
    source = local / "sparse.bin"
    with open(source, "wb") as f:  # 1 GiB, mostly holes, some data at both ends
        f.write(b"head" * 1000)
        f.seek((1 << 30) - 4000)
        f.write(b"tail" * 1000)

    async def body(client: FileClient) -> None:
        await client.put_file(str(source), "sparse.bin")
        await client.get_file("sparse.bin", str(local / "back.bin"))

    client_run(server, body)
    assert sha(root / "sparse.bin") == sha(source) == sha(local / "back.bin")
    (root / "sparse.bin").unlink()
    (local / "back.bin").unlink()


def test_directory_trees_with_the_cli(
    server: Address,
    root: Path,
    local: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    tree = local / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "a" / "mid.txt").write_text("mid")
    (tree / "a" / "b" / "deep.txt").write_text("deep 深")
    addr = str(server)
    assert main(["put", "-r", addr, str(tree)]) == 0
    assert (root / "tree" / "a" / "b" / "deep.txt").read_text() == "deep 深"
    assert main(["ls", "-r", addr, "tree"]) == 0
    listing = capsys.readouterr().out
    assert "tree/a/b/deep.txt" in listing
    out = local / "out"
    out.mkdir()
    assert main(["get", "-r", addr, "tree", str(out)]) == 0
    for rel in ("top.txt", "a/mid.txt", "a/b/deep.txt"):
        assert (out / "tree" / rel).read_bytes() == (tree / rel).read_bytes()
    assert main(["rm", addr, "tree"]) == 1  # not empty
    assert "not empty" in capsys.readouterr().err
    assert main(["rm", "-r", addr, "tree"]) == 0
    assert not (root / "tree").exists()


@pytest.mark.parametrize(
    "name", ["../escape", "/etc/passwd", "a/../../x", "C:\\x", "bad\x1bname", "CON", "a\x00b"]
)
def test_every_escape_is_refused(server: Address, root: Path, local: Path, name: str) -> None:
    source = local / "s"
    source.write_text("x")

    async def body(client: FileClient) -> None:
        with pytest.raises(ServiceError) as info:
            await client.put_file(str(source), name)
        assert info.value.code in ("path-outside-root", "bad-path")
        with pytest.raises(ServiceError):
            await client.get_file(name, str(local / "d"))

    client_run(server, body)
    assert not (root.parent / "escape").exists()


def test_symlinks_out_of_the_root_are_refused(
    server: Address, root: Path, tmp_path: Path, local: Path
) -> None:
    (tmp_path / "secret").write_text("outside")
    os.symlink(tmp_path / "secret", root / "link-out")
    os.symlink(tmp_path, root / "dir-out")

    async def body(client: FileClient) -> None:
        for path in ("link-out", "dir-out/secret"):
            with pytest.raises(ServiceError) as info:
                await client.get_file(path, str(local / "x"))
            assert info.value.code == "path-outside-root"
        entries = await client.list("")
        assert {e.path: e.type for e in entries} == {"dir-out": "link", "link-out": "link"}

    client_run(server, body)


def test_overwrite_needs_force(server: Address, root: Path, local: Path) -> None:
    (local / "v1").write_text("one")
    (local / "v2").write_text("two")

    async def body(client: FileClient) -> None:
        await client.put_file(str(local / "v1"), "f")
        with pytest.raises(ServiceError) as info:
            await client.put_file(str(local / "v2"), "f")
        assert info.value.code == "exists"
        assert (root / "f").read_text() == "one"
        await client.put_file(str(local / "v2"), "f", force=True)
        with pytest.raises(FileExistsError):
            await client.get_file("f", str(local / "v1"))

    client_run(server, body)
    assert (root / "f").read_text() == "two"


def test_resume_an_upload_after_the_client_dies(server: Address, root: Path, local: Path) -> None:
    source = local / "big.bin"
    source.write_bytes(os.urandom(20 << 20))

    async def interrupted(client: FileClient) -> None:
        sent = 0

        def progress(n: int) -> None:
            nonlocal sent
            sent += n
            if sent > 8 << 20:
                client.conn.abort()  # the client dies mid-upload

        with pytest.raises(GONE):  # the connection was cut
            await client.put_file(str(source), "big.bin", progress=progress)

    client_run(server, interrupted)
    partials = [p for p in root.iterdir() if p.name.endswith(".part")]
    assert len(partials) == 1
    assert partials[0].name.startswith(".")  # hidden, and not listed

    async def resumed(client: FileClient) -> Any:
        assert await client.list("") == []
        return await client.put_file(str(source), "big.bin", resume=True)

    result = client_run(server, resumed)
    assert result.transferred < result.size  # it continued, it did not start over
    assert sha(root / "big.bin") == sha(source)
    assert not [p for p in root.iterdir() if p.name.endswith(".part")]


def test_a_corrupted_resume_prefix_is_detected(server: Address, root: Path, local: Path) -> None:
    source = local / "data.bin"
    source.write_bytes(os.urandom(4 << 20))
    digest = sha(source)
    partial = root / ".data.bin.part"
    partial.write_bytes(b"\0" * (1 << 20))  # a "previous attempt" whose bytes differ

    async def body(client: FileClient) -> Any:
        return await client.put_file(str(source), "data.bin", resume=True)

    result = client_run(server, body)
    assert result.transferred == result.size  # the prefix did not match: sent in full
    assert sha(root / "data.bin") == digest


def test_resume_a_download(server: Address, root: Path, local: Path) -> None:
    data = os.urandom(6 << 20)
    (root / "d.bin").write_bytes(data)
    (local / ".d.bin.part").write_bytes(data[: 2 << 20])

    async def body(client: FileClient) -> Any:
        return await client.get_file("d.bin", str(local / "d.bin"), resume=True)

    result = client_run(server, body)
    assert result.transferred == len(data) - (2 << 20)
    assert (local / "d.bin").read_bytes() == data

    # A partial that does not match the server's file: detected, downloaded again whole.
    (local / ".e.bin.part").write_bytes(b"x" * 1000)
    (root / "e.bin").write_bytes(data)
    result = client_run(server, lambda c: c.get_file("e.bin", str(local / "e.bin"), resume=True))
    assert result.transferred == len(data)
    assert (local / "e.bin").read_bytes() == data


def test_quota_max_size_read_only_and_disk_full(root: Path, local: Path) -> None:
    (local / "mb").write_bytes(b"x" * (1 << 20))
    with start(root, quota=int(1.5 * (1 << 20)), max_file_size=1 << 20) as (address,):

        async def body(client: FileClient) -> None:
            await client.put_file(str(local / "mb"), "one")
            with pytest.raises(ServiceError) as info:
                await client.put_file(str(local / "mb"), "two")
            assert info.value.code == "quota-exceeded"
            await client.delete("one")
            await client.put_file(str(local / "mb"), "two")  # the quota freed up

        client_run(address, body)
    with start(root, min_free=1 << 62) as (address,):

        async def full(client: FileClient) -> None:
            with pytest.raises(ServiceError) as info:
                await client.put_file(str(local / "mb"), "three")
            assert info.value.code == "disk-full"

        client_run(address, full)
    with start(root, read_only=True) as (address,):

        async def read_only(client: FileClient) -> None:
            for attempt in (
                client.put_file(str(local / "mb"), "four"),
                client.delete("two"),
                client.mkdir("d"),
            ):
                with pytest.raises(ServiceError) as info:
                    await attempt
                assert info.value.code == "permission-denied"
            await client.get_file("two", str(local / "two"))  # reading still works

        client_run(address, read_only)


def test_concurrent_uploads_to_one_name_never_mix(server: Address, root: Path, local: Path) -> None:
    contents = [bytes([i]) * (8 << 20) for i in range(1, 4)]
    for i, data in enumerate(contents):
        (local / f"v{i}").write_bytes(data)

    async def go() -> list[Any]:
        clients = [await FileClient.connect(ServiceTarget(server, TOKEN)) for _ in contents]
        try:
            return await asyncio.gather(
                *(c.put_file(str(local / f"v{i}"), "shared", force=True) for i, c in enumerate(clients)),
                return_exceptions=True,
            )
        finally:
            for c in clients:
                await c.aclose()

    results = asyncio.run(go())
    assert any(not isinstance(r, BaseException) for r in results)
    for r in results:  # the others were told an upload to that name is running
        assert not isinstance(r, BaseException) or (
            isinstance(r, ServiceError) and r.code == "upload-in-progress"
        )
    assert (root / "shared").read_bytes() in contents


def test_wrong_token_stalled_client_and_garbage(
    server: Address, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOCKETKIT_TOKEN", "0" * 64)
    assert main(["ls", str(server)]) == 255
    assert "wrong token" in capsys.readouterr().err
    sock = connect((server.host, server.port))
    with sock:
        sock.sendall(encode_hello() + bytes.fromhex("00000003 09 00") + b"xyz")
        decoder = WireDecoder()
        decoder.feed(recv_until_closed(sock))
        decoder.feed(b"")
        assert any(isinstance(e, ErrorFrame) for e in decoder)


def test_a_stalled_upload_times_out(root: Path, local: Path, request: pytest.FixtureRequest) -> None:
    store = FileStore(str(root), None)
    request.addfinalizer(store.close)
    service = FileServer(FileSettings(store=store, token=TOKEN))
    orig = service.make_server

    def make() -> Any:
        server = orig()
        server.limits = type(server.limits)(
            idle_timeout=0.5, handshake_timeout=5, message_timeout=0.5, max_pending_messages=16
        )
        server._sweep_interval = 0.05
        return server

    (local / "f").write_bytes(os.urandom(1 << 20))
    with server_thread(make) as (address,):

        async def body(client: FileClient) -> None:
            from socketkit.codec.wire import encode_body_header, encode_control
            from socketkit.services.filexfer.protocol import PutRequest

            fd = os.open(local / "f", os.O_RDONLY)
            digest = file_sha256(fd, 1 << 20).hexdigest()
            os.close(fd)
            client.conn.send(encode_control(PutRequest("f", 1 << 20, digest).to_header()))
            await client.conn.receive()  # ready
            client.conn.send(encode_body_header(1 << 20) + b"only a little")
            with pytest.raises(GONE):  # closed by the server's timeout
                await asyncio.wait_for(client.conn.receive(), TIMEOUT)

        client_run(address, body)
    assert not (root / "f").exists()


def test_server_killed_mid_upload_leaves_no_visible_file(tmp_path: Path, root: Path, local: Path) -> None:
    source = local / "big.bin"
    source.write_bytes(os.urandom(64 << 20))
    state = tmp_path / "state"
    argv = [
        sys.executable,
        "-m",
        "socketkit",
        "-q",
        "serve",
        "files",
        "--port",
        "0",
        "--root",
        str(root),
        "--state-dir",
        str(state),
    ]
    env = {**os.environ, "SOCKETKIT_TOKEN": TOKEN}
    (state).mkdir()
    (state / "token").write_text(TOKEN)
    os.chmod(state / "token", 0o600)

    def serve() -> tuple[subprocess.Popen[str], Address]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        host, port = proc.stdout.readline().split()[3].rsplit(":", 1)
        return proc, Address(host, int(port))

    proc, address = serve()
    try:
        killed = threading.Event()

        async def body(client: FileClient) -> None:
            sent = 0

            def progress(n: int) -> None:
                nonlocal sent
                sent += n
                if sent > 16 << 20 and not killed.is_set():
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.set()

            with pytest.raises(GONE):  # the server died
                await client.put_file(str(source), "big.bin", progress=progress)

        client_run(address, body)
        assert killed.is_set()
        proc.wait(TIMEOUT)
        assert not (root / "big.bin").exists()
        assert all(p.name.startswith(".") for p in root.iterdir())  # only the hidden partial
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    proc, address = serve()
    try:
        # The restarted server continues the interrupted upload (how much of it reached
        # the disk before the kill depends on the kernel's buffers; a plain put after an
        # interrupted one is refused: test_interrupted_transfers.py).
        client_run(address, lambda c: c.put_file(str(source), "big.bin", resume=True))
        assert sha(root / "big.bin") == sha(source)
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()


def test_audit_log_and_hash_cache(root: Path, db: StateDB, local: Path) -> None:
    (local / "a").write_text("audited")
    # Audit rows are written after the client has its answer; stopping the server waits.
    with start(root, db) as (server,):
        client_run(server, lambda c: c.put_file(str(local / "a"), "a"))
        client_run(server, lambda c: c.get_file("a", str(local / "b")))
    rows = db.query("SELECT op, path, outcome, size FROM file_audit ORDER BY id")
    assert [(r["op"], r["path"], r["outcome"], r["size"]) for r in rows] == [
        ("put", "a", "ok", 7),
        ("get", "a", "ok", 7),
    ]
    assert db.query("SELECT sha256 FROM file_hashes WHERE path = 'a'")[0]["sha256"] == sha(local / "a")


def test_stored_files_get_their_mode_and_owner(root: Path, local: Path) -> None:
    # The partial is private while it is written; the file in place is 0644 (content,
    # not state), given to the configured owner together with the directories made.
    nobody = pwd.getpwnam("nobody")
    owner = (nobody.pw_uid, nobody.pw_gid)
    (local / "a.txt").write_text("a\n")

    async def body(client: FileClient) -> None:
        await client.mkdir("d/e", parents=True)
        await client.put_file(str(local / "a.txt"), "d/e/a.txt")

    with start(root, owner=owner) as (address,):
        client_run(address, body)
    for path in (root / "d", root / "d" / "e", root / "d" / "e" / "a.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == owner, path
    assert stat.S_IMODE((root / "d" / "e" / "a.txt").stat().st_mode) == 0o644
    with start(root) as (address,):
        client_run(address, lambda client: client.put_file(str(local / "a.txt"), "b.txt"))
    assert (root / "b.txt").stat().st_uid == os.geteuid()


async def small_window_session(address: Address) -> Connection[WireEvent]:
    """An authenticated connection whose receive window is tiny (4 KiB): a client the
    server cannot get far ahead of once it stops reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect((address.host, address.port))
    sock.setblocking(False)
    conn: Connection[WireEvent] = Connection(
        decoder=WireDecoder(), limits=ConnectionLimits(None, None, None, None)
    )
    await asyncio.get_running_loop().create_connection(lambda: conn, sock=sock)
    await authenticate_client(conn, TOKEN, service="files")
    return conn


def test_a_listing_is_streamed_batch_by_batch(root: Path) -> None:
    # 20,000 names; a client with a small receive window reads one frame and stops. The
    # walk is advanced a batch at a time, only as frames leave, so it stops far short
    # of the end (memory: the batches in flight, not the listing).
    total = 20_000
    for i in range(total):
        (root / f"f{i:05}").touch()
    produced: list[int] = []

    class CountingStore(FileStore):
        def walk(self, path: str, *, recursive: bool, with_hash: bool, unlisted: Any = None) -> Any:
            for entry in super().walk(path, recursive=recursive, with_hash=with_hash, unlisted=unlisted):
                produced.append(1)
                yield entry

    async def first_frame_then_stall(address: Address) -> int:
        conn = await small_window_session(address)
        conn.send(encode_control({"op": "list", "path": ""}))
        first = await conn.receive()
        conn.pause_reading()
        stalled = len(produced)
        conn.abort()
        assert isinstance(first, Control)
        assert first.header["more"] is True
        return stalled

    with CountingStore(str(root), None) as store:
        service = FileServer(FileSettings(store=store, token=TOKEN))
        with server_thread(service.make_server) as (address,):
            assert len(client_run(address, lambda client: client.list(""))) == total
            assert len(produced) == total
            produced.clear()
            asyncio.run(first_frame_then_stall(address))
    assert len(produced) < total // 2


def test_shutdown_is_not_held_by_a_download_the_client_stopped_reading(root: Path) -> None:
    # The sendfile thread waits for room in the socket; a client that stops reading
    # used to keep it (and asyncio.run's shutdown) waiting for a minute. Stopping the
    # server now wakes it: the server thread ends at once (server_thread joins it).
    with open(root / "big.bin", "wb") as f:
        f.truncate(1 << 30)  # sparse: nothing is written to disk

    async def start_download(address: Address) -> Connection[WireEvent]:
        conn = await small_window_session(address)
        conn.send(encode_control({"op": "get", "path": "big.bin"}))
        header = await conn.receive()
        assert isinstance(header, Control)
        assert header.header["event"] == "file"
        conn.pause_reading()  # and never read again
        return conn

    loop = asyncio.new_event_loop()
    try:
        with start(root) as (address,):
            conn = loop.run_until_complete(start_download(address))
        # The server stopped while its download thread was stuck on our socket.
        conn.abort()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
