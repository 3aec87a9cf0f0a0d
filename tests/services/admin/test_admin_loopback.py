"""The admin endpoint on loopback: slow request heads get 408, and held heads cannot keep
out a client that sends its request at once: over a cap, the oldest connection still
waiting for its head makes room (503, saying why)."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
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


class Registrations(logging.Handler):
    """The readiness event of held connections: the engine's debug line for each
    connection it has registered (only a registered connection can be evicted)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._peers: set[str] = set()
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        words = record.getMessage().split()
        if words[:1] == ["connection"] and len(words) == 4:  # "connection #N from PEER"
            with self._changed:
                self._peers.add(words[3])
                self._changed.notify_all()

    def wait_for(self, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        with self._changed:
            assert self._changed.wait_for(lambda: f"{host}:{port}" in self._peers, TIMEOUT)


@pytest.fixture
def registrations() -> Iterator[Registrations]:
    handler = Registrations()
    logger = logging.getLogger("socketkit.aio.server")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def held_heads(
    stack: ExitStack, address: tuple[str, int], seen: Registrations, count: int, source: str = "127.0.0.1"
) -> list[socket.socket]:
    """``count`` connections that sent half a request head and hold it (a slowloris),
    each registered by the server before the next is opened."""
    held = []
    for _ in range(count):
        sock = stack.enter_context(connect_from(source, address))
        sock.sendall(b"GET /status HTTP/1.1\r\nX-")
        seen.wait_for(sock)
        held.append(sock)
    return held


EVICTED = b"a newer connection took this one's place: send the request head at once\n"


def test_held_heads_cannot_keep_out_a_client_that_sends_its_request_at_once(
    registrations: Registrations,
) -> None:
    # Red-team round 2, finding 1: eight half-sent heads, re-opened as they were cut,
    # answered every /status of the same peer with 503 for as long as they ran.
    with admin(header_timeout=60.0) as address, ExitStack() as stack:
        held = held_heads(stack, address, registrations, ADMIN_MAX_CONNECTIONS_PER_ADDRESS)
        for attempt in range(3):
            status, document = get_status(address, source=f"127.0.9.{attempt + 1}")
            assert status == b"HTTP/1.1 200 OK"
            assert "echo" in document["services"]
            # The oldest held head made room: 503, saying why, and closed.
            response = recv_until_closed(held[attempt])
            assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert response.endswith(EVICTED)
            held += held_heads(stack, address, registrations, 1)  # the slowloris re-opens it at once
        # Only the three oldest went: the others still wait for the rest of their head.
        assert not select.select(held[3:], [], [], 0)[0]


def test_a_peer_at_its_cap_evicts_only_its_own_connections(
    monkeypatch: pytest.MonkeyPatch, registrations: Registrations
) -> None:
    # 127.0.0.1 and 127.0.0.2 stand for two hosts (off loopback each IPv4 address is a
    # peer; a local peer is its user: test_peercred.py).
    monkeypatch.setattr("socketkit.peercred.limit_key", lambda host: host)
    assert ADMIN_MAX_CONNECTIONS_PER_ADDRESS < ADMIN_MAX_CONNECTIONS
    with admin(header_timeout=60.0) as address, ExitStack() as stack:
        cap = ADMIN_MAX_CONNECTIONS_PER_ADDRESS
        theirs = held_heads(stack, address, registrations, cap, source="127.0.0.2")
        mine = held_heads(stack, address, registrations, cap)
        mine += held_heads(stack, address, registrations, 1)  # over my cap: my oldest goes, not theirs
        assert recv_until_closed(mine[0]).endswith(EVICTED)
        status, _ = get_status(address, source="127.0.0.2")  # theirs: the oldest of theirs goes
        assert status == b"HTTP/1.1 200 OK"
        assert recv_until_closed(theirs[0]).endswith(EVICTED)
        assert not select.select(theirs[1:] + mine[1:], [], [], 0)[0]


def test_a_full_endpoint_evicts_the_oldest_waiting_head_of_anyone(
    monkeypatch: pytest.MonkeyPatch, registrations: Registrations
) -> None:
    monkeypatch.setattr("socketkit.peercred.limit_key", lambda host: host)  # each source a peer
    with admin(header_timeout=60.0, max_connections=3) as address, ExitStack() as stack:
        held = [held_heads(stack, address, registrations, 1, source=f"127.0.0.{i}")[0] for i in (2, 3, 4)]
        status, _ = get_status(address, source="127.0.0.5")
        assert status == b"HTTP/1.1 200 OK"
        assert recv_until_closed(held[0]).endswith(EVICTED)
        assert not select.select(held[1:], [], [], 0)[0]


def test_the_defaults_are_the_named_limits() -> None:
    server = make_admin_server(services)
    assert server.max_connections == ADMIN_MAX_CONNECTIONS
    assert server.max_connections_per_address == ADMIN_MAX_CONNECTIONS_PER_ADDRESS
    assert 1.0 <= ADMIN_HEADER_TIMEOUT_S <= 10.0  # "a few seconds" (docs/tools.md: 5 s)


def test_the_deadline_must_be_positive() -> None:
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="header_timeout"):
            make_admin_server(services, header_timeout=bad)
