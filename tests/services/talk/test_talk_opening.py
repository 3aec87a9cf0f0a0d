"""talk's wire-v1 opening goes through the shared session (socketkit.auth.wiresession):
a peer of another version is told so in an ERROR frame, whichever side notices."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading

import pytest

from socketkit.address import Address
from socketkit.codec.wire import ErrorFrame, Hello, WireDecoder, encode_hello
from socketkit.services.talk.client import talk
from socketkit.services.talk.server import TalkServer
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT, connect, recv_until_closed

VERSION_2 = encode_hello(2, 2)


def frames(data: bytes) -> list[object]:
    decoder = WireDecoder()
    decoder.feed(data)
    decoder.feed(b"")
    return list(decoder)


def test_the_talk_server_tells_a_client_of_another_version() -> None:
    shown: queue.Queue[str] = queue.Queue()
    with (
        server_thread(TalkServer(shown.put).make_server) as (address,),
        connect((address.host, address.port)) as sock,
    ):
        sock.sendall(VERSION_2)
        got = frames(recv_until_closed(sock))
    assert got == [
        Hello(1, 1),
        ErrorFrame("version-mismatch", "no common protocol version: we speak 1..1, the peer speaks 2..2"),
    ]


def test_the_talk_client_tells_a_server_of_another_version(capsys: pytest.CaptureFixture[str]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    received: list[bytes] = []

    def version_2_server() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            conn.sendall(VERSION_2)
            received.append(recv_until_closed(conn))

    thread = threading.Thread(target=version_2_server)
    thread.start()
    try:
        status = asyncio.run(talk(Address("127.0.0.1", listener.getsockname()[1]), timeout=TIMEOUT))
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert status == 1
    assert "we speak 1..1, the peer speaks 2..2" in capsys.readouterr().err
    assert frames(received[0]) == [
        Hello(1, 1),
        ErrorFrame("version-mismatch", "no common protocol version: we speak 1..1, the peer speaks 2..2"),
    ]
