"""The engine in a real process: out of file descriptors, several workers, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers import TIMEOUT, connect, recv_exactly

LOW_FD_LIMIT = 48

SERVE = (
    "import resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "if limit: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))\n"
    "from socketkit.cli.main import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


@contextmanager
def echo_process(*args: str, fd_limit: int = 0) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(fd_limit), "serve", "echo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        yield proc, int(line.split()[3].rsplit(":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_out_of_file_descriptors_backs_off_and_recovers() -> None:
    # A cap given explicitly is kept above what the limit backs (a default would be fitted
    # to it, and the server would refuse at its cap before accept() ran out): EMFILE.
    with echo_process("--max-connections", "1000", fd_limit=LOW_FD_LIMIT) as (proc, port):
        clients = []
        try:
            for _ in range(LOW_FD_LIMIT + 10):  # more than the server can hold
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
            # The server is alive while out of descriptors: an early client still echoes.
            clients[0].sendall(b"alive")
            assert recv_exactly(clients[0], 5) == b"alive"
        finally:
            for sock in clients:
                sock.close()
        # Descriptors free up; the connections left in the backlog, and new ones, are served.
        deadline = time.monotonic() + TIMEOUT
        while True:
            sock = connect(("127.0.0.1", port))
            with sock:
                sock.sendall(b"back")
                try:
                    if recv_exactly(sock, 4) == b"back":
                        break
                except (AssertionError, ConnectionError, TimeoutError):
                    pass
            assert time.monotonic() < deadline, "the server did not recover"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0
    assert err.count("pausing the listener") >= 1
    assert "accept() works again" in err
    # Logged once per episode, not once per retry (a retry every 100 ms).
    assert err.count("pausing the listener") <= err.count("accept() works again") + 1


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
def test_workers_share_the_port_and_stop_together() -> None:
    with echo_process("--workers", "2") as (proc, port):
        for i in range(20):
            sock = connect(("127.0.0.1", port))
            with sock:
                sock.sendall(b"%02d" % i)
                assert recv_exactly(sock, 2) == b"%02d" % i
        children = _children(proc.pid)
        assert len(children) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in _state(pid)


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    with open(path) as f:
        return [int(p) for p in f.read().split()]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2]
    except FileNotFoundError:
        return "gone"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_graceful_stop_on_signals_with_connections_open(signum: int) -> None:
    with echo_process("--shutdown-grace", "5") as (proc, port):
        sock = connect(("127.0.0.1", port))
        with sock:
            sock.sendall(b"open")
            assert recv_exactly(sock, 4) == b"open"
            proc.send_signal(signum)
            assert sock.recv(10) == b""  # the server closed it on its way out
        assert proc.wait(TIMEOUT) == 0
