"""Address parsing for the command line (pure)."""

from __future__ import annotations

import os

import pytest

from socketkit.address import Address, format_host_port, limit_key, parse_address, parse_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7007", Address("127.0.0.1", 7007)),
        ("example.org:80", Address("example.org", 80)),
        ("[::1]:6667", Address("::1", 6667)),
        ("[fe80::1%eth0]:22", Address("fe80::1%eth0", 22)),
        (":9000", Address("127.0.0.1", 9000)),
        ("9000", Address("127.0.0.1", 9000)),
        ("0", Address("127.0.0.1", 0)),
        ("unix:/tmp/s.sock", Address(path="/tmp/s.sock")),
        ("unix:relative.sock", Address(path="relative.sock")),
    ],
)
def test_parse(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "expected HOST:PORT"),
        ("::1:80", "brackets"),
        ("host:http", "port must be a number"),
        ("host:70000", "0-65535"),
        ("[::1]", "expected \\[IPv6\\]:PORT"),
        ("unix:", "needs a path"),
        ("host:-1", "port must be a number"),
    ],
)
def test_errors_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_address(text)


def test_round_trip_through_str() -> None:
    for text in ("127.0.0.1:1", "[::1]:2", "unix:/x"):
        assert str(parse_address(text)) == text
    assert format_host_port("::", 5) == "[::]:5"
    assert parse_port("65535") == 65535
    assert parse_address("7", default_host="0.0.0.0") == Address("0.0.0.0", 7)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.1", "loopback"),
        ("127.200.3.4", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.9", "loopback"),
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("uid:1000", "uid:1000"),
        (None, "unix"),
    ],
)
def test_peers_for_per_address_rules(host: str | None, key: str) -> None:
    assert limit_key(host) == key


def test_rotating_loopback_addresses_is_one_peer_for_the_connection_cap() -> None:
    import asyncio
    import socket

    from socketkit.aio.listeners import Listener
    from socketkit.services.echo.server import make_echo_server
    from socketkit.testing import aio_serving

    async def main() -> None:
        server = make_echo_server(max_connections_per_address=3)
        async with aio_serving(server, [Listener(Address("127.0.0.1", 0))]) as (address,):
            socks = []
            try:
                for source in ("127.0.0.1", "127.0.0.2", "127.5.6.7", "127.9.9.9"):
                    sock = socket.socket()
                    sock.setblocking(False)
                    sock.bind((source, 0))
                    await asyncio.get_running_loop().sock_connect(sock, (address.host, address.port))
                    socks.append(sock)
                # The fourth, from yet another 127.x address, is closed at once.
                assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(socks[3], 1), 10) == b""
                assert server.stats().refused == 1
                assert server.stats().per_address == {f"uid:{os.geteuid()}": 3}  # one user
            finally:
                for sock in socks:
                    sock.close()

    asyncio.run(main())
