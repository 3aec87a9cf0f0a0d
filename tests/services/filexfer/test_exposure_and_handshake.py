"""What the docs promise about where files listens and what its client says to a port that
is not a file server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.auth.connect import ServiceTarget
from socketkit.cli.main import main
from socketkit.errors import PermissionDenied
from socketkit.services.echo.server import make_echo_server
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.server import FileServer, FileSettings
from socketkit.services.filexfer.store import FileStore
from tests.aio_thread import server_thread
from tests.services.filexfer.helpers import TOKEN


def socket_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
        except OSError:
            continue
    return fds


def test_files_refuses_to_listen_off_loopback_without_a_token(tmp_path: Path) -> None:
    everywhere = [Listener(Address("0.0.0.0", 0))]  # the exposure under test

    async def without_token(store: FileStore) -> None:
        server = FileServer(FileSettings(store=store, token=None)).make_server()
        async with server:
            before = socket_fds()
            with pytest.raises(PermissionDenied) as info:
                await server.start(everywhere)
            assert info.value.code == "exposed"
            assert server.addresses == []
            assert socket_fds() == before  # refused before anything was bound

    async def with_token(store: FileStore) -> None:
        server = FileServer(FileSettings(store=store, token=TOKEN)).make_server()
        async with server:
            (address,) = await server.start(everywhere)
            assert address.port > 0
            client = await FileClient.connect(ServiceTarget(Address("127.0.0.1", address.port), TOKEN))
            try:
                assert await client.list("") == []
            finally:
                await client.aclose()
            await server.aclose()

    with FileStore(str(tmp_path), None) as store:
        asyncio.run(without_token(store))
        asyncio.run(with_token(store))


def test_a_client_pointed_at_an_echo_port_says_it_is_not_a_file_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The echo server answers our hello with itself, then waits: the client's own
    # handshake deadline ends it, with one line and the connection-failure status.
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    with server_thread(make_echo_server) as (address,):
        status = main(["ls", str(address)])
    err = capsys.readouterr().err
    assert status == 255
    assert err.count("\n") == 1, err
    assert f"{address} does not speak the socketkit files protocol" in err
