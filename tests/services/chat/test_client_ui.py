"""The terminal client's screen: prompt_toolkit's line editor and the plain renderer."""

from __future__ import annotations

import asyncio
import io
import itertools
import threading
import time
from typing import Any

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.plain_text import PlainTextOutput

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.services.chat.client import ChatClient, PromptUI, backoff_delays, render_plain
from socketkit.services.chat.conversation import Conversation, Line
from tests.helpers import TIMEOUT
from tests.services.chat.ircclient import Irc
from tests.services.chat.servers import chat_server

NOW = time.mktime((2027, 1, 15, 9, 5, 0, 0, 0, -1))


def test_prompt_ui_reads_edited_lines_and_prints_above_the_prompt() -> None:
    screen = io.StringIO()
    with create_pipe_input() as keys:
        ui = PromptUI(input=keys, output=PlainTextOutput(screen))
        keys.send_text("helo\x7flo there\r")  # a typo fixed with backspace
        assert asyncio.run(ui.read_line("[#room] ")) == "hello there"
        keys.send_text("\x04")  # Ctrl-D on an empty line: end of input
        assert asyncio.run(ui.read_line("> ")) is None
        ui.show([Line(NOW, "message", "hi all", "bob", "#room")], "#room")
    assert "09:05 #room <bob> hi all" in screen.getvalue()


def test_plain_rendering() -> None:
    assert render_plain(Line(NOW, "message", "hi", "bob", "#r"), "#r") == "09:05 #r <bob> hi"
    assert render_plain(Line(NOW, "message", "psst", "bob", "bob"), None) == "09:05 *bob* psst"
    assert render_plain(Line(NOW, "message", "psst", "me", "bob", own=True), None) == "09:05 -> *bob* psst"
    assert render_plain(Line(NOW, "action", "waves", "bob", "#r"), None) == "09:05 #r * bob waves"
    assert render_plain(Line(NOW, "event", "bob joined #r"), None) == "09:05 -- bob joined #r"
    assert render_plain(Line(NOW, "error", "nope"), None) == "09:05 !! nope"
    assert (
        render_plain(Line(NOW, "message", "old", "bob", "#r", history=True), None)
        == "09:05 (history) #r <bob> old"
    )


def test_reconnect_back_off_doubles_with_jitter_up_to_a_cap() -> None:
    low = backoff_delays(rand=lambda: 0.0)
    assert [next(low) for _ in range(8)] == [0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 45.0, 45.0]
    high = backoff_delays(rand=lambda: 1.0)
    assert [next(high) for _ in range(3)] == [1.0, 2.0, 4.0]


def test_the_client_reconnects_and_rejoins_after_a_server_restart() -> None:
    shown: list[Line] = []
    state: dict[str, Any] = {}
    started = threading.Event()

    class FakeUI:
        def show(self, lines: Any, current: str | None) -> None:
            shown.extend(lines)

        async def read_line(self, prompt: str) -> str | None:
            return await state["typed"].get()

    def client_thread(address: Address) -> None:
        async def main() -> int:
            state["loop"], state["typed"] = asyncio.get_running_loop(), asyncio.Queue()
            talk = Conversation("ours", channels=["#r"], current="#r")
            client = ChatClient(address, talk, FakeUI(), delays=itertools.repeat(0.05))
            started.set()
            return await client.run()

        state["exit"] = asyncio.run(main())

    with chat_server() as (address,), Irc(address, "watcher") as watcher:
        watcher.send("JOIN #r")
        thread = threading.Thread(target=client_thread, args=(address,))
        thread.start()
        started.wait(TIMEOUT)
        watcher.expect("JOIN", lambda m: (m.source or "").startswith("ours!"))
    fixed = [Listener(Address("127.0.0.1", address.port))]
    with chat_server(listeners=fixed), Irc(address, "watcher") as watcher:
        watcher.send("JOIN #r")
        watcher.expect("JOIN", lambda m: (m.source or "").startswith("ours!"))  # it came back and rejoined
        state["loop"].call_soon_threadsafe(state["typed"].put_nowait, "/quit done")
        thread.join(TIMEOUT)
        assert state["exit"] == 0
        assert watcher.expect("QUIT").params == ("Quit: done",)
    texts = [line.text for line in shown]
    assert any(text.startswith("reconnecting in") for text in texts)
    assert sum(text.startswith("connected to") for text in texts) == 2


def test_a_refused_oper_is_not_mistaken_for_a_refused_connection_password() -> None:
    shown: list[Line] = []
    state: dict[str, Any] = {}
    started = threading.Event()

    class FakeUI:
        def show(self, lines: Any, current: str | None) -> None:
            shown.extend(lines)

        async def read_line(self, prompt: str) -> str | None:
            return await state["typed"].get()

    def type_line(text: str) -> None:
        state["loop"].call_soon_threadsafe(state["typed"].put_nowait, text)

    def client_thread(address: Address) -> None:
        async def main() -> int:
            state["loop"], state["typed"] = asyncio.get_running_loop(), asyncio.Queue()
            talk = Conversation("ours", channels=["#r"], current="#r")
            client = ChatClient(address, talk, FakeUI(), delays=itertools.repeat(0.05))
            started.set()
            return await client.run()

        state["exit"] = asyncio.run(main())

    with (
        chat_server(opers={"root": "secret"}) as (address,),
        Irc(address, "watcher") as watcher,
    ):
        watcher.send("JOIN #r", "OPER root secret")
        watcher.expect("381")
        thread = threading.Thread(target=client_thread, args=(address,))
        thread.start()
        started.wait(TIMEOUT)
        watcher.expect("JOIN", lambda m: (m.source or "").startswith("ours!"))
        type_line("/quote OPER root wrong")  # answered 464, like a wrong connection password
        type_line("after the refusal")
        watcher.expect("PRIVMSG", lambda m: m.params[-1] == "after the refusal")
        watcher.send("KILL ours :come back")  # the connection ends: the client must return
        watcher.expect("JOIN", lambda m: (m.source or "").startswith("ours!"))
        type_line("/quit done")
        thread.join(TIMEOUT)
        assert state["exit"] == 0
    texts = [line.text for line in shown]
    assert "the server refused the password" not in texts
    assert any(text.startswith("reconnecting in") for text in texts)
