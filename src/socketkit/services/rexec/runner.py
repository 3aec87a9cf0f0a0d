"""Running one command for the exec server, wired to its client connection.

- ``shell=False`` always: the argv list goes to ``execve`` as is (a shell runs only
  when the policy put ``/bin/sh -c`` in front, for ``--allow-shell`` servers);
- started by ``process.spawn``, inside the sandbox the server chose (``sandbox``:
  bwrap, Landlock, or none when the operator said so), with fds 0-2 only and the
  per-command resource limits; ``process.select_sandbox`` tries the sandbox once at
  start, so a sandbox that cannot work here is refused before any client connects;
- the command gets its own session and process group, so the whole tree can be
  signalled: on a timeout, an output cap, a client that disconnects or presses Ctrl-C;
  termination is SIGTERM to the group and to every process still in the session, then
  SIGKILL after a grace period; under bwrap the PID namespace ends with the command, so
  nothing survives even a ``setsid``;
- output is forwarded only once the caller has announced the command (``forward_output``
  after the "started" event), so no output frame ever precedes it;
- stdout and stderr are read from pipes (enlarged to 1 MiB, so a fast writer is read in
  big chunks) and sent as DATA frames on channels 1 and 2 while the command runs; when
  the client is slow, reading the pipe pauses, the pipe fills and the command blocks:
  memory stays flat whatever the output size, and neither stream can deadlock the other;
- stdin comes from the client's channel-0 frames (an empty one is end of input); above
  ``STDIN_HIGH_WATER`` bytes waiting for the pipe the caller stops reading the client
  (``wait_stdin_room``), so a command that never reads its input costs a bounded buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import shutil
import signal
import time
from dataclasses import dataclass
from typing import Any, Final

from socketkit._log import get_logger
from socketkit.aio.connection import Connection
from socketkit.codec.wire import data_header
from socketkit.errors import ServiceError
from socketkit.limits import DEFAULT_TERMINATE_GRACE_S
from socketkit.services.rexec.pipes import InputPipe, OutputPipe, enlarge, members
from socketkit.services.rexec.policy import Decision
from socketkit.services.rexec.process import ChildProcess, private_tmpdir, resolve, select_sandbox, spawn
from socketkit.services.rexec.protocol import STDERR, STDOUT, ExecExit
from socketkit.services.rexec.sandbox import Sandbox

__all__ = [
    "STDIN_HIGH_WATER",
    "RunningCommand",
    "TERMINATE_GRACE_S",
    "select_sandbox",
    "start_command",
]

logger = get_logger(__name__)

TERMINATE_GRACE_S = DEFAULT_TERMINATE_GRACE_S

STDIN_HIGH_WATER: Final = 256 * 1024
"""Bytes queued for the command's stdin pipe (beyond what the kernel pipe holds) above
which the server stops taking stdin frames from the client: as much as the client
connection's own write high-water mark, enough to keep a reading command busy."""

SIGNAL_RETRY_S: Final = 0.005
SIGNAL_RETRIES: Final = 400
"""A signal for a command that bwrap is still setting up is tried again every 5 ms, for
up to 2 s (setting up takes milliseconds; the command then gets the signal as soon as it
exists, as it would have without a sandbox)."""


@dataclass(slots=True)
class _Counters:
    stdout: int = 0
    stderr: int = 0
    stdin_in: int = 0  # bytes of stdin frames the client sent
    stdin_written: int = 0  # ... of which the kernel pipe has taken


