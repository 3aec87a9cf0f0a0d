"""Hostile requests each get an ERROR frame with a code, one log line without a traceback,
and the connection goes on serving the next request."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from socketkit.codec.wire import FrameType, encode_control
from socketkit.errors import ServiceError
from socketkit.services.filexfer.client import FileClient
from tests.services.filexfer.helpers import client_run, serving


def raw_control(payload: bytes) -> bytes:
    """A CONTROL frame around any payload (the encoder would refuse these)."""
    return struct.pack(">IBB", len(payload), FrameType.CONTROL, 0) + payload


LONG = "n" * 300
DEEP = b'{"op": "list", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
BAD_REQUESTS = {
    "300-byte name (list)": (encode_control({"op": "list", "path": LONG}), "name-too-long"),
    "300-byte name (get)": (encode_control({"op": "get", "path": f"d/{LONG}"}), "name-too-long"),
    "300-byte name (put)": (
        encode_control({"op": "put", "path": f"{LONG}/f", "size": 1, "sha256": None}),
        "name-too-long",
    ),
    "300-byte name (mkdir)": (encode_control({"op": "mkdir", "path": LONG}), "name-too-long"),
    "lone surrogate in a path": (raw_control(b'{"op": "get", "path": "a\\udcffb"}'), "bad-json"),
    "lone surrogate in a key": (raw_control(b'{"op": "stat", "path": "x", "\\udcff": 1}'), "bad-json"),
    "JSON nested 30,000 deep": (raw_control(DEEP), "bad-json"),
    "not an object": (raw_control(b"[1, 2]"), "bad-json"),
    "not JSON": (raw_control(b"{op: list}"), "bad-json"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_a_bad_request_gets_an_error_and_the_connection_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    frame, code = BAD_REQUESTS[name]
    (tmp_path / "d").mkdir()
    caplog.set_level(logging.INFO)

    async def body(client: FileClient) -> None:
        for _ in range(2):  # and again: nothing was left half-done by the first
            client.conn.send(frame)
            with pytest.raises(ServiceError) as info:
                await client._reply()
            assert info.value.code == code
            assert [e.path for e in await client.list("")] == ["d"]  # the next request is served

    with serving(tmp_path) as (address, _):
        caplog.clear()
        client_run(address, body)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    server_lines = [r for r in caplog.records if r.name == "socketkit.services.filexfer.server"]
    refused = [r for r in server_lines if "bad request" in r.getMessage() or "refused" in r.getMessage()]
    assert len(refused) == 2, [r.getMessage() for r in server_lines]  # one line per bad request
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "nothing worth a warning"
    assert all(len(r.getMessage()) < 2000 for r in caplog.records)  # 30,000 brackets are not echoed
