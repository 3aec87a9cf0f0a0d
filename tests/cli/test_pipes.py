"""A reader of standard output that goes away (``| head``) is the normal end of a
pipeline: every command that writes to standard output then ends as ``cat`` does, with
status 141 (a shell's 128 + SIGPIPE) and nothing on standard error.

Each test runs the real pipeline: the command's standard output is a pipe, and the test
is the reader. ``head`` reads a few lines and closes its end while the command still has
far more than a pipe buffer (64 KiB) to write; ``gone`` closes it before the command
starts, for commands whose output is short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.procs import Proc
from tests.helpers import TIMEOUT

PYTHON_SOCKETKIT = [sys.executable, "-m", "socketkit"]
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell shows for `cat` ended by `| head`


@dataclass
class Ended:
    status: int
    stderr: str
    read: list[bytes]


def _spawn(args: list[str], stdout: int, stdin: bytes | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*PYTHON_SOCKETKIT, *args],
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def _feed(proc: subprocess.Popen[bytes], stdin: bytes | None) -> threading.Thread | None:
    """Write ``stdin`` to the command from a thread (it may read all of it first)."""
    if stdin is None:
        return None

    def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # the command ended before reading it all
            proc.stdin.write(stdin)
            proc.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    return feeder


def _finish(proc: subprocess.Popen[bytes], feeder: threading.Thread | None, read: list[bytes]) -> Ended:
    try:
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
        status = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        if feeder is not None:
            feeder.join(TIMEOUT)
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
    return Ended(status, stderr, read)


def head(args: list[str], lines: int, *, stdin: bytes | None = None) -> Ended:
    """``socketkit ARGS | head -LINES``: read LINES lines, then close the pipe."""
    proc = _spawn(args, subprocess.PIPE, stdin)
    feeder = _feed(proc, stdin)
    assert proc.stdout is not None
    read = [proc.stdout.readline() for _ in range(lines)]
    proc.stdout.close()
    return _finish(proc, feeder, read)


def gone(args: list[str], *, stdin: bytes | None = None) -> Ended:
    """``socketkit ARGS | true``, the reader already gone when the command starts (its
    first write finds no reader, however short the output)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = _spawn(args, write_end, stdin)
    finally:
        os.close(write_end)
    return _finish(proc, _feed(proc, stdin), [])


def assert_quiet_end(ended: Ended) -> None:
    assert (ended.status, ended.stderr) == (EXIT_BROKEN_PIPE, "")


@dataclass
class Servers:
    echo: str
    chat: str
    files: str
    exec: str
    admin: str
    root: Path
    token: list[str]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("pipes")
    state, root = base / "state", base / "root"
    root.mkdir()
    argv = ["serve", "all", "--any-port", "--state-dir", str(state), "--root", str(root), "--no-sandbox"]
    with Proc(*argv, stdin=False) as proc:
        found = {
            name: proc.expect(rf"^{name} listening on (127\.0\.0\.1:\d+) \(tcp\)").group(1)
            for name in ("echo", "chat", "files", "exec", "admin")
        }
        yield Servers(**found, root=root, token=["--token-file", str(state / "token")])


LINES = b"".join(b"%d\n" % n for n in range(1, 1_000_001))  # 6.9 MB, as `seq 1 1000000`


def test_send_piped_into_head(servers: Servers) -> None:
    ended = head(["send", servers.echo], 2, stdin=LINES)
    assert ended.read == [b"1\n", b"2\n"]
    assert_quiet_end(ended)


def test_exec_piped_into_head(servers: Servers) -> None:
    ended = head(["exec", *servers.token, "-n", servers.exec, "--", "seq", "1", "2000000"], 3)
    assert ended.read == [b"1\n", b"2\n", b"3\n"], ended.stderr
    assert_quiet_end(ended)


def test_files_get_to_stdout_piped_into_head(servers: Servers) -> None:
    (servers.root / "big.txt").write_bytes(LINES)
    ended = head(["get", servers.files, *servers.token, "big.txt", "-"], 2)
    assert ended.read == [b"1\n", b"2\n"]
    assert_quiet_end(ended)


def test_status_into_a_pipe_with_no_reader(servers: Servers) -> None:
    assert_quiet_end(gone(["status", servers.admin]))
    assert_quiet_end(gone(["status", servers.admin, "--json"]))


def test_probe_into_a_pipe_with_no_reader(servers: Servers) -> None:
    port = servers.echo.rsplit(":", 1)[1]
    assert_quiet_end(gone(["probe", "127.0.0.1", port]))
    assert_quiet_end(gone(["probe", "127.0.0.1", port, "--json"]))


def test_chat_plain_into_a_pipe_with_no_reader(servers: Servers) -> None:
    assert_quiet_end(gone(["chat", servers.chat, "--nick", "piped", "--plain"]))


def test_talk_into_a_pipe_with_no_reader() -> None:
    with Proc("serve", "talk", "--port", "0") as operator:
        address = operator.expect(r"^talk listening on (127\.0\.0\.1:\d+)").group(1)
        assert_quiet_end(gone(["talk", address]))


def test_listen_piped_into_head() -> None:
    proc = _spawn(["listen", "0"], subprocess.PIPE, None)
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = proc.stderr.readline().decode()  # "listening on 127.0.0.1:PORT (tcp)", its own line
    port = int(first.rsplit(":", 1)[1].split()[0])
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)

    def send() -> None:
        with contextlib.suppress(OSError):  # listen ended and closed: what the test wants
            client.sendall(LINES)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        read = [proc.stdout.readline() for _ in range(2)]
        proc.stdout.close()
        ended = _finish(proc, None, read)
    finally:
        with contextlib.suppress(OSError):  # unblock the sender if listen is still there
            client.shutdown(socket.SHUT_RDWR)
        sender.join(TIMEOUT)
        client.close()
    assert ended.read == [b"1\n", b"2\n"]
    # Its status notes ("connection from ...") are stderr's; no error among them.
    assert ended.status == EXIT_BROKEN_PIPE
    assert not [line for line in ended.stderr.splitlines() if not line.startswith("connection from ")]
