"""The talk server on a thread with a short handshake deadline: a plain client that says
nothing at first (the tutorial's, waiting for its user to type) is still served."""

from __future__ import annotations

import asyncio
import queue
import re
from typing import Any

from socketkit.aio.server import AsyncServer
from socketkit.services.talk.server import TalkServer
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT, connect, recv_line


def _expect(shown: queue.Queue[str], pattern: str) -> str:
    while True:
        line = shown.get(timeout=TIMEOUT)
        if re.search(pattern, line):
            return line


def test_a_client_silent_through_the_handshake_deadline_is_served_as_plain_text() -> None:
    shown: queue.Queue[str] = queue.Queue()
    talk = TalkServer(shown.put, handshake_timeout=0.2)
    state: dict[str, Any] = {}

    def started(server: AsyncServer) -> None:
        state["loop"] = asyncio.get_running_loop()

    with (
        server_thread(talk.make_server, on_started=started) as (address,),
        connect((address.host, address.port)) as sock,
    ):
        _expect(shown, r"^\* #1 127\.0\.0\.1:\d+ joined \(plain text\)$")  # it has sent nothing
        state["loop"].call_soon_threadsafe(talk.command, "@1 你在吗?")
        assert recv_line(sock) == "你在吗?\n".encode()  # text, never a binary hello
        sock.sendall(b"exit")
        _expect(shown, r"^\* #1 .* left$")
