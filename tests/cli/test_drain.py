"""The graceful drain the README promises, tried as a user would: a server gets SIGINT
while its clients are in the middle of something.

Listeners close at once; a command that is running finishes and its client gets the
real exit status; an upload in progress completes whole; echo answers what it had been
sent; a command longer than the grace is cut and its client shows why; a second signal
aborts at once. Readiness is what each program prints, never a sleep.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli.procs import Proc
from tests.helpers import TIMEOUT, connect, recv_until_closed


@contextmanager
def server(*args: str) -> Iterator[tuple[Proc, int]]:
    """``socketkit serve ARGS --port 0``; yields the process and its port."""
    with Proc("serve", *args, "--port", "0", stdin=False) as proc:
        port = int(proc.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        yield proc, port


def exec_server(tmp_path: Path, *extra: str) -> Iterator[tuple[Proc, int]]:
    root = tmp_path / "root"
    root.mkdir()
    # --no-sandbox: the drain is the engine's and the service's, whichever sandbox runs
    # the command; bubblewrap or Landlock may be missing here.
    return server(
        "exec", "--no-auth", "--no-sandbox", "--allow", "cat", "--root", str(root),
        "--state-dir", str(tmp_path / "state"), *extra,
    )  # fmt: skip


def running_cat(port: int) -> Proc:
    """``socketkit exec -- cat``, once its command is seen to run (a line comes back)."""
    client = Proc("exec", f"127.0.0.1:{port}", "--", "cat")
    client.write(b"before the signal\n")
    client.expect("before the signal")
    return client


def stop(proc: Proc, signum: int = signal.SIGINT) -> None:
    """Signal a server and wait until it says it is shutting down."""
    proc.signal(signum)
    proc.expect(r"shutting down", "err")


def test_a_running_command_finishes_across_sigint_with_its_own_status(tmp_path: Path) -> None:
    with exec_server(tmp_path, "--shutdown-grace", str(TIMEOUT * 3)) as (srv, port):
        with running_cat(port) as client:
            stop(srv)
            # The listener closed at once: a new client is refused while the command runs.
            with pytest.raises(ConnectionRefusedError):
                connect(("127.0.0.1", port)).close()
            # The command still gets its input, answers, and ends by itself.
            client.write(b"after the signal\n")
            client.expect("after the signal")
            client.close_stdin()
            assert client.wait() == 0
        assert srv.wait() == 0


def test_a_command_longer_than_the_grace_is_cut_and_its_client_says_why(tmp_path: Path) -> None:
    with exec_server(tmp_path, "--shutdown-grace", "0.5") as (srv, port):
        with running_cat(port) as client:  # cat runs until its stdin ends: never, here
            stop(srv)
            client.expect("the server is shutting down and its 0.5 s grace ran out", "err")
            assert client.wait() == 255
        assert srv.wait() == 0


def test_an_upload_across_sigint_completes_and_the_file_is_whole(tmp_path: Path) -> None:
    """The client is stopped (SIGSTOP) in the middle of its upload, the server gets
    SIGINT, then the client goes on: the server waits for it (the upload is a request in
    progress), and the file arrives whole."""
    root = tmp_path / "root"
    root.mkdir()
    source = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    # 64 MiB: far more than the socket buffers hold, so the upload cannot be over when
    # its client is stopped a moment after the first bytes reached the disk.
    source.write_bytes(block * 64)
    partial = root / ".big.bin.part"
    args = ("files", "--no-auth", "--root", str(root), "--state-dir", str(tmp_path / "state"))
    with server(*args, "--shutdown-grace", str(TIMEOUT * 3)) as (srv, port):
        with Proc("put", "--no-progress", f"127.0.0.1:{port}", str(source), "big.bin", stdin=False) as put:
            try:
                deadline = time.monotonic() + TIMEOUT
                while not (partial.exists() and partial.stat().st_size > 0):
                    assert time.monotonic() < deadline, "the upload did not start"
                    assert put.popen.poll() is None, "the upload ended before it was seen"
                    time.sleep(0.005)
                put.popen.send_signal(signal.SIGSTOP)
                assert not (root / "big.bin").exists()  # stopped mid-transfer
                stop(srv)
            finally:
                put.popen.send_signal(signal.SIGCONT)
            assert put.wait() == 0
        assert srv.wait() == 0
    assert (
        hashlib.sha256((root / "big.bin").read_bytes()).digest()
        == hashlib.sha256(source.read_bytes()).digest()
    )
    assert not partial.exists()


def test_echo_answers_what_it_was_sent_before_the_signal() -> None:
    """A client that sent a lot and read nothing yet (data in flight both ways) gets all
    of it back after SIGINT, then the end of the stream; an idle client is closed."""
    with server("echo") as (srv, port):
        busy = connect(("127.0.0.1", port))
        idle = connect(("127.0.0.1", port))
        with busy, idle:
            busy.setblocking(False)
            sent = bytearray()
            chunk = bytes(range(256)) * 256
            while True:  # until the server stops reading because we do not read
                try:
                    sent += chunk[: busy.send(chunk)]
                except BlockingIOError:
                    break
            busy.settimeout(TIMEOUT)
            stop(srv)
            assert recv_until_closed(idle) == b""
            got = bytearray()
            while data := busy.recv(1 << 20):
                got += data
            assert len(got) == len(sent)
            assert got == sent
        assert srv.wait() == 0


def test_a_second_signal_aborts_at_once(tmp_path: Path) -> None:
    with exec_server(tmp_path, "--shutdown-grace", "3600") as (srv, port):
        with running_cat(port) as client:
            stop(srv)
            # A second signal within 0.2 s is the same keypress seen twice (a terminal
            # and a --workers parent): repeat it until the server takes it as a second.
            deadline = time.monotonic() + TIMEOUT
            while True:
                srv.signal(signal.SIGINT)
                try:
                    srv.expect("second SIGINT: aborting", "err", timeout=0.1)
                    break
                except AssertionError:
                    assert time.monotonic() < deadline
            assert srv.wait() == 0  # not the hour of grace
            assert client.wait() == 255  # its connection was aborted
        with pytest.raises(ConnectionRefusedError):  # nothing listens any more
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
