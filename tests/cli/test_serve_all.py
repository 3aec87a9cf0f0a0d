"""``socketkit serve all``: every service answers on the printed addresses, the admin
endpoint reports them, and one SIGTERM stops everything cleanly."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.cli.procs import Proc
from tests.helpers import TIMEOUT


def _port(proc: Proc, pattern: str) -> int:
    return int(proc.expect(pattern).group(1))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "socketkit", *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=TIMEOUT)


def test_serve_all_runs_every_service_and_reports_them(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "root"
    root.mkdir()
    token = ["--token-file", str(state / "token")]
    argv = ["serve", "all", "--any-port", "--state-dir", str(state), "--root", str(root)]
    with Proc(*argv, stdin=False) as proc:
        echo = _port(proc, r"^echo listening on 127\.0\.0\.1:(\d+) \(tcp\)")
        assert _port(proc, r"^echo listening on 127\.0\.0\.1:(\d+) \(udp\)") == echo
        chat = _port(proc, r"^chat listening on 127\.0\.0\.1:(\d+) \(tcp\)")
        files = _port(proc, r"^files listening on 127\.0\.0\.1:(\d+) \(tcp\)")
        rexec = _port(proc, r"^exec listening on 127\.0\.0\.1:(\d+) \(tcp\)")
        admin = proc.expect(r"^status at (http://127\.0\.0\.1:\d+)/status").group(1)

        with socket.create_connection(("127.0.0.1", echo), timeout=TIMEOUT) as sock:
            sock.sendall(b"hello")
            assert sock.recv(5) == b"hello"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(TIMEOUT)
            udp.sendto(b"datagram", ("127.0.0.1", echo))
            assert udp.recvfrom(100)[0] == b"datagram"

        irc = socket.create_connection(("127.0.0.1", chat), timeout=TIMEOUT)
        with irc:
            irc.sendall(b"NICK alice\r\nUSER a 0 * :Alice\r\n")
            welcome = b""
            while b" 001 alice " not in welcome:
                chunk = irc.recv(4096)
                assert chunk, welcome
                welcome += chunk

            (tmp_path / "up.txt").write_text("uploaded through serve all\n")
            put = _cli("put", f"127.0.0.1:{files}", str(tmp_path / "up.txt"), "up.txt", *token)
            assert put.returncode == 0, put.stderr
            assert (root / "up.txt").read_text() == "uploaded through serve all\n"

            # The command runs in the sandbox, as nobody when we are root, and reads what
            # files stored (uploads are given to exec's run-as user).
            ran = _cli("exec", *token, f"127.0.0.1:{rexec}", "--", "cat", "up.txt")
            assert (ran.returncode, ran.stdout) == (0, "uploaded through serve all\n"), ran.stderr

            with urllib.request.urlopen(f"{admin}/status", timeout=TIMEOUT) as response:
                status = json.load(response)
            services = status["services"]
            assert set(services) == {"echo", "chat", "files", "exec"}
            assert services["chat"]["clients"] == 1
            assert services["chat"]["open"] == 1
            assert services["files"]["accepted"] >= 1
            assert services["exec"]["accepted"] >= 1
            assert services["echo"]["datagrams_in"] == 1
            with urllib.request.urlopen(f"{admin}/metrics", timeout=TIMEOUT) as response:
                metrics = response.read().decode()
            assert 'socketkit_connections_open{service="chat"} 1' in metrics
            assert "socketkit_chat_clients 1" in metrics
            shown = _cli("status", admin.removeprefix("http://"))
            assert shown.returncode == 0, shown.stderr
            rows = {  # first line of each table row (narrow terminals wrap the rest)
                line.split()[1]: line
                for line in shown.stdout.splitlines()
                if line.startswith("│") and line.split()[1] != "│"
            }
            assert set(rows) == {"echo", "chat", "files", "exec"}
            assert "clients 1" in rows["chat"]
            as_json = _cli("status", admin.removeprefix("http://"), "--json")
            assert json.loads(as_json.stdout)["services"]["chat"]["clients"] == 1
            host, port = admin.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=TIMEOUT) as raw:
                raw.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
                assert raw.recv(100).startswith(b"HTTP/1.1 431 ")

        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0


def test_the_quick_start_runs_again_on_its_own_state(tmp_path: Path) -> None:
    # `make serve` twice: the second start finds the state (and the files root given to
    # exec's run-as user) of the first, and an upload of either run is usable by exec.
    state = tmp_path / "state"
    token = ["--token-file", str(state / "token")]
    for run in (1, 2):
        with Proc("serve", "all", "--any-port", "--state-dir", str(state), stdin=False) as proc:
            files = _port(proc, r"^files listening on 127\.0\.0\.1:(\d+) \(tcp\)")
            rexec = _port(proc, r"^exec listening on 127\.0\.0\.1:(\d+) \(tcp\)")
            proc.expect(r"^status at ")
            (tmp_path / f"up{run}.txt").write_text(f"run {run}\n")
            put = _cli("put", f"127.0.0.1:{files}", str(tmp_path / f"up{run}.txt"), *token)
            assert put.returncode == 0, put.stderr
            made = _cli("mkdir", f"127.0.0.1:{files}", f"dir{run}", *token)
            assert made.returncode == 0, made.stderr
            ran = _cli("exec", *token, f"127.0.0.1:{rexec}", "--", "cat", "up1.txt", f"up{run}.txt")
            assert (ran.returncode, ran.stdout) == (0, f"run 1\nrun {run}\n"), ran.stderr
            listed = _cli("exec", *token, f"127.0.0.1:{rexec}", "--", "ls", "-ld", f"dir{run}")
            assert listed.returncode == 0, listed.stderr
            if os.geteuid() == 0:  # given to the run-as user, so commands can use them
                assert " nobody " in listed.stdout
                stored = state / "files" / f"up{run}.txt"
                nobody = pwd.getpwnam("nobody").pw_uid
                assert (stored.stat().st_uid, stat.S_IMODE(stored.stat().st_mode)) == (nobody, 0o644)
            proc.signal(signal.SIGTERM)
            assert proc.wait() == 0


def test_serve_all_without_some_services(tmp_path: Path) -> None:
    argv = ["serve", "all", "--any-port", "--state-dir", str(tmp_path), "--without", "exec"]
    with Proc(*argv, "--without", "files", "--without", "admin", stdin=False) as proc:
        proc.expect(r"^echo listening on")
        proc.expect(r"^chat listening on")
        proc.signal(signal.SIGINT)
        assert proc.wait() == 0
    rest = []
    while (line := proc.lines["out"].get(timeout=TIMEOUT)) is not None:
        rest.append(line)
    out = "\n".join(proc.seen["out"] + rest)
    assert "exec listening" not in out
    assert "files listening" not in out
    assert "status at" not in out


def test_serve_all_off_loopback_refuses_exec_without_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from socketkit.cli.main import main

    argv = ["serve", "all", "--any-port", "--host", "0.0.0.0", "--state-dir", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("PermissionDenied: exec refuses to listen on 0.0.0.0 without TLS")


def test_status_without_an_endpoint_is_a_one_line_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _cli("status", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"ConnectError: cannot connect to 127.0.0.1:{port}: connection refused")
    assert len(result.stderr.splitlines()) == 1


def test_serve_all_host_moves_the_services_but_not_the_admin_endpoint(tmp_path: Path) -> None:
    # README: the admin endpoint "stays on 127.0.0.1 unless --admin-host moves it".
    argv = ["serve", "all", "--any-port", "--host", "127.0.0.2", "--state-dir", str(tmp_path)]
    with Proc(*argv, stdin=False) as proc:
        echo = _port(proc, r"^echo listening on 127\.0\.0\.2:(\d+) \(udp\)")
        proc.expect(r"^chat listening on 127\.0\.0\.2:\d+ \(tcp\)")
        admin = _port(proc, r"^admin listening on 127\.0\.0\.1:(\d+) \(tcp\)")
        assert _port(proc, r"^status at http://127\.0\.0\.1:(\d+)/status") == admin
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", admin), timeout=TIMEOUT).close()

        # A datagram "from" echo's own port (another echo server on it) gets no echo,
        # and the admin endpoint reports the drop.
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as twin,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
        ):
            twin.bind(("127.0.0.1", echo))
            twin.sendto(b"loop?", ("127.0.0.2", echo))
            client.settimeout(TIMEOUT)
            client.sendto(b"marker", ("127.0.0.2", echo))  # handled after the first
            assert client.recvfrom(100)[0] == b"marker"
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=TIMEOUT) as response:
            assert json.load(response)["services"]["echo"]["datagrams_dropped"] == {"own_port": 1}
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=TIMEOUT) as response:
            metrics = response.read().decode()
        assert 'socketkit_datagrams_dropped_total{service="echo",reason="own_port"} 1' in metrics
        shown = _cli("status", f"127.0.0.1:{admin}")
        assert shown.returncode == 0, shown.stderr
        assert "dropped (own_port) 1" in shown.stdout
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
