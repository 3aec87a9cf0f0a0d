"""exec on loopback: statuses, streams, stdin, kills, refusals, auth, TLS, audit log.

The server runs in a thread (tests/aio_thread.py); clients use the real entry points:
``socketkit exec`` in-process, or ``run_remote`` where a test needs the command's pid.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.auth.connect import ServiceTarget
from socketkit.certs import make_self_signed
from socketkit.cli.main import main
from socketkit.codec.wire import ErrorFrame, WireDecoder, encode_control, encode_hello
from socketkit.errors import PermissionDenied, ServiceError
from socketkit.services.rexec.client import run_remote
from socketkit.services.rexec.policy import ExecPolicy
from socketkit.services.rexec.protocol import ExecRequest, exit_status_for_client, parse_exit
from socketkit.services.rexec.server import ExecServer, ExecSettings
from socketkit.state import StateDB
from socketkit.tls import server_context
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT, connect, recv_until_closed

TOKEN = "0123456789abcdef" * 4
ALLOWED = frozenset(
    {"echo", "true", "false", "cat", "sort", "sleep", "seq", "yes", "head", "pwd", "env", "sh"}
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    with StateDB(tmp_path / "state") as database:
        yield database


def settings(root: Path, db: StateDB | None = None, **overrides: Any) -> ExecSettings:
    policy = overrides.pop("policy", ExecPolicy(allow=ALLOWED, allow_shell=True, home=str(root)))
    return ExecSettings(
        root=str(root), policy=policy, token=overrides.pop("token", TOKEN), db=db, **overrides
    )


@pytest.fixture
def server(root: Path, db: StateDB) -> Iterator[Address]:
    service = ExecServer(settings(root, db))
    with server_thread(service.make_server) as (address,):
        yield address


def remote(
    address: Address,
    request: ExecRequest,
    *,
    stdin: bytes | None = None,
    token: str | None = TOKEN,
    timeout: float | None = None,
    **target: Any,
) -> tuple[int, bytes, bytes, list[int]]:
    out, err, pids = io.BytesIO(), io.BytesIO(), []
    status = asyncio.run(
        run_remote(
            ServiceTarget(address, token, **target),
            request,
            stdin=None if stdin is None else io.BytesIO(stdin),
            stdout=out,
            stderr=err,
            timeout=timeout,
            on_started=pids.append,
        )
    )
    return status, out.getvalue(), err.getvalue(), pids


def cli(address: Address, *args: str, monkeypatch: pytest.MonkeyPatch, token: str = TOKEN) -> int:
    """``socketkit exec -n [OPTIONS] ADDR -- COMMAND``: options before ADDR, as for ssh."""
    monkeypatch.setenv("SOCKETKIT_TOKEN", token)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    split = args.index("--") if "--" in args else len(args)
    return main(["exec", "-n", *args[:split], str(address), *args[split:]])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def session_alive(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2 :].split()
            if int(fields[3]) == sid and fields[0] != b"Z":
                found.append(int(entry))
    return found


def test_exit_statuses_and_signals(server: Address, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli(server, "--", "true", monkeypatch=monkeypatch) == 0
    assert cli(server, "--", "false", monkeypatch=monkeypatch) == 1
    assert cli(server, "--shell", "exit 7", monkeypatch=monkeypatch) == 7
    assert cli(server, "--shell", "kill -TERM $$", monkeypatch=monkeypatch) == 128 + 15


def test_stdout_and_stderr_stay_separate_and_in_order(server: Address) -> None:
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done"
    status, out, err, _ = remote(server, ExecRequest((), shell=script, stdin=False))
    assert status == 0
    assert out == b"out1\nout2\nout3\n"
    assert err == b"err1\nerr2\nerr3\n"


def test_cli_prints_remote_output(
    server: Address, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert cli(server, "--", "echo", "; rm -rf x", "$(id)", monkeypatch=monkeypatch) == 0
    assert capsysbinary.readouterr().out == b"; rm -rf x $(id)\n"  # literal: never a shell


def test_100_mib_of_output_arrives_whole_and_identical(server: Address) -> None:
    count = 13_000_000  # `seq` prints about 104 MB
    expected = hashlib.sha256()
    chunk = 1_000_000
    for start in range(1, count + 1, chunk):
        expected.update(("\n".join(map(str, range(start, min(start + chunk, count + 1)))) + "\n").encode())

    class Hasher(io.RawIOBase):
        def __init__(self) -> None:
            self.digest = hashlib.sha256()
            self.size = 0

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            self.digest.update(data)
            self.size += len(data)
            return len(data)

    sink = Hasher()
    status = asyncio.run(
        run_remote(
            ServiceTarget(server, TOKEN),
            ExecRequest(("seq", str(count)), stdin=False),
            stdin=None,
            stdout=sink,
            stderr=io.BytesIO(),
        )
    )  # type: ignore[arg-type]
    assert status == 0
    assert sink.size > 100 * 1024 * 1024
    assert sink.digest.hexdigest() == expected.hexdigest()


def test_stdin_is_forwarded_with_end_of_input(server: Address) -> None:
    status, out, _, _ = remote(server, ExecRequest(("sort",)), stdin=b"pear\napple\nfig\n")
    assert (status, out) == (0, b"apple\nfig\npear\n")
    big = os.urandom(5 * 1024 * 1024)
    status, out, _, _ = remote(server, ExecRequest(("cat",)), stdin=big)
    assert status == 0
    assert out == big


def test_timeout_kills_the_whole_process_group(server: Address) -> None:
    started = time.monotonic()
    status, _, err, pids = remote(
        server, ExecRequest((), shell="sleep 100 & sleep 100 & wait", timeout=0.5, stdin=False), timeout=0.5
    )
    assert status == 124
    assert b"ran out of time" in err
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + TIMEOUT
    while session_alive(pids[0]):
        assert time.monotonic() < deadline, f"survivors: {session_alive(pids[0])}"
        time.sleep(0.05)


def test_a_client_that_disconnects_kills_its_command(server: Address) -> None:
    pids: list[int] = []

    async def go() -> None:
        task = asyncio.ensure_future(
            run_remote(
                ServiceTarget(server, TOKEN),
                ExecRequest((), shell="sleep 100 & sleep 100", stdin=False),
                stdin=None,
                stdout=io.BytesIO(),
                stderr=io.BytesIO(),
                on_started=pids.append,
            )
        )
        while not pids:
            await asyncio.sleep(0.01)
        task.cancel()  # the client goes away (its connection is aborted)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    deadline = time.monotonic() + TIMEOUT
    while session_alive(pids[0]):
        assert time.monotonic() < deadline, "the command outlived its client"
        time.sleep(0.05)


def test_ctrl_c_is_forwarded_as_sigint(server: Address) -> None:
    async def go() -> int:
        pids: list[int] = []
        from socketkit.aio.client import open_connection
        from socketkit.auth.session import authenticate_client

        conn: Any = await open_connection(server, WireDecoder())
        try:
            await authenticate_client(
                conn, TOKEN, pipelined=ExecRequest(("sleep", "100"), stdin=False).to_header()
            )
            async for event in conn:
                header = getattr(event, "header", {})
                if header.get("event") == "started":
                    pids.append(header["pid"])
                    conn.send(encode_control({"op": "signal", "signal": "INT"}))
                elif header.get("event") == "exit":
                    return exit_status_for_client(parse_exit(header))
        finally:
            conn.abort()
        return -1

    # 128 + SIGINT: bwrap reports a command ended by signal N as status 128 + N.
    assert asyncio.run(go()) == 128 + 2


def test_refusals_map_to_126_127_and_255(
    server: Address, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(server, "--", "rm", "-rf", "/", monkeypatch=monkeypatch) == 126
    assert "not an allowed program" in capsys.readouterr().err
    assert cli(server, "--", "ls; rm -rf /", monkeypatch=monkeypatch) == 126
    assert cli(server, "--cwd", "../..", "--", "pwd", monkeypatch=monkeypatch) == 255
    assert "leaves the root" in capsys.readouterr().err
    assert cli(server, "--cwd", "missing", "--", "pwd", monkeypatch=monkeypatch) == 127
    assert cli(server, "--env", "LD_PRELOAD=/x.so", "--", "env", monkeypatch=monkeypatch) == 126
    assert cli(server, "--", "echo", "a\x00b", monkeypatch=monkeypatch) == 255
    assert "NUL" in capsys.readouterr().err


def test_working_directory_is_jailed_to_the_root(server: Address, root: Path) -> None:
    status, out, _, _ = remote(server, ExecRequest(("pwd",), cwd="sub", stdin=False))
    assert (status, out) == (0, f"{root / 'sub'}\n".encode())


def test_shell_is_refused_unless_allowed(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = ExecServer(settings(root, policy=ExecPolicy(allow=ALLOWED)))
    with server_thread(service.make_server) as (address,):
        assert cli(address, "--shell", "echo hi", monkeypatch=monkeypatch) == 126
    assert "--allow-shell" in capsys.readouterr().err


def test_wrong_token_replay_and_garbage(
    server: Address, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(server, "--", "true", monkeypatch=monkeypatch, token="f" * 64) == 255
    assert "wrong token" in capsys.readouterr().err
    # Garbage instead of a hello, and a frame over the limit after it: ERROR frames.
    for payload, code in (
        (b"GET / HTTP/1.1\r\n\r\n", "bad-magic"),
        (encode_hello() + bytes.fromhex("7fffffff 02 00"), "frame-too-large"),
    ):
        sock = connect((server.host, server.port))
        with sock:
            sock.sendall(payload)
            decoder = WireDecoder()
            decoder.feed(recv_until_closed(sock))
            decoder.feed(b"")
            errors = [e for e in decoder if isinstance(e, ErrorFrame)]
        assert errors[0].code == code


def test_a_replayed_handshake_fails(server: Address) -> None:
    """Record a genuine client's response, then send it again on a new connection."""

    def exchange(response: bytes | None) -> tuple[bytes, list[Any]]:
        sock = connect((server.host, server.port))
        with sock:
            sock.sendall(encode_hello())
            decoder = WireDecoder()
            events: list[Any] = []
            while len(events) < 2:
                decoder.feed(sock.recv(65536))
                events.extend(decoder)
            challenge = events[1].header
            if response is None:
                from socketkit.auth.handshake import ClientAuth

                reply = ClientAuth(TOKEN, os.urandom(32)).respond(challenge)
                assert reply is not None
                response = encode_control(reply)
            sock.sendall(response)
            while len(events) < 3:  # the server's "ok", or its ERROR
                decoder.feed(sock.recv(65536))
                events.extend(decoder)
            return response, events

    recorded, first = exchange(None)
    assert first[2].header["auth"] == "ok"
    _, second = exchange(recorded)
    assert isinstance(second[2], ErrorFrame)
    assert second[2].code == "auth-failed"


