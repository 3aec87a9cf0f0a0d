"""``socketkit listen``: piped stdin reaches the first UDP sender, Unix stream sockets
(with their socket file's lifetime), and status lines on standard error on a line of
their own. Driven as real subprocesses, sequenced by their stderr lines."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from socketkit.cli._listen_state import MAX_PENDING_STDIN, LineEnd, PendingInput
from socketkit.cli.main import main
from tests.cli.procs import Proc
from tests.helpers import TIMEOUT, connect

LISTENING_UDP = r"listening on 127\.0\.0\.1:(\d+) \(udp\)"


def _udp_sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_listen_udp_sends_piped_stdin_to_the_first_sender() -> None:
    """``printf pong | socketkit listen --udp P``: the input (and its end) came before
    anyone sent a datagram; the first sender gets it, as with ``nc -u -l``."""
    with Proc("listen", "--udp", "0") as proc, _udp_sender() as sender:
        port = int(proc.expect(LISTENING_UDP, "err").group(1))
        proc.write(b"pong")
        proc.close_stdin()
        proc.expect("^no sender yet", "err")  # listen has read the input: nobody to send it to
        sender.sendto(b"ping\n", ("127.0.0.1", port))
        assert sender.recv(100) == b"pong"
        proc.expect(f"datagrams from 127\\.0\\.0\\.1:{sender.getsockname()[1]}$", "err")
        proc.expect("^ping$")


def test_listen_udp_later_stdin_goes_to_the_same_sender_only() -> None:
    with Proc("listen", "--udp", "0") as proc, _udp_sender() as first, _udp_sender() as other:
        port = int(proc.expect(LISTENING_UDP, "err").group(1))
        proc.write(b"early\n")
        proc.expect("^no sender yet", "err")
        first.sendto(b"hello\n", ("127.0.0.1", port))
        assert first.recv(100) == b"early\n"
        proc.expect("^hello$")
        other.sendto(b"ignored\n", ("127.0.0.1", port))  # without -k only the first is heard
        proc.write(b"later\n")
        assert first.recv(100) == b"later\n"
        first.sendto(b"again\n", ("127.0.0.1", port))
        proc.expect("^again$")
        assert "ignored" not in proc.seen["out"]


def test_listen_udp_stdin_beyond_the_held_limit_waits_and_is_not_lost() -> None:
    """More input than listen holds before a sender: it stops reading (the pipe holds
    the rest), then the first sender gets every byte in order."""
    payload = bytes(range(256)) * ((MAX_PENDING_STDIN + 30_000) // 256)
    assert len(payload) > MAX_PENDING_STDIN
    with Proc("listen", "--udp", "0") as proc, _udp_sender() as sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * len(payload))
        port = int(proc.expect(LISTENING_UDP, "err").group(1))
        proc.write(payload)  # fits in what listen holds plus the pipe: this does not block
        proc.expect("^no sender yet", "err")
        sender.sendto(b"go\n", ("127.0.0.1", port))
        received = bytearray()
        while len(received) < len(payload):
            received += sender.recv(65536)
        assert bytes(received) == payload


def test_listen_unix_round_trip_with_send(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = tmp_path / "l.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # a socket file left behind by a server that is gone
    with Proc("listen", f"unix:{path}") as proc:
        proc.expect(f"listening on unix:{path} \\(unix\\)$", "err")
        proc.write(b"reply\n")
        assert main(["send", "-n", f"unix:{path}", "hello"]) == 0
        assert capsysbinary.readouterr().out == b"reply\n"
        proc.expect("^hello$")
        proc.expect("^the peer closed the connection$", "err")
        assert proc.wait() == 0
    assert not path.exists()  # we created the socket file, so it goes with us


def test_listen_unix_refuses_to_clobber_a_file_or_a_live_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    regular = tmp_path / "notes.txt"
    regular.write_text("keep me")
    assert main(["listen", f"unix:{regular}"]) == 1
    assert "exists and is not a socket" in capsys.readouterr().err
    assert regular.read_text() == "keep me"
    live = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(live))
        server.listen()
        assert main(["listen", f"unix:{live}"]) == 1
        assert "another server is listening" in capsys.readouterr().err
        with connect(str(live), socket.AF_UNIX):  # still the other server's socket
            pass
    assert main(["listen", "--udp", f"unix:{tmp_path / 'u.sock'}"]) == 1
    assert main(["listen", "--host", "127.0.0.1", f"unix:{tmp_path / 'h.sock'}"]) == 1


def test_listen_unix_removes_the_socket_file_on_sigterm_only_if_still_ours(tmp_path: Path) -> None:
    ours = tmp_path / "ours.sock"
    with Proc("listen", f"unix:{ours}") as proc:
        proc.expect("listening on unix:", "err")
        assert ours.is_socket()
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 128 + signal.SIGTERM
    assert not ours.exists()
    replaced = tmp_path / "replaced.sock"
    with Proc("listen", f"unix:{replaced}") as proc:
        proc.expect("listening on unix:", "err")
        os.unlink(replaced)
        replaced.write_text("someone else's file now")
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 128 + signal.SIGTERM
    assert replaced.read_text() == "someone else's file now"


def _listen_once(data: bytes, *, merged: bool) -> tuple[bytes, bytes]:
    """Run ``listen 0`` for one client that sends ``data`` and closes; return (stdout,
    stderr), or (both merged, b"") with ``2>&1``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "socketkit", "listen", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        status_stream = proc.stdout if merged else proc.stderr
        assert status_stream is not None
        first = status_stream.readline()  # "listening on 127.0.0.1:PORT (tcp)"
        port = int(first.rsplit(b":", 1)[1].split()[0])
        with connect(("127.0.0.1", port)) as client:
            client.sendall(data)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0
    return (first + out if merged else out), (b"" if merged else first + (err or b""))


