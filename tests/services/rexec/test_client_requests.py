"""What a client sends while its command runs, and what the server makes of it: a
control request it cannot honour is answered and the command goes on; an ERROR frame
is the client giving up (the command stops, one log line, nothing echoed back); and a
command's background children holding its output are ended once it exits."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from socketkit.codec.wire import (
    Control,
    Data,
    ErrorFrame,
    WireEvent,
    encode_control,
    encode_data,
    encode_error,
)
from socketkit.services.rexec import client as exec_client
from socketkit.services.rexec.protocol import STDIN, ExecRequest
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT
from tests.services.rexec.test_rexec_loopback import remote, session_alive
from tests.services.rexec.test_rexec_streams import connect, make

BAD_SIGNALS: list[Any] = ["STOP", "SEGV", "CONT", "9", 9, None, "A" * 1000, "INT\n", ["INT"]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


async def until_exit(conn: Any) -> list[WireEvent]:
    events: list[WireEvent] = []
    async with asyncio.timeout(TIMEOUT):
        async for event in conn:
            events.append(event)
            if isinstance(event, Control) and event.header.get("event") == "exit":
                break
    return events


@pytest.mark.parametrize("backend", ["bwrap", "none"])
def test_a_signal_the_server_does_not_forward_is_refused_and_the_command_goes_on(
    root: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each bad signal request gets a ``refused`` event (code bad-request); the command,
    waiting for its input, then reads it and exits 0, not killed as "disconnected"."""
    request = ExecRequest(("sh", "-c", "read line; echo got $line"), stdin=True)
    with server_thread(make(root, backend).make_server) as (address,):

        async def go() -> list[WireEvent]:
            conn = await connect(address, request)
            try:
                for bad in BAD_SIGNALS:
                    conn.send(encode_control({"op": "signal", "signal": bad}))
                conn.send(encode_control({"op": "resize", "rows": 24}))
                conn.send(encode_data(b"hello\n", STDIN))
                conn.send(encode_data(b"", STDIN))
                return await until_exit(conn)
            finally:
                conn.abort()

        with caplog.at_level(logging.INFO):
            events = asyncio.run(go())
    refused = [e.header for e in events if isinstance(e, Control) and e.header.get("event") == "refused"]
    assert len(refused) == len(BAD_SIGNALS) + 1
    assert {r["code"] for r in refused} == {"bad-request"}
    assert not any(isinstance(e, ErrorFrame) for e in events)
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"got hello\n"
    exit_header = events[-1].header  # type: ignore[union-attr]
    assert (exit_header["status"], exit_header["reason"]) == (0, None)
    assert not any("is gone" in r.getMessage() for r in caplog.records)


def test_the_client_prints_a_refusal_and_goes_on(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's side of a refusal (here of a signal it was made to send): one line
    on stderr, and the command's own status."""
    real_converse = exec_client._converse

    async def converse(conn: Any, *args: Any, **kwargs: Any) -> int:
        conn.send(encode_control({"op": "signal", "signal": "STOP"}))
        return await real_converse(conn, *args, **kwargs)

    monkeypatch.setattr(exec_client, "_converse", converse)
    with server_thread(make(root, "none").make_server) as (address,):
        status, out, err, _ = remote(address, ExecRequest(("sh", "-c", "sleep 0.5; echo done"), stdin=False))
    assert (status, out) == (0, b"done\n")
    assert err.count(b"\n") == 1
    assert err.startswith(b"socketkit exec: the server refused a request: cannot forward signal 'STOP'")


@pytest.mark.parametrize("backend", ["bwrap", "none"])
def test_an_error_frame_from_the_client_stops_its_command(
    root: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gave up: its command is stopped (reason ``client-error``), the server
    logs it once and does not send the client's own error back."""
    with server_thread(make(root, backend).make_server) as (address,):

        async def go() -> list[WireEvent]:
            conn = await connect(address, ExecRequest(("sleep", "100"), stdin=False))
            try:
                async with asyncio.timeout(TIMEOUT):
                    started = await conn.receive()
                    assert isinstance(started, Control)
                    assert started.header["event"] == "started"
                    conn.send(encode_error("cancelled", "the user gave up"))
                    return [started, *await until_exit(conn)]
            finally:
                conn.abort()

        with caplog.at_level(logging.INFO):
            events = asyncio.run(go())
    assert not any(isinstance(e, ErrorFrame) for e in events)
    exit_header = events[-1].header  # type: ignore[union-attr]
    assert exit_header["reason"] == "client-error"
    pid = events[0].header["pid"]  # type: ignore[union-attr]
    assert session_alive(pid) == []
    lines = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert len(lines) == 1
    assert "cancelled: the user gave up" in lines[0]


def test_an_error_frame_instead_of_a_request_is_not_echoed(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with server_thread(make(root, "none").make_server) as (address,):

        async def go() -> list[WireEvent]:
            conn = await connect(address, None)
            try:
                conn.send(encode_error("x" * 30, "y" * 5000))
                async with asyncio.timeout(TIMEOUT):
                    return [event async for event in conn]
            finally:
                conn.abort()

        with caplog.at_level(logging.INFO):
            events = asyncio.run(go())
        assert events == []  # closed, with nothing of ours or theirs sent back
        assert remote(address, ExecRequest(("true",), stdin=False))[0] == 0
    lines = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert len(lines) == 1
    assert len(lines[0]) < 400  # the peer's text is cut, not copied whole


@pytest.mark.parametrize("backend", ["landlock", "none"])
def test_background_children_holding_the_output_are_ended(root: Path, backend: str) -> None:
    """``sleep &`` keeps stdout open after the shell exits: once the grace period has
    passed the server kills it and reports the shell's status. The old server waited
    for ever (a cancelled gather had cancelled the futures it then waited for again)."""
    with server_thread(make(root, backend).make_server) as (address,):
        status, out, _, pids = remote(
            address, ExecRequest(("sh", "-c", "sleep 300 & echo started"), stdin=False)
        )
    assert (status, out) == (0, b"started\n")
    assert session_alive(pids[0]) == []


def test_commands_are_reaped_without_pidfds_too(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a kernel without pidfd_open (Linux < 5.3) a thread waits for each command."""

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    with server_thread(make(root, "none").make_server) as (address,):
        assert remote(address, ExecRequest(("sh", "-c", "echo hi; exit 7"), stdin=False))[:2] == (7, b"hi\n")
        status, _, _, pids = remote(address, ExecRequest(("sleep", "30"), stdin=False, timeout=0.2))
        assert status == 124
        assert session_alive(pids[0]) == []
