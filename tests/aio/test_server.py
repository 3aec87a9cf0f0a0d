"""AsyncServer on loopback: listeners, TLS, caps, timeouts, back-pressure, shutdown.

Each test runs on the stdlib event loop and on uvloop (see conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from socketkit.address import Address
from socketkit.aio import AsyncServer, Connection, ConnectionLimits, Listener, Session
from socketkit.codec import LineDecoder, encode_line
from socketkit.errors import RemoteProtocolError
from socketkit.services.echo.server import EchoSession, make_echo_server
from socketkit.testing import aio_serving
from tests.aio.conftest import Runner

LOCAL = Address("127.0.0.1", 0)
FAST = {"sweep_interval": 0.02}


async def echo_once(address: Address, data: bytes, *, ssl_context: ssl.SSLContext | None = None) -> bytes:
    if address.path is not None:
        reader, writer = await asyncio.open_unix_connection(address.path)
    else:
        reader, writer = await asyncio.open_connection(
            address.host,
            address.port,
            ssl=ssl_context,
            server_hostname="127.0.0.1" if ssl_context else None,
        )
    try:
        writer.write(data)
        await writer.drain()
        if ssl_context is None:
            writer.write_eof()
            return await reader.read()
        return await reader.readexactly(len(data))
    finally:
        writer.close()
        await writer.wait_closed()


async def udp_once(address: Address, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, payload: bytes, addr: Any) -> None:
            if not got.done():
                got.set_result(payload)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(address.host, address.port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(got, 5)
    finally:
        transport.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the peer sent before closing; a reset (unread data on its side) counts too."""
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""


def test_echo_on_tcp_udp_and_unix_at_once(run: Runner[None], tmp_path: Path) -> None:
    async def main() -> None:
        server = make_echo_server()
        listeners = [
            Listener(LOCAL),
            Listener(LOCAL, "udp"),
            Listener(Address(path=str(tmp_path / "e.sock"))),
        ]
        async with aio_serving(server, listeners) as (tcp, udp, unix):
            assert await echo_once(tcp, b"tcp " * 1000) == b"tcp " * 1000
            assert await udp_once(udp, b"a datagram") == b"a datagram"
            assert await echo_once(unix, "统一".encode()) == "统一".encode()
            stats = server.stats()
            assert stats.accepted == 2
            assert stats.datagrams_in == stats.datagrams_out == 1
            assert stats.bytes_in == 4000 + 10 + 6
        assert not (tmp_path / "e.sock").exists()

    run(main())


def test_largest_datagram_arrives_whole(run: Runner[None]) -> None:
    async def main() -> None:
        async with aio_serving(make_echo_server(), [Listener(LOCAL, "udp")]) as (udp,):
            payload = bytes(range(256)) * 255 + b"x" * 227  # 65,507 bytes
            assert await udp_once(udp, payload) == payload

    run(main())


def test_tls_echo(run: Runner[None]) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        server = make_echo_server(tls_handshake_timeout=0.3)
        async with aio_serving(server, [Listener(LOCAL, ssl=server_ctx)]) as (addr,):
            # A client that never starts its handshake holds nobody up, and is dropped.
            silent = socket.create_connection((addr.host, addr.port))
            try:
                assert await echo_once(addr, b"secret", ssl_context=client_ctx) == b"secret"
                loop = asyncio.get_running_loop()
                silent.setblocking(False)
                assert await asyncio.wait_for(loop.sock_recv(silent, 10), 5) == b""
            finally:
                silent.close()
            assert server.stats().tls_failures == 1

    run(main())


def test_dual_stack_wildcard(run: Runner[None]) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")

    async def main() -> None:
        async with aio_serving(make_echo_server(), [Listener(Address("::", 0))]) as (addr,):
            assert await echo_once(Address("127.0.0.1", addr.port), b"v4") == b"v4"
            assert await echo_once(Address("::1", addr.port), b"v6") == b"v6"

    run(main())


