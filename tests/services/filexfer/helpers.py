"""Running a file server in a thread and talking to it, for the file service's tests."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from socketkit.address import Address
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.aio.wire import exchange_hello
from socketkit.auth.connect import ServiceTarget
from socketkit.auth.session import authenticate_client
from socketkit.codec.wire import WireDecoder, WireEvent, encode_body_header, encode_control
from socketkit.errors import ResourceError
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.protocol import PutRequest
from socketkit.services.filexfer.server import FileServer, FileSettings
from socketkit.services.filexfer.store import FileStore, StoreLimits
from socketkit.state import StateDB
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT

TOKEN = "f00d" * 16


@contextmanager
def serving(
    root: Path, db: StateDB | None = None, *, settings: dict[str, Any] | None = None, **limits: Any
) -> Iterator[tuple[Address, FileStore]]:
    """A file server on loopback (its periodic tasks running, as under the CLI); stopped,
    its thread joined and its store closed on exit."""
    with FileStore(str(root), db, StoreLimits(**limits)) as store:
        service = FileServer(FileSettings(store=store, token=TOKEN, **(settings or {})))
        with server_thread(service.make_server, on_started=service.on_started) as (address,):
            yield address, store


def client_run(address: Address, body: Any) -> Any:
    """Run ``await body(client)`` with a fresh authenticated client."""

    async def go() -> Any:
        client = await FileClient.connect(ServiceTarget(address, TOKEN))
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def request_put(client: FileClient, path: str, data: bytes, **flags: Any) -> dict[str, Any]:
    """Send a put request and return the server's first answer ("ready"); the body is
    not sent yet (``send_body``). Raises the server's ``ServiceError``."""
    client.conn.send(encode_control(PutRequest(path, len(data), sha(data), **flags).to_header()))
    return await client._reply()


async def send_body(client: FileClient, data: bytes, offset: int = 0) -> dict[str, Any]:
    """The body of a put whose "ready" said ``offset``; returns the "done" reply."""
    client.conn.send(encode_body_header(len(data) - offset))
    if len(data) > offset:
        client.conn.send(data[offset:])
    return await client._reply()


async def raw_session(address: Address, *, login: bool) -> Connection[WireEvent]:
    """A wire-v1 connection to the file server after the hello and the challenge, logged
    in (``login``) or not: frames are sent and read as they are, with no client logic."""
    conn: Connection[WireEvent] = Connection(
        decoder=WireDecoder(), limits=ConnectionLimits(None, None, None, None)
    )
    await asyncio.get_running_loop().create_connection(lambda: conn, address.host, address.port)
    if login:
        await authenticate_client(conn, TOKEN, service="files")
    else:
        await exchange_hello(conn)
        await conn.receive()  # the challenge
    return conn


async def closed_without_answer(conn: Connection[WireEvent]) -> bool:
    """Whether the server closes ``conn`` without sending it anything more."""
    try:
        event = await asyncio.wait_for(conn.receive(), TIMEOUT)
    except (EOFError, ResourceError):
        return True
    finally:
        conn.abort()
    raise AssertionError(f"the server answered {event!r}")
