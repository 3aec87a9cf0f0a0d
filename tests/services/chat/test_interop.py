"""Interoperability: a third-party IRC client library (``irc`` from PyPI, as used by bots
and tools) registers, joins, talks to another real client and to socketkit's own
client, and reads the channel's history after a server restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from socketkit.services.chat.client import ChatClient
from socketkit.services.chat.conversation import Conversation, Line
from tests.helpers import TIMEOUT
from tests.services.chat.servers import chat_server

irc_client = pytest.importorskip("irc.client")


class Bot:
    """One ``irc.client`` connection, recording the events it gets."""

    def __init__(self, reactor: Any, address: Any, nick: str) -> None:
        self.events: list[Any] = []
        self.conn = reactor.server()
        self.conn.add_global_handler("all_events", self._record)
        self.conn.connect(address.host, address.port, nick)

    def _record(self, connection: Any, event: Any) -> None:
        if connection is self.conn:
            self.events.append(event)

    def got(self, kind: str, where: Callable[[Any], bool] = lambda e: True) -> Any:
        return next((e for e in self.events if e.type == kind and where(e)), None)


def pump(reactor: Any, condition: Callable[[], Any]) -> Any:
    """Run the library's reactor until ``condition()`` is truthy (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        reactor.process_once(0.05)
    raise AssertionError("the irc library client did not get there in time")


def test_the_irc_library_registers_joins_talks_and_quits(tmp_path: Path) -> None:
    with chat_server(tmp_path) as (address,):
        reactor = irc_client.Reactor()
        try:
            alice, bob = Bot(reactor, address, "alice"), Bot(reactor, address, "bob")
            pump(reactor, lambda: alice.got("welcome") and bob.got("welcome"))
            alice.conn.join("#lib")
            pump(reactor, lambda: alice.got("endofnames"))
            bob.conn.join("#lib")
            pump(reactor, lambda: alice.got("join", lambda e: e.source.nick == "bob"))
            alice.conn.privmsg("#lib", "hello from a real client")
            msg = pump(reactor, lambda: bob.got("pubmsg"))
            assert (msg.source.nick, msg.target, msg.arguments) == (
                "alice",
                "#lib",
                ["hello from a real client"],
            )
            bob.conn.privmsg("alice", "a private word")
            private = pump(reactor, lambda: alice.got("privmsg"))
            assert private.arguments == ["a private word"]
            bob.conn.topic("#lib", "bob may not")  # +t: only operators
            assert pump(reactor, lambda: bob.got("chanoprivsneeded"))
            alice.conn.topic("#lib", "Library talk")
            assert pump(reactor, lambda: bob.got("topic")).arguments == ["Library talk"]
            bob.conn.quit("done")
            assert pump(reactor, lambda: alice.got("quit")).arguments == ["Quit: done"]
            alice.conn.quit("bye")
            pump(reactor, lambda: alice.got("disconnect"))
        finally:
            reactor.disconnect_all()


def test_a_real_client_and_socketkit_chat_talk_and_history_survives_a_restart(tmp_path: Path) -> None:
    shown: list[Line] = []
    typed: asyncio.Queue[str | None] | None = None

    class FakeUI:
        def show(self, lines: Any, current: str | None) -> None:
            shown.extend(lines)

        async def read_line(self, prompt: str) -> str | None:
            assert typed is not None
            return await typed.get()

    def run_ours(address: Any, body: Callable[[ChatClient], Any]) -> None:
        """socketkit's client on its own loop in this thread, driven by ``body``."""

        async def main() -> None:
            nonlocal typed
            typed = asyncio.Queue()
            client = ChatClient(
                address, Conversation("ours", channels=["#mixed"], current="#mixed"), FakeUI()
            )
            task = asyncio.ensure_future(client.run())
            await asyncio.wait_for(client.connected.wait(), TIMEOUT)
            await body(client)
            await typed.put("/quit see you")
            assert await asyncio.wait_for(task, TIMEOUT) == 0

        asyncio.run(main())

    async def until(condition: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            assert time.monotonic() < deadline, [str(line) for line in shown]
            reactor.process_once(0.0)
            await asyncio.sleep(0.02)
        return condition()

    with chat_server(tmp_path) as (address,):
        reactor = irc_client.Reactor()
        try:
            real = Bot(reactor, address, "real")
            pump(reactor, lambda: real.got("welcome"))
            real.conn.join("#mixed")
            pump(reactor, lambda: real.got("endofnames"))

            async def talk(client: ChatClient) -> None:
                assert typed is not None
                await until(lambda: real.got("join", lambda e: e.source.nick == "ours"))
                await typed.put("hello real client")
                heard = await until(lambda: real.got("pubmsg"))
                assert heard.arguments == ["hello real client"]
                real.conn.privmsg("#mixed", "hello socketkit")
                line = await until(lambda: next((x for x in shown if x.text == "hello socketkit"), None))
                assert (line.nick, line.target, line.kind) == ("real", "#mixed", "message")
                await typed.put("/msg real just for you")
                assert (await until(lambda: real.got("privmsg"))).arguments == ["just for you"]

            run_ours(address, talk)
            real.conn.quit("restart")
        finally:
            reactor.disconnect_all()
    # The server restarts on the same state directory: the real client reads the history.
    with chat_server(tmp_path) as (address,):
        reactor = irc_client.Reactor()
        try:
            real = Bot(reactor, address, "real")
            real.conn.send_raw("CAP REQ :server-time batch draft/chathistory")
            pump(reactor, lambda: real.got("welcome"))
            real.conn.join("#mixed")
            pump(reactor, lambda: real.got("endofnames"))
            real.conn.send_raw("CHATHISTORY LATEST #mixed * 10")
            pump(reactor, lambda: len([e for e in real.events if e.type == "pubmsg"]) >= 2)
            history = [(e.source.nick, e.arguments[0]) for e in real.events if e.type == "pubmsg"]
            assert history == [("ours", "hello real client"), ("real", "hello socketkit")]
            times = [
                tag["value"]
                for e in real.events
                if e.type == "pubmsg"
                for tag in e.tags or ()
                if tag["key"] == "time"
            ]
            assert len(times) == 2
        finally:
            reactor.disconnect_all()
