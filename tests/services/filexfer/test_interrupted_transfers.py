"""Interrupted transfers are kept, as ``rsync --partial`` keeps them, and a plain retry
says how to go on; a resume sends only the rest. The real ``socketkit get`` and ``put``
run as child processes (on a pseudo-terminal where the test needs the progress bar)
against a file server in this process, whose transfers a hook holds mid-way: the test
waits for that, or for the bytes the client's progress bar shows, never for a time."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import socketkit.services.filexfer.server as file_server
from socketkit.aio.connection import Connection
from socketkit.aio.sendfile import send_file_range
from socketkit.cli._files_report import format_size
from socketkit.errors import BrokenResourceError, ProtocolError, ResourceError, ServiceError
from socketkit.services.filexfer.upload import Upload
from socketkit.state import StateDB
from tests.cli.procs import Proc
from tests.helpers import TIMEOUT
from tests.services.filexfer.helpers import TOKEN, client_run, serving
from tests.services.filexfer.ptyproc import PtyProc

MIB = 1 << 20
GONE = (ResourceError, ProtocolError, EOFError, OSError)  # how a cut download surfaces
RESUME_HINT = "`--resume` continues it, `--force` starts over"


def final_line(name: str, size: str) -> str:
    """The pattern of a finished file's line."""
    return rf"{re.escape(name)} {re.escape(size)} in [\d.]+ s \([\d.]+ (?:B|KiB|MiB|GiB)/s\), verified sha256"


