"""The asyncio engine's graceful drain, on loopback: what finishes, what is told and
closed, what is cut after the grace, and why (``socketkit.aio.shutdown``).

Each test runs on the stdlib event loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from socketkit._shutdown import SHUTTING_DOWN, grace_ran_out, wire_farewell
from socketkit.address import Address
from socketkit.aio import AsyncServer, Connection, Listener, Session
from socketkit.aio.sendfile import send_file_range
from socketkit.codec import ErrorFrame, LineDecoder, WireDecoder, encode_hello, encode_line
from socketkit.errors import BrokenResourceError, ClosedResourceError
from tests.aio.conftest import Runner

LOCAL = Address("127.0.0.1", 0)


def farewell(reason: str) -> bytes:
    return encode_line(b"BYE " + reason.encode())


async def until(condition: Callable[[], object]) -> None:
    """Wait for ``condition()`` on the loop: a readiness poll, bounded by the runner's
    deadline."""
    while not condition():
        await asyncio.sleep(0.005)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()


def test_a_busy_request_finishes_and_an_idle_connection_gets_the_farewell(run: Runner[None]) -> None:
    async def main() -> None:
        gate, entered = asyncio.Event(), asyncio.Event()

        async def handler(conn: Connection[bytes]) -> None:
            async for line in conn:
                if line == b"work":
                    with conn.busy():
                        entered.set()
                        await gate.wait()
                        await conn.send_all(encode_line(b"done"))
                else:
                    await conn.send_all(encode_line(line.upper()))

        server = AsyncServer(handler=handler, decoder_factory=LineDecoder, farewell=farewell)
        async with server:
            (addr,) = await server.start([Listener(LOCAL)])
            busy_r, busy_w = await asyncio.open_connection(addr.host, addr.port)
            idle_r, idle_w = await asyncio.open_connection(addr.host, addr.port)
            idle_w.write(b"hi\n")
            assert await idle_r.readline() == b"HI\n"
            busy_w.write(b"work\n")
            await entered.wait()
            closing = asyncio.ensure_future(server.aclose(grace=30))
            # The idle one is told at once; the busy one is still being served.
            assert await read_all(idle_r) == farewell(SHUTTING_DOWN)
            assert not closing.done()
            gate.set()
            assert await read_all(busy_r) == encode_line(b"done") + farewell(SHUTTING_DOWN)
            await closing
            for writer in (busy_w, idle_w):
                writer.close()

    run(main())


class Upper(Session[bytes]):
    def message_received(self, message: bytes) -> None:
        self.conn.send(encode_line(message.upper()))


def test_a_message_half_received_at_shutdown_is_completed_and_answered(run: Runner[None]) -> None:
    async def main() -> None:
        server = AsyncServer(session_factory=Upper, decoder_factory=LineDecoder)
        async with server:
            (addr,) = await server.start([Listener(LOCAL)])
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            writer.write(b"hel")
            await until(lambda: server.connections() and server.connections()[0].bytes_in == 3)
            closing = asyncio.ensure_future(server.aclose(grace=30))
            await until(lambda: server.closing)
            writer.write(b"lo\n")
            assert await read_all(reader) == b"HELLO\n"  # answered, then closed
            await closing
            writer.close()

    run(main())


def test_the_grace_cuts_a_busy_handler_after_its_cleanup_and_says_why(run: Runner[None]) -> None:
    cleaned: list[str] = []

    async def main() -> None:
        async def handler(conn: Connection[bytes]) -> None:
            with conn.busy():
                try:
                    await asyncio.Event().wait()  # a request that never ends
                finally:
                    cleaned.append("cleaned up")  # the cut cancels, so cleanup runs

        server = AsyncServer(handler=handler, decoder_factory=LineDecoder, farewell=farewell)
        async with server:
            (addr,) = await server.start([Listener(LOCAL)])
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            await until(server.connections)
            await server.aclose(grace=0.2)
            assert await read_all(reader) == farewell(grace_ran_out(0.2))
            writer.close()

    run(main())
    assert cleaned == ["cleaned up"]


class NeverIdle(Session[bytes]):
    """Holds reading paused (as a service waiting on something of its own would)."""

    def connection_made(self) -> None:
        self.conn.pause_reading()


def test_a_session_still_busy_after_the_grace_is_told_why(run: Runner[None]) -> None:
    async def main() -> None:
        server = AsyncServer(session_factory=NeverIdle, decoder_factory=LineDecoder, farewell=farewell)
        async with server:
            (addr,) = await server.start([Listener(LOCAL)])
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            await until(server.connections)
            await server.aclose(grace=0.2)
            assert await read_all(reader) == farewell(grace_ran_out(0.2))
            writer.close()

    run(main())


def test_sendfile_keeps_the_os_error_as_the_cause_and_aborts_a_cut_body(
    run: Runner[None], tmp_path: Path
) -> None:
    """A peer that resets mid-transfer: the BrokenResourceError says why (its cause is
    the OSError), and the connection is not written to again (it is mid-body)."""
    path = tmp_path / "big"
    path.write_bytes(os.urandom(1 << 20) * 32)
    errors: list[BaseException] = []
    after: list[BaseException] = []

    async def main() -> None:
        async def handler(conn: Connection[bytes]) -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                await send_file_range(conn, fd, 0, path.stat().st_size)
            except BrokenResourceError as exc:
                errors.append(exc)
                try:
                    conn.send(b"an error frame would land inside the body")
                except ClosedResourceError as closed:
                    after.append(closed)
            finally:
                os.close(fd)

        server = AsyncServer(handler=handler)
        async with server:
            (addr,) = await server.start([Listener(LOCAL)])
            sock = socket.create_connection((addr.host, addr.port))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            assert await loop.sock_recv(sock, 65536)  # the body has started
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST
            await until(lambda: errors)

    run(main())
    (error,) = errors
    assert isinstance(error.__cause__, OSError), repr(error.__cause__)
    assert len(after) == 1


def test_a_wire_service_says_goodbye_in_an_error_frame() -> None:
    """exec and files give ``AsyncServer`` this farewell, and ``WireRequestHandler``
    says it on the blocking engine (the CLI tests show it reaching the client): an
    ERROR frame ``shutting-down`` carrying the reason."""
    decoder = WireDecoder()
    decoder.feed(encode_hello() + wire_farewell(grace_ran_out(0.5)))
    decoder.next_event()  # the hello every connection opens with
    frame = decoder.next_event()
    assert isinstance(frame, ErrorFrame)
    assert (frame.code, frame.message) == ("shutting-down", grace_ran_out(0.5))
