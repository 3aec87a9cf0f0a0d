"""The permission-bits rule, pure: what a received file keeps of its source's mode, and
how the mode travels in a put request (optional: old clients send none)."""

from __future__ import annotations

import os

import pytest

from socketkit.errors import RemoteProtocolError
from socketkit.services.filexfer.protocol import PutRequest, masked_mode, parse_request
from socketkit.services.filexfer.umask import process_umask


@pytest.mark.parametrize(
    ("source", "umask", "expected"),
    [
        (0o755, 0o022, 0o755),  # a script stays runnable
        (0o600, 0o022, 0o600),  # a private file stays private
        (0o666, 0o022, 0o644),  # the umask takes what it takes
        (0o4755, 0o022, 0o755),  # setuid never crosses
        (0o2775, 0o002, 0o775),  # nor setgid
        (0o1777, 0o000, 0o777),  # nor sticky
        (0o755, 0o077, 0o700),  # a strict umask wins over the source
        (None, 0o022, 0o644),  # no mode declared: what open() gives a new file
        (None, 0o077, 0o600),
    ],
)
def test_masked_mode(source: int | None, umask: int, expected: int) -> None:
    assert masked_mode(source, umask) == expected


def test_the_put_header_carries_mode_only_when_declared() -> None:
    old = PutRequest("f", 1, None).to_header()
    assert "mode" not in old  # what an old client sends, and an old server never sees
    assert parse_request(old) == PutRequest("f", 1, None, mode=None)
    new = PutRequest("f", 1, None, mode=0o750).to_header()
    assert parse_request(new) == PutRequest("f", 1, None, mode=0o750)
    for bad in (-1, 0o10000, "755", 7.5, True):
        with pytest.raises(RemoteProtocolError) as info:
            parse_request({**new, "mode": bad})
        assert info.value.error_code == "bad-request"


def test_process_umask_reads_without_changing_it() -> None:
    before = os.umask(0o027)
    try:
        assert process_umask() == 0o027
        assert process_umask() == 0o027  # read twice: not set by reading
    finally:
        os.umask(before)
