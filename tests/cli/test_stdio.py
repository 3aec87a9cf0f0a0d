"""Odd standard streams and wrong ports: every command ends with one clear line and an
exit status, never an AttributeError or a hang."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from socketkit.cli.main import main
from socketkit.services.echo.server import make_echo_server
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT


def socketkit(*args: str, close: str) -> subprocess.CompletedProcess[bytes]:
    """Run the command through sh with ``close`` (``<&-``, ``>&-``) applied."""
    command = " ".join([sys.executable, "-m", "socketkit", *args, close])
    return subprocess.run(["sh", "-c", command], check=False, capture_output=True, timeout=TIMEOUT)


def test_send_with_stdin_closed_sends_nothing_and_prints_the_reply() -> None:
    with server_thread(make_echo_server) as (address,):
        done = socketkit("send", str(address), close="<&-")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_send_with_stdout_closed_is_no_crash() -> None:
    with server_thread(make_echo_server) as (address,):
        done = socketkit("send", str(address), "hello", close=">&- </dev/null")
    assert done.returncode == 0
    assert b"Error" not in done.stderr


@pytest.mark.parametrize("service", ["echo", "silent"])
def test_talk_says_when_a_port_does_not_speak_talk(
    service: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An echo port sends our hello back and then no welcome; a silent one sends nothing.
    import socket

    monkeypatch.setattr("socketkit.limits.DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S", 0.3)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    if service == "echo":
        with server_thread(make_echo_server) as (address,):
            status = main(["talk", str(address)])
    else:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            status = main(["talk", f"127.0.0.1:{listener.getsockname()[1]}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1
    # An echo port sends our own hello back: a hello, but no welcome.
    what = "it said hello but no welcome" if service == "echo" else "no answer to our hello"
    assert f"is not a socketkit talk server: {what} within 0.3 s" in err[0]


def test_errors_say_what_failed_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "unix:/nonexistent/sock", "x"]) == 1
    assert capsys.readouterr().err == (
        "ConnectError: cannot connect to unix:/nonexistent/sock: no such socket "
        "(is a server listening there?)\n"
    )
    assert main(["send", "no-such-host.invalid:7", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "ConnectError: cannot connect to no-such-host.invalid:7: cannot resolve the host name"
    )
    assert err.count("\n") == 1