class RunningCommand:
    """A started command wired to a client connection."""

    def __init__(self, conn: Connection[Any], decision: Decision, max_output: int, sandbox: Sandbox) -> None:
        self.conn = conn
        self.decision = decision
        self.max_output = max_output
        self.sandbox = sandbox
        self.counters = _Counters()
        self.process: ChildProcess | None = None
        self.reason: str | None = None
        self.started_at = time.monotonic()
        self.bytes_in_at_start = conn.bytes_in
        self.pipes: list[OutputPipe] = []
        self.read_fds: list[tuple[int, int]] = []  # (fd, channel) until forward_output()
        self.stdin: asyncio.WriteTransport | None = None
        self.stdin_pipe: InputPipe | None = None
        self.tmpdir: str | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._killer: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The command's process id (also its process group and session id)."""
        assert self.process is not None
        return self.process.pid

    # --- output ----------------------------------------------------------------------

    async def forward_output(self) -> None:
        """Start reading stdout and stderr (call after announcing the command)."""
        loop = asyncio.get_running_loop()
        fds, self.read_fds = self.read_fds, []
        for index, (fd, channel) in enumerate(fds):
            pipe = OutputPipe(self, channel)
            self.pipes.append(pipe)
            try:
                await loop.connect_read_pipe(functools.partial(_same, pipe), os.fdopen(fd, "rb", buffering=0))
            except BaseException:
                for other, _ in fds[index + 1 :]:
                    os.close(other)
                raise

    def output(self, pipe: OutputPipe, data: bytes) -> None:
        if pipe.channel == STDOUT:
            self.counters.stdout += len(data)
        else:
            self.counters.stderr += len(data)
        if self.counters.stdout + self.counters.stderr > self.max_output:
            if self.reason is None:
                self.reason = "output-limit"
                logger.info(
                    "command %d of %s passed the output cap (%d bytes)",
                    self.pid,
                    self.conn.peer,
                    self.max_output,
                )
                self.terminate()
            return
        conn = self.conn
        if conn.is_closing:
            return  # the client is gone: read on to the end of the pipe, drop it
        conn.send_parts((data_header(len(data), pipe.channel), data))
        if conn.write_paused and self._resume_task is None:
            # The client is slow: stop reading the pipes until it catches up.
            for p in self.pipes:
                if p.transport is not None:
                    p.transport.pause_reading()
            self._resume_task = asyncio.get_running_loop().create_task(self._resume_after_drain())

    async def _resume_after_drain(self) -> None:
        try:
            await self.conn.drain()
        except Exception as exc:  # noqa: BLE001 (the connection broke: the handler sees it and kills)
            # Resume anyway: what the command still writes is read and dropped, so its
            # pipes reach their end and the command can be waited for.
            logger.debug("exec: %s stopped reading (%s)", self.conn.peer, exc)
        finally:
            self._resume_task = None
        for p in self.pipes:
            if p.transport is not None and not p.transport.is_closing():
                p.transport.resume_reading()

    # --- input -----------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> None:
        """Pass client bytes to the command's stdin; ``b""`` closes it (end of input)."""
        self.counters.stdin_in += len(data)
        stdin = self.stdin
        if stdin is None or stdin.is_closing():
            return
        if data:
            stdin.write(data)
        else:
            stdin.close()

    def stdin_buffered(self) -> int:
        """Bytes the server holds on the way to the command's stdin: everything read from
        the client since the command started (decoder, inbox, pipe transport) that the
        kernel pipe has not taken."""
        queued = self.stdin.get_write_buffer_size() if self.stdin is not None else 0
        written = self.counters.stdin_in - queued
        return max(self.conn.bytes_in - self.bytes_in_at_start - written, 0)

    async def wait_stdin_room(self) -> None:
        """Return once the stdin pipe's queue is under ``STDIN_HIGH_WATER`` (at once if it
        is, or if stdin is closed); the caller takes no stdin frame meanwhile, so the
        connection's inbox fills and reading from the client pauses."""
        pipe = self.stdin_pipe
        if pipe is not None and not pipe.room.done():
            await asyncio.shield(pipe.room)

    @property
    def stdin_waiting(self) -> bool:
        """Whether the stdin pipe is full (the caller is holding the client back)."""
        return self.stdin_pipe is not None and not self.stdin_pipe.room.done()

    # --- lifetime --------------------------------------------------------------------

    def signal(self, name: str, retries: int = SIGNAL_RETRIES) -> None:
        """Send ``SIG<name>`` to the command: its process group, minus bwrap's monitor
        (whose death would SIGKILL the sandbox before the command could react)."""
        if self.process is None or self.process.returncode is not None:
            return
        signum = getattr(signal, f"SIG{name}")
        if not self.sandbox.leader_is_monitor:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)
            return
        # The monitor's child is the sandbox's init (pid 1 inside), which takes no signal
        # from outside; a command still being set up has no process yet: try again soon.
        targets = [pid for pid, ppid in members(2, self.pid) if self.pid not in (pid, ppid)]
        if not targets and retries > 0:
            asyncio.get_running_loop().call_later(SIGNAL_RETRY_S, self.signal, name, retries - 1)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def terminate(self) -> None:
        """SIGTERM the whole command, then SIGKILL after the grace period (in the background)."""
        if self._killer is None and self.process is not None:
            self._killer = asyncio.get_running_loop().create_task(self._terminate())

    async def _terminate(self) -> None:
        if self.sandbox.leader_is_monitor:
            self.signal("TERM")
            for pid, _ in members(3, self.pid):  # left the group, still in the session
                if pid != self.pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGTERM)
        else:
            self._kill_all(signal.SIGTERM)
        assert self.process is not None
        try:
            async with asyncio.timeout(TERMINATE_GRACE_S):
                await self.process.wait()
        except TimeoutError:
            logger.info("command %d of %s ignored SIGTERM: SIGKILL", self.pid, self.conn.peer)
        self._kill_all(signal.SIGKILL)

    def _kill_all(self, signum: int, *, whole_session: bool = True) -> None:
        """Signal the process group, and (``whole_session``) every process still in the
        command's session, which catches children that moved to a group of their own.
        The session scan reads /proc (milliseconds); it runs when a command is being
        stopped, not after every normal exit."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
        if whole_session:
            for pid, _ in members(3, self.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)

    async def wait(self) -> ExecExit:
        """Wait for the command and its output, within the timeout; return how it ended.

        Output pipes are drained before returning; processes the command left behind
        (holding the pipes) are killed once the command itself has exited.
        """
        assert self.process is not None
        try:
            async with asyncio.timeout(self.decision.timeout):
                await self.process.wait()
                # asyncio.wait, not a timeout around gather: a cancelled gather cancels
                # the futures it waits for, and the pipes' ends would never be seen.
                closed = [p.closed for p in self.pipes]
                _, open_pipes = await asyncio.wait(closed, timeout=TERMINATE_GRACE_S) if closed else ((), ())
                if open_pipes:
                    # Background children still hold stdout/stderr: end them.
                    self._kill_all(signal.SIGKILL)
                    await asyncio.wait(open_pipes)
        except TimeoutError:
            if self.reason is None:
                self.reason = "timeout"
            logger.info(
                "command %d of %s timed out after %g s",
                self.pid,
                self.conn.peer,
                self.decision.timeout,
            )
            self.terminate()
            await self.process.wait()
        finally:
            if self._killer is not None:
                await self._killer
            # Leftovers of the command's group (`cmd &`): ended too. A stopped command
            # (timeout, cap, client gone) was already swept session-wide.
            self._kill_all(signal.SIGKILL, whole_session=False)
            self.release()
        return self.result()

    def result(self) -> ExecExit:
        """How the command ended (a still running one is reported as killed: the caller
        is giving up on it)."""
        assert self.process is not None
        returncode = self.process.returncode
        duration = (time.monotonic() - self.started_at) * 1000
        if returncode is None:
            return ExecExit(None, signal.SIGKILL, self.reason, duration)
        if returncode < 0:
            return ExecExit(None, -returncode, self.reason, duration)
        return ExecExit(returncode, None, self.reason, duration)

    def kill_now(self, reason: str) -> None:
        """The client is gone: end the command (reason recorded for the audit log)."""
        if self.reason is None:
            self.reason = reason
        self.terminate()

    def abandon(self, reason: str) -> None:
        """The handler is being cancelled (server stopping): SIGKILL everything now, with
        no grace to wait for, and free the pipes."""
        if self.reason is None:
            self.reason = reason
        if self.process is not None and self.process.returncode is None:
            self._kill_all(signal.SIGKILL)
        self.release()

    async def reaped(self) -> None:
        """Wait for the process to be reaped (after ``abandon``)."""
        if self.process is not None:
            await self.process.wait()

    def release(self) -> None:
        """Close the pipes and remove the private temporary directory."""
        for fd, _ in self.read_fds:
            os.close(fd)
        self.read_fds = []
        for pipe in self.pipes:
            if pipe.transport is not None:
                pipe.transport.close()
        if self.stdin is not None:
            self.stdin.close()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


async def start_command(
    conn: Connection[Any],
    decision: Decision,
    *,
    cwd: str,
    stdin: bool,
    max_output: int,
    sandbox: Sandbox,
) -> RunningCommand:
    """Start ``decision.argv`` in ``cwd``, confined by ``sandbox``, wired to ``conn``;
    call ``forward_output()`` once the command is announced.

    Raises:
        ServiceError: the program does not exist (code ``not-found``) or cannot be run
            (code ``permission-denied``).
    """
    loop = asyncio.get_running_loop()
    program = decision.program
    path = resolve(program, decision.env.get("PATH"))
    command = RunningCommand(conn, decision, max_output, sandbox)
    env = dict(decision.env)
    if sandbox.needs_tmpdir:
        command.tmpdir = env["TMPDIR"] = private_tmpdir(sandbox)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1)
    for fd in (out_w, err_w):
        enlarge(fd)
    child_fds = (in_r, out_w, err_w)
    try:
        try:
            popen = spawn(
                sandbox, path, decision.argv, cwd=cwd, env=env, stdio=child_fds, tmpdir=command.tmpdir
            )
        except PermissionError as exc:
            raise ServiceError(f"{program}: {exc.strerror}", code="permission-denied") from exc
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise ServiceError(f"{program}: command not found", code="not-found") from exc
            raise ServiceError(f"{program}: {exc.strerror}", code="exec-failed") from exc
        command.process = ChildProcess(popen)
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        command.release()
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    command.read_fds = [(out_r, STDOUT), (err_r, STDERR)]
    if in_w >= 0:
        pipe = InputPipe()
        try:
            transport, _ = await loop.connect_write_pipe(
                functools.partial(_same, pipe), os.fdopen(in_w, "wb", buffering=0)
            )
        except BaseException:
            command.abandon("exec-failed")
            raise
        transport.set_write_buffer_limits(high=STDIN_HIGH_WATER)
        command.stdin, command.stdin_pipe = transport, pipe
    return command


def _same(protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
    return protocol
