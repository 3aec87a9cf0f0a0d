"""Every failure to connect or to listen names the address, says why in words and what
to do, in one line: for every client command and every server start-up (they all go
through ``socketkit._oserrors``), and a TLS file that cannot be loaded names the file."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from socketkit.address import Address
from socketkit.aio.listeners import Listener, bind_datagram, bind_stream
from socketkit.services.echo.server import make_echo_server
from socketkit.tls import server_context
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT


def socketkit(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "socketkit", *args]
    return subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def closed_port() -> int:
    """A port that was free a moment ago: nothing listens there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on (TCP) and holds (UDP)."""
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", port))
            yield port


REFUSED = "connection refused (is {server} running there? it prints its addresses when it starts)"


@pytest.mark.parametrize(
    ("command", "server"),
    [
        (["status"], "`socketkit serve all`"),
        (["exec", "{addr}", "--", "true"], "`socketkit serve exec` or `serve all`"),
        (["ls", "{addr}"], "`socketkit serve files` or `serve all`"),
        (["get", "{addr}", "x", "-"], "`socketkit serve files` or `serve all`"),
        (["talk", "{addr}"], "`socketkit serve talk`"),
        (["chat", "--nick", "x", "--plain", "{addr}"], "`socketkit serve chat` or `serve all`"),
    ],
)
def test_refused_names_the_address_and_the_server_to_start(
    command: list[str], server: str, closed_port: int
) -> None:
    address = f"127.0.0.1:{closed_port}"
    argv = [part.format(addr=address) for part in command]
    if "{addr}" not in command:
        argv.append(address)
    done = socketkit(*argv)
    assert done.returncode != 0
    # chat shows its errors in its conversation (stdout); the others on stderr.
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(f"cannot connect to {address}: {REFUSED.format(server=server)}"), lines


def test_send_names_the_address_for_tcp_udp_and_unix(closed_port: int, tmp_path: Path) -> None:
    tcp = socketkit("send", f"127.0.0.1:{closed_port}", "x")
    assert (tcp.returncode, tcp.stderr) == (
        1,
        f"ConnectError: cannot connect to 127.0.0.1:{closed_port}: connection refused "
        "(is a server listening there?)\n",
    )
    udp = socketkit("send", "--udp", f"127.0.0.1:{closed_port}", "x")
    assert udp.returncode == 1
    assert udp.stderr.startswith(
        f"ConnectError: cannot connect to 127.0.0.1:{closed_port} (udp): connection refused"
    )
    path = tmp_path / "nobody.sock"
    unix = socketkit("send", f"unix:{path}", "x")
    assert unix.returncode == 1
    assert unix.stderr.startswith(f"ConnectError: cannot connect to unix:{path}: no such socket")
    lookup = socketkit("send", "no-such-host.invalid:7", "x")
    assert lookup.returncode == 1
    assert lookup.stderr.startswith("ConnectError: cannot connect to no-such-host.invalid:7: cannot resolve")
    assert "is it spelt right?" in lookup.stderr


def test_a_port_in_use_names_the_service_the_port_and_the_option(taken_port: int) -> None:
    echo = socketkit("serve", "echo", "--port", str(taken_port))
    assert echo.returncode == 1
    assert echo.stderr.splitlines()[-1] == (
        f"ListenError: echo cannot listen on 127.0.0.1:{taken_port} (tcp): the address is already in use "
        "(another program listens there: stop it, or choose another port with --port N "
        "(0 lets the system pick one))"
    )
    udp = socketkit("serve", "echo", "--udp", "--port", str(taken_port))
    assert f"echo cannot listen on 127.0.0.1:{taken_port} (udp): the address is already in use" in udp.stderr


def test_serve_all_names_the_service_whose_port_is_taken(taken_port: int, tmp_path: Path) -> None:
    ports = ["--echo-port", "0", "--chat-port", "0", "--files-port", "0", "--admin-port", "0"]
    argv = ["serve", "all", "--state-dir", str(tmp_path / "state"), "--without", "exec", *ports]
    done = socketkit(*argv, "--chat-port", str(taken_port))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"ListenError: chat cannot listen on 127.0.0.1:{taken_port} (tcp): the address is already in use "
        "(another program listens there: stop it, or choose another port with --chat-port N, "
        "or let the system pick every port with --any-port)"
    )


def test_listen_names_the_port_in_use(taken_port: int) -> None:
    done = socketkit("listen", str(taken_port))
    assert done.returncode == 1
    assert done.stderr == (
        f"ListenError: cannot listen on 127.0.0.1:{taken_port} (tcp): the address is already in use "
        "(another program listens there: stop it, or choose another port)\n"
    )


def test_the_library_errors_stay_oserrors_with_the_errno(taken_port: int, closed_port: int) -> None:
    from socketkit.errors import ConnectError, ListenError

    with pytest.raises(ListenError) as listening:
        bind_stream(Address("127.0.0.1", taken_port))
    assert isinstance(listening.value, OSError)
    assert listening.value.errno == errno.EADDRINUSE
    assert isinstance(listening.value.__cause__, OSError)
    with pytest.raises(ListenError, match=r"\(udp\): the address is already in use"):
        bind_datagram(Address("127.0.0.1", taken_port))

    import asyncio

    from socketkit.aio.client import open_connection

    async def connect() -> None:
        await open_connection(Address("127.0.0.1", closed_port), None, service="echo")

    with pytest.raises(ConnectError) as connecting:
        asyncio.run(connect())
    assert isinstance(connecting.value, ConnectionError | OSError)
    assert connecting.value.errno == errno.ECONNREFUSED
    assert isinstance(connecting.value.__cause__, ConnectionRefusedError)


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    other = ca.issue_cert("127.0.0.1")
    files = {
        "cert": tmp_path / "cert.pem",
        "key": tmp_path / "key.pem",
        "other_key": tmp_path / "other.key",
        "encrypted_key": tmp_path / "encrypted.key",
        "junk": tmp_path / "junk.pem",
        "both": tmp_path / "both.pem",
    }
    issued.cert_chain_pems[0].write_to_path(str(files["cert"]))
    issued.private_key_pem.write_to_path(str(files["key"]))
    issued.private_key_and_cert_chain_pem.write_to_path(str(files["both"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    files["encrypted_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    files["junk"].write_text("not a certificate\n")
    return files


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("missing", None, "cannot load the TLS certificate {missing}: no such file or directory"),
        ("junk", None, "cannot load the TLS certificate {junk}: it holds no PEM certificate"),
        ("cert", None, "cannot load the TLS key {cert}: it holds no PEM private key (give the key file too)"),
        ("cert", "missing", "cannot load the TLS key {missing}: no such file or directory"),
        ("cert", "junk", "cannot load the TLS key {junk}: it holds no PEM private key"),
        (
            "cert",
            "other_key",
            "cannot load the TLS key {other_key}: it does not match the certificate in {cert}",
        ),
        (
            "cert",
            "encrypted_key",
            "cannot load the TLS key {encrypted_key}: it is encrypted with a passphrase",
        ),
    ],
)
def test_a_tls_file_that_cannot_be_loaded_is_named_with_the_reason(
    pems: dict[str, Path], tmp_path: Path, cert: str, key: str | None, message: str
) -> None:
    names = {name: str(path) for name, path in pems.items()} | {"missing": str(tmp_path / "missing.pem")}
    argv = ["serve", "echo", "--port", "0", "--tls-cert", names[cert]]
    if key is not None:
        argv += ["--tls-key", names[key]]
    done = socketkit(*argv)
    assert done.returncode == 1
    assert done.stderr.startswith("ConfigError: " + message.format(**names)), done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_the_tls_ca_file_of_a_client_is_named(
    tmp_path: Path, pems: dict[str, Path], closed_port: int
) -> None:
    address = f"127.0.0.1:{closed_port}"
    missing = tmp_path / "missing-ca.pem"
    done = socketkit("ls", "--tls-ca", str(missing), address)
    assert done.stderr.endswith(f"cannot load the TLS CA bundle {missing}: no such file or directory\n")
    junk = socketkit("exec", "--tls-ca", str(pems["junk"]), address, "--", "true")
    assert junk.stderr.endswith(
        f"cannot load the TLS CA bundle {pems['junk']}: it holds no PEM certificate\n"
    )


def test_an_untrusted_server_certificate_says_how_to_trust_it(pems: dict[str, Path]) -> None:
    listeners = [Listener(Address("127.0.0.1", 0), ssl=server_context(pems["both"]))]
    with server_thread(make_echo_server, listeners) as (address,):
        done = socketkit("ls", "--tls", str(address))
    assert done.returncode != 0
    assert done.stderr.startswith(
        f"ConnectError: cannot connect to {address}: its TLS certificate is not trusted"
    )
    assert done.stderr.rstrip().endswith("trust its CA with --tls-ca FILE)")


def test_tls_to_a_port_without_tls_says_so() -> None:
    with server_thread(make_echo_server) as (address,):
        done = socketkit("ls", "--tls", "--insecure", str(address))
    assert done.returncode != 0
    assert done.stderr.startswith(f"ConnectError: cannot connect to {address}: the TLS handshake failed")
    assert done.stderr.rstrip().endswith("(does it serve TLS on this port?)")


def test_a_reset_during_the_exchange_names_the_peer() -> None:
    import struct
    import threading

    with socket.create_server(("127.0.0.1", 0)) as server:
        address = "127.0.0.1:%d" % server.getsockname()[1]

        def reset_after_the_request() -> None:
            conn, _ = server.accept()
            conn.settimeout(TIMEOUT)
            while conn.recv(4096):  # until send half-closes: its request is complete
                pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # with linger 0: a reset instead of a FIN

        peer = threading.Thread(target=reset_after_the_request)
        peer.start()
        done = socketkit("send", address, "x")
        peer.join(TIMEOUT)
    assert (done.returncode, done.stderr) == (
        1,
        f"BrokenResourceError: the connection to {address} was reset by the peer\n",
    )


def test_a_worker_that_cannot_listen_says_why(taken_port: int) -> None:
    done = socketkit("serve", "echo", "--workers", "2", "--port", str(taken_port))
    assert done.returncode == 1
    assert f"echo cannot listen on 127.0.0.1:{taken_port} (tcp): the address is already in use" in done.stderr
