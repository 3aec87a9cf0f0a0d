"""State is private to its user: directories 0700, files 0600, for every entry point;
a state directory others can write (or another user owns) is refused."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketkit._private import private_dir, private_file
from socketkit.auth.token import MAX_TOKEN_FILE_SIZE, load_client_token, load_or_create_token
from socketkit.errors import PermissionDenied
from socketkit.state import StateDB
from tests.cli.procs import Proc


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    """The umask most systems have: what made the state readable before."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(directory: Path) -> None:
    assert mode(directory) == 0o700, directory
    for path in directory.rglob("*"):
        if path.is_dir():
            assert mode(path) == 0o700, path
        else:
            assert mode(path) == 0o600, path


def test_serve_all_leaves_its_state_private(tmp_path: Path) -> None:
    # A state directory that does not exist yet, as on the first `make serve`: before,
    # os.makedirs(STATE/files) left STATE at the umask's 0755 and SQLite made 0644 files.
    state = tmp_path / "deep" / "state"
    with Proc("serve", "all", "--any-port", "--state-dir", str(state), stdin=False) as proc:
        proc.expect(r"^status at ")
        names = {p.name for p in state.iterdir()}
        assert {"token", "socketkit.db", "files"} <= names
        assert_private(state)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0
    assert_private(state)


@pytest.mark.parametrize(
    "entry",
    [
        lambda d: StateDB(d).close(),
        lambda d: load_or_create_token(d),
    ],
    ids=["database", "token"],
)
def test_every_entry_point_makes_its_state_private(tmp_path: Path, entry: object) -> None:
    state = tmp_path / "a" / "state"
    entry(state)  # type: ignore[operator]
    assert_private(state)


def test_a_state_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    with pytest.raises(PermissionDenied, match="can be written by other users") as info:
        StateDB(state)
    assert info.value.code == "state-mode"
    assert not (state / "socketkit.db").exists()
    os.chmod(state, 0o720)
    with pytest.raises(PermissionDenied, match="chmod 700"):
        load_or_create_token(state)


def test_a_state_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    with pytest.raises(PermissionDenied, match="belongs to another user"):
        private_dir(state)


def test_a_readable_state_directory_and_database_are_made_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    for name in ("socketkit.db", "socketkit.db-wal"):
        (state / name).touch()
        os.chmod(state / name, 0o644)
    with caplog.at_level(logging.WARNING), StateDB(state):
        pass
    assert "made private" in caplog.text
    assert_private(state)


def test_private_file_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x")
    os.chmod(target, 0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OSError, match=r"Too many levels|symbolic"):
        private_file(link)
    assert mode(target) == 0o644


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = load_or_create_token(state)
    os.chmod(token.path, 0o644)
    with pytest.raises(PermissionDenied, match="readable by other users") as info:
        load_or_create_token(state)
    assert info.value.code == "token-mode"


def test_token_files_are_read_up_to_a_cap(tmp_path: Path) -> None:
    # /dev/zero never ends: it is no file or pipe, and is refused without a read.
    with pytest.raises(PermissionDenied, match="not a regular file or a pipe"):
        load_client_token("/dev/zero")
    # A pipe that never ends is read one byte past the cap, then refused.
    big = tmp_path / "big"
    big.write_text("a" * (MAX_TOKEN_FILE_SIZE + 1))
    os.chmod(big, 0o600)
    with pytest.raises(PermissionDenied, match=f"larger than {MAX_TOKEN_FILE_SIZE} bytes"):
        load_client_token(big)
    with subprocess.Popen(["yes"], stdout=subprocess.PIPE) as endless:
        assert endless.stdout is not None
        try:
            with pytest.raises(PermissionDenied, match="larger than"):
                load_client_token(f"/proc/self/fd/{endless.stdout.fileno()}")
        finally:
            endless.kill()


def test_a_fifo_without_a_writer_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PermissionDenied, match="no usable token"):
        load_client_token(fifo)


@pytest.mark.parametrize("value", ["\udcff" * 40, "é" * 40, "a b" * 20, "short"])
def test_a_token_from_the_environment_is_checked(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKETKIT_TOKEN", value)
    with pytest.raises(PermissionDenied, match="SOCKETKIT_TOKEN holds no usable token"):
        load_client_token(None)


def test_token_files_from_pipes_work(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"ab" * 32 + b"\n")
    os.close(write_fd)
    try:
        assert load_client_token(f"/proc/self/fd/{read_fd}") == "ab" * 32
    finally:
        os.close(read_fd)


@pytest.mark.parametrize("content", [b"", b"short", b"\xff" * 40, b"a b" * 20])
def test_a_token_file_without_a_token_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(PermissionDenied) as info:
        load_client_token(path)
    assert info.value.code == "no-token"


def test_a_client_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    # As ssh does for private keys: a secret in a file others can read is no secret.
    path = tmp_path / "token"
    path.write_text("ab" * 32)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionDenied, match="can be read by other users") as info:
        load_client_token(path)
    assert "chmod 600" in str(info.value)
    os.chmod(path, 0o600)
    assert load_client_token(path) == "ab" * 32


def test_a_server_token_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = load_or_create_token(state)
    os.chown(token.path, 65534, 65534)
    with pytest.raises(PermissionDenied, match="not a file of this user's") as info:
        load_or_create_token(state)
    assert info.value.code == "token-mode"


def test_a_state_directory_in_a_directory_anyone_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # no sticky bit: anyone may rename our directory away
    with pytest.raises(PermissionDenied, match="without the sticky bit"):
        private_dir(shared / "state")
    os.chmod(shared, 0o1777)  # as /tmp: only the owner may rename it
    assert_private(private_dir(shared / "state"))
