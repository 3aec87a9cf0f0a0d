"""Starting a confined command: the only place exec creates processes.

Every command, and the start-up trial of the sandbox, is started by ``spawn``:

- with ``subprocess.Popen(close_fds=True)``, whatever the event loop: the command gets
  fds 0-2 and nothing else the server holds or inherited (its listening sockets, the
  database, a jail's directory fd, a supervisor's pipe or a ``LISTEN_FDS`` socket).
  ``asyncio.create_subprocess_exec`` is not used: uvloop ignores its ``close_fds`` and
  passes inheritable fds and its own pipe duplicates to the child, and bwrap, setpriv
  and prlimit pass on whatever they get. The only fd passed on purpose is bwrap's
  seccomp program, which bwrap reads and closes before the command starts;
- in a session and process group of its own (``start_new_session``), so the whole
  command can be signalled;
- wrapped by the sandbox (``Sandbox.wrap``).

``ChildProcess`` waits for the process without blocking the loop (a pidfd, readable
when the process exits) and without a child watcher, so both loops behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import Final

from socketkit._log import get_logger
from socketkit.errors import SandboxUnavailable, ServiceError
from socketkit.services.rexec.policy import SAFE_PATH
from socketkit.services.rexec.sandbox import Sandbox, SandboxSettings, candidates

__all__ = [
    "SANDBOX_PROBE_TIMEOUT_S",
    "ChildProcess",
    "private_tmpdir",
    "probe_sandbox",
    "resolve",
    "select_sandbox",
    "spawn",
]

logger = get_logger(__name__)

SANDBOX_PROBE_TIMEOUT_S: Final = 20.0
"""How long the start-up trial run of the sandbox may take (a few ms normally; generous
for a loaded machine, short enough that a hung bwrap does not hang the start)."""

PROBE_STDERR_BYTES: Final = 4096
"""What is read of the trial run's stderr: its first line is the reason shown."""


def resolve(program: str, env_path: str | None) -> str:
    """The path of ``program`` (a name looked up on ``env_path``, or a path).

    Raises:
        ServiceError: no such program (code ``not-found``).
    """
    path = program if "/" in program else shutil.which(program, path=env_path or SAFE_PATH)
    if path is None or not os.path.exists(path):
        raise ServiceError(f"{program}: command not found", code="not-found")
    return path


def private_tmpdir(sandbox: Sandbox) -> str:
    """A per-command temporary directory (Landlock has no private /tmp), owned by the
    run-as user."""
    path = tempfile.mkdtemp(prefix="socketkit-exec-")
    if sandbox.uid is not None and sandbox.gid is not None:
        os.chown(path, sandbox.uid, sandbox.gid)
    return path


@contextlib.contextmanager
def _filter_fd(sandbox: Sandbox) -> Iterator[int | None]:
    """bwrap's seccomp program on the read end of a pipe (a few hundred bytes: the write
    never blocks), closed in the server once the child has it."""
    if sandbox.name != "bwrap" or sandbox.seccomp is None:
        yield None
        return
    read, write = os.pipe()
    try:
        os.write(write, sandbox.seccomp)
    finally:
        os.close(write)
    try:
        yield read
    finally:
        os.close(read)


def spawn(
    sandbox: Sandbox,
    path: str,
    argv: tuple[str, ...],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdio: tuple[int, int, int],
    tmpdir: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``path`` (with ``argv``) in ``cwd`` inside ``sandbox``, its stdin, stdout and
    stderr on the fds of ``stdio`` and no other fd of ours (see the module docstring).

    Raises:
        OSError: the sandbox's program (bwrap, setpriv, prlimit, Python) cannot be run.
    """
    with _filter_fd(sandbox) as filter_fd:
        return subprocess.Popen(
            sandbox.wrap(path, argv, cwd, tmpdir, filter_fd=filter_fd),
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            cwd=cwd,
            env=dict(env),
            close_fds=True,
            pass_fds=() if filter_fd is None else (filter_fd,),
            start_new_session=True,
        )


class ChildProcess:
    """A spawned command, reaped on the event loop: ``pid``, ``returncode`` (negative for
    a signal, as ``asyncio.subprocess.Process``), ``await wait()``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[None] = self._loop.create_future()
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:  # Linux < 5.3: a thread waits instead (as asyncio's own watcher)
            threading.Thread(target=self._wait_thread, name="socketkit-exec-wait", daemon=True).start()
            return
        self._loop.add_reader(self._pidfd, self._reap)

    @property
    def returncode(self) -> int | None:
        """The exit status, ``-N`` for signal N; ``None`` while it runs."""
        return self.popen.returncode

    def _reap(self) -> None:
        if self.popen.poll() is None:
            return  # woken early: wait for the next readiness
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if not self._exited.done():
            self._exited.set_result(None)

    def _wait_thread(self) -> None:
        self.popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._reap)

    async def wait(self) -> int:
        """Wait until the process has exited and been reaped; return its status."""
        await asyncio.shield(self._exited)
        assert self.popen.returncode is not None
        return self.popen.returncode


def probe_sandbox(sandbox: Sandbox) -> None:
    """Run ``test -w .`` in the root inside ``sandbox`` once (blocking: at start-up).

    Raises:
        SandboxUnavailable: the sandbox cannot run a command here (the reason, one line).
    """
    path = resolve("test", SAFE_PATH)
    tmpdir = private_tmpdir(sandbox) if sandbox.needs_tmpdir else None
    try:
        with tempfile.TemporaryFile() as err:
            popen = spawn(
                sandbox,
                path,
                ("test", "-w", "."),
                cwd=sandbox.root,
                env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
                stdio=(subprocess.DEVNULL, subprocess.DEVNULL, err.fileno()),
                tmpdir=tmpdir,
            )
            try:
                returncode = popen.wait(SANDBOX_PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
                raise
            err.seek(0)
            stderr = err.read(PROBE_STDERR_BYTES)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"exec: the {sandbox.name} sandbox does not start: {exc}") from exc
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    error = stderr.decode(errors="replace").strip().splitlines()
    if returncode not in (0, 1) or error:
        reason = error[0] if error else f"exit status {returncode}"
        raise SandboxUnavailable(f"exec: the {sandbox.name} sandbox does not work here: {reason}")
    if returncode == 1:
        who = f"uid {sandbox.uid}" if sandbox.uid is not None else "the server's user"
        logger.warning(
            "exec: commands cannot write in %s (%s has no write permission there); "
            "give it to them, e.g. chown %s %s",
            sandbox.root,
            who,
            sandbox.uid if sandbox.uid is not None else os.getuid(),
            sandbox.root,
        )


def select_sandbox(settings: SandboxSettings, root: str) -> Sandbox:
    """The first sandbox the settings allow that works here (each tried once).

    Raises:
        ConfigError: a bad setting.
        SandboxUnavailable: none works (the reasons, one line).
    """
    reasons = []
    for sandbox in candidates(settings, root):
        if sandbox.name == "none":
            return sandbox
        try:
            probe_sandbox(sandbox)
        except SandboxUnavailable as exc:
            reasons.append(str(exc).removeprefix("exec: "))
            continue
        return sandbox
    raise SandboxUnavailable(
        f"exec: no sandbox for commands ({'; '.join(reasons)}): install bubblewrap, "
        "or pass --no-sandbox to run commands unconfined at your own risk"
    )
