"""Names that are not plain visible text (``socketkit.paths``): refused in requests, and
when they are on disk already (put there on the machine, or by an older version)
left out of listings but reported, to the client (``unlisted``) and in one log line
per listing; they count in the quota, and ``rm -r`` of their directory removes them,
so what a client sees explains what the quota counts."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from socketkit.cli.main import main
from socketkit.errors import ServiceError
from socketkit.paths import unsafe_character
from socketkit.services.filexfer.client import FileClient
from socketkit.services.filexfer.quota import BLOCK
from tests.services.filexfer.helpers import TOKEN, client_run, serving

BAD_ON_DISK = [b"bad\xffname", "rtl\u202etxt.exe".encode(), "ls\u2028FORGED".encode()]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "root"
    (served / "sub").mkdir(parents=True)
    (served / "sub" / "ok").write_bytes(b"ok")
    for name in BAD_ON_DISK:
        os.close(os.open(os.fsencode(served / "sub") + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o644))
    hidden_dir = os.fsencode(served / "sub") + b"/zw\xe2\x80\x8bdir"  # U+200B in a directory name
    os.mkdir(hidden_dir)
    with open(hidden_dir + b"/inside", "wb") as f:
        f.write(b"i" * 10)
    return served


def test_names_that_cannot_be_shown_are_reported_counted_and_removable(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def body(client: FileClient) -> None:
        flat = await client.list("sub")
        assert [e.path for e in flat] == ["sub/ok"]
        assert flat.unlisted == 4
        deep = await client.list("", recursive=True)
        assert [e.path for e in deep] == ["sub", "sub/ok"]
        assert deep.unlisted == 4  # the directory counts once, what it holds is not entered
        await client.delete("sub/ok")
        with pytest.raises(ServiceError) as info:  # it looks empty but is not: the count says why
            await client.delete("sub")
        assert info.value.code == "not-empty"
        assert (await client.list("sub")).unlisted == 4
        await client.delete("sub", recursive=True)
        assert await client.list("") == []

    with serving(root) as (address, store):
        # sub, ok, the three files, the directory and what it holds: a block each.
        assert (store.usage.total, store.usage.entries) == (7 * BLOCK, 7)
        caplog.clear()
        client_run(address, body)
        assert (store.usage.total, store.usage.entries) == (0, 0)
    assert list(root.iterdir()) == []
    reports = [r.getMessage() for r in caplog.records if "cannot be shown" in r.getMessage()]
    assert len(reports) == 3, reports  # one line per listing, not one per name
    assert "4 name(s)" in reports[0]
    for report in reports:
        assert unsafe_character(report) is None, report  # the example is shown escaped


@pytest.mark.parametrize("name", ["rtl\u202etxt.exe", "ls\u2028FORGED INFO line", "nel\x85x", "zw\u200b"])
def test_such_names_are_refused_and_logged_escaped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    (tmp_path / "local").write_bytes(b"data")
    served = tmp_path / "root"
    served.mkdir()
    caplog.set_level(logging.INFO)

    async def body(client: FileClient) -> None:
        for attempt in (
            client.put_file(str(tmp_path / "local"), name),
            client.mkdir(name),
            client.stat(name),
        ):
            with pytest.raises(ServiceError) as info:
                await attempt
            assert info.value.code == "bad-path"

    with serving(served) as (address, _):
        caplog.clear()
        client_run(address, body)
    assert list(served.iterdir()) == []
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 3
    for line in refused:
        assert unsafe_character(line) is None, line


def test_ls_and_get_say_when_names_were_left_out(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    with serving(root) as (address, _):
        assert main(["ls", str(address), "sub"]) == 0
        out, err = capsys.readouterr()
        assert out.count("\n") == 1  # "ok"
        assert err.count("\n") == 1
        assert "4 name(s) on the server cannot be shown" in err
        assert main(["ls", "--json", str(address), "sub"]) == 0
        assert "4 name(s)" in capsys.readouterr().err
        assert main(["get", "-r", str(address), "sub", str(tmp_path / "out")]) == 0
        assert "4 name(s)" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out" / "sub").iterdir()] == ["ok"]


def test_names_on_disk_that_look_like_paths_dots_or_nothing_are_left_out(tmp_path: Path) -> None:
    """Files put there on the machine as ``a\u2215b`` (looks like the path a/b),
    ``\u2024\u2024`` (looks like ..) and U+FE0F alone (shows as nothing): a listing
    leaves them out and counts them, as it does names with invisible characters; a
    client could not name them back."""
    served = tmp_path / "root"
    served.mkdir()
    for name in ("a\u2215b", "\u2024\u2024", "\ufe0f", "ok"):
        (served / name).write_bytes(b"x")

    async def body(client: FileClient) -> None:
        listing = await client.list("")
        assert [e.path for e in listing] == ["ok"]
        assert listing.unlisted == 3

    with serving(served) as (address, _):
        client_run(address, body)
