"""Per-command resource limits, for every backend: each process of a command has them
(read back from /proc), and a command that passes one is stopped there, while the same
command under the default limits runs through (the control that shows it is the limit
that stopped it). Every run is bounded: small limits, short timeouts."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

import pytest

from socketkit.auth.connect import ServiceTarget
from socketkit.services.rexec import policy
from socketkit.services.rexec.client import run_remote
from socketkit.services.rexec.policy import CommandLimits
from socketkit.services.rexec.protocol import ExecRequest
from socketkit.services.rexec.server import ExecServer
from tests.aio_thread import server_thread
from tests.helpers import TIMEOUT
from tests.services.rexec.test_confinement import cli_server, serve
from tests.services.rexec.test_rexec_loopback import remote, session_alive
from tests.services.rexec.test_sandbox import BACKENDS, NOBODY, World, run, world

__all__ = ["world"]

ALL = [*BACKENDS, "none"]
MiB = 1 << 20


def limited(w: World, backend: str, **limits: int) -> ExecServer:
    return serve(w, backend, limits=CommandLimits(**limits))


@pytest.mark.parametrize("backend", ALL)
def test_every_process_of_a_command_has_the_limits(world: World, backend: str) -> None:
    limits = CommandLimits(memory=300 * MiB, tasks=77, file_size=5 * MiB, cpu_s=42, open_files=99)
    # A child of a child: the limits are inherited by the whole command.
    status, out, err = run(serve(world, backend, limits=limits), "sh", "-c", "sh -c 'cat /proc/self/limits'")
    assert status == 0, err
    rows = limits_of(out)
    assert rows["Max address space"] == [str(300 * MiB)] * 2
    assert rows["Max processes"] == ["77"] * 2
    assert rows["Max file size"] == [str(5 * MiB)] * 2
    assert rows["Max cpu time"] == ["42", str(42 + policy.CPU_GRACE_S)]
    assert rows["Max open files"] == ["99"] * 2
    assert rows["Max core file size"] == ["0"] * 2


def limits_of(out: str) -> dict[str, list[str]]:
    """/proc/self/limits as {"Max address space": [soft, hard], ...}."""
    return {line[:26].strip(): line[26:].split()[:2] for line in out.splitlines()[1:]}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            [],
            {
                "Max address space": policy.DEFAULT_MAX_MEMORY,
                "Max processes": policy.DEFAULT_MAX_TASKS,
                "Max file size": policy.DEFAULT_MAX_FILE_SIZE,
                "Max cpu time": policy.DEFAULT_MAX_CPU_S,
                "Max open files": policy.DEFAULT_MAX_OPEN_FILES,
            },
        ),
        (
            [
                "--max-memory",
                "512M",
                "--max-tasks",
                "9",
                "--max-file-size",
                "1G",
                "--max-cpu-time",
                "5",
                "--max-open-files",
                "64",
            ],
            {
                "Max address space": 512 * MiB,
                "Max processes": 9,
                "Max file size": 1 << 30,
                "Max cpu time": 5,
                "Max open files": 64,
            },
        ),
    ],
    ids=["defaults", "flags"],
)
def test_serve_exec_applies_its_flags_and_named_defaults(
    world: World, tmp_path: Path, flags: list[str], expected: dict[str, int]
) -> None:
    args = ["--no-auth", "--root", str(world.root), "--state-dir", str(tmp_path / "state"), *flags]
    with cli_server(args) as address:
        status, out, err, _ = remote(
            address, ExecRequest(("cat", "/proc/self/limits"), stdin=False), token=None
        )
    assert status == 0, err
    rows = limits_of(out.decode())
    cpu = expected["Max cpu time"]
    assert rows["Max cpu time"] == [str(cpu), str(cpu + policy.CPU_GRACE_S)]
    assert {name: rows[name] for name in expected if name != "Max cpu time"} == {
        name: [str(value)] * 2 for name, value in expected.items() if name != "Max cpu time"
    }


@pytest.mark.parametrize("backend", ALL)
def test_memory_past_the_limit_is_refused(world: World, backend: str) -> None:
    """``tail -n 1`` of a 200 MiB line holds the line: at 64 MiB of address space it
    gets ENOMEM and says so; under the default limit the same command finishes."""
    command = ("bash", "-o", "pipefail", "-c", "head -c 200M /dev/zero | tail -n 1 | wc -c")
    status, out, err = run(limited(world, backend, memory=64 * MiB), *command)
    assert status != 0
    assert "memory exhausted" in err
    status, out, err = run(serve(world, backend), *command)
    assert (status, out.strip()) == (0, str(200 * MiB)), err


FORK_LOOP = """
import os, sys, time
started = 0
for _ in range(40):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    started += 1
print(started)
"""


@pytest.mark.parametrize("backend", ALL)
def test_a_fork_loop_stops_at_the_task_limit(world: World, backend: str) -> None:
    """40 forks under a limit of 12 tasks: the kernel refuses the forks beyond it (as
    root the count is shared by every process of the run-as user, so it may be fewer);
    under the default limit all 40 start. Nothing outlives the command either way."""
    status, out, err = run(limited(world, backend, tasks=12), "python3", "-c", FORK_LOOP)
    assert status == 0, err
    assert int(out) < 12
    status, out, err = run(serve(world, backend), "python3", "-c", FORK_LOOP)
    assert (status, int(out)) == (0, 40), err


@pytest.mark.parametrize("backend", ALL)
def test_a_fork_bomb_is_held_at_the_task_limit(world: World, backend: str) -> None:
    """The shell fork bomb under a limit of 16 tasks (held there: see the fork loop
    above) and a 2 s timeout: its forks fail ("Cannot fork"), the command ends with
    every process it made, and the server goes on serving."""
    service = limited(world, backend, tasks=16)
    with server_thread(service.make_server) as (address,):
        request = ExecRequest(("sh", "-c", "b() { b | b & }; b; sleep 5"), stdin=False, timeout=2)
        _, _, err, pids = remote(address, request)
        assert b"Cannot fork" in err
        assert session_alive(pids[0]) == []
        again = remote(address, ExecRequest(("echo", "still serving"), stdin=False))
        assert again[:2] == (0, b"still serving\n")


@pytest.mark.parametrize("backend", ALL)
def test_a_write_past_the_file_size_limit_fails(world: World, backend: str) -> None:
    command = ("sh", "-c", "head -c 3M /dev/zero > big; echo $?")
    _, out, _ = run(limited(world, backend, file_size=1 * MiB), *command)
    assert int(out) != 0  # head was stopped (SIGXFSZ) at the limit
    assert (world.root / "big").stat().st_size == 1 * MiB
    _, out, err = run(serve(world, backend), *command)
    assert int(out) == 0, err
    assert (world.root / "big").stat().st_size == 3 * MiB


@pytest.mark.parametrize("backend", ALL)
def test_cpu_time_past_the_limit_ends_the_process(world: World, backend: str) -> None:
    """A busy loop under a 1 s CPU limit is ended by SIGXCPU (status 128 + 24) well
    within its 30 s timeout."""
    spin = ("sh", "-c", "sh -c 'while :; do :; done'; echo status $?")
    status, out, err = run(limited(world, backend, cpu_s=1), *spin)
    assert (status, out) == (0, "status 152\n"), err


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_private_tmp_is_bounded(world: World, backend: str) -> None:
    """The private /tmp holds --tmp-size and no more (bwrap's tmpfs; as root Landlock's
    launcher mounts one on the command's TMPDIR): the write past it fails."""
    if backend == "landlock" and os.geteuid() != 0:
        pytest.fail("this test needs root (as CI runs): only a root launcher mounts a tmpfs")
    service = serve(world, backend, tmp_size=4 * MiB)
    status, _, err = run(service, "sh", "-c", 'head -c 8M /dev/zero > "${TMPDIR:-/tmp}/fill"')
    assert status != 0
    assert "No space left on device" in err
    assert run(service, "sh", "-c", 'head -c 3M /dev/zero > "${TMPDIR:-/tmp}/fill"')[0] == 0
    assert not Path("/tmp/fill").exists()  # the host's /tmp saw none of it


SYSTEM_PYTHON = "/usr/bin/python3"
"""The interpreter a server started as nobody runs (CI's, as .ci/run uses it)."""

HOLD = """
import os, sys, time
for _ in range(10):
    try:
        pid = os.fork()
    except OSError:
        break  # the count is full already (shared with the server's own threads)
    if pid == 0:
        time.sleep(60)
        os._exit(0)
print("holding", flush=True)
time.sleep(60)
"""


class _Seen:
    """A stdout for ``run_remote`` that tells when the command has printed."""

    def __init__(self) -> None:
        self.printed = asyncio.Event()

    def write(self, data: bytes) -> int:
        self.printed.set()
        return len(data)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("server_user", "backend", "alone"),
    [
        ("root", "bwrap", False),
        ("nobody", "bwrap", True),
        ("nobody", "landlock", False),
        ("nobody", "none", False),
    ],
)
def test_who_shares_the_task_count(world: World, server_user: str, backend: str, alone: bool) -> None:
    """A first command holds up to 11 tasks of a limit of 12; a second one then forks. A root
    server runs every command as nobody, whose count is shared: the second gets at most
    one. A server run as nobody counts every process of nobody under Landlock and
    without a sandbox, but bwrap gives each command a user namespace, where it is
    counted alone: the second gets its 11."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (as CI runs): it starts servers as root and as nobody")
    state = world.base / f"state-{server_user}"
    state.mkdir()
    server: dict[str, Any] = {}
    if server_user == "nobody":
        os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
        who = (f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups")
        server["prefix"] = ("setpriv", *who, "--inh-caps=-all", "--bounding-set=-all", "--")
        server["python"] = SYSTEM_PYTHON  # nobody may not reach this test's own interpreter
    sandbox = ["--no-sandbox"] if backend == "none" else ["--sandbox", backend]
    args = ["--no-auth", *sandbox, "--max-tasks", "12", "--allow", "python3"]
    with cli_server([*args, "--root", str(world.root), "--state-dir", str(state)], **server) as address:

        async def go() -> int:
            seen = _Seen()
            holder = asyncio.ensure_future(
                run_remote(
                    ServiceTarget(address, None),
                    ExecRequest(("python3", "-c", HOLD), stdin=False),
                    stdin=None,
                    stdout=seen,  # type: ignore[arg-type]
                    stderr=io.BytesIO(),
                )
            )
            try:
                async with asyncio.timeout(TIMEOUT):
                    await seen.printed.wait()
                out = io.BytesIO()
                status = await run_remote(
                    ServiceTarget(address, None),
                    ExecRequest(("python3", "-c", FORK_LOOP), stdin=False),
                    stdin=None,
                    stdout=out,
                    stderr=io.BytesIO(),
                )
                assert status == 0
                return int(out.getvalue())
            finally:
                holder.cancel()
                await asyncio.gather(holder, return_exceptions=True)

        started = asyncio.run(go())
    if alone:
        assert 5 <= started < 12
    else:
        assert started <= 1
