"""Echo servers for the benchmarks, one per implementation, all with the same behaviour:
print the listening port, echo every byte, stop on SIGINT.

    python bench/echo_servers.py NAME
"""

from __future__ import annotations

import logging
import resource
import sys
from typing import Any


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def threaded(module: Any) -> None:
    """The tutorial's concurrent echo server (with its empty-read check) on `module`."""

    class Echo(module.BaseRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            conn = self.request
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)

    server = module.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True  # the benchmark kills it; no drain wanted
    logging.disable(logging.INFO)  # one line per closed connection would cost time
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _UvloopEcho:
    """The bare minimum: an asyncio Protocol that writes back what it reads."""

    def __init__(self) -> None:
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Any) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class _UvloopDatagramEcho:
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)

    def error_received(self, exc: Any) -> None:
        pass

    def connection_lost(self, exc: Any) -> None:
        pass


def _serve_async(main: Any, use_uvloop: bool) -> None:
    import asyncio
    import signal

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await main(stop)

    if use_uvloop:
        import uvloop

        uvloop.run(runner())
    else:
        asyncio.run(runner())


def bare_protocol(kind: str, use_uvloop: bool = True) -> None:
    """A bare (uv)loop Protocol / DatagramProtocol echo: the reference."""
    import asyncio
    import socket

    async def main(stop: Any) -> None:
        loop = asyncio.get_running_loop()
        if kind == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                _UvloopDatagramEcho, local_addr=("127.0.0.1", 0)
            )
            print(transport.get_extra_info("sockname")[1], flush=True)
            await stop.wait()
            transport.close()
            return
        server = await loop.create_server(_UvloopEcho, "127.0.0.1", 0, backlog=4096)
        sock = server.sockets[0]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print(sock.getsockname()[1], flush=True)
        await stop.wait()
        server.close()

    _serve_async(main, use_uvloop)


def asyncio_streams(use_uvloop: bool) -> None:
    """The asyncio streams echo every tutorial shows (stdlib loop, or uvloop)."""
    import asyncio

    async def handle(reader: Any, writer: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main(stop: Any) -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await stop.wait()
        server.close()

    _serve_async(main, use_uvloop)


def socketkit_aio(kind: str) -> None:
    """`socketkit serve echo` itself, through the CLI entry point."""
    from socketkit.cli.main import main as cli

    args = [
        "-q",
        "serve",
        "echo",
        "--port",
        "0",
        "--max-connections",
        "20000",
        "--max-per-address",
        "20000",
    ]
    if kind == "udp":
        # Every flow comes from 127.0.0.1: lift the per-source reply rate (its cost per
        # datagram is still paid), as --max-per-address lifts the per-address cap.
        args += ["--udp", "--udp-rate", "1e9", "--udp-burst", "1000000000"]
    raise SystemExit(cli(args))


def stdlib_udp() -> None:
    import socketserver

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(data, self.client_address)

    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Echo)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main() -> None:
    _raise_nofile()
    name = sys.argv[1]
    if name == "stdlib-threading":
        import socketserver

        threaded(socketserver)
    elif name in ("socketkit-threading", "socketkit-threading-noguard"):
        import socketkit.server

        if name.endswith("noguard"):
            socketkit.server.TCPServer.max_reads_after_eof = None
        threaded(socketkit.server)
    elif name == "uvloop-protocol":
        bare_protocol("tcp")
    elif name == "uvloop-datagram":
        bare_protocol("udp")
    elif name == "asyncio-streams":
        asyncio_streams(use_uvloop=False)
    elif name == "asyncio-streams-uvloop":
        asyncio_streams(use_uvloop=True)
    elif name == "socketkit-aio":
        socketkit_aio("tcp")
    elif name == "socketkit-aio-udp":
        socketkit_aio("udp")
    elif name == "stdlib-threading-udp":
        stdlib_udp()
    else:
        sys.exit(f"unknown server {name!r}")


if __name__ == "__main__":
    main()
