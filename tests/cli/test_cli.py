"""The command line: in-process for parsing and errors, a subprocess for serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from socketkit.cli.main import main
from tests.helpers import TIMEOUT, connect, recv_exactly


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert "socketkit" in capsys.readouterr().out
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_usage_errors_are_exit_2_with_a_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "echo", "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert "port must be 0-65535, not 99999" in err
    assert main(["serve", "nosuch"]) == 2


def test_runtime_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    # Binding an address that is not ours fails; the CLI says so in one line.
    assert main(["serve", "echo", "--host", "192.0.2.1", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "ListenError: echo cannot listen on 192.0.2.1:0 (tcp): this machine has no such address"
    )
    assert "Traceback" not in err


@contextmanager
def cli_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``python -m socketkit ARGS`` and yield it with its first stdout line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "socketkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        yield proc, proc.stdout.readline().strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_echo_prints_its_address_echoes_and_stops_cleanly(signum: int) -> None:
    with cli_process("serve", "echo", "--port", "0") as (proc, line):
        assert line.startswith("echo listening on 127.0.0.1:")
        port = int(line.split()[-2].rsplit(":", 1)[1])
        sock = connect(("127.0.0.1", port))
        with sock:
            sock.sendall("俺喜欢你".encode())
            assert recv_exactly(sock, 12) == "俺喜欢你".encode()
        proc.send_signal(signum)
        assert proc.wait(TIMEOUT) == 0