def test_listen_status_lines_go_to_stderr_each_on_its_own_line() -> None:
    out, err = _listen_once(b"first\nsecond", merged=False)
    assert out == b"first\nsecond"  # the data byte for byte: no newline added to it
    assert err.decode().splitlines()[-1] == "the peer closed the connection"
    merged, _ = _listen_once(b"first\nsecond", merged=True)
    lines = merged.decode().splitlines()
    assert lines[-3:] == ["first", "second", "the peer closed the connection"]
    merged, _ = _listen_once(b"ends a line\n", merged=True)
    assert merged.decode().splitlines()[-2:] == ["ends a line", "the peer closed the connection"]


def _read_until(proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
    """What the child wrote to its stdout up to and including ``marker`` (bounded wait)."""
    assert proc.stdout is not None
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while marker not in seen:
            assert selector.select(TIMEOUT), f"no {marker!r} within {TIMEOUT} s; seen {seen!r}"
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"output ended before {marker!r}; seen {seen!r}"
            seen += chunk
    return seen


def test_listen_ends_an_unfinished_line_when_it_stops() -> None:
    """Data that stopped mid-line, then SIGTERM, with ``2>&1``: the line is ended, so
    whatever comes next (the shell's prompt, an error) starts on a line of its own."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "socketkit", "listen", "--udp", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        first = _read_until(proc, b"(udp)\n")
        port = int(first.rsplit(b":", 1)[1].split()[0])
        with _udp_sender() as sender:
            sender.sendto(b"partial", ("127.0.0.1", port))
            shown = _read_until(proc, b"partial")
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM
    assert (shown + rest).endswith(b"partial\n")


def test_pending_input_holds_chunks_in_order_up_to_its_limit() -> None:
    pending = PendingInput(10)
    pending.add(b"abc")
    pending.add(b"")
    pending.add(b"defg")
    assert (pending.held, pending.room) == (7, 3)
    with pytest.raises(ValueError, match="do not fit"):
        pending.add(b"hijk")
    pending.add(b"hij")
    assert pending.room == 0
    assert pending.take() == [b"abc", b"defg", b"hij"]
    assert (pending.held, pending.room, pending.take()) == (0, 10, [])
    with pytest.raises(ValueError, match="at least 1 byte"):
        PendingInput(0)


def test_line_end_asks_for_a_newline_only_after_an_unfinished_line() -> None:
    line = LineEnd()
    assert line.before_status() == ""
    line.wrote(b"partial")
    assert line.before_status() == "\n"
    assert line.before_status() == ""  # the newline ended that line
    line.wrote(b"whole\n")
    line.wrote(b"")
    assert line.before_status() == ""