def test_global_cap_refuses_with_the_service_message(run: Runner[None]) -> None:
    async def main() -> None:
        server = make_echo_server(max_connections=2, refusal=lambda reason: f"busy: {reason}\n".encode())
        async with aio_serving(server) as (addr,):
            held = [await asyncio.open_connection(addr.host, addr.port) for _ in range(2)]
            for reader, writer in held:  # both really are being served
                writer.write(b"x")
                assert await reader.readexactly(1) == b"x"
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            assert await reader.read() == b"busy: server full (2 connections)\n"
            writer.close()
            for _, w in held:
                w.close()
            assert server.stats().refused == 1

    run(main())


def test_per_address_cap(run: Runner[None]) -> None:
    async def main() -> None:
        server = make_echo_server(max_connections_per_address=1)
        async with aio_serving(server) as (addr,):
            reader1, writer1 = await asyncio.open_connection(addr.host, addr.port)
            writer1.write(b"1")
            assert await reader1.readexactly(1) == b"1"
            reader2, writer2 = await asyncio.open_connection(addr.host, addr.port)
            assert await reader2.read() == b""  # refused: no refusal message configured
            writer2.close()
            writer1.close()
            await writer1.wait_closed()
            # Once the first leaves, the address may connect again.
            for _ in range(50):
                if not server.stats().per_address:
                    break
                await asyncio.sleep(0.01)
            assert await echo_once(addr, b"again") == b"again"

    run(main())


def test_idle_timeout(run: Runner[None], caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server = make_echo_server(
            limits=ConnectionLimits(idle_timeout=0.2, handshake_timeout=None, message_timeout=None),
            **FAST,
        )
        async with aio_serving(server) as (addr,):
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert server.stats().timeouts == 1

    run(main())
    assert "idle for 0.2 s" in caplog.text


class LineUpper(Session[bytes]):
    def message_received(self, message: bytes) -> None:
        self.conn.send(encode_line(message.upper()))


def line_server(**limits: Any) -> AsyncServer:
    return AsyncServer(
        session_factory=LineUpper,
        decoder_factory=lambda: LineDecoder(max_line_length=64),
        limits=ConnectionLimits(**limits),
        **FAST,
    )


def test_handshake_timeout_for_a_client_that_never_completes_a_message(run: Runner[None]) -> None:
    async def main() -> None:
        server = line_server(handshake_timeout=0.2)
        async with aio_serving(server) as (addr,):
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            writer.write(b"half a li")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main())


