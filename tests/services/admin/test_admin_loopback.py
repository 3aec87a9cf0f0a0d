"""The admin endpoint on loopback: slow request heads get 408, and one address cannot
take every connection slot while other clients still get /status."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.limits import ADMIN_HEADER_TIMEOUT_S, ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS_PER_ADDRESS
from socketkit.services.admin.protocol import ServiceStatus
from socketkit.services.admin.server import make_admin_server
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT, recv_until_closed

ADMIN = [Listener(Address("127.0.0.1", 0))]
TRICKLE_S = 0.02  # a slowloris's pace: one byte whenever the server has said nothing for this long


def services() -> Sequence[ServiceStatus]:
    return [ServiceStatus("echo", ["127.0.0.1:7007"], {"open": 0}, datagrams_dropped={"own_port": 2})]


@contextmanager
def admin(**options: float) -> Iterator[tuple[str, int]]:
    with server_thread(lambda: make_admin_server(services, **options), ADMIN) as (address,):
        yield address.host, address.port


def connect_from(source: str, address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        sock.bind((source, 0))
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def get_status(address: tuple[str, int], source: str = "127.0.0.1") -> tuple[bytes, Any]:
    with connect_from(source, address) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = recv_until_closed(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], json.loads(body) if body else {}


def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408_while_others_are_served() -> None:
    with admin(header_timeout=0.5) as address:
        slow = connect_from("127.0.0.1", address)
        with slow:
            slow.sendall(b"GET /status HTTP/1.1\r\n")
            # Meanwhile a well-behaved client is answered at once.
            status, document = get_status(address)
            assert status == b"HTTP/1.1 200 OK"
            assert document["services"] == {
                "echo": {"addresses": ["127.0.0.1:7007"], "open": 0, "datagrams_dropped": {"own_port": 2}}
            }
            # Never idle: a header byte whenever the server has been quiet for a moment.
            sent = 0
            while not select.select([slow], [], [], TRICKLE_S)[0]:
                slow.sendall(b"X-Slow: y\r\n"[sent % 11 : sent % 11 + 1])
                sent += 1
            response = recv_until_closed(slow)
        assert sent > 0
        assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"Connection: close\r\n" in response
        assert response.endswith(b"the request head must arrive within 0.5 s\n")


def test_a_peer_that_connects_and_says_nothing_gets_408() -> None:
    with admin(header_timeout=0.2) as address, connect_from("127.0.0.1", address) as quiet:
        assert recv_until_closed(quiet).startswith(b"HTTP/1.1 408 ")


def test_one_address_cannot_take_every_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    # 127.0.0.1 and 127.0.0.2 stand for two hosts (off loopback each IPv4 address is a
    # peer; all of loopback is one: test_address.py).
    monkeypatch.setattr("socketkit.aio.registry.limit_key", lambda host: host)
    assert ADMIN_MAX_CONNECTIONS_PER_ADDRESS < ADMIN_MAX_CONNECTIONS
    with admin(header_timeout=60.0) as address, ExitStack() as stack:
        # A slowloris on 127.0.0.1 holds its share of slots with unfinished heads...
        for _ in range(ADMIN_MAX_CONNECTIONS_PER_ADDRESS):
            held = stack.enter_context(connect_from("127.0.0.1", address))
            held.sendall(b"GET /status HTTP/1.1\r\nX-")
        # ...the next connection from that address is refused with 503 (connections are
        # accepted in order, so the held ones are counted first)...
        with connect_from("127.0.0.1", address) as refused:
            response = recv_until_closed(refused)
        assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"too many connections from 127.0.0.1" in response
        # ...and a client from another address is still answered.
        status, document = get_status(address, source="127.0.0.2")
        assert status == b"HTTP/1.1 200 OK"
        assert "echo" in document["services"]


def test_the_defaults_are_the_named_limits() -> None:
    server = make_admin_server(services)
    assert server.max_connections == ADMIN_MAX_CONNECTIONS
    assert server.max_connections_per_address == ADMIN_MAX_CONNECTIONS_PER_ADDRESS
    assert 1.0 <= ADMIN_HEADER_TIMEOUT_S <= 10.0  # "a few seconds" (docs/tools.md: 5 s)


def test_the_deadline_must_be_positive() -> None:
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="header_timeout"):
            make_admin_server(services, header_timeout=bad)
