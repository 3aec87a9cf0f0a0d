"""A client's ERROR frame means the client gives up, at any point of a session: the
server logs one line, closes, and never answers it (an error frame sent back would
echo the client's own code and words); no traceback; an upload it abandons keeps only
what it wrote; the server goes on serving everyone else."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from socketkit.address import Address
from socketkit.codec.wire import encode_body_header, encode_control, encode_error
from socketkit.services.filexfer.protocol import PutRequest
from tests.services.filexfer.helpers import client_run, closed_without_answer, raw_session, serving

FORGED = "y\u2028INFO forged line \u202eevil"

STAGES = ["before login", "after login", "after ready", "after restart", "in commit"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_client_error_frame_is_the_client_giving_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stage: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    if stage == "after restart":
        (root / ".resumed.part").write_bytes(b"12345")  # an earlier upload's partial
    caplog.set_level(logging.INFO)

    async def session(address: object) -> bool:
        conn = await raw_session(address, login=stage != "before login")  # type: ignore[arg-type]
        if stage in ("after ready", "in commit"):
            conn.send(encode_control(PutRequest("up", 10, None).to_header()))
            assert (await conn.receive()).header["event"] == "ready"  # type: ignore[union-attr]
        if stage == "after restart":
            conn.send(encode_control(PutRequest("resumed", 10, None, resume=True).to_header()))
            assert (await conn.receive()).header["offset"] == 5  # type: ignore[union-attr]
            conn.send(encode_control({"op": "restart"}))
            assert (await conn.receive()).header["offset"] == 0  # type: ignore[union-attr]
        if stage == "in commit":
            conn.send(encode_body_header(10) + b"0123456789")
        conn.send(encode_error("x-client-code", FORGED))
        return await closed_without_answer(conn)

    with serving(root) as (address, store):
        caplog.clear()
        assert asyncio.run(session(address))
        # The server goes on: another client is served (the abandoned upload is over).
        assert client_run(address, lambda client: client.list("")) == []
        assert not store.usage.active_under("")

    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    gave_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert len(gave_up) == 1, [r.getMessage() for r in caplog.records]
    assert "x-client-code" in gave_up[0]
    assert "\u2028" not in gave_up[0]  # quoted escaped
    assert "\u202e" not in gave_up[0]
    partials = sorted(p.name for p in root.iterdir())
    if stage == "in commit":  # the body arrived: kept for a resume
        assert partials == [".up.part"]
        assert (root / ".up.part").read_bytes() == b"0123456789"
    else:  # nothing was written: nothing is left (the restarted partial was emptied)
        assert partials == []


def test_a_long_client_error_is_quoted_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def session(address: Address) -> bool:
        conn = await raw_session(address, login=True)
        conn.send(encode_error("x", "m" * 60_000))
        return await closed_without_answer(conn)

    with serving(tmp_path) as (address, _):
        caplog.clear()
        assert asyncio.run(session(address))
    (line,) = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert "m" * 200 in line
    assert "m" * 201 not in line
