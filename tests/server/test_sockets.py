"""Addresses and datagrams: IPv6, dual stack, UDP sizes and truncation, Unix cleanup."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import socketkit.server as ss
from socketkit.limits import MAX_UDP_PAYLOAD_IPV4
from socketkit.testing import serving
from tests.helpers import TIMEOUT, connect, recv_exactly


def _has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback here")


class Echo(ss.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class UdpEcho(ss.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


def test_backlog_is_128() -> None:
    with ss.TCPServer(("127.0.0.1", 0), Echo) as server:
        assert server.request_queue_size == 128


@needs_ipv6
def test_an_ipv6_literal_selects_af_inet6() -> None:
    server = ss.ThreadingTCPServer(("::1", 0), Echo)
    assert server.socket.family == socket.AF_INET6
    with serving(server):
        sock = connect(server.server_address[:2], socket.AF_INET6)
        with sock:
            sock.sendall(b"v6")
            assert recv_exactly(sock, 2) == b"v6"


@needs_ipv6
def test_dual_stack_wildcard_takes_ipv4_and_ipv6() -> None:
    server = ss.ThreadingTCPServer(("::", 0), Echo)
    port = server.server_address[1]
    with serving(server):
        for address, family in (
            (("127.0.0.1", port), socket.AF_INET),
            (("::1", port), socket.AF_INET6),
        ):
            sock = connect(address, family)
            with sock:
                sock.sendall(b"both")
                assert recv_exactly(sock, 4) == b"both"


def test_udp_takes_the_largest_ipv4_datagram_whole() -> None:
    server = ss.UDPServer(("127.0.0.1", 0), UdpEcho)
    with serving(server), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        payload = os.urandom(MAX_UDP_PAYLOAD_IPV4)
        sock.sendto(payload, server.server_address)
        assert sock.recv(70_000) == payload


def test_udp_truncation_is_detected_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    server = ss.UDPServer(("127.0.0.1", 0), UdpEcho)
    server.max_packet_size = 1000
    with serving(server), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(b"x" * 1001, server.server_address)  # dropped, never cut short
        sock.sendto(b"y" * 1000, server.server_address)  # the next one is served
        assert sock.recv(2000) == b"y" * 1000
    assert server.truncated_datagrams == 1
    assert "larger than max_packet_size=1000" in caplog.text


def test_unix_server_removes_its_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    with ss.UnixStreamServer(str(path), Echo):
        assert path.exists()
    assert not path.exists()


def test_unix_server_leaves_a_replaced_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "e.sock"
    server = ss.UnixStreamServer(str(path), Echo)
    path.unlink()
    path.write_text("someone else's")
    server.server_close()
    assert path.read_text() == "someone else's"


def test_reuse_address_allows_an_immediate_restart() -> None:
    with ss.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server, serving(server):
        port = server.server_address[1]
        sock = connect(server.server_address)
        with sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
    # The server side closed first, so its end of that connection sits in TIME_WAIT.
    with ss.TCPServer(("127.0.0.1", port), Echo) as again:
        assert again.server_address[1] == port