def test_busy_when_every_slot_runs(root: Path) -> None:
    service = ExecServer(settings(root, max_procs=1))
    with server_thread(service.make_server) as (address,):

        async def go() -> None:
            pids: list[int] = []
            long = asyncio.ensure_future(
                run_remote(
                    ServiceTarget(address, TOKEN),
                    ExecRequest(("sleep", "100"), stdin=False),
                    stdin=None,
                    stdout=io.BytesIO(),
                    stderr=io.BytesIO(),
                    on_started=pids.append,
                )
            )
            while not pids:
                await asyncio.sleep(0.01)
            with pytest.raises(ServiceError) as info:
                await run_remote(
                    ServiceTarget(address, TOKEN),
                    ExecRequest(("true",), stdin=False),
                    stdin=None,
                    stdout=io.BytesIO(),
                    stderr=io.BytesIO(),
                )
            assert info.value.code == "busy"
            long.cancel()
            with pytest.raises(asyncio.CancelledError):
                await long

        asyncio.run(go())


def test_output_cap_stops_the_command(root: Path) -> None:
    service = ExecServer(settings(root, max_output=1_000_000))
    with server_thread(service.make_server) as (address,):
        status, out, err, _ = remote(address, ExecRequest(("yes",), stdin=False))
    assert status == 128 + 15
    assert len(out) <= 1_000_000
    assert b"output cap" in err


