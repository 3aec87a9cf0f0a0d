"""docs/protocol.md section 4: its byte example is what the code sends, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

from socketkit.auth.handshake import ClientAuth, ServerAuth
from socketkit.codec.wire import encode_control

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def documented(side: str, kind: str) -> bytes:
    """The frame the doc's example shows for ``side`` (header hex, then the JSON)."""
    match = re.search(rf"^{side}\s+([0-9a-f]{{8}}) 01 00 (\{{\"auth\":\"{kind}\".*\}})$", DOC, re.M)
    assert match, f"no {side} {kind} line in docs/protocol.md"
    return bytes.fromhex(match.group(1)) + b"\x01\x00" + match.group(2).encode()


def test_the_auth_byte_example() -> None:
    token = "0" * 64
    server = ServerAuth(token, bytes(range(32)), "exec")
    client = ClientAuth(token, bytes(range(32, 64)), "exec")
    challenge = server.challenge()
    assert encode_control(challenge) == documented("server", "challenge")
    response = client.respond(challenge)
    assert response is not None
    assert encode_control(response) == documented("client", "response")
    ok = server.verify(response)
    assert encode_control(ok) == documented("server", "ok")
    client.check_ok(ok)
