"""The files commands fail in one clear line with the right exit status: a server that
cannot start creates no state first; a remote name that is not UTF-8 is a usage error
(or, for a file found in a tree, one failure while the others go on); connection and
local-directory errors name what they are about."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from socketkit.cli.main import main
from tests.services.filexfer.helpers import TOKEN, serving

NOT_UTF8 = os.fsdecode(b"c1\x9bx")  # as Python hands such an argument to the program


@pytest.mark.parametrize("problem", ["missing root", "root is a file", "no such owner"])
def test_serve_files_refuses_to_start_before_creating_any_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    (tmp_path / "root").mkdir()
    root = {"missing root": "nonexistent", "root is a file": "a-file"}.get(problem, "root")
    argv = ["serve", "files", "--root", str(tmp_path / root), "--state-dir", str(tmp_path / "state")]
    if problem == "no such owner":
        argv += ["--owner", "no-such-user-here"]
    assert main([*argv, "--port", "0"]) == 1
    out, err = capsys.readouterr()
    assert not (tmp_path / "state").exists()
    assert "TOKEN" not in out
    assert err.count("\n") == 1
    assert err.startswith("ConfigError: files: ")
    assert (root in err) if problem != "no such owner" else ("no-such-user-here" in err)


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "ADDR", NOT_UTF8],
        ["get", "ADDR", "ok", NOT_UTF8, "local-dir"],
        ["put", "ADDR", "/etc/hostname", NOT_UTF8],
        ["ls", "ADDR", NOT_UTF8],
        ["rm", "ADDR", NOT_UTF8],
        ["mkdir", "ADDR", NOT_UTF8],
    ],
    ids=["get", "get-several", "put-target", "ls", "rm", "mkdir"],
)
def test_a_remote_name_that_is_not_utf8_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    address = f"unix:{tmp_path / 'nobody-listens'}"  # never reached: refused before connecting
    assert main([a.replace("ADDR", address) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "c1\\x9bx" in err
    assert "is not valid UTF-8" in err
    assert "Error" not in err.split(":")[0]  # no exception name: a usage error


def test_a_tree_holding_a_name_that_is_not_utf8_fails_that_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "good").write_bytes(b"good")
    with open(os.fsencode(tree) + b"/bad\xffname", "wb") as f:
        f.write(b"bad")
    root = tmp_path / "root"
    root.mkdir()
    with serving(root) as (address, _):
        assert main(["put", "-r", str(address), str(tree)]) == 1
    failed, good, summary = capsys.readouterr().err.splitlines()  # one failure, one file done, the summary
    assert "bad\\xffname" in failed
    assert "is not valid UTF-8" in failed
    assert good.startswith("tree/good 4 B in ")
    assert summary.startswith("1 file, 4 B in ")
    assert summary.endswith(", 1 failed")
    assert (root / "tree" / "good").read_bytes() == b"good"
    assert sorted(p.name for p in (root / "tree").iterdir()) == ["good"]


def test_a_missing_unix_socket_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "no-such-socket"
    assert main(["ls", f"unix:{path}"]) == 255
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(path) in err
    assert "no such socket" in err


def test_get_into_a_missing_local_directory_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOCKETKIT_TOKEN", TOKEN)
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").write_bytes(b"a")
    (root / "b").write_bytes(b"b")
    missing = tmp_path / "missing"
    with serving(root) as (address, _):
        assert main(["get", str(address), "a", "b", str(missing)]) == 1
        several = capsys.readouterr().err
        assert main(["get", str(address), "a", str(missing / "a")]) == 1
        one = capsys.readouterr().err
    for err in (several, one):
        assert err.count("\n") == 1
        assert str(missing) in err
        assert "no such local directory" in err
        assert ".part" not in err  # the hidden partial is ours, not the user's business
    assert not missing.exists()


def test_what_a_server_says_in_an_error_is_printed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """A server's error message reaches the terminal only escaped: no screen clearing,
    no reordered text, no forged second line."""
    import argparse

    from socketkit.cli.files_client import _Session
    from socketkit.errors import ServiceError

    session = _Session(None, argparse.Namespace())  # type: ignore[arg-type]
    session.fail("name\u202e", ServiceError("refused\x1b[2J\u2028forged line\u202eevil", code="x"))
    err = capsys.readouterr().err
    assert err == "name\\u202e: ServiceError: refused\\x1b[2J\\u2028forged line\\u202eevil\n"
