"""``socketkit chat`` when the server refuses its nick before the welcome: the interactive
client asks for another (and ``/nick``, ``/quit`` work meanwhile); line mode ends with
exit 1 and the server's reason on stderr. Each runs the real command in a subprocess
with a scripted stdin (a pipe for ``--plain``, a pseudo-terminal for the interactive
screen)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import pty
import queue
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.services.chat import client as client_module
from socketkit.services.chat.client import ChatClient
from socketkit.services.chat.conversation import Conversation, Line
from tests.helpers import TIMEOUT
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

TOO_LONG = "n" * 40
"""A nick our argument check takes (RFC 2812 letters, under 64) and the server refuses
(over its NICKLEN of 30): a refusal only the server can make."""


def _command(address: Address, nick: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "socketkit", "chat", str(address), "--nick", nick, "--join", "#r", *extra]


@contextlib.contextmanager
def _room(**config: Any) -> Iterator[tuple[Address, Irc]]:
    with chat_server(**config) as (address,), Irc(address, "watcher") as watcher:
        watcher.send("JOIN #r")
        watcher.expect("366")
        yield address, watcher


@pytest.mark.parametrize(
    ("nick", "reason"),
    [(TOO_LONG, "Erroneous nickname"), ("watcher", "Nickname is already in use")],
    ids=["432", "433"],
)
def test_line_mode_ends_with_the_servers_reason_when_the_nick_is_refused(nick: str, reason: str) -> None:
    with _room() as (address, watcher):
        result = subprocess.run(
            _command(address, nick, "--plain"),
            input=b"hello\n",
            capture_output=True,
            timeout=3 * TIMEOUT,  # the old client waited for a welcome that never came
            check=False,
        )
        errors = result.stderr.decode()
        assert result.returncode == 1, errors
        assert f"the server refused the nickname '{nick}': {reason}" in errors
        assert "Traceback" not in errors
        assert b"refused the nickname" not in result.stdout  # said once, where errors go
        watcher.send("PING :after")  # nobody took a guessed nick (watcher_) or said hello
        watcher.expect("PONG")
        others = [m for m in watcher.seen if not (m.source or "").startswith(("watcher!", "irc.test"))]
        assert others == []


class _Terminal:
    """A child whose stdin and stdout are a pseudo-terminal (the interactive screen),
    with what it prints readable line by line."""

    def __init__(self, command: list[str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        # A dumb terminal: prompt_toolkit still edits lines, but prints no escape codes.
        env = {**os.environ, "TERM": "dumb", "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.master = master
        try:
            self.popen = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env)
        finally:
            os.close(slave)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *complete, pending = re.split(rb"\r?\n|\r", pending)
            for line in complete:
                self.lines.put(line.decode(errors="replace"))
        self.lines.put(pending.decode(errors="replace"))
        self.lines.put(None)

    def expect(self, pattern: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; seen: {self.seen[-12:]}") from None
            if line is None:
                raise AssertionError(f"the terminal closed before {pattern!r}; seen: {self.seen[-12:]}")
            self.seen.append(line)
            if re.search(pattern, line):
                return

    def type(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\r")

    def wait(self) -> int:
        return self.popen.wait(TIMEOUT)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        os.close(self.master)


def test_the_interactive_client_asks_for_another_nick_until_one_is_taken() -> None:
    with _room() as (address, watcher):
        terminal = _Terminal(_command(address, TOO_LONG))
        try:
            terminal.expect(f"the server refused the nickname '{TOO_LONG}': Erroneous nickname")
            terminal.expect("type another nickname")
            terminal.type("/nick watcher")  # /nick works before the welcome: in use
            terminal.expect("the server refused the nickname 'watcher': Nickname is already in use")
            terminal.type("newcomer")  # the answer to the question
            joined = watcher.expect("JOIN", lambda m: (m.source or "").startswith("newcomer!"))
            assert joined.params[0] == "#r"
            terminal.type("hello, room")
            said = watcher.expect("PRIVMSG", lambda m: (m.source or "").startswith("newcomer!"))
            assert said.params == ("#r", "hello, room")
            terminal.type("/quit done")
            assert watcher.expect("QUIT").params == ("Quit: done",)
            assert terminal.wait() == 0
        finally:
            terminal.close()


def test_quit_works_while_the_nick_is_refused() -> None:
    with _room() as (address, _):
        terminal = _Terminal(_command(address, TOO_LONG))
        try:
            terminal.expect("type another nickname")
            terminal.type("/quit")
            assert terminal.wait() == 0
        finally:
            terminal.close()


def test_an_empty_nick_is_refused_at_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "socketkit", "chat", "127.0.0.1:1", "--nick", ""],
        capture_output=True,
        timeout=3 * TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert b"'' is not a nickname" in result.stderr


def test_quit_during_the_reconnect_back_off_ends_the_client_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # An hour between attempts, also after the welcome resets the back-off: only the
    # /quit can end the wait (the old client slept it out, deaf to what was typed).
    monkeypatch.setattr(client_module, "backoff_delays", lambda: itertools.repeat(3600.0))
    shown: list[Line] = []
    state: dict[str, Any] = {"backing_off": threading.Event()}
    started = threading.Event()

    class FakeUI:
        def show(self, lines: Any, current: str | None) -> None:
            shown.extend(lines)
            if any(line.text.startswith("reconnecting in") for line in lines):
                state["backing_off"].set()

        async def read_line(self, prompt: str) -> str | None:
            return await state["typed"].get()

    def client_thread(address: Address) -> None:
        async def main() -> int:
            state["loop"], state["typed"] = asyncio.get_running_loop(), asyncio.Queue()
            talk = Conversation("ours", channels=["#r"], current="#r")
            started.set()
            return await ChatClient(address, talk, FakeUI()).run()

        state["exit"] = asyncio.run(main())

    with _room() as (address, watcher):
        thread = threading.Thread(target=client_thread, args=(address,), daemon=True)
        thread.start()
        started.wait(TIMEOUT)
        watcher.expect("JOIN", lambda m: (m.source or "").startswith("ours!"))
    assert state["backing_off"].wait(TIMEOUT)  # the server is gone; the client waits
    state["loop"].call_soon_threadsafe(state["typed"].put_nowait, "/quit")
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert state["exit"] == 0
    texts = [line.text for line in shown]
    assert sum(text.startswith("reconnecting in") for text in texts) == 1
    assert "not connected: that was not sent" not in texts  # nobody to say goodbye to
