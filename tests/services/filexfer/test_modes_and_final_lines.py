"""Permission bits travel both ways as rsync gives them to new files (the source's mode
masked by the receiver's umask; never setuid, setgid or sticky), and every finished
transfer prints one final line, on a terminal as off one, with a summary for a tree."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from socketkit.services.filexfer.store import FileStore
from tests.helpers import TIMEOUT
from tests.services.filexfer.helpers import TOKEN, client_run, request_put, send_body, serving
from tests.services.filexfer.ptyproc import PtyProc

FINAL = r"{name} {size} in [\d.]+ s \([\d.]+ (?:B|KiB|MiB|GiB)/s\), verified sha256"


def final(name: str, size: str) -> str:
    return FINAL.format(name=re.escape(name), size=re.escape(size))


def socketkit(
    *args: str, cwd: Path, umask: int = 0o022, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, off a terminal, with the server's token and ``umask``
    (``stdin``: what it reads, else nothing)."""
    return subprocess.run(
        [sys.executable, "-m", "socketkit", *args],
        cwd=cwd,
        env={**os.environ, "SOCKETKIT_TOKEN": TOKEN},
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
        umask=umask,
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- both ways, through the real commands ---------------------------------------------------


def test_put_keeps_the_source_mode_masked_by_the_servers_umask(tmp_path: Path) -> None:
    here, root = tmp_path / "here", tmp_path / "root"
    (here / "tree").mkdir(parents=True)
    root.mkdir()
    sources = {"script": 0o750, "setuid": 0o4755, "private": 0o600, "shared": 0o666}
    for name, bits in sources.items():
        (here / "tree" / name).write_text(name)
        os.chmod(here / "tree" / name, bits)
    with serving(root, umask=0o022) as (address, _):
        done = socketkit("put", "-r", str(address), "tree", cwd=here)
        assert done.returncode == 0, done.stderr
        piped = socketkit("put", str(address), "-", "piped", cwd=here, stdin="from a pipe")
        assert piped.returncode == 0, piped.stderr
    stored = {name: mode(root / "tree" / name) for name in sources}
    assert stored == {"script": 0o750, "setuid": 0o755, "private": 0o600, "shared": 0o644}
    assert (root / "piped").read_text() == "from a pipe"
    assert mode(root / "piped") == 0o644  # not its 0600 spool file's: 0666 before the mask


def test_a_strict_server_umask_limits_uploads_and_an_old_client_gets_the_default(tmp_path: Path) -> None:
    local, root = tmp_path / "local", tmp_path / "root"
    local.mkdir()
    root.mkdir()
    (local / "script").write_text("#!/bin/sh\n")
    os.chmod(local / "script", 0o775)

    async def old_client(client: object) -> None:  # a put header with no mode at all
        await request_put(client, "old", b"data")  # type: ignore[arg-type]
        await send_body(client, b"data")  # type: ignore[arg-type]

    with serving(root, umask=0o077) as (address, _):
        client_run(address, lambda c: c.put_file(str(local / "script"), "script"))
        client_run(address, old_client)
    assert mode(root / "script") == 0o700
    assert mode(root / "old") == 0o600
    with serving(root, umask=0o022) as (address, _):
        client_run(address, lambda c: c.put_file(str(local / "script"), "script2"))
        client_run(address, lambda c: c.delete("old"))
        client_run(address, old_client)
    assert mode(root / "script2") == 0o755
    assert mode(root / "old") == 0o644  # 0666 masked, as open() makes a new file


def test_the_servers_umask_is_its_process_umask_when_it_opens(tmp_path: Path) -> None:
    before = os.umask(0o077)  # no server thread runs yet: nothing else creates files meanwhile
    try:
        store = FileStore(str(tmp_path), None)
    finally:
        os.umask(before)
    with store:
        assert store.umask == 0o077
        assert store.stored_mode(0o755) == 0o700
        assert store.stored_mode(0o000) == 0o400  # the server can always read what it serves


def test_get_keeps_the_server_files_mode_masked_by_the_clients_umask(tmp_path: Path) -> None:
    here, root = tmp_path / "here", tmp_path / "root"
    here.mkdir()
    (root / "tree").mkdir(parents=True)
    served = {"script": 0o755, "setuid": 0o4711, "private": 0o600, "shared": 0o666}
    for name, bits in served.items():
        (root / "tree" / name).write_text(name)
        os.chmod(root / "tree" / name, bits)
    with serving(root) as (address, _):
        done = socketkit("get", "-r", str(address), "tree", cwd=here, umask=0o027)
        assert done.returncode == 0, done.stderr
        single = socketkit("get", str(address), "tree/script", "one", cwd=here, umask=0o022)
        assert single.returncode == 0, single.stderr
    got = {name: mode(here / "tree" / name) for name in served}
    assert got == {"script": 0o750, "setuid": 0o710, "private": 0o600, "shared": 0o640}
    assert mode(here / "one") == 0o755


# --- the final lines -----------------------------------------------------------------------


def test_a_finished_get_and_put_leave_one_final_line_on_a_terminal(tmp_path: Path) -> None:
    here, root = tmp_path / "here", tmp_path / "root"
    here.mkdir()
    root.mkdir()
    (root / "down.bin").write_bytes(os.urandom(3 << 20))
    (here / "up.bin").write_bytes(os.urandom(1536 << 10))
    env = {"SOCKETKIT_TOKEN": TOKEN}
    with serving(root) as (address, _):
        get = PtyProc("get", str(address), "down.bin", cwd=here, env=env)
        assert get.finish() == 0, get.text
        put = PtyProc("put", str(address), "up.bin", cwd=here, env=env)
        assert put.finish() == 0, put.text
    # The progress bar was drawn (and cleared); the final line stays, once.
    assert "get down.bin" in get.text
    assert len(re.findall(final("down.bin", "3.0 MiB"), get.text)) == 1
    assert "put up.bin" in put.text
    assert len(re.findall(final("up.bin", "1.5 MiB"), put.text)) == 1


def test_final_lines_off_a_terminal_with_the_summary_of_a_tree(tmp_path: Path) -> None:
    here, root = tmp_path / "here", tmp_path / "root"
    (here / "tree" / "sub").mkdir(parents=True)
    root.mkdir()
    (here / "tree" / "a").write_bytes(b"a" * 10)
    (here / "tree" / "b").write_bytes(b"b" * 2048)
    (here / "tree" / "sub" / "c").write_bytes(b"")
    with serving(root) as (address, _):
        put = socketkit("put", "-r", str(address), "tree", cwd=here)
        (here / "back").mkdir()
        get = socketkit("get", "-r", str(address), "tree", "back", cwd=here)
        one = socketkit("get", str(address), "tree/a", "-", cwd=here)
        (here / "two").mkdir()
        two = socketkit("get", str(address), "tree/a", "tree/b", "two", cwd=here)
        quiet = socketkit("-q", "get", str(address), "tree/b", "quiet", cwd=here)
        quiet_put = socketkit("-q", "put", str(address), "tree/a", "quiet", cwd=here)
    assert put.returncode == get.returncode == one.returncode == two.returncode == 0
    assert quiet.returncode == quiet_put.returncode == 0
    lines = put.stderr.splitlines()
    assert len(lines) == 4, lines
    assert re.fullmatch(final("tree/a", "10 B"), lines[0])
    assert re.fullmatch(final("tree/b", "2.0 KiB"), lines[1])
    assert re.fullmatch(final("tree/sub/c", "0 B"), lines[2])
    assert re.fullmatch(r"3 files, 2\.0 KiB in [\d.]+ s \([\d.]+ (?:B|KiB|MiB)/s\)", lines[3])
    lines = get.stderr.splitlines()
    assert len(lines) == 4, lines
    assert re.fullmatch(final("back/tree/a", "10 B"), lines[0])
    assert lines[3].startswith("3 files, 2.0 KiB in ")
    assert one.stdout == "a" * 10  # the data on stdout, the line on stderr
    assert re.fullmatch(final("tree/a", "10 B"), one.stderr.strip())
    lines = two.stderr.splitlines()  # several files without -r: a summary too
    assert len(lines) == 3, lines
    assert re.fullmatch(final("two/a", "10 B"), lines[0])
    assert lines[2].startswith("2 files, 2.0 KiB in ")
    assert quiet.stderr == quiet_put.stderr == ""  # -q: no final lines
    assert (here / "quiet").read_bytes() == b"b" * 2048
