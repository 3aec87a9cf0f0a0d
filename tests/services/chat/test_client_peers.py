"""The terminal client against peers that are not (good) IRC servers: another protocol,
a stream that ends inside a line, an echo, silence. It says once that the peer is not an
IRC server and exits 1, or, after a server that spoke IRC sends bad input, ends that
session and reconnects; it never reads the same error again and again."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.services.chat.client import ChatClient
from socketkit.services.chat.conversation import Conversation, Line
from tests.helpers import TIMEOUT

Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _finish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """End our side, then read until the client closes (no reset, whatever it sent)."""
    writer.write_eof()
    while await reader.read(65536):
        pass
    writer.close()


async def _exec_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SKW1\x00\x01\x02binary handshake, no newline")  # what the exec port sends: no line
    await _finish(reader, writer)


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\x16\x03\x01 TLS, say")
    await writer.drain()
    writer.transport.abort()


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await _finish(reader, writer)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _finish(reader, writer)


async def _run(peer: Peer, ui: Any) -> tuple[int, list[str]]:
    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ChatClient(Address("127.0.0.1", port), Conversation("x"), ui, delays=itertools.repeat(0.0))
    async with server:
        status = await asyncio.wait_for(client.run(), TIMEOUT)
    return status, [line.text for line in ui.shown]


class _UI:
    """Shows nothing on screen; reads nothing until told to end the input."""

    def __init__(self) -> None:
        self.shown: list[Line] = []
        self.end = asyncio.Event()

    def show(self, lines: Any, current: str | None) -> None:
        self.shown.extend(lines)

    async def read_line(self, prompt: str) -> str | None:
        await self.end.wait()
        return None


@pytest.mark.parametrize(
    "peer", [_exec_like, _reset, _http, _echo, _silent], ids=["exec", "reset", "http", "echo", "silent"]
)
def test_a_peer_that_is_not_an_irc_server_is_named_once(peer: Peer) -> None:
    async def main() -> tuple[int, list[str]]:
        return await _run(peer, _UI())

    status, texts = asyncio.run(main())
    assert status == 1
    assert sum("is not an IRC server" in text for text in texts) == 1
    assert len(texts) <= 3  # connected, the one line (the exec port made it print 476,756)


def test_bad_input_from_an_irc_server_ends_the_session_and_the_client_reconnects() -> None:
    async def main() -> tuple[int, list[str], int]:
        ui = _UI()
        connections = 0

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            writer.write(b":irc.test 001 x :Welcome\r\n")
            if connections == 1:
                writer.write(b":irc.test NOTICE x :the stream ends inside this li")
                await _finish(reader, writer)
                return
            await writer.drain()
            ui.end.set()  # the second time: the input ends, the client says QUIT
            while line := await reader.readline():
                if line.startswith(b"QUIT"):
                    break
            writer.close()

        status, texts = await _run(peer, ui)
        return status, texts, connections

    status, texts, connections = asyncio.run(main())
    assert status == 0
    assert connections == 2
    assert sum(text.startswith("bad data from the server") for text in texts) == 1
    assert any(text.startswith("reconnecting in") for text in texts)


def test_text_from_a_server_that_is_not_utf8_is_shown_with_replacement_characters() -> None:
    async def main() -> list[str]:
        ui = _UI()

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b":irc.test 001 x :Welcome\r\n:bob!b@h PRIVMSG x :caf\xe9\r\n")
            await writer.drain()
            ui.end.set()
            while line := await reader.readline():
                if line.startswith(b"QUIT"):
                    break
            writer.close()

        status, texts = await _run(peer, ui)
        assert status == 0
        return texts

    assert "caf\ufffd" in asyncio.run(main())
