"""``socketkit serve chat``, ``socketkit chat`` and ``socketkit passwd`` as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from socketkit.address import Address
from socketkit.cli.main import main
from socketkit.services.chat.session import verify_password
from tests.cli.procs import Proc
from tests.services.chat.ircclient import Irc


def _address(match: re.Match[str]) -> Address:
    host, port = match.group(1).rsplit(":", 1)
    return Address(host, int(port))


def test_serve_chat_with_operators_password_and_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    hashed = (
        subprocess.run(
            [sys.executable, "-m", "socketkit", "passwd"],
            input=b"opsecret\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    assert verify_password(hashed, "opsecret")
    (tmp_path / "opers").write_text(f"# name password\nroot {hashed}\n")
    (tmp_path / "pass").write_text("letmein\n")
    for secret in ("opers", "pass"):  # secrets: refused if others can read them
        (tmp_path / secret).chmod(0o600)
    (tmp_path / "motd").write_text("Hello from the test MOTD\n")
    args = [
        "serve", "chat", "--port", "0", "--server-name", "irc.cli",
        "--tls-port", "0", "--tls-cert", str(cert_file), "--tls-key", str(key_file),
        "--state-dir", str(tmp_path / "state"), "--oper-file", str(tmp_path / "opers"),
        "--password-file", str(tmp_path / "pass"), "--motd-file", str(tmp_path / "motd"),
    ]  # fmt: skip
    with Proc(*args) as server:
        plain = _address(server.expect(r"chat listening on (\S+) \(tcp\)"))
        secure = _address(server.expect(r"chat listening on (\S+) \(tcp\+tls\)"))
        with Irc(plain) as intruder:
            intruder.send("NICK intruder", "USER i 0 * :I")
            assert intruder.expect("464")
            assert "Bad password" in intruder.closed_reason()
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with Irc(secure, tls=context) as admin:
            admin.send("PASS letmein")
            admin.register("admin")
            motd = [m.params[-1] for m in admin.seen if m.command == "372"]
            assert motd == ["- Hello from the test MOTD"]
            assert admin.seen[0].source == "irc.cli"
            admin.send("OPER root opsecret")
            assert admin.expect("381")
            # Our client reads the password from a file (never from its command line)...
            with Proc(
                "chat", str(plain), "--nick", "member", "--plain", "--password-file", str(tmp_path / "pass")
            ) as member:
                member.expect(r"connected to")
                member.close_stdin()
                assert member.wait() == 0
            # ... or from the environment; a wrong one is fatal (exit 1), not retried.
            os.environ["SOCKETKIT_CHAT_PASSWORD"] = "wrong"
            try:
                with Proc("chat", str(plain), "--nick", "guess", "--plain") as guess:
                    guess.expect(r"refused the password", "err")  # what ends the client: on stderr
                    assert guess.wait() == 1
            finally:
                del os.environ["SOCKETKIT_CHAT_PASSWORD"]
        server.expect(r"connection #\d+ from", "err")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_the_terminal_client_in_line_mode(tmp_path: Path) -> None:
    with Proc("serve", "chat", "--port", "0", "--state-dir", str(tmp_path)) as server:
        address = _address(server.expect(r"chat listening on (\S+)"))
        with Irc(address, "friend") as friend:
            friend.send("JOIN #lobby")
            friend.expect("366")
            with Proc("chat", str(address), "--nick", "cli", "--join", "lobby", "--plain") as client:
                client.expect(r"connected to")
                friend.expect("JOIN", lambda m: (m.source or "").startswith("cli!"))
                client.write(b"hello from the terminal\n")
                said = friend.expect("PRIVMSG")
                assert said.params == ("#lobby", "hello from the terminal")
                friend.send("PRIVMSG #lobby :hello, cli")
                client.expect(r"^\d\d:\d\d #lobby <friend> hello, cli$")
                friend.send("PRIVMSG cli :private")
                client.expect(r"^\d\d:\d\d \*friend\* private$")
                client.write(b"/nick cli2\n/names\n")
                client.expect(r"cli is now known as cli2")
                client.expect(r"in #lobby: .*cli2")
                client.close_stdin()  # end of input: the client says goodbye and exits
                assert client.wait() == 0
                assert friend.expect("QUIT").params == ("Quit: Leaving",)
        server.signal(signal.SIGINT)
        assert server.wait() == 0


def test_the_terminal_client_fails_fast_when_nothing_listens() -> None:
    with Proc("chat", "127.0.0.1:1", "--nick", "x", "--plain") as client:
        client.expect(r"cannot connect to 127\.0\.0\.1:1", "err")
        assert client.wait() == 1


@pytest.mark.parametrize("option", ["--motd-file", "--oper-file", "--password-file"])
def test_files_the_server_options_name_are_capped_and_checked(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (2 << 20))
    latin1 = tmp_path / "latin1"
    latin1.write_bytes(b"caf\xe9\n")
    for path in (big, latin1):
        path.chmod(0o600)
    serve = ["serve", "chat", "--port", "0", "--state-dir", str(tmp_path / "state")]
    for path, why in (
        ("/dev/zero", "is not a regular file or a pipe"),  # it read 3 GB in 3 s
        (str(big), "is larger than"),
        (str(latin1), "is not UTF-8 text"),
        (str(tmp_path / "missing"), "No such file or directory"),
    ):
        assert main([*serve, option, path]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith("ConfigError: the ")
        assert why in err[0]
        assert path in err[0]


def test_the_client_password_file_is_capped_and_a_fifo_never_hangs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", "127.0.0.1:1", "--nick", "x", "--plain", "--password-file", "/dev/zero"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ConfigError: the password file /dev/zero is not a regular file or a pipe"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: read as empty, at once (a blocking open waited for ever)
    with Proc("chat", "127.0.0.1:1", "--nick", "x", "--plain", "--password-file", str(fifo)) as client:
        client.expect(r"cannot connect to 127\.0\.0\.1:1", "err")
        assert client.wait() == 1


def test_chat_command_line_mistakes_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "127.0.0.1:1", "--nick", "no spaces"]) == 2
    assert "is not a nickname" in capsys.readouterr().err.splitlines()[-1]
    assert main(["chat", "127.0.0.1:1", "--nick", "x", "--join", "#a\u202eb"]) == 2
    assert "is not a channel name" in capsys.readouterr().err.splitlines()[-1]
    assert main(["chat", "127.0.0.1:1", "--nick", "x", "--tls", "--tls-ca", "/nonexistent/ca.pem"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "ConfigError: cannot load the TLS CA bundle /nonexistent/ca.pem: no such file or directory"
    ]


def test_the_motd_is_capped_and_made_sendable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from socketkit.services.chat.state import MAX_MOTD_FILE_SIZE, MOTD_LINE_BYTES, motd_lines

    huge = tmp_path / "motd"
    huge.write_bytes(b"x" * (MAX_MOTD_FILE_SIZE + 1))
    assert main(["serve", "chat", "--port", "0", "--state-dir", str(tmp_path), "--motd-file", str(huge)]) == 1
    assert f"is larger than {MAX_MOTD_FILE_SIZE} bytes" in capsys.readouterr().err
    lines = motd_lines("é" * 500 + "\n\x1b[2Jclear\x07 me\ttab\n")
    assert all(len(line.encode()) <= MOTD_LINE_BYTES for line in lines)
    assert "".join(lines[:-1]) == "é" * 500  # cut between characters, nothing lost
    assert lines[-1] == "[2Jclear me    tab"


def test_password_and_operator_files_others_can_read_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = tmp_path / "shared"
    shared.write_text("root hunter2\n")
    shared.chmod(0o644)
    serve = ["serve", "chat", "--port", "0", "--state-dir", str(tmp_path / "state")]
    for argv in (
        [*serve, "--oper-file", str(shared)],
        [*serve, "--password-file", str(shared)],
        ["chat", "127.0.0.1:1", "--nick", "x", "--plain", "--password-file", str(shared)],
    ):
        assert main(argv) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.endswith(f"can be read by other users (mode -rw-r--r--): chmod 600 {shared}")
