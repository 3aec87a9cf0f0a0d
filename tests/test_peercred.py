"""socketkit.peercred: a loopback or Unix peer is keyed by its user, anything else by its
address, and a look-up that cannot be made falls back to today's ``loopback``."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from socketkit import peercred
from socketkit.address import LOOPBACK_KEY
from socketkit.peercred import PeerKeys
from tests.helpers import TIMEOUT
from tests.other_user import NOBODY, OtherUser

ME = f"uid:{os.geteuid()}"


@contextmanager
def accepted(family: int, host: str, source: str | None = None) -> Iterator[tuple[socket.socket, object]]:
    """A listener on ``host``, one client connected to it (from ``source``), and the
    server's side of that connection with the address accept() gave."""
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen()
        with socket.socket(family) as client:
            client.settimeout(TIMEOUT)
            if source is not None:
                client.bind((source, 0))
            client.connect(listener.getsockname())
            sock, addr = listener.accept()
            with sock:
                yield sock, addr


@contextmanager
def keys() -> Iterator[PeerKeys]:
    peer_keys = PeerKeys()
    try:
        yield peer_keys
    finally:
        peer_keys.close()


@pytest.mark.parametrize(
    ("family", "host", "source"),
    [
        (socket.AF_INET, "127.0.0.1", None),
        (socket.AF_INET, "127.0.0.1", "127.3.4.5"),  # any 127.x source: still the same user
        (socket.AF_INET6, "::1", None),
    ],
)
def test_a_loopback_peer_is_its_user(family: int, host: str, source: str | None) -> None:
    with keys() as peer_keys, accepted(family, host, source) as (sock, addr):
        assert peer_keys.key(sock, addr) == ME


def test_an_ipv4_peer_seen_through_a_dual_stack_listener_is_its_user() -> None:
    with socket.socket(socket.AF_INET6) as listener, keys() as peer_keys:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        listener.listen()
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1]), TIMEOUT):
            sock, addr = listener.accept()
            with sock:
                assert addr[0] == "::ffff:127.0.0.1"
                assert peer_keys.key(sock, addr) == ME


def test_another_users_connection_is_that_users_key() -> None:
    with socket.socket() as listener, keys() as peer_keys:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        where = listener.getsockname()

        def connect(hold: list[object]) -> str:
            hold.append(socket.create_connection(where, TIMEOUT))
            return "connected"

        with OtherUser(connect) as other:
            assert other.report_blocking() == "connected"
            sock, addr = listener.accept()
            with sock:
                assert peer_keys.key(sock, addr) == f"uid:{NOBODY.pw_uid}"


def test_a_peer_whose_socket_is_gone_is_loopback() -> None:
    # Closed before we looked: its socket is in time-wait, which has no owner.
    with socket.socket() as listener, keys() as peer_keys:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        socket.create_connection(listener.getsockname(), TIMEOUT).close()
        sock, addr = listener.accept()
        with sock:
            assert sock.recv(1) == b""  # its FIN is in: the client's socket is closed
            assert peer_keys.key(sock, addr) == LOOPBACK_KEY


def test_unix_socket_peers_are_their_user() -> None:
    one, two = socket.socketpair()
    with one, two, keys() as peer_keys:
        assert peer_keys.key(one, "") == ME


def test_other_peers_are_their_address() -> None:
    with keys() as peer_keys, accepted(socket.AF_INET, "127.0.0.1") as (sock, _):
        assert peer_keys.key(sock, ("192.0.2.7", 5000)) == "192.0.2.7"
        assert peer_keys.key(sock, ("2001:db8:1:2::9", 5000, 0, 0)) == "2001:db8:1:2::/64"


def test_without_sock_diag_all_of_loopback_is_one_peer_and_it_is_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = socket.socket

    def no_netlink(family: int = socket.AF_INET, *args: object, **kwargs: object) -> socket.socket:
        if family == socket.AF_NETLINK:
            raise PermissionError(1, "Operation not permitted")  # a sandbox's seccomp filter
        return real(family, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(peercred.socket, "socket", no_netlink)
    with (
        caplog.at_level(logging.INFO, logger="socketkit.peercred"),
        keys() as peer_keys,
        accepted(socket.AF_INET, "127.0.0.1") as (sock, addr),
    ):
        assert [peer_keys.key(sock, addr) for _ in range(3)] == [LOOPBACK_KEY] * 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "cannot tell local users apart" in lines[0]


def test_a_forked_process_opens_its_own_netlink_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    # Replies go to whichever process reads the shared socket first: a child must not
    # use its parent's.
    with keys() as peer_keys, accepted(socket.AF_INET, "127.0.0.1") as (sock, addr):
        assert peer_keys.key(sock, addr) == ME
        inherited = peer_keys._netlink
        assert inherited is not None
        monkeypatch.setattr(peercred.os, "getpid", lambda: -1)  # as in a forked child
        assert peer_keys.key(sock, addr) == ME
        assert peer_keys._netlink is not inherited
        assert inherited.fileno() == -1  # closed
