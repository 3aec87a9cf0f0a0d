"""Commands that read all of standard input before they do anything (``send``, ``put -``)
say so in one line on stderr when standard input is a terminal, instead of waiting
without a word; from a pipe or a file they say nothing."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from socketkit.services.echo.server import make_echo_server
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT

HINT = "from the terminal: type it, then Ctrl-D on a line of its own (Ctrl-C gives up)"


def run_on_a_terminal(*args: str, typed: bytes) -> tuple[int, str, bytes]:
    """``socketkit ARGS`` with a pseudo-terminal as standard input: wait for the first
    line on stderr, then type ``typed`` (ending with Ctrl-D)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "socketkit", *args],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(slave)
        slave = -1
        assert proc.stderr is not None
        # Said while it waits for the terminal: nothing is typed until it is.
        if not select.select([proc.stderr], [], [], TIMEOUT)[0]:
            proc.kill()
            proc.communicate()
            raise AssertionError("nothing said while waiting for the terminal")
        first = proc.stderr.readline().decode()
        os.write(master, typed)
        try:
            out, rest = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, rest = proc.communicate()
            raise AssertionError(f"still waiting after {typed!r}: {first + rest.decode()}") from None
        return proc.returncode, first + rest.decode(), out
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_send_on_a_terminal_says_how_to_end_the_message() -> None:
    with server_thread(make_echo_server) as (address,):
        status, err, out = run_on_a_terminal("send", str(address), typed=b"hello\n\x04")
    assert (status, out) == (0, b"hello\n")
    assert err == f"reading the message {HINT}\n"


def test_send_from_a_pipe_says_nothing() -> None:
    with server_thread(make_echo_server) as (address,):
        done = subprocess.run(
            [sys.executable, "-m", "socketkit", "send", str(address)],
            input=b"hello\n",
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hello\n", b"")


def test_put_from_a_terminal_says_how_to_end_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from socketkit.services.filexfer.server import FileServer, FileSettings
    from socketkit.services.filexfer.store import FileStore

    token = "7e57" * 16
    root = tmp_path / "root"
    root.mkdir()
    service = FileServer(FileSettings(store=FileStore(str(root), None), token=token))
    monkeypatch.setenv("SOCKETKIT_TOKEN", token)
    with server_thread(service.make_server) as (address,):
        status, err, _ = run_on_a_terminal("put", str(address), "-", "typed.txt", typed=b"typed\n\x04")
    assert status == 0
    assert err.splitlines()[0] == f"reading the file for typed.txt {HINT}"
    assert (root / "typed.txt").read_bytes() == b"typed\n"
