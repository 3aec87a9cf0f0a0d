"""The engine's per-peer caps count a local peer by its user (``socketkit.peercred``),
worked out once at accept and carried on the connection (``conn.limit_key``)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio import AsyncServer, Connection, Listener
from socketkit.peercred import PeerKeys
from socketkit.services.echo.server import make_echo_server
from socketkit.testing import aio_serving
from tests.aio.conftest import Runner
from tests.helpers import TIMEOUT
from tests.other_user import NOBODY, OtherUser

ME = f"uid:{os.geteuid()}"


async def connect_from(address: Address, source: str) -> socket.socket:
    sock = socket.socket()
    try:
        sock.setblocking(False)
        sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, (address.host, address.port))
    except BaseException:
        sock.close()
        raise
    return sock


async def echoed(sock: socket.socket, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, data)
    return await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)


async def closed_at_once(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without a word (a refusal over a cap)."""
    try:
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), TIMEOUT) == b""
    except ConnectionResetError:
        return True


def test_each_local_user_has_its_own_connection_cap(run: Runner[None]) -> None:
    # Red-team round 2, finding 5: the cap of one "loopback" peer was every local
    # user's together, so one user at the cap shut all the others out.
    async def main() -> None:
        server = make_echo_server(max_connections_per_address=2)
        async with aio_serving(server, [Listener(Address("127.0.0.1", 0))]) as (address,):
            mine = [await connect_from(address, source) for source in ("127.0.0.1", "127.0.0.2")]
            try:
                assert [await echoed(sock, b"x") for sock in mine] == [b"x", b"x"]
                # Mine from yet another 127.x address is over my cap: closed at once.
                with await connect_from(address, "127.5.6.7") as third:
                    assert await closed_at_once(third)

                def echo_as_nobody(hold: list[object]) -> str:
                    client = socket.create_connection((address.host, address.port), TIMEOUT)
                    hold.append(client)
                    client.sendall(b"hello")
                    return client.recv(65536).decode() or "refused"

                with OtherUser(echo_as_nobody) as other:
                    assert await other.report() == "hello"
                    assert server.stats().per_address == {ME: 2, f"uid:{NOBODY.pw_uid}": 1}
                assert server.stats().refused == 1
            finally:
                for sock in mine:
                    sock.close()

    run(main())


def test_unix_socket_peers_are_capped_per_user(run: Runner[None], tmp_path: Path) -> None:
    async def main() -> None:
        server = make_echo_server(max_connections_per_address=1)
        listener = Listener(Address(path=str(tmp_path / "echo.sock")))
        async with aio_serving(server, [listener]) as (address,):
            assert address.path is not None
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_UNIX) as first, socket.socket(socket.AF_UNIX) as second:
                for sock in (first, second):
                    sock.setblocking(False)
                    await loop.sock_connect(sock, address.path)
                assert await echoed(first, b"x") == b"x"
                assert await closed_at_once(second)  # my second: over my cap
                assert server.stats().per_address == {ME: 1}

    run(main())


def test_the_key_is_worked_out_once_per_connection_and_carried_on_it(
    run: Runner[None], monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[Any] = []
    real = PeerKeys.loopback_owner

    def counted(self: PeerKeys, sock: socket.socket, peer: Any) -> int | None:
        lookups.append(peer)
        return real(self, sock, peer)

    monkeypatch.setattr(PeerKeys, "loopback_owner", counted)
    seen: list[str] = []

    async def handler(conn: Connection[Any]) -> None:
        async for chunk in conn:
            seen.append(conn.limit_key)
            await conn.send_all(chunk)

    async def main() -> None:
        server = AsyncServer(handler=handler)
        async with aio_serving(server, [Listener(Address("127.0.0.1", 0))]) as (address,):
            with await connect_from(address, "127.0.0.1") as sock:
                for data in (b"a", b"b", b"c"):
                    assert await echoed(sock, data) == data
        assert seen == [ME] * 3
        assert len(lookups) == 1

    run(main())


def test_when_the_service_lets_no_connection_go_the_newcomer_is_refused(run: Runner[None]) -> None:
    # ``evict`` decides: the admin endpoint lets go only of a connection still waiting
    # for its request head; one that lets none go leaves the cap a plain refusal.
    asked: list[str] = []

    def keep_all(conn: Connection[Any]) -> bool:
        asked.append(conn.limit_key)
        return False

    async def main() -> None:
        server = make_echo_server(max_connections_per_address=1, evict=keep_all)
        async with aio_serving(server, [Listener(Address("127.0.0.1", 0))]) as (address,):
            with await connect_from(address, "127.0.0.1") as first:
                assert await echoed(first, b"x") == b"x"
                with await connect_from(address, "127.0.0.2") as second:
                    assert await closed_at_once(second)
                assert await echoed(first, b"y") == b"y"  # still there
        assert asked == [ME]
        assert server.stats().refused == 1

    run(main())
