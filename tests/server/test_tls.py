"""TLS on socketkit.server: handshakes in the handler thread, with a deadline."""

from __future__ import annotations

import socket
import ssl

import pytest
import trustme

import socketkit.server as ss
from socketkit.testing import serving
from tests.helpers import connect, recv_exactly, recv_until_closed


class Echo(ss.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def tls_connect(address: tuple[str, int], client_ctx: ssl.SSLContext) -> ssl.SSLSocket:
    return client_ctx.wrap_socket(connect(address), server_hostname="127.0.0.1")


def test_tls_echo(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = contexts
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo, ssl_context=server_ctx)
    with serving(server), tls_connect(server.server_address, client_ctx) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        sock.sendall(b"secret")
        assert recv_exactly(sock, 6) == b"secret"


def test_a_silent_client_neither_blocks_others_nor_lives_forever(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    server_ctx, client_ctx = contexts
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo, ssl_context=server_ctx)
    server.tls_handshake_timeout = 0.3
    with serving(server):
        silent = connect(server.server_address)  # never sends a ClientHello
        with silent:
            with tls_connect(server.server_address, client_ctx) as sock:
                sock.sendall(b"not blocked")
                assert recv_exactly(sock, 11) == b"not blocked"
            assert recv_until_closed(silent) == b""  # dropped at the handshake deadline
    assert "TLS handshake with 127.0.0.1:" in caplog.text


def test_plaintext_client_is_one_log_line_and_the_server_goes_on(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    server_ctx, client_ctx = contexts
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo, ssl_context=server_ctx)
    with serving(server):
        plain = connect(server.server_address)
        with plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            recv_until_closed(plain)
        with tls_connect(server.server_address, client_ctx) as sock:
            sock.sendall(b"ok")
            assert recv_exactly(sock, 2) == b"ok"
    failures = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is None


def test_tls_with_a_worker_pool(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = contexts
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo, ssl_context=server_ctx)
    server.max_workers = 2
    with serving(server):
        for _ in range(4):
            with tls_connect(server.server_address, client_ctx) as sock:
                sock.sendall(b"pool")
                assert recv_exactly(sock, 4) == b"pool"
    assert not server._live


def test_tls_client_still_gets_closed_at_drain(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = contexts
    server = ss.ThreadingTCPServer(("127.0.0.1", 0), Echo, ssl_context=server_ctx)
    server.drain_timeout = 0.05
    with serving(server):
        sock = tls_connect(server.server_address, client_ctx)
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
    # The handler was blocked reading; server_close() shut the TLS connection under it.
    with sock:
        try:
            assert sock.recv(10) == b""
        except (TimeoutError, ssl.SSLError, ConnectionResetError) as exc:  # pragma: no cover
            assert not isinstance(exc, socket.timeout)
