"""Address parsing for the command line (pure)."""

from __future__ import annotations

import pytest

from socketkit.address import Address, format_host_port, parse_address, parse_port


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
