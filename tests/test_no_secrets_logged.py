"""No token, MAC or password ever reaches a log: a whole session of every service that
has a secret (files, exec, chat), right and wrong secrets alike, at DEBUG level."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

import socketkit.auth.handshake as handshake
from socketkit.auth.connect import ServiceTarget
from socketkit.errors import ServiceError
from socketkit.services.chat.session import hash_password
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.server import FileServer, FileSettings
from socketkit.services.filexfer.store import FileStore
from socketkit.services.rexec.client import run_remote
from socketkit.services.rexec.policy import ExecPolicy
from socketkit.services.rexec.protocol import ExecRequest
from socketkit.services.rexec.server import ExecServer, ExecSettings
from socketkit.state import StateDB
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT
from tests.services.chat.servers import chat_server

TOKEN = "c0ffee" * 10 + "beef"
WRONG = "deadbeef" * 8
CHAT_PASSWORD = "open sesame 42"
OPER_PASSWORD = "operator-pw-9876"


@pytest.fixture
def macs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every MAC either side computes during the test, as hex."""
    seen: list[str] = []
    for name in ("client_mac", "server_mac"):
        original = getattr(handshake, name)

        def recording(*args: Any, _original: Any = original) -> bytes:
            mac: bytes = _original(*args)
            seen.append(mac.hex())
            return mac

        monkeypatch.setattr(handshake, name, recording)
    return seen


def files_session(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    (tmp_path / "local.txt").write_text("content\n")
    with StateDB(tmp_path / "files-state") as db:
        service = FileServer(FileSettings(store=FileStore(str(root), db), token=TOKEN))
        with server_thread(service.make_server) as (address,):

            async def session() -> None:
                client = await FileClient.connect(ServiceTarget(address, TOKEN))
                try:
                    await client.put_file(str(tmp_path / "local.txt"), "up.txt")
                    await client.get_file("up.txt", str(tmp_path / "back.txt"))
                    await client.list("")
                    await client.delete("up.txt")
                finally:
                    await client.aclose()
                with pytest.raises(ServiceError):
                    await FileClient.connect(ServiceTarget(address, WRONG))

            asyncio.run(session())


def exec_session(tmp_path: Path) -> None:
    root = tmp_path / "exec"
    root.mkdir()
    with StateDB(tmp_path / "exec-state") as db:
        settings = ExecSettings(root=str(root), policy=ExecPolicy(home=str(root)), token=TOKEN, db=db)
        with server_thread(ExecServer(settings).make_server) as (address,):
            out, err = io.BytesIO(), io.BytesIO()
            request = ExecRequest(("echo", "hi"), stdin=False)
            status = asyncio.run(
                run_remote(ServiceTarget(address, TOKEN), request, stdin=None, stdout=out, stderr=err)
            )
            assert (status, out.getvalue()) == (0, b"hi\n")
            with pytest.raises(ServiceError):
                asyncio.run(
                    run_remote(ServiceTarget(address, WRONG), request, stdin=None, stdout=out, stderr=err)
                )


def _read_until(irc: socket.socket, *markers: bytes) -> bytes:
    received = b""
    while not any(marker in received for marker in markers):
        chunk = irc.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def chat_session(tmp_path: Path) -> None:
    opers = {"root": hash_password(OPER_PASSWORD, b"s" * 16, rounds=1000)}
    with chat_server(tmp_path / "chat-state", password=CHAT_PASSWORD, opers=opers) as (address,):
        for password, oper in ((CHAT_PASSWORD, OPER_PASSWORD), (CHAT_PASSWORD, "wrong oper pw"), ("bad", "")):
            with socket.create_connection((address.host, address.port), timeout=TIMEOUT) as irc:
                irc.sendall(f"PASS :{password}\r\nNICK n{len(oper)}\r\nUSER u 0 * :U\r\n".encode())
                welcome = _read_until(irc, b" 001 ", b"ERROR ")
                if oper:
                    assert b" 001 " in welcome
                    irc.sendall(f"OPER root :{oper}\r\n".encode())
                    assert _read_until(irc, b" 381 ", b" 464 ")
                    irc.sendall(b"QUIT :bye\r\n")
                else:
                    assert b"ERROR " in welcome
                _read_until(irc, b"\x00never")  # until the server closes


def test_no_secret_is_ever_logged(tmp_path: Path, macs: list[str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        files_session(tmp_path)
        exec_session(tmp_path)
        chat_session(tmp_path)
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    # The sessions did run, and were logged.
    assert "files: " in text
    assert "exec: " in text
    assert "authentication failed" in text
    assert "OPER" in text
    assert len(macs) >= 6
    secrets = {TOKEN, WRONG, CHAT_PASSWORD, OPER_PASSWORD, "wrong oper pw", *macs}
    leaked = sorted(secret for secret in secrets if secret in text)
    assert leaked == []
    # Not even a part long enough to matter (a MAC cut in half, a token prefix).
    for secret in {TOKEN, WRONG, *macs}:
        for start in range(0, len(secret) - 16, 8):
            assert secret[start : start + 16] not in text
