"""Servers started from socketkit.toml: the file's ports, env and flag overrides, a
service left out, SIGHUP applying a new cap with the connections kept, JSON logs."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

from tests.cli.procs import Proc
from tests.helpers import TIMEOUT


def _free_ports(count: int) -> list[int]:
    # The ports a configuration file names must be concrete; the kernel picks free ones
    # (released at once: a race with other programs is possible, not with this suite's
    # servers, which all use port 0).
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _echo(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"ping")
        return sock.recv(4)


def test_serve_all_from_the_file_alone(tmp_path: Path) -> None:
    echo, chat, files, admin = _free_ports(4)
    (tmp_path / "socketkit.toml").write_text(
        f'[all]\nstate_dir = "state"\n[echo]\nport = {echo}\n[chat]\nport = {chat}\n'
        f"[files]\nport = {files}\n[exec]\nenabled = false\n[admin]\nport = {admin}\n"
    )
    with Proc("serve", "all", stdin=False, cwd=tmp_path) as proc:
        assert proc.expect(r"^echo listening on 127\.0\.0\.1:(\d+) \(tcp\)").group(1) == str(echo)
        assert proc.expect(r"^chat listening on 127\.0\.0\.1:(\d+) \(tcp\)").group(1) == str(chat)
        assert proc.expect(r"^files listening on 127\.0\.0\.1:(\d+) \(tcp\)").group(1) == str(files)
        assert proc.expect(r"^admin listening on 127\.0\.0\.1:(\d+) \(tcp\)").group(1) == str(admin)
        assert _echo(echo) == b"ping"
        assert not any(line.startswith("exec ") for line in proc.seen["out"])  # enabled = false
        assert (tmp_path / "state" / "token").exists()  # [all] state_dir
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    in_file, in_env, in_flag = _free_ports(3)
    (tmp_path / "socketkit.toml").write_text(f"[echo]\nport = {in_file}\n")
    with Proc("serve", "echo", stdin=False, cwd=tmp_path) as proc:
        assert proc.expect(r"^echo listening on 127\.0\.0\.1:(\d+)").group(1) == str(in_file)
    env = {"SOCKETKIT_ECHO_PORT": str(in_env)}
    with Proc("serve", "echo", stdin=False, cwd=tmp_path, env=env) as proc:
        assert proc.expect(r"^echo listening on 127\.0\.0\.1:(\d+)").group(1) == str(in_env)
    with Proc("serve", "echo", "--port", str(in_flag), stdin=False, cwd=tmp_path, env=env) as proc:
        assert proc.expect(r"^echo listening on 127\.0\.0\.1:(\d+)").group(1) == str(in_flag)
    other = tmp_path / "other.toml"
    other.write_text(f"[echo]\nport = {in_flag}\n")
    with Proc("serve", "echo", "--config", str(other), stdin=False) as proc:
        assert proc.expect(r"^echo listening on 127\.0\.0\.1:(\d+)").group(1) == str(in_flag)


def test_a_bad_file_stops_the_start_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "socketkit.toml").write_text("[echo]\nport = 0\nidle_timeout = 0\n")
    with Proc("serve", "echo", stdin=False, cwd=tmp_path) as proc:
        assert proc.wait() == 1
        proc.expect(r"^ConfigError: socketkit\.toml:3: \[echo\] idle_timeout: expected a number", "err")


def test_sighup_applies_a_new_cap_and_keeps_the_connections(tmp_path: Path) -> None:
    config = tmp_path / "socketkit.toml"
    config.write_text("[echo]\nport = 0\nmax_connections = 2\n")
    with Proc("serve", "echo", stdin=False, cwd=tmp_path) as proc:
        port = int(proc.expect(r"^echo listening on 127\.0\.0\.1:(\d+)").group(1))
        kept = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(2)]
        try:
            for sock in kept:
                sock.sendall(b"a")
                assert sock.recv(1) == b"a"
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as third:
                assert third.recv(100) == b""  # full: closed at once
            config.write_text("[echo]\nport = 1\nmax_connections = 3\n")
            proc.signal(signal.SIGHUP)
            proc.expect(r"SIGHUP: echo: max_connections 2 -> 3", "err")
            proc.expect(r"SIGHUP: echo: port changed, which needs a restart; kept as it was", "err")
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as third:
                third.sendall(b"c")
                assert third.recv(1) == b"c"
            for sock in kept:  # never dropped
                sock.sendall(b"b")
                assert sock.recv(1) == b"b"
            config.write_text("[echo]\nmax_connections = 0\n")
            proc.signal(signal.SIGHUP)
            proc.expect(r"SIGHUP: the configuration was not reloaded: .*max_connections", "err")
            kept[0].sendall(b"d")
            assert kept[0].recv(1) == b"d"
        finally:
            for sock in kept:
                sock.close()


def test_json_log_lines_parse_and_carry_their_fields(tmp_path: Path) -> None:
    (tmp_path / "socketkit.toml").write_text('[all]\nlog_format = "json"\n[echo]\nport = 0\n')
    with Proc("serve", "echo", stdin=False, cwd=tmp_path) as proc:
        proc.expect(r"^echo listening on")
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
        line = proc.expect(r"shutting down", "err").string
    record = json.loads(line)
    assert record["level"] == "info"
    assert record["logger"] == "socketkit.aio.server"
    assert "SIGTERM: shutting down" in record["message"]
    assert record["time"].endswith("Z")
