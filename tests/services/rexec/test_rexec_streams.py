"""exec on loopback, the stream edges: "started" before any output, a bounded stdin
buffer for a command that does not read, SIGKILL after an ignored SIGTERM, audit rows
finished however the connection ends, bad timeouts refused while the server goes on.

Raw clients (``open_connection`` + ``authenticate_client``) let a test look at every
frame, or stop reading on purpose.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.aio.connection import Connection
from socketkit.auth.session import authenticate_client
from socketkit.codec.wire import Control, Data, ErrorFrame, FrameType, WireDecoder, WireEvent, encode_data
from socketkit.errors import ResourceError
from socketkit.services.rexec.policy import ExecPolicy
from socketkit.services.rexec.protocol import STDIN, ExecRequest
from socketkit.services.rexec.runner import TERMINATE_GRACE_S
from socketkit.services.rexec.sandbox import SandboxSettings
from socketkit.services.rexec.server import MAX_STDIN_BUFFERED, ExecServer, ExecSettings
from socketkit.state import StateDB
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT
from tests.services.rexec.test_rexec_loopback import ALLOWED, TOKEN, remote, session_alive


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


def make(root: Path, backend: str = "auto", db: StateDB | None = None, **overrides: Any) -> ExecServer:
    return ExecServer(
        ExecSettings(
            root=str(root),
            policy=ExecPolicy(allow=ALLOWED, allow_shell=True, home=str(root)),
            token=TOKEN,
            db=db,
            sandbox=SandboxSettings(backend=backend),
            **overrides,
        )
    )


async def connect(address: Address, request: ExecRequest | None) -> Connection[WireEvent]:
    conn: Connection[WireEvent] = await open_connection(address, WireDecoder())
    try:
        await authenticate_client(conn, TOKEN, pipelined=None if request is None else request.to_header())
    except BaseException:
        conn.abort()
        raise
    return conn


async def frames(address: Address, request: ExecRequest) -> list[WireEvent]:
    conn = await connect(address, request)
    events: list[WireEvent] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            async for event in conn:
                events.append(event)
                if (
                    isinstance(event, (ErrorFrame, Control))
                    and getattr(event, "header", {}).get("event") == "exit"
                ):
                    break
                if isinstance(event, ErrorFrame):
                    break
    finally:
        conn.abort()
    return events


@pytest.mark.parametrize("backend", ["none", "bwrap", "landlock"])
def test_started_comes_before_any_output(root: Path, backend: str) -> None:
    """A command that writes at once: its output is read only after "started" is sent,
    so the first frame is "started" every time (the old server failed 17 runs in 20)."""
    with server_thread(make(root, backend).make_server) as (address,):
        for _ in range(20):
            events = asyncio.run(frames(address, ExecRequest(("yes",), stdin=False, timeout=0.2)))
            first = events[0]
            assert isinstance(first, Control), events[:3]
            assert first.header["event"] == "started", events[:3]
            assert any(isinstance(e, Data) for e in events)


def test_stdin_to_a_command_that_never_reads_stays_bounded(root: Path) -> None:
    """64 MiB offered to `sleep`: the server stops reading the client once its bound is
    reached (the pipe's queue, the connection's inbox and the decoder all counted)."""
    service = make(root)
    with server_thread(service.make_server) as (address,):

        async def go() -> tuple[int, bool]:
            conn = await connect(address, ExecRequest(("sleep", "100")))
            chunk = encode_data(b"x" * (512 * 1024), STDIN)

            async def push() -> None:
                for _ in range(128):  # 64 MiB
                    await conn.send_all(chunk)

            sender = asyncio.ensure_future(push())
            command = None
            try:
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        command = next(iter(service.commands), None)
                        if command is not None and command.stdin_waiting and command.conn.is_paused("inbox"):
                            break  # reading from the client has stopped
                        await asyncio.sleep(0.01)
                return command.stdin_buffered(), sender.done()
            finally:
                # A client is not heard while the server holds back its input (its
                # socket is not read): end the command, which ends the connection.
                if command is not None:
                    os.killpg(command.pid, signal.SIGKILL)
                sender.cancel()
                conn.abort()
                with pytest.raises(asyncio.CancelledError):
                    await sender

        buffered, sent_everything = asyncio.run(go())
    assert not sent_everything
    assert 0 < buffered <= MAX_STDIN_BUFFERED


@pytest.mark.parametrize("backend", ["bwrap", "landlock"])
def test_a_command_ignoring_sigterm_gets_sigkill_with_its_whole_group(root: Path, backend: str) -> None:
    script = (
        'trap "echo got-term" TERM; (trap "" TERM; exec sleep 1000) & '
        "echo ready; while :; do sleep 0.05; done"
    )
    with server_thread(make(root, backend).make_server) as (address,):
        events = asyncio.run(frames(address, ExecRequest((), shell=script, stdin=False, timeout=0.5)))
    started = events[0]
    assert isinstance(started, Control)
    output = b"".join(e.data for e in events if isinstance(e, Data))
    exit_header = events[-1].header  # type: ignore[union-attr]
    assert b"got-term" in output  # SIGTERM came first, and was ignored
    assert (exit_header["reason"], exit_header["signal"]) == ("timeout", 9)
    assert exit_header["duration_ms"] >= TERMINATE_GRACE_S * 1000  # it had its grace
    deadline = time.monotonic() + TIMEOUT
    while session_alive(started.header["pid"]):  # the ignoring child dies too (SIGKILLed)
        assert time.monotonic() < deadline, session_alive(started.header["pid"])
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("timeout", "code"),
    [
        # not JSON at all: refused by the strict JSON layer (docs/protocol.md)
        (b"NaN", "bad-json"),
        (b"Infinity", "bad-json"),
        (b"-Infinity", "bad-json"),
        (b"1e400", "bad-json"),
        # JSON, but not a timeout: refused by the exec request's fields
        (b"-1", "bad-request"),
        (b"0", "bad-request"),
        (b'"x"', "bad-request"),
        (b"true", "bad-request"),
        (b"[]", "bad-request"),
        (b"1e300", "bad-request"),
    ],
)
def test_bad_timeouts_are_refused_and_the_server_goes_on(root: Path, timeout: bytes, code: str) -> None:
    with server_thread(make(root).make_server) as (address,):

        async def go() -> list[WireEvent]:
            conn = await connect(address, None)
            payload = b'{"op":"exec","argv":["true"],"stdin":false,"timeout":' + timeout + b"}"
            conn.send(struct.pack(">IBB", len(payload), FrameType.CONTROL, 0) + payload)
            try:
                async with asyncio.timeout(TIMEOUT):
                    return [event async for event in conn]
            finally:
                conn.abort()

        events = asyncio.run(go())
        assert len(events) == 1, events
        assert isinstance(events[0], ErrorFrame), events
        assert events[0].code == code
        assert remote(address, ExecRequest(("true",), stdin=False))[0] == 0  # still serving


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB(tmp_path / "state") as database:
        yield database


def test_the_audit_row_is_finished_when_the_write_timeout_drops_the_client(root: Path, db: StateDB) -> None:
    service = make(root, db=db, write_timeout=0.3)
    servers: list[Any] = []

    def make_server() -> Any:
        servers.append(service.make_server(sweep_interval=0.05))
        return servers[0]

    with server_thread(make_server) as (address,):

        async def go() -> None:
            conn = await connect(address, ExecRequest(("yes",), stdin=False))
            conn.pause_reading()  # and never read again: the server's queue fills
            try:
                async with asyncio.timeout(TIMEOUT):
                    while servers[0].stats().timeouts == 0 or service.running:
                        await asyncio.sleep(0.01)
            finally:
                conn.abort()

        asyncio.run(go())
    rows = db.query("SELECT argv, reason, status, signal, finished_at, bytes_out FROM exec_audit")
    assert len(rows) == 1
    row = rows[0]
    assert row["argv"] == '["yes"]'
    assert row["reason"] == "disconnected"
    assert row["finished_at"] is not None
    assert (row["status"], row["signal"]) != (None, None)  # stopped: 128+15 under bwrap
    assert row["bytes_out"] > 0


def test_the_audit_row_is_finished_when_the_server_stops_mid_command(root: Path, db: StateDB) -> None:
    service = make(root, db=db)
    started = threading.Event()

    async def client(address: Address) -> None:
        conn = await connect(address, ExecRequest(("sleep", "100"), stdin=False))
        try:
            async with asyncio.timeout(TIMEOUT):
                async for event in conn:  # until the stopping server closes us
                    if isinstance(event, Control) and event.header.get("event") == "started":
                        started.set()
        except ResourceError:
            pass  # aborted by the server after its grace
        finally:
            conn.abort()

    with server_thread(lambda: service.make_server(shutdown_grace=0.1)) as (address,):
        thread = threading.Thread(target=lambda: asyncio.run(client(address)))
        thread.start()
        assert started.wait(TIMEOUT)
    thread.join(TIMEOUT)
    rows = db.query("SELECT reason, finished_at FROM exec_audit")
    assert [(r["reason"], r["finished_at"] is not None) for r in rows] == [("server-stopping", True)]
