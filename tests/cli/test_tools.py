"""send, listen and probe through their real entry points (in-process or as subprocesses)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import socketkit.server as ss
from socketkit.cli.main import main
from socketkit.services.echo.server import EchoHandler
from socketkit.testing import serving
from tests.cli.procs import Proc
from tests.helpers import TIMEOUT, connect, recv_exactly, recv_until_closed


class UdpEcho(ss.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


class Story1(ss.BaseRequestHandler):
    """The tutorial's story 1 server: read once, answer, close."""

    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall("滚蛋!".encode())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_send_prints_the_reply_and_exits_0(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Story1)
    with serving(server):
        assert main(["send", f"127.0.0.1:{server.server_address[1]}", "俺喜欢你"]) == 0
    assert capsysbinary.readouterr().out == "滚蛋!".encode()


def test_send_echo_over_tcp_unix_and_udp(capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    tcp = ss.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler)
    unix = ss.ThreadingUnixStreamServer(str(tmp_path / "e.sock"), EchoHandler)
    udp = ss.UDPServer(("127.0.0.1", 0), UdpEcho)
    with serving(tcp), serving(unix), serving(udp):
        assert main(["send", "-n", f"127.0.0.1:{tcp.server_address[1]}", "tcp"]) == 0
        assert main(["send", f"unix:{tmp_path / 'e.sock'}", "unix"]) == 0
        assert main(["send", "--udp", f"127.0.0.1:{udp.server_address[1]}", "udp"]) == 0
    assert capsysbinary.readouterr().out == b"tcp\nunixudp"


def test_send_reads_stdin_when_no_message(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    payload = bytes(range(256)) * 4000  # binary, ~1 MB: arrives whole and unchanged
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(payload)))
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), EchoHandler)
    with serving(server):
        assert main(["send", f"127.0.0.1:{server.server_address[1]}"]) == 0
    assert capsysbinary.readouterr().out == payload


def test_send_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    assert main(["send", f"127.0.0.1:{port}", "x"]) == 1
    assert capsys.readouterr().err.startswith(
        f"ConnectError: cannot connect to 127.0.0.1:{port}: connection refused"
    )
    # A server that accepts (in the backlog) and never answers: a timeout, not a hang.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        assert main(["send", "--timeout", "0.3", f"127.0.0.1:{silent.getsockname()[1]}", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("TimeoutError: no reply from 127.0.0.1:")
    assert err.count("\n") == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.1", 0))
        assert main(["send", "--udp", "--timeout", "0.3", f"127.0.0.1:{quiet.getsockname()[1]}", "x"]) == 1
    assert "TimeoutError" in capsys.readouterr().err
    assert main(["send", "nonsense", "x"]) == 2


def test_listen_prints_what_arrives_sends_stdin_and_half_closes() -> None:
    with Proc("listen", "0") as proc:
        port = int(proc.expect(r"listening on 127\.0\.0\.1:(\d+) \(tcp\)", "err").group(1))
        sock = connect(("127.0.0.1", port))
        with sock:
            proc.expect("connection from 127.0.0.1:", "err")
            sock.sendall(b"from the client\n")
            proc.expect("^from the client$")
            proc.write(b"from stdin\n")
            assert recv_exactly(sock, 11) == b"from stdin\n"
            proc.close_stdin()  # end of our input: listen half-closes ...
            assert recv_until_closed(sock) == b""
            sock.sendall(b"still heard\n")  # ... and still prints what arrives
            proc.expect("^still heard$")
        proc.expect("the peer closed the connection", "err")
        assert proc.wait() == 0


def test_listen_keep_open_serves_client_after_client() -> None:
    with Proc("listen", "-k", "0") as proc:
        port = int(proc.expect(r"listening on 127\.0\.0\.1:(\d+)", "err").group(1))
        for text in ("first", "second"):
            sock = connect(("127.0.0.1", port))
            with sock:
                sock.sendall(text.encode() + b"\n")
                proc.expect(f"^{text}$")
            proc.expect("the peer closed the connection", "err")
        assert proc.popen.poll() is None  # still listening


def test_listen_udp() -> None:
    with Proc("listen", "--udp", "0") as proc:
        port = int(proc.expect(r"listening on 127\.0\.0\.1:(\d+) \(udp\)", "err").group(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.sendto(b"datagram\n", ("127.0.0.1", port))
            proc.expect("^datagram$")
            proc.write(b"reply\n")
            assert sock.recv(100) == b"reply\n"


def test_probe_json_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    closed = _closed_port()
    with socket.create_server(("127.0.0.1", 0)) as listening:
        open_port = listening.getsockname()[1]
        assert main(["probe", "127.0.0.1", f"{open_port}", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["results"][0]["state"] == "open"
        assert main(["probe", "127.0.0.1", f"{open_port},{closed}", "--json"]) == 1
        states = {r["port"]: (r["state"], r["errno"]) for r in json.loads(capsys.readouterr().out)["results"]}
        assert states[open_port] == ("open", 0)
        assert states[closed][0] == "closed"
        assert main(["probe", "127.0.0.1", f"{open_port},{closed}"]) == 1
        table = capsys.readouterr().out
        assert "open" in table
        assert "closed" in table


def test_probe_ranges_concurrency_and_bad_lists(capsys: pytest.CaptureFixture[str]) -> None:
    start = _closed_port()
    assert main(["probe", "127.0.0.1", f"{start}-{start + 30}", "--concurrency", "4", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "31 port(s)" in out
    assert main(["probe", "127.0.0.1", "80-20"]) == 2
    assert "ends before it starts" in capsys.readouterr().err
    assert main(["probe", "127.0.0.1", "80,,81"]) == 2
