"""``socketkit serve exec`` and ``socketkit exec`` at the edges: where the token is
printed, a start that is refused leaving nothing behind, closed standard streams, and
``--workers`` sharing the command cap and dividing the per-address rules."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.auth.connect import ServiceTarget
from socketkit.auth.handshake import client_mac
from socketkit.auth.server_token import server_token
from socketkit.cli.main import main
from socketkit.codec.wire import Control, Hello, WireDecoder, encode_control, encode_hello
from socketkit.errors import ServiceError
from socketkit.limits import (
    AUTH_FREE_FAILURES,
    DEFAULT_MAX_UNAUTHENTICATED,
    DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
)
from socketkit.services.rexec.client import run_remote
from socketkit.services.rexec.protocol import ExecRequest
from socketkit.services.rexec.server import ExecServer
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT
from tests.services.rexec.test_confinement import cli_server
from tests.services.rexec.test_rexec_loopback import TOKEN, settings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


def test_the_token_is_shown_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Standard output is not a terminal (a log, journald): the line says where the
    token is and how to read it, never what it is. On a terminal it shows the value."""
    state = tmp_path / "logged"
    token = server_token("exec", str(state), no_auth=False)
    assert token is not None
    out = capsys.readouterr().out
    assert token not in out
    assert f"cat {state / 'token'}" in out
    assert out.count("\n") == 1

    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w") as terminal:
            monkeypatch.setattr(sys, "stdout", terminal)
            shown = server_token("exec", str(tmp_path / "tty"), no_auth=False)
        text = os.read(master, 65536).decode()
    finally:
        os.close(master)
    assert shown is not None
    assert f"SOCKETKIT_TOKEN={shown}" in text
    # Only a new token is announced: the next start says nothing.
    assert server_token("exec", str(state), no_auth=False) == token
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("service", "flags", "message"),
    [
        ("exec", ["--root", "/nonexistent"], "is not a directory"),
        ("exec", ["--root", "/etc/ssl"], "lies in /etc"),
        ("exec", ["--root", "/tmp"], "whole machine shares"),
        ("exec", ["--allow", "no-such-program-here"], "no such program"),
        ("files", ["--root", "/nonexistent"], "does not exist"),
    ],
)
def test_a_refused_start_creates_no_state_and_no_token(
    tmp_path: Path,
    root: Path,
    capsys: pytest.CaptureFixture[str],
    service: str,
    flags: list[str],
    message: str,
) -> None:
    state = tmp_path / "state"
    assert (
        main(["serve", service, "--port", "0", "--root", str(root), "--state-dir", str(state), *flags]) == 1
    )
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert len(captured.err.splitlines()) == 1
    assert not state.exists()


def client(address: Address, args: list[str], redirect: str) -> subprocess.CompletedProcess[bytes]:
    """``socketkit exec ADDR ARGS`` with a standard stream closed by the shell."""
    env = {**os.environ, "SOCKETKIT_TOKEN": TOKEN}
    command = [sys.executable, "-m", "socketkit", "exec", str(address), "--", *args]
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )


def test_closed_standard_streams_are_taken_as_dev_null(root: Path) -> None:
    """As with ssh: a closed stdin is no input (``cat`` ends at once), a closed stdout
    discards the output; no traceback, the remote status."""
    with server_thread(ExecServer(settings(root)).make_server) as (address,):
        no_input = client(address, ["cat"], "<&-")
        assert (no_input.returncode, no_input.stdout, no_input.stderr) == (0, b"", b"")
        discarded = client(address, ["sh", "-c", "echo out; echo err >&2; exit 3"], ">&-")
        assert (discarded.returncode, discarded.stderr) == (3, b"err\n")
        no_stderr = client(address, ["sh", "-c", "echo out; echo err >&2"], "2>&-")
        assert (no_stderr.returncode, no_stderr.stdout) == (0, b"out\n")


async def sleeper(address: Address, started: list[int], *argv: str) -> int:
    return await run_remote(
        ServiceTarget(address, None),
        ExecRequest(argv or ("sleep", "100"), stdin=False),
        stdin=None,
        stdout=io.BytesIO(),
        stderr=io.BytesIO(),
        on_started=started.append,
    )


def test_max_procs_is_the_total_of_all_workers(root: Path, tmp_path: Path) -> None:
    """``--workers 2 --max-procs 2``: two commands run, and every further one is busy,
    whichever worker the kernel hands it to (each worker used to allow 2)."""
    args = ["--no-auth", "--workers", "2", "--max-procs", "2", "--root", str(root)]
    with cli_server([*args, "--state-dir", str(tmp_path / "state")]) as address:

        async def go() -> list[str]:
            started: list[int] = []
            running = [asyncio.ensure_future(sleeper(address, started)) for _ in range(2)]
            try:
                async with asyncio.timeout(TIMEOUT):
                    while len(started) < 2:
                        assert not any(task.done() for task in running)
                        await asyncio.sleep(0.01)
                codes = []
                for _ in range(6):
                    with pytest.raises(ServiceError) as info:
                        await sleeper(address, [], "true")
                    codes.append(info.value.code)
                return codes
            finally:
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)

        assert asyncio.run(go()) == ["busy"] * 6


async def announced_delay(address: Address) -> float:
    """One login with a wrong token; the delay its challenge announces (0: none). A
    delayed attempt is abandoned at once (it is not a failure then)."""
    conn: Any = await open_connection(address, WireDecoder())
    try:
        async with asyncio.timeout(TIMEOUT):
            conn.send(encode_hello())
            assert isinstance(await conn.receive(), Hello)
            challenge = await conn.receive()
            assert isinstance(challenge, Control)
            delay = float(challenge.header.get("delay", 0))
            if delay:
                return delay
            nonce = os.urandom(32)
            mac = client_mac("0" * 64, bytes.fromhex(challenge.header["nonce"]), nonce)
            conn.send(encode_control({"auth": "response", "nonce": nonce.hex(), "mac": mac.hex()}))
            await conn.receive()  # the verdict: auth-failed
            return 0.0
    finally:
        conn.abort()


def test_with_workers_an_address_is_still_delayed_after_a_few_failures(root: Path, tmp_path: Path) -> None:
    """Each of 2 workers keeps its own throttle: it gets half of the free failures, so
    the seventh wrong login is delayed, as with one worker (each worker used to give 5,
    and 10 went by without a delay)."""
    args = ["--workers", "2", "--root", str(root), "--state-dir", str(tmp_path / "state")]
    with cli_server(args) as address:

        async def go() -> list[float]:
            return [await announced_delay(address) for _ in range(AUTH_FREE_FAILURES + 2)]

        delays = asyncio.run(go())
    assert any(delays), delays


@pytest.mark.parametrize("workers", [1, 2, 4, 8, 16])
def test_each_worker_gets_its_share_of_the_per_address_limits(root: Path, workers: int) -> None:
    service = ExecServer(settings(root, workers=workers))
    try:
        assert service.gate.throttle.free_failures == max(1, AUTH_FREE_FAILURES // workers)
        assert service.gate.max_unauthenticated == max(1, DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS // workers)
        assert service.gate.max_unauthenticated_total == max(1, DEFAULT_MAX_UNAUTHENTICATED // workers)
    finally:
        service.close()
