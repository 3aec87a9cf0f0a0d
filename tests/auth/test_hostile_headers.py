"""Hostile request headers against the real servers: every one gets an ERROR frame with a
code, the server logs at most a line for it (never a traceback), and goes on serving."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from pathlib import Path
from typing import Any

import pytest

from socketkit.address import Address
from socketkit.aio.client import open_connection
from socketkit.aio.connection import Connection
from socketkit.auth.session import authenticate_client, receive_control
from socketkit.codec.wire import ErrorFrame, WireDecoder, WireEvent, encode_control
from socketkit.services.filexfer.server import FileServer, FileSettings
from socketkit.services.filexfer.store import FileStore
from socketkit.testing import aio_serving

TOKEN = "4057" * 16


def raw_control(payload: bytes) -> bytes:
    """A CONTROL frame around any bytes (JSON that encode_control would never write)."""
    return struct.pack(">IBB", len(payload), 1, 0) + payload


HOSTILE_JSON = [
    b'{"op": "get", "path": "\\udcff"}',
    b'{"op": "get", "path": "a/\\ud800/b"}',
    b'{"op": "get", "offset": NaN, "path": "a"}',
    b'{"op": "put", "path": "a", "size": 1e400}',
    b'{"op": "put", "path": "a", "size": Infinity}',
    b'{"op": "list", "path": "a", "path": "b"}',
    b'{"op": "list", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    b'{"op": "list", "x": ' + b"[" * 17 + b"]" * 17 + b"}",
    b'{"op": "stat", "path": "' + b"n" * 300 + b'"}',
    b'{"op": "mkdir", "path": "' + b"d" * 300 + b'/x"}',
    b'{"op": "get", "path": "' + b"f" * 300 + b'"}',
]
HOSTILE_HEADERS: list[dict[str, Any]] = [
    {"op": "put", "path": "a", "size": -1},
    {"op": "put", "path": "a", "size": True},
    {"op": "put", "path": "a", "size": "10"},
    {"op": "put", "path": "a", "size": 2**70},
    {"op": "put", "path": "a", "size": 1, "sha256": "zz"},
    {"op": "put", "path": ["a"], "size": 1},
    {"op": "get", "path": "a", "offset": 5},
    {"op": "get", "path": "a", "offset": 1.5},
    {"op": "list", "hash": "yes"},
    {"op": "mkdir", "path": "a", "parents": 1},
    {"op": "delete", "path": None},
    {"op": "delete", "path": ""},
    {"op": "nope"},
    {"op": 5},
    {"op": "get\n", "path": "a"},
    {},
    {"op": "get", "path": "a\nb"},
    {"op": "get", "path": "x" * 5000},
]


async def files_session(address: Address) -> Connection[WireEvent]:
    conn: Connection[WireEvent] = await open_connection(address, WireDecoder())
    await authenticate_client(conn, TOKEN, service="files")
    return conn


def test_files_answers_every_hostile_header_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ok.txt").write_text("ok")

    async def main() -> list[ErrorFrame | str]:
        server = FileServer(FileSettings(store=FileStore(str(tmp_path), None), token=TOKEN))
        answers: list[ErrorFrame | str] = []
        async with aio_serving(server.make_server()) as (address,):
            conn = await files_session(address)
            frames = [raw_control(p) for p in HOSTILE_JSON]
            frames += [encode_control(h) for h in HOSTILE_HEADERS]
            for frame in frames:
                if conn.is_closing:  # a framing-level refusal (bad JSON) ends the connection
                    conn = await files_session(address)
                conn.send(frame)
                event = await conn.receive()
                answers.append(event if isinstance(event, ErrorFrame) else repr(event))
                # The same connection (or a new one) still serves a good request.
                if not conn.is_closing and not isinstance(event, ErrorFrame):
                    continue
                probe = conn
                if isinstance(event, ErrorFrame) and event.code == "bad-json":
                    probe.abort()
                    probe = conn = await files_session(address)
                probe.send(encode_control({"op": "stat", "path": "ok.txt"}))
                reply = await receive_control(probe)
                assert reply.header["entry"]["path"] == "ok.txt"
            conn.abort()
        return answers

    with caplog.at_level(logging.DEBUG):
        answers = asyncio.run(main())
    assert len(answers) == len(HOSTILE_JSON) + len(HOSTILE_HEADERS)
    for answer, sent in zip(answers, [*HOSTILE_JSON, *map(json.dumps, HOSTILE_HEADERS)], strict=True):
        assert isinstance(answer, ErrorFrame), (sent[:80], answer)
        assert answer.code, sent[:80]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks == []
    codes = {a.code for a in answers if isinstance(a, ErrorFrame)}
    assert {"bad-json", "bad-request", "bad-path"} <= codes
    # One line per refusal at most: no multi-line records.
    assert all("\n" not in r.getMessage() for r in caplog.records)
