"""The engine's datagram sockets: nobody else can bind our UDP port, empty datagrams are
sent, and drops are counted by reason. Each loop test runs on both event loops."""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path
from typing import Any

import pytest

import socketkit.server as ss
from socketkit.address import Address
from socketkit.aio import AsyncServer, DatagramEndpoint, Listener
from socketkit.aio.listeners import bind_datagram, bind_stream
from socketkit.services.echo.server import make_echo_server
from socketkit.testing import aio_serving
from tests.aio.conftest import Runner

LOCAL_UDP = Listener(Address("127.0.0.1", 0), "udp")
TIMEOUT = 5.0

# A second socket trying to share the address: with each option another user could set.
SHARING = [("SO_REUSEADDR", socket.SO_REUSEADDR)]
if hasattr(socket, "SO_REUSEPORT"):
    SHARING += [("SO_REUSEPORT", socket.SO_REUSEPORT)]


def bind_with(option: int, address: tuple[str, int], kind: int = socket.SOCK_DGRAM) -> None:
    """Bind a socket with ``option`` set to ``address`` (then close it)."""
    with socket.socket(socket.AF_INET, kind) as intruder:
        intruder.setsockopt(socket.SOL_SOCKET, option, 1)
        intruder.bind(address)


@pytest.mark.parametrize(("name", "option"), SHARING, ids=[name for name, _ in SHARING])
def test_nobody_can_bind_our_udp_listener_address(run: Runner[None], name: str, option: int) -> None:
    async def main() -> None:
        async with aio_serving(make_echo_server(), [LOCAL_UDP]) as (udp,):
            with pytest.raises(OSError, match="in use") as caught:
                bind_with(option, (udp.host, udp.port))
            assert caught.value.errno == errno.EADDRINUSE, name

    run(main())


@pytest.mark.parametrize(("name", "option"), SHARING, ids=[name for name, _ in SHARING])
def test_nobody_can_bind_the_blocking_engines_udp_address(name: str, option: int) -> None:
    with ss.UDPServer(("127.0.0.1", 0), ss.DatagramRequestHandler) as server:
        with pytest.raises(OSError, match="in use") as caught:
            bind_with(option, server.server_address)
        assert caught.value.errno == errno.EADDRINUSE, name


def test_udp_sockets_set_no_reuse_option_outside_a_workers_group() -> None:
    with bind_datagram(Address("127.0.0.1", 0)) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        if hasattr(socket, "SO_REUSEPORT"):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    # TCP keeps SO_REUSEADDR: there it only means "restart despite TIME_WAIT".
    with bind_stream(Address("127.0.0.1", 0)) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="--workers needs SO_REUSEPORT")
def test_a_workers_group_shares_a_udp_port_and_only_reuse_port_joins_it() -> None:
    with bind_datagram(Address("127.0.0.1", 0), reuse_port=True) as first:
        address = Address("127.0.0.1", first.getsockname()[1])
        with bind_datagram(address, reuse_port=True) as second:
            assert second.getsockname() == first.getsockname()
        with pytest.raises(OSError, match="in use") as caught:
            bind_with(socket.SO_REUSEADDR, (address.host, address.port))
        assert caught.value.errno == errno.EADDRINUSE


async def exchange(address: Address, data: bytes) -> bytes:
    """Send one datagram from a fresh socket; return the first datagram back."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(data, (address.host, address.port))  # loopback: never blocks
        return await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)


def test_an_empty_datagram_is_echoed(run: Runner[None]) -> None:
    # RFC 862: "send back any data it receives" - an empty datagram too (both loops'
    # DatagramTransport.sendto drop b"" before Python 3.13; see aio/datagram.py).
    async def main() -> None:
        server = make_echo_server()
        async with aio_serving(server, [LOCAL_UDP]) as (udp,):
            assert await exchange(udp, b"") == b""
            assert await exchange(udp, b"x") == b"x"
            stats = server.stats()
            assert (stats.datagrams_in, stats.datagrams_out) == (2, 2)

    run(main())


def test_drops_are_counted_by_reason_and_kept_out_of_the_flat_counters(run: Runner[None]) -> None:
    def handler(data: bytes, addr: Any, endpoint: DatagramEndpoint) -> None:
        if data.startswith(b"drop "):
            endpoint.drop(data[5:].decode())
        else:
            endpoint.sendto(data, addr)

    async def main() -> None:
        server = AsyncServer(datagram_handler=handler)
        async with aio_serving(server, [LOCAL_UDP]) as (udp,):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for reason in ("a", "b", "a"):
                    sock.sendto(b"drop " + reason.encode(), (udp.host, udp.port))
            assert await exchange(udp, b"done") == b"done"  # handled in order: drops done
            stats = server.stats()
            assert stats.datagrams_dropped == {"a": 2, "b": 1}
            assert "datagrams_dropped" not in stats.as_dict()
            assert stats.as_dict()["datagrams_in"] == 4

    run(main())


def test_unix_datagrams_are_echoed_whole_and_one_too_large_is_dropped_whole(
    run: Runner[None], tmp_path: Path
) -> None:
    async def main() -> None:
        server = make_echo_server()
        listener = Listener(Address(path=str(tmp_path / "e.sock")), "udp")
        async with aio_serving(server, [listener]) as (address,):
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(str(tmp_path / "c.sock"))
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                big = bytes(range(256)) * 400  # 102,400 bytes: more than any UDP payload
                sock.sendto(b"x" * 300_000, address.path)  # more than the 256 KiB buffer
                sock.sendto(big, address.path)
                assert await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), TIMEOUT) == big
            stats = server.stats()
            assert stats.datagrams_dropped == {"truncated": 1}
            assert (stats.datagrams_in, stats.datagrams_out) == (2, 1)

    run(main())
