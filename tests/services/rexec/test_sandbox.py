"""exec's sandbox, proven from outside: commands run through the real server and client
see the root and the system directories and nothing else, have no network unless
allowed, cannot gain privileges and run as nobody when the server is root.

Every test runs for each backend (bwrap and Landlock). A backend missing here is a
FAILURE, not a skip: CI installs bubblewrap and its kernel has Landlock. Files the
sandbox must hide are made readable by everyone, and a control run without a sandbox
reads them, so what stops the command is the sandbox, not file permissions.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from socketkit.cli.main import main
from socketkit.errors import ConfigError, SandboxUnavailable
from socketkit.services.rexec import landlock_exec, sandbox
from socketkit.services.rexec.policy import ExecPolicy
from socketkit.services.rexec.protocol import ExecRequest
from socketkit.services.rexec.runner import select_sandbox
from socketkit.services.rexec.sandbox import SandboxSettings
from socketkit.services.rexec.server import ExecServer, ExecSettings
from tests.aio_thread import server_thread
from tests.services.rexec.test_rexec_loopback import TOKEN, remote, session_alive

BACKENDS = ["bwrap", "landlock"]
PROGRAMS = frozenset({"cat", "ls", "id", "sh", "bash", "echo", "true"})
SECRET = "secret-token-0123456789"
NOBODY = pwd.getpwnam("nobody")


@dataclass
class World:
    base: Path
    root: Path
    state: Path
    home: Path
    outside: Path


@pytest.fixture
def world() -> Iterator[World]:
    """A tree under /tmp that every user may read: the root (nobody's when we are
    root), a state directory beside it with a token, a home directory, a world-writable
    directory outside the root."""
    base = Path(tempfile.mkdtemp(prefix="socketkit-sandbox-test-"))
    try:
        base.chmod(0o755)
        w = World(base, base / "srv" / "root", base / "srv" / "state", base / "home" / "alice", base / "out")
        for path in (w.root, w.state, w.home, w.outside):
            path.mkdir(parents=True)
            path.chmod(0o755)
        w.outside.chmod(0o777)
        (w.state / "token").write_text(SECRET)
        (w.home / "notes.txt").write_text("alice's notes")
        for path in (w.state / "token", w.home / "notes.txt"):
            path.chmod(0o644)
        if os.geteuid() == 0:
            os.chown(w.root, NOBODY.pw_uid, NOBODY.pw_gid)
        yield w
    finally:
        shutil.rmtree(base)


def serve(w: World, backend: str, **options: object) -> ExecServer:
    return ExecServer(
        ExecSettings(
            root=str(w.root),
            policy=ExecPolicy(allow=PROGRAMS, home=str(w.root)),
            token=TOKEN,
            sandbox=SandboxSettings(backend=backend, hidden=(str(w.state),), **options),  # type: ignore[arg-type]
        )
    )


def run(service: ExecServer, *argv: str) -> tuple[int, str, str]:
    with server_thread(service.make_server) as (address,):
        status, out, err, _ = remote(address, ExecRequest(argv, stdin=False))
    return status, out.decode(), err.decode()


def test_the_control_run_without_a_sandbox_sees_everything(world: World) -> None:
    """Without the sandbox the files below are readable and the directory writable: the
    other tests' refusals come from the sandbox."""
    service = serve(world, "none")
    assert run(service, "cat", str(world.state / "token"))[1] == SECRET
    assert run(service, "cat", str(world.home / "notes.txt"))[1] == "alice's notes"
    assert run(service, "sh", "-c", f"echo x > {world.outside}/f")[0] == 0
    assert (world.outside / "f").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_system_secrets_and_homes_are_invisible(world: World, backend: str) -> None:
    service = serve(world, backend)
    assert service.sandbox.name == backend
    status, out, _ = run(service, "cat", "/etc/shadow")
    assert status != 0
    assert "root:" not in out
    status, out, _ = run(service, "cat", str(world.home / "notes.txt"))
    assert status != 0
    assert "alice" not in out
    assert run(service, "ls", "/root")[0] != 0
    status, out, _ = run(service, "cat", "/etc/passwd")  # what programs need is there
    assert status == 0
    assert "nobody" in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_state_directory_and_its_token_are_invisible(world: World, backend: str) -> None:
    service = serve(world, backend)
    for path in (str(world.state / "token"), "../state/token"):
        status, out, _ = run(service, "cat", path)
        assert status != 0
        assert SECRET not in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_root_is_writable_and_nothing_else(world: World, backend: str) -> None:
    service = serve(world, backend)
    assert run(service, "sh", "-c", "echo made > made.txt")[0] == 0
    assert (world.root / "made.txt").read_text() == "made\n"
    for target in (f"{world.outside}/f", "/tmp/../" + str(world.outside) + "/g", "../escaped"):
        status, _, err = run(service, "sh", "-c", f"echo x > {target}")
        assert status != 0, err
    assert list(world.outside.iterdir()) == []
    assert not (world.root.parent / "escaped").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_network_unless_allowed(world: World, backend: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        connect = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
        status, out, _ = run(serve(world, backend), "bash", "-c", connect)
        assert status != 0
        assert "connected" not in out
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached us
        status, out, err = run(serve(world, backend, allow_network=True), "bash", "-c", connect)
        assert (status, out) == (0, "connected\n"), err
        listener.settimeout(10)
        peer, _ = listener.accept()
        peer.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_unprivileged_with_no_new_privs(world: World, backend: str) -> None:
    service = serve(world, backend)
    expected = NOBODY.pw_uid if os.geteuid() == 0 else os.getuid()
    assert run(service, "id", "-u")[1] == f"{expected}\n"
    status, out, _ = run(service, "cat", "/proc/self/status")
    assert status == 0
    assert "NoNewPrivs:\t1" in out.splitlines()


def test_bwrap_masks_a_state_directory_inside_the_root(world: World) -> None:
    inner = world.root / ".socketkit"
    inner.mkdir()
    (inner / "token").write_text(SECRET)
    (inner / "token").chmod(0o644)
    service = ExecServer(
        ExecSettings(
            root=str(world.root),
            policy=ExecPolicy(allow=PROGRAMS),
            token=TOKEN,
            sandbox=SandboxSettings(backend="bwrap", hidden=(str(inner),)),
        )
    )
    status, out, _ = run(service, "cat", ".socketkit/token")
    assert status != 0
    assert SECRET not in out
    assert run(service, "sh", "-c", "echo x > .socketkit/planted")[0] != 0
    assert sorted(p.name for p in inner.iterdir()) == ["token"]


def test_landlock_refuses_a_state_directory_inside_the_root(world: World) -> None:
    inner = world.root / ".socketkit"
    inner.mkdir()
    settings = SandboxSettings(backend="landlock", hidden=(str(inner),))
    with pytest.raises(SandboxUnavailable, match="cannot hide"):
        select_sandbox(settings, str(world.root))


def test_a_root_holding_the_state_directory_or_the_system_is_refused(world: World) -> None:
    for root in ("/", "/etc/ssl", "/usr/.."):
        with pytest.raises(ConfigError, match="serve a directory of its own"):
            select_sandbox(SandboxSettings(), os.path.realpath(root))
    with pytest.raises(ConfigError, match="must not see"):
        select_sandbox(SandboxSettings(hidden=(str(world.root),)), str(world.root))
    # A root inside the state directory (serve all's default, STATE_DIR/files) is fine.
    inner = world.state / "files"
    inner.mkdir()
    assert select_sandbox(SandboxSettings(hidden=(str(world.state),)), str(inner)).name == "bwrap"


def test_the_pid_namespace_ends_setsid_escapes(world: World) -> None:
    """bwrap: a daemon the command starts in a session of its own dies with it (without
    a PID namespace it would escape the session sweep)."""
    service = serve(world, "bwrap")
    marker = "4321.5"
    assert run(service, "sh", "-c", f"setsid sleep {marker} & echo started")[0] == 0

    def escaped() -> list[int]:
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline == f"sleep\0{marker}\0".encode() and session_alive(int(entry)):
                found.append(int(entry))
        return found

    assert escaped() == []


def _no_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sandbox, "_find", lambda program: None if "bwrap" in program else shutil.which(program)
    )
    monkeypatch.setattr(landlock_exec, "abi_version", lambda: 0)