def test_slowloris_is_cut_off_although_never_idle(
    run: Runner[None], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        server = line_server(idle_timeout=5, handshake_timeout=None, message_timeout=0.3)
        async with aio_serving(server) as (addr,):
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            writer.write(b"first\n")
            assert await reader.readline() == b"FIRST\n"
            closed = asyncio.ensure_future(read_until_closed(reader))
            for _ in range(100):  # one byte every 20 ms, never a newline
                if closed.done():
                    break
                writer.write(b"x")
                await asyncio.sleep(0.02)
            assert await asyncio.wait_for(closed, 5) == b""
            writer.close()

    run(main())
    assert "a message took longer than 0.3 s" in caplog.text


def test_bad_input_closes_that_connection_only(run: Runner[None], caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server = line_server(handshake_timeout=None)
        async with aio_serving(server) as (addr,):
            good_reader, good_writer = await asyncio.open_connection(addr.host, addr.port)
            bad_reader, bad_writer = await asyncio.open_connection(addr.host, addr.port)
            bad_writer.write(b"y" * 1000)
            assert await bad_reader.read() == b""
            good_writer.write(b"still fine\n")
            assert await good_reader.readline() == b"STILL FINE\n"
            for w in (good_writer, bad_writer):
                w.close()

    run(main())
    assert "protocol error from 127.0.0.1:" in caplog.text


def test_a_session_bug_is_logged_and_ends_that_connection_only(
    run: Runner[None], caplog: pytest.LogCaptureFixture
) -> None:
    class Buggy(Session[bytes]):
        def message_received(self, message: bytes) -> None:
            if message == b"boom":
                raise KeyError("bug")
            self.conn.send(message)

    async def main() -> None:
        server = AsyncServer(session_factory=Buggy)
        async with aio_serving(server) as (addr,):
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            writer.write(b"boom")
            assert await reader.read() == b""
            writer.close()
            assert await echo_once(addr, b"next") == b"next"

    run(main())
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "127.0.0.1:" in record.getMessage()


def test_a_peer_that_never_reads_cannot_grow_our_memory(
    run: Runner[None], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        high = 64 * 1024
        server = make_echo_server(
            limits=ConnectionLimits(
                idle_timeout=None,
                handshake_timeout=None,
                message_timeout=None,
                write_timeout=0.3,
                write_high_water=high,
            ),
            **FAST,
        )
        async with aio_serving(server) as (addr,):
            sock = socket.create_connection((addr.host, addr.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never reads
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            while not server.connections():
                await asyncio.sleep(0.01)
            pushed, peak = 0, 0
            chunk = b"z" * 65536
            deadline = loop.time() + 10
            while loop.time() < deadline:
                try:
                    pushed += sock.send(chunk)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                except (BrokenPipeError, ConnectionResetError):
                    break
                conns = server.connections()
                if not conns:
                    break
                peak = max(peak, conns[0].write_buffer_size)
            sock.close()
            # Reading stopped once the echo backed up: what we queue stays near the mark.
            assert peak <= high + 256 * 1024
            assert server.stats().timeouts == 1

    run(main())
    assert "not reading for 0.3 s" in caplog.text


def test_graceful_shutdown_closes_sessions_and_returns(run: Runner[None]) -> None:
    async def main() -> None:
        server = make_echo_server()
        async with server:
            (addr,) = await server.start([Listener(LOCAL)])
            clients = [await asyncio.open_connection(addr.host, addr.port) for _ in range(5)]
            for reader, writer in clients:
                writer.write(b"hi")
                assert await reader.readexactly(2) == b"hi"
            serving = asyncio.ensure_future(server.serve_forever())
            await server.aclose(grace=2)
            await asyncio.wait_for(serving, 5)
            for reader, writer in clients:
                assert await reader.read() == b""
                writer.close()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(addr.host, addr.port)

    run(main())


def test_task_handlers_end_at_shutdown_or_are_cancelled_after_the_grace(run: Runner[None]) -> None:
    finished: list[str] = []

    async def polite(conn: Connection[bytes]) -> None:
        async for _ in conn:  # ends by itself when the server stops
            pass
        finished.append("polite")

    async def stubborn(conn: Connection[bytes]) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            finished.append("cancelled")
            raise

    async def main() -> None:
        for handler in (polite, stubborn):
            server = AsyncServer(handler=handler)
            async with server:
                (addr,) = await server.start([Listener(LOCAL)])
                _, writer = await asyncio.open_connection(addr.host, addr.port)
                while not server.connections():
                    await asyncio.sleep(0.01)
                await server.aclose(grace=0.2)
                writer.close()

    run(main())
    assert finished == ["polite", "cancelled"]


def test_task_handler_exceptions_are_logged_and_the_server_goes_on(
    run: Runner[None], caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(conn: Connection[bytes]) -> None:
        message = await conn.receive()
        if message == b"boom":
            raise RuntimeError("handler bug")
        await conn.send_all(message)

    async def main() -> None:
        async with aio_serving(AsyncServer(handler=handler)) as (addr,):
            for payload, expected in ((b"boom", b""), (b"fine", b"fine")):
                reader, writer = await asyncio.open_connection(addr.host, addr.port)
                writer.write(payload)
                assert await reader.read() == expected
                writer.close()

    run(main())
    assert "error in the handler of 127.0.0.1:" in caplog.text


def test_task_style_flow_control_bounds_the_inbox(run: Runner[None]) -> None:
    release = asyncio.Event

    async def main() -> None:
        gate = release()
        seen: list[int] = []

        async def slow(conn: Connection[bytes]) -> None:
            await gate.wait()
            async for line in conn:
                seen.append(len(line))

        server = AsyncServer(
            handler=slow,
            decoder_factory=lambda: LineDecoder(),
            limits=ConnectionLimits(max_pending_messages=10, handshake_timeout=None),
        )
        async with aio_serving(server) as (addr,):
            _, writer = await asyncio.open_connection(addr.host, addr.port)
            writer.write(b"x\n" * 100_000)
            while not server.connections():
                await asyncio.sleep(0.01)
            conn = server.connections()[0]
            for _ in range(100):
                await asyncio.sleep(0.01)
            assert conn._inbox is not None
            assert len(conn._inbox) <= 10 + 65536  # at most one read beyond the cap
            assert conn.is_paused("inbox")
            gate.set()
            writer.write_eof()
            while len(seen) < 100_000:
                await asyncio.sleep(0.01)
            writer.close()
        assert seen == [1] * 100_000

    run(main())


def test_several_servers_and_stats_snapshot(run: Runner[None]) -> None:
    async def main() -> None:
        server = make_echo_server()
        async with aio_serving(server) as (addr,):
            for _ in range(3):
                assert await echo_once(addr, b"12345") == b"12345"
            stats = server.stats()
            assert (stats.accepted, stats.closed, stats.open) == (3, 3, 0)
            assert stats.bytes_in == stats.bytes_out == 15
            assert stats.as_dict()["accepted"] == 3

    run(main())


def test_unix_socket_stale_file_is_replaced_and_live_one_refused(run: Runner[None], tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a file left by a crashed server

    async def main() -> None:
        listener = Listener(Address(path=str(path)))
        async with aio_serving(make_echo_server(), [listener]) as (addr,):
            assert await echo_once(addr, b"u") == b"u"
            with pytest.raises(OSError, match="another server is listening"):
                async with aio_serving(make_echo_server(), [listener]):
                    pass

    run(main())


def test_start_outside_async_with_is_an_error(run: Runner[None]) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="async with"):
            await make_echo_server().start([Listener(LOCAL)])
        with pytest.raises(ValueError, match="session_factory or handler"):
            AsyncServer(session_factory=EchoSession, handler=lambda conn: asyncio.sleep(0))

    run(main())


def test_protocol_error_in_task_style_reaches_the_handler(run: Runner[None]) -> None:
    errors: list[str] = []

    async def handler(conn: Connection[bytes]) -> None:
        try:
            async for _ in conn:
                pass
        except RemoteProtocolError as exc:
            errors.append(exc.error_code)

    async def main() -> None:
        server = AsyncServer(handler=handler, decoder_factory=lambda: LineDecoder(max_line_length=8))
        async with aio_serving(server) as (addr,):
            reader, writer = await asyncio.open_connection(addr.host, addr.port)
            writer.write(b"far too long for eight\n")
            assert await reader.read() == b""
            writer.close()

    logging.getLogger("socketkit").setLevel(logging.INFO)
    run(main())
    assert errors == ["frame-too-large"]


def test_yield_turn_delivers_the_rest_on_later_turns_in_order(run: Runner[None]) -> None:
    """A session that yields after every line: a burst arriving in one read is delivered
    one line per loop turn, in order, with nothing lost, and other connections are
    served in between."""
    turns: list[tuple[int, bytes]] = []

    class OnePerTurn(Session[bytes]):
        def message_received(self, message: bytes) -> None:
            turns.append((turn_counter[0], message))
            self.conn.send(message + b"\n")
            self.conn.yield_turn()

    turn_counter = [0]

    async def count_turns() -> None:
        while True:
            turn_counter[0] += 1
            await asyncio.sleep(0)

    async def main() -> None:
        server = AsyncServer(
            session_factory=OnePerTurn, decoder_factory=lambda: LineDecoder(max_line_length=64)
        )
        ticker = asyncio.create_task(count_turns())
        try:
            async with aio_serving(server) as (addr,):
                reader, writer = await asyncio.open_connection(addr.host, addr.port)
                lines = [b"line %d" % i for i in range(200)]
                writer.write(b"".join(line + b"\n" for line in lines))  # one burst
                other_reader, other_writer = await asyncio.open_connection(addr.host, addr.port)
                other_writer.write(b"other\n")
                assert await asyncio.wait_for(other_reader.readline(), 5) == b"other\n"
                got = [(await asyncio.wait_for(reader.readline(), 5)).rstrip(b"\n") for _ in lines]
                assert got == lines
                for w in (writer, other_writer):
                    w.close()
        finally:
            ticker.cancel()

    run(main())
    burst = [turn for turn, message in turns if message.startswith(b"line")]
    assert len(set(burst)) == len(burst), "two lines of one burst were delivered in the same turn"