def test_tls_with_a_pinned_fingerprint(root: Path, tmp_path: Path) -> None:
    pair = make_self_signed("localhost", ["127.0.0.1"])
    (tmp_path / "c.crt").write_bytes(pair.cert_pem)
    (tmp_path / "c.key").write_bytes(pair.key_pem)
    context = server_context(tmp_path / "c.crt", tmp_path / "c.key")
    service = ExecServer(settings(root))
    listeners = [Listener(Address("127.0.0.1", 0), ssl=context)]
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with server_thread(service.make_server, listeners) as (address,):
        status, out, _, _ = remote(
            address, ExecRequest(("echo", "secure"), stdin=False), ssl=client, fingerprint=pair.fingerprint
        )
        assert (status, out) == (0, b"secure\n")
        with pytest.raises(PermissionDenied) as info:
            remote(address, ExecRequest(("true",), stdin=False), ssl=client, fingerprint="AB" * 32)
        assert info.value.code == "tls-fingerprint"


def test_non_loopback_needs_token_and_tls(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "state")
    assert main(["serve", "exec", "--host", "0.0.0.0", "--port", "0", "--state-dir", state]) == 1
    assert "without TLS" in capsys.readouterr().err
    assert main(["serve", "exec", "--host", "0.0.0.0", "--port", "0", "--no-auth", "--state-dir", state]) == 1
    assert "--no-auth" in capsys.readouterr().err

    # The library refuses too, before binding anything (no token here; then a token
    # without TLS).
    async def start(token: str | None) -> list[Address]:
        server = ExecServer(settings(root, token=token)).make_server()
        async with server:
            with pytest.raises(PermissionDenied):
                await server.start([Listener(Address("0.0.0.0", 0))])
            return server.addresses

    assert asyncio.run(start(None)) == []
    assert asyncio.run(start(TOKEN)) == []


def test_audit_log_rows(root: Path, db: StateDB) -> None:
    # The end of a command is audited after the client has its exit status (the
    # database never adds to a command's latency); stopping the server waits for it.
    with server_thread(ExecServer(settings(root, db)).make_server) as (server,):
        remote(server, ExecRequest(("echo", "audited"), stdin=False))
        remote(server, ExecRequest(("false",), stdin=False))
    rows = db.query(
        "SELECT argv, status, signal, reason, bytes_out, peer, duration_ms FROM exec_audit ORDER BY id"
    )
    assert [(r["argv"], r["status"], r["bytes_out"]) for r in rows] == [
        ('["echo","audited"]', 0, 8),
        ('["false"]', 1, 0),
    ]
    assert all(r["peer"].startswith("127.0.0.1:") and r["duration_ms"] > 0 for r in rows)