def test_without_any_sandbox_the_server_refuses_to_start(world: World) -> None:
    settings = SandboxSettings(bwrap="/nonexistent/bwrap", landlock=False)
    with pytest.raises(SandboxUnavailable) as info:
        ExecServer(ExecSettings(root=str(world.root), policy=ExecPolicy(), token=TOKEN, sandbox=settings))
    message = str(info.value)
    assert "install bubblewrap" in message
    assert "--no-sandbox" in message
    assert "\n" not in message


def test_auto_falls_back_to_landlock_when_bwrap_is_missing(world: World) -> None:
    chosen = select_sandbox(SandboxSettings(bwrap="/nonexistent/bwrap"), str(world.root))
    assert chosen.name == "landlock"


def test_serve_exec_without_a_sandbox_is_one_line(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_backend(monkeypatch)
    argv = ["serve", "exec", "--port", "0", "--root", str(world.root), "--state-dir", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("SandboxUnavailable: exec: no sandbox for commands")


def test_serve_all_leaves_exec_out_with_one_line(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_backend(monkeypatch)
    others = [arg for name in ("echo", "chat", "files", "admin") for arg in ("--without", name)]
    argv = ["serve", "all", "--any-port", "--state-dir", str(tmp_path), "--root", str(world.root)]
    assert main([*argv, *others]) == 0  # nothing left to serve: returns at once
    out = [line for line in capsys.readouterr().out.splitlines() if "sandbox" in line]
    assert len(out) == 1
    assert "install bubblewrap" in out[0]
    assert "without exec" in out[0]


DANGEROUS = {
    # run another program
    "env", "nice", "nohup", "timeout", "stdbuf", "setsid", "chroot", "flock", "watch", "xargs",
    "find", "parallel", "ionice", "chrt", "taskset", "unshare", "nsenter", "setpriv", "runuser",
    "su", "sudo", "doas", "script", "strace", "gdb", "ltrace", "make", "git", "ssh", "scp",
    "rsync", "crontab", "at", "systemd-run", "expect", "busybox", "socketkit",
    # shells and interpreters
    "sh", "bash", "dash", "zsh", "ksh", "csh", "fish", "python", "python3", "perl", "ruby",
    "node", "php", "lua", "tclsh", "awk", "gawk", "mawk", "sed", "m4", "sqlite3", "openssl",
    # pagers and editors (they run shells)
    "less", "more", "man", "vi", "vim", "nvim", "nano", "emacs", "ed", "ex",
    # write files they are told to, or change the system
    "sort", "uniq", "tee", "dd", "cp", "mv", "rm", "ln", "install", "tar", "cpio", "zip",
    "unzip", "gzip", "gunzip", "split", "csplit", "patch", "truncate", "touch", "shred",
    "chmod", "chown", "mkdir", "date", "hostname", "curl", "wget", "nc", "socat",
}  # fmt: skip


def test_the_default_allow_list_holds_no_dangerous_program() -> None:
    from socketkit.services.rexec.policy import DEFAULT_ALLOWED

    assert DEFAULT_ALLOWED.isdisjoint(DANGEROUS), sorted(DEFAULT_ALLOWED & DANGEROUS)


@pytest.mark.parametrize(
    ("allow", "message"),
    [
        ("/nonexistent/prog", "no such program"),
        ("bin/ls", "relative path"),
        ("no-such-program-here", "no such program"),
    ],
)
def test_bad_allow_entries_are_refused_at_start(
    allow: str, message: str, tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "exec", "--port", "0", "--root", str(world.root), "--state-dir", str(tmp_path)]
    assert main([*argv, "--allow", allow]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("ConfigError: exec: --allow")
    assert message in err[0]


def test_an_empty_allow_entry_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "exec", "--port", "0", "--state-dir", str(tmp_path), "--allow", ""]) == 2
    assert "argument --allow: expected a non-empty string" in capsys.readouterr().err


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_command_has_a_private_tmp(world: World, backend: str) -> None:
    name = f"socketkit-probe-{os.getpid()}"
    script = f'd="${{TMPDIR:-/tmp}}"; echo hi > "$d/{name}" && echo "$d" && cat "$d/{name}"'
    status, out, err = run(serve(world, backend), "sh", "-c", script)
    assert status == 0, err
    tmpdir, content = out.splitlines()
    assert content == "hi"
    assert not Path(tmpdir, name).exists()  # bwrap: a tmpfs; Landlock: removed afterwards
    assert not Path("/tmp", name).exists()


def test_a_root_the_run_as_user_cannot_write_is_warned_about(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (as CI runs): the run-as user applies to root servers")
    os.chown(world.root, 0, 0)
    with caplog.at_level("WARNING"):
        serve(world, "bwrap")
    assert any("cannot write in" in r.getMessage() for r in caplog.records)


def test_the_default_root_is_given_to_the_run_as_user(tmp_path: Path) -> None:
    from socketkit.services.rexec.build import _give_to_run_as

    root = tmp_path / "files"
    root.mkdir()
    _give_to_run_as(str(root), "nobody")
    expected = NOBODY.pw_uid if os.geteuid() == 0 else os.getuid()
    assert root.stat().st_uid == expected


def test_an_allowed_program_outside_the_sandbox_is_refused(world: World, tmp_path: Path) -> None:
    tool = world.base / "tool"
    tool.write_text("#!/bin/sh\necho tool\n")
    tool.chmod(0o755)
    with pytest.raises(ConfigError, match="not visible inside the sandbox"):
        ExecServer(
            ExecSettings(root=str(world.root), policy=ExecPolicy(allow=frozenset({str(tool)})), token=TOKEN)
        )


def test_no_sandbox_starts_where_no_sandbox_works(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from socketkit.cli.main import build_parser
    from socketkit.cli.serve_all import all_options
    from socketkit.runtime.config import ConfigFile
    from socketkit.runtime.services import SERVICES

    _no_backend(monkeypatch)
    parser = build_parser()
    args = parser.parse_args(
        [
            "serve",
            "all",
            "--no-sandbox",
            "--state-dir",
            str(tmp_path),
            "--root",
            str(world.root),
            "--any-port",
        ]
    )
    options = all_options(args, ConfigFile(), {})["exec"]
    assert options.no_sandbox  # serve all passes it on
    service = SERVICES["exec"].build(options)
    service.close()