def socketkit(*args: str, cwd: Path, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, off a terminal (pipes), with the server's token."""
    return subprocess.run(
        [sys.executable, "-m", "socketkit", *args],
        cwd=cwd,
        env={**os.environ, "SOCKETKIT_TOKEN": TOKEN},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
        umask=umask,
        check=False,
    )


def shown_mib(text: str) -> float:
    """How much the last drawn progress bar says has arrived (``12.3/32.0 MiB``; an
    older bar counted in MB)."""
    found = re.findall(r"([\d.]+)/[\d.]+ Mi?B", text)
    return float(found[-1]) if found else 0.0


class HeldDownload:
    """The server's first download sends ``at`` bytes, then waits for ``release``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
        self.at = at
        self.reached = threading.Event()
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        monkeypatch.setattr(file_server, "send_file_range", self._send)

    async def _send(self, conn: Connection[Any], fd: int, offset: int, count: int, **kw: Any) -> None:
        if self.reached.is_set():
            return await send_file_range(conn, fd, offset, count, **kw)
        gate = asyncio.Event()
        self._gate = (asyncio.get_running_loop(), gate)
        await send_file_range(conn, fd, offset, self.at)
        self.reached.set()
        await gate.wait()
        await send_file_range(conn, fd, offset + self.at, count - self.at)
        return None

    def release(self) -> None:
        if self._gate is not None:
            loop, gate = self._gate
            loop.call_soon_threadsafe(gate.set)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_get_cut_by_a_signal_keeps_its_partial_and_resume_sends_only_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    root, here = tmp_path / "root", tmp_path / "here"
    root.mkdir()
    here.mkdir()
    data = os.urandom(32 * MIB)
    (root / "big.bin").write_bytes(data)
    held = HeldDownload(monkeypatch, at=8 * MIB)
    partial = here / ".big.bin.part"
    with StateDB(tmp_path / "state") as db:
        with serving(root, db) as (address, _):
            proc = PtyProc("get", str(address), "big.bin", cwd=here, env={"SOCKETKIT_TOKEN": TOKEN})
            try:
                assert held.reached.wait(TIMEOUT)
                # Bytes the bar counts were handed to the writer: the partial gets them.
                proc.until(lambda text: shown_mib(text) > 0)
                proc.popen.send_signal(signum)
                assert proc.finish() == 128 + signum
            finally:
                proc.close()
                held.release()
            assert "big.bin: interrupted; the partial file is kept: `--resume` continues it" in proc.text
            kept = partial.read_bytes()
            assert 0 < len(kept) <= 8 * MIB
            assert data.startswith(kept)
            assert stat.S_IMODE(partial.stat().st_mode) == 0o600  # private until complete
            assert not (here / "big.bin").exists()

            plain = socketkit("get", str(address), "big.bin", cwd=here)
            assert plain.returncode == 1
            [line] = plain.stderr.splitlines()
            assert f"interrupted transfer ({len(kept)} bytes kept in " in line
            assert line.endswith(RESUME_HINT)
            assert partial.read_bytes() == kept  # refused, and left as it was

            resumed = socketkit("get", "--resume", str(address), "big.bin", cwd=here)
            assert resumed.returncode == 0, resumed.stderr
            resumed_at = f", resumed at {re.escape(format_size(len(kept)))}"
            assert re.fullmatch(final_line("big.bin", "32.0 MiB") + resumed_at, resumed.stderr.strip())
            assert (here / "big.bin").read_bytes() == data
            assert not partial.exists()
        rows = db.query("SELECT bytes FROM file_audit WHERE op = 'get' AND outcome = 'ok'")
    assert [row["bytes"] for row in rows] == [len(data) - len(kept)]


def test_a_put_cut_by_sigint_keeps_the_servers_partial_and_resume_sends_only_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(24 * MIB)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    at = 4 * MIB
    reached, release = threading.Event(), threading.Event()
    write_raw = Upload.write_raw

    def held_write(self: Upload, chunks: list[bytes]) -> None:
        write_raw(self, chunks)
        if self.written >= at and not reached.is_set():  # the server's writer stops here
            reached.set()
            release.wait(TIMEOUT)

    monkeypatch.setattr(Upload, "write_raw", held_write)
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    partial = root / ".big.bin.part"
    with StateDB(tmp_path / "state") as db:
        with serving(root, db) as (address, store):
            ended = threading.Event()  # the server has settled the cut upload
            settle = store.usage.release
            monkeypatch.setattr(store.usage, "release", lambda *a, **k: (settle(*a, **k), ended.set()))
            with Proc("put", "--no-progress", str(address), str(source), stdin=False) as proc:
                try:
                    assert reached.wait(TIMEOUT)
                    proc.signal(signal.SIGINT)
                    assert proc.wait() == 130
                finally:
                    release.set()
                proc.expect(
                    r"big\.bin: interrupted; the server keeps what it received: `--resume` continues", "err"
                )
            assert ended.wait(TIMEOUT)
            kept = partial.stat().st_size
            assert at <= kept < len(data)  # every byte the server had written, at least
            assert data.startswith(partial.read_bytes())

            plain = socketkit("put", str(address), str(source), cwd=tmp_path)
            assert plain.returncode == 1
            [line] = plain.stderr.splitlines()
            assert f"interrupted transfer ({kept} of {len(data)} bytes kept on the server): " in line
            assert line.endswith(RESUME_HINT)
            assert partial.stat().st_size == kept

            resumed = socketkit("put", "--resume", str(address), str(source), cwd=tmp_path)
            assert resumed.returncode == 0, resumed.stderr
            resumed_at = f", resumed at {re.escape(format_size(kept))}"
            assert re.fullmatch(final_line("big.bin", "24.0 MiB") + resumed_at, resumed.stderr.strip())
            assert (root / "big.bin").read_bytes() == data
            assert not partial.exists()
        rows = db.query("SELECT bytes FROM file_audit WHERE op = 'put' AND outcome = 'ok'")
    assert [row["bytes"] for row in rows] == [len(data) - kept]


def test_a_download_cut_by_the_server_keeps_every_byte_received(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection ends mid-body (the server closes after 3 MiB): the partial holds
    exactly those bytes; a plain get is refused and leaves them; --force starts over,
    --resume sends the rest."""
    root, local = tmp_path / "root", tmp_path / "local"
    root.mkdir()
    local.mkdir()
    data = os.urandom(8 * MIB)
    (root / "f").write_bytes(data)
    at = 3 * MIB

    async def cut(conn: Connection[Any], fd: int, offset: int, count: int, **kw: Any) -> None:
        await send_file_range(conn, fd, offset, at)
        await conn.aclose()  # what was sent arrives, then the end of the stream
        raise BrokenResourceError("cut by the test")

    partial = local / ".f.part"
    with serving(root) as (address, _):
        monkeypatch.setattr(file_server, "send_file_range", cut)
        with pytest.raises(GONE):
            client_run(address, lambda c: c.get_file("f", str(local / "f")))
        assert partial.read_bytes() == data[:at]
        with pytest.raises(ServiceError) as info:
            client_run(address, lambda c: c.get_file("f", str(local / "f")))
        assert info.value.code == "resumable"
        assert partial.read_bytes() == data[:at]
        monkeypatch.setattr(file_server, "send_file_range", send_file_range)
        result = client_run(address, lambda c: c.get_file("f", str(local / "f"), resume=True))
        assert (result.transferred, result.resumed_at) == (len(data) - at, at)
        assert (local / "f").read_bytes() == data
        partial.write_bytes(b"stale")
        result = client_run(address, lambda c: c.get_file("f", str(local / "f"), force=True))
        assert result.transferred == len(data)  # --force: started over
        assert not partial.exists()


def test_a_refused_get_leaves_no_empty_partial(tmp_path: Path) -> None:
    root, local = tmp_path / "root", tmp_path / "local"
    root.mkdir()
    local.mkdir()
    with serving(root) as (address, _), pytest.raises(ServiceError) as info:
        client_run(address, lambda c: c.get_file("missing", str(local / "missing")))
    assert info.value.code == "not-found"
    assert list(local.iterdir()) == []
