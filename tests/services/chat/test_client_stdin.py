"""``socketkit chat --plain`` with every kind of stdin: a terminal, a pipe, a regular file,
/dev/null, a closed fd 0. Each runs in a subprocess (uvloop aborted the whole process on
some of them, which no in-process test could survive), with uvloop and with the stdlib
loop: what was typed is said, then the end of the input sends QUIT and the client exits 0."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from tests.helpers import TIMEOUT
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

KINDS = ["tty", "pipe", "file", "devnull", "closed"]


@pytest.fixture
def room() -> Iterator[tuple[Address, Irc]]:
    with chat_server() as (address,), Irc(address, "watcher") as watcher:
        watcher.send("JOIN #r")
        watcher.expect("366")
        yield address, watcher


def _run_client(address: Address, nick: str, kind: str, text: bytes, tmp_path: Path, uvloop: str) -> Any:
    """Run the client with ``text`` as its input, connected as ``kind``; its result."""
    command = [
        sys.executable,
        "-m",
        "socketkit",
        "chat",
        str(address),
        "--nick",
        nick,
        "--join",
        "#r",
        "--plain",
    ]
    env = {**os.environ, "SOCKETKIT_UVLOOP": uvloop}
    run: dict[str, Any] = {"capture_output": True, "timeout": 3 * TIMEOUT, "env": env}
    if kind == "pipe":
        return subprocess.run(command, input=text, check=False, **run)
    if kind == "file":
        path = tmp_path / "input.txt"
        path.write_bytes(text)
        with path.open("rb") as stdin:
            return subprocess.run(command, stdin=stdin, check=False, **run)
    if kind == "devnull":
        return subprocess.run(command, stdin=subprocess.DEVNULL, check=False, **run)
    if kind == "closed":  # fd 0 closed before Python starts (sh closes it, then execs)
        return subprocess.run(["sh", "-c", 'exec "$0" "$@" <&-', *command], check=False, **run)
    assert kind == "tty"
    master, slave = pty.openpty()
    try:
        # Typed ahead: the line, then Ctrl-D at the start of a line (the terminal's EOF).
        os.write(master, text + b"\x04")
        return subprocess.run(command, stdin=slave, check=False, **run)
    finally:
        os.close(slave)
        os.close(master)


@pytest.mark.parametrize("uvloop", ["1", "0"], ids=["uvloop", "asyncio"])
@pytest.mark.parametrize("kind", KINDS)
def test_any_stdin_is_read_to_its_end_then_the_client_quits(
    room: tuple[Address, Irc], kind: str, uvloop: str, tmp_path: Path
) -> None:
    address, watcher = room
    nick = f"{kind}{uvloop}"
    typed = kind not in ("devnull", "closed")
    text = f"hello from a {kind}\n".encode() if typed else b""
    result = _run_client(address, nick, kind, text, tmp_path, uvloop)
    errors = result.stderr.decode(errors="replace")
    assert result.returncode == 0, errors
    assert "Fatal Python error" not in errors
    assert "Traceback" not in errors
    watcher.expect("JOIN", lambda m: (m.source or "").startswith(f"{nick}!"))
    if typed:
        said = watcher.expect("PRIVMSG", lambda m: (m.source or "").startswith(f"{nick}!"))
        assert said.params == ("#r", f"hello from a {kind}")
    quit_ = watcher.expect("QUIT", lambda m: (m.source or "").startswith(f"{nick}!"))
    assert quit_.params == ("Quit: Leaving",)


def test_a_line_that_cannot_be_sent_is_reported_and_the_rest_goes_on(
    room: tuple[Address, Irc], tmp_path: Path
) -> None:
    address, watcher = room
    text = b"first\nnul\x00inside\ncr\rinside\nlast\n"
    result = _run_client(address, "filer", "file", text, tmp_path, "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b"that cannot be sent: IRC allows no NUL or CR in a line") == 2
    said = [watcher.expect("PRIVMSG").params[-1] for _ in range(2)]
    assert said == ["first", "last"]
    assert watcher.expect("QUIT").params == ("Quit: Leaving",)
