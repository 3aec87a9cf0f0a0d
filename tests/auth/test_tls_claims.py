"""The TLS claims of docs/security.md, over the wire with the real client: TLS 1.2 at
least, --tls-ca verification, --insecure only when typed, exposure needs TLS for exec."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.cli.main import main
from socketkit.services.filexfer.server import FileServer, FileSettings
from socketkit.services.filexfer.store import FileStore
from socketkit.tls import client_context, server_context
from tests.aio_thread import server_thread
from tests.helpers import connect

TOKEN = "7e57" * 16


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> Iterator[Address]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hi\n")
    service = FileServer(FileSettings(store=FileStore(str(root), None), token=TOKEN))
    listeners = [Listener(Address("127.0.0.1", 0), ssl=server_context(tmp_path / "server.pem"))]
    with server_thread(service.make_server, listeners) as (address,):
        yield address


def ls(address: Address, *options: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    return main(["ls", *options, str(address)])


def tls_1_1_client() -> ssl.SSLContext:
    """A client that offers TLS 1.1 at most (and the old ciphers it needs)."""
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT@SECLEVEL=0")
    return old


def handshake(address: Address, context: ssl.SSLContext) -> str | None:
    with (
        connect((address.host, address.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        return wrapped.version()


def test_both_sides_require_tls_1_2(tls_files: Address, tmp_path: Path) -> None:
    assert server_context(tmp_path / "server.pem").minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_context().minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(tls_files, tls_1_1_client())
    # The refusal is the server's minimum, not this OpenSSL's: a server that allows
    # TLS 1.1 completes the same handshake.
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    permissive.set_ciphers("DEFAULT@SECLEVEL=0")
    permissive.load_cert_chain(str(tmp_path / "server.pem"))
    service = FileServer(FileSettings(store=FileStore(str(tmp_path), None), token=TOKEN))
    with server_thread(service.make_server, [Listener(Address("127.0.0.1", 0), ssl=permissive)]) as (other,):
        assert handshake(other, tls_1_1_client()) == "TLSv1.1"
    modern = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    modern.check_hostname = False
    modern.verify_mode = ssl.CERT_NONE
    assert handshake(tls_files, modern) in ("TLSv1.2", "TLSv1.3")


def test_tls_ca_verifies_the_server(
    tls_files: Address,
    tmp_path: Path,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    assert ls(tls_files, "--tls-ca", str(tmp_path / "ca.pem"), monkeypatch=monkeypatch) == 0
    assert "hello.txt" in capsys.readouterr().out
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other.pem"))
    assert ls(tls_files, "--tls-ca", str(tmp_path / "other.pem"), monkeypatch=monkeypatch) == 255
    assert "its TLS certificate is not trusted" in capsys.readouterr().err


def test_insecure_only_when_typed(
    tls_files: Address, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Verified against the system CAs by default: an unknown CA is refused.
    assert ls(tls_files, "--tls", monkeypatch=monkeypatch) == 255
    assert "its TLS certificate is not trusted" in capsys.readouterr().err
    assert ls(tls_files, "--insecure", monkeypatch=monkeypatch) == 0
    assert "hello.txt" in capsys.readouterr().out
    # Without any TLS option the client speaks plain TCP, which a TLS listener refuses.
    assert ls(tls_files, monkeypatch=monkeypatch) == 255
