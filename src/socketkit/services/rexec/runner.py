"""Running one command for the exec server: the only module that starts processes.

- ``shell=False`` always: the argv list goes to ``execve`` as is (a shell runs only
  when the policy put ``/bin/sh -c`` in front, for ``--allow-shell`` servers);
- the command gets its own session and process group, so the whole tree can be
  signalled: on a timeout, an output cap, a client that disconnects or presses Ctrl-C;
  termination is SIGTERM to the group and to every process still in the session, then
  SIGKILL after a grace period; nothing survives;
- stdout and stderr are read from pipes (enlarged to 1 MiB, so a fast writer is read in
  big chunks) and sent as DATA frames on channels 1 and 2 while the command runs; when
  the client is slow, reading the pipe pauses, the pipe fills and the command blocks:
  memory stays flat whatever the output size, and neither stream can deadlock the other;
- stdin comes from the client's channel-0 frames (an empty one is end of input).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from typing import Any

from socketkit.aio.connection import Connection
from socketkit.codec.wire import data_header
from socketkit.errors import ServiceError
from socketkit.limits import DEFAULT_TERMINATE_GRACE_S
from socketkit.services.rexec.policy import Decision
from socketkit.services.rexec.protocol import STDERR, STDOUT, ExecExit

__all__ = ["RunningCommand", "TERMINATE_GRACE_S", "start_command"]

logger = logging.getLogger(__name__)

TERMINATE_GRACE_S = DEFAULT_TERMINATE_GRACE_S

PIPE_SIZE = 1 << 20
"""Pipe capacity asked of the kernel (F_SETPIPE_SZ): fewer, larger reads at high rates."""

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _enlarge(fd: int) -> None:
    with contextlib.suppress(OSError):  # may exceed /proc/sys/fs/pipe-max-size: keep the default
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)


def _session_members(sid: int) -> list[int]:
    """PIDs whose session is ``sid`` (processes that left the group but not the session)."""
    members: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 6 is the session id; the command name (field 2) may contain spaces.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            members.append(int(entry))
    return members


class _OutputPipe(asyncio.Protocol):
    """Forward one of the command's output pipes to the client as DATA frames."""

    def __init__(self, command: RunningCommand, channel: int) -> None:
        self.command = command
        self.channel = channel
        self.transport: asyncio.ReadTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.command.output(self, data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _InputPipe(asyncio.Protocol):
    """The command's stdin: flow control from the pipe back to the client connection."""

    def __init__(self, conn: Connection[Any]) -> None:
        self.conn = conn

    def pause_writing(self) -> None:
        self.conn.pause_reading("user")  # the command is not reading its input

    def resume_writing(self) -> None:
        self.conn.resume_reading("user")

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.resume_reading("user")


@dataclass(slots=True)
class _Counters:
    stdout: int = 0
    stderr: int = 0


class RunningCommand:
    """A started command wired to a client connection."""

    def __init__(self, conn: Connection[Any], decision: Decision, max_output: int) -> None:
        self.conn = conn
        self.decision = decision
        self.max_output = max_output
        self.counters = _Counters()
        self.process: asyncio.subprocess.Process | None = None
        self.reason: str | None = None
        self.started_at = time.monotonic()
        self.pipes: list[_OutputPipe] = []
        self.stdin: asyncio.WriteTransport | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._killer: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The command's process id (also its process group and session id)."""
        assert self.process is not None
        return self.process.pid

    # --- output ----------------------------------------------------------------------

    def output(self, pipe: _OutputPipe, data: bytes) -> None:
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
            return
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
        except Exception:  # noqa: BLE001 (the connection broke: the handler sees it and kills)
            return
        finally:
            self._resume_task = None
        for p in self.pipes:
            if p.transport is not None and not p.transport.is_closing():
                p.transport.resume_reading()

    # --- input -----------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> None:
        """Pass client bytes to the command's stdin; ``b""`` closes it (end of input)."""
        stdin = self.stdin
        if stdin is None or stdin.is_closing():
            return
        if data:
            stdin.write(data)
        else:
            stdin.close()

    # --- lifetime --------------------------------------------------------------------

    def signal(self, name: str) -> None:
        """Send ``SIG<name>`` to the command's process group."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, getattr(signal, f"SIG{name}"))

    def terminate(self) -> None:
        """SIGTERM the whole command, then SIGKILL after the grace period (in the background)."""
        if self._killer is None and self.process is not None:
            self._killer = asyncio.get_running_loop().create_task(self._terminate())

    async def _terminate(self) -> None:
        self._kill_all(signal.SIGTERM)
        assert self.process is not None
        try:
            async with asyncio.timeout(TERMINATE_GRACE_S):
                await self.process.wait()
        except TimeoutError:
            pass
        self._kill_all(signal.SIGKILL)

    def _kill_all(self, signum: int, *, whole_session: bool = True) -> None:
        """Signal the process group, and (``whole_session``) every process still in the
        command's session, which catches children that moved to a group of their own.
        The session scan reads /proc (milliseconds); it runs when a command is being
        stopped, not after every normal exit."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
        if whole_session:
            for pid in _session_members(self.pid):
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
                try:
                    async with asyncio.timeout(TERMINATE_GRACE_S):
                        await asyncio.gather(*(p.closed for p in self.pipes))
                except TimeoutError:
                    # Background children still hold stdout/stderr: end them.
                    self._kill_all(signal.SIGKILL)
                    await asyncio.gather(*(p.closed for p in self.pipes))
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
            for pipe in self.pipes:
                if pipe.transport is not None:
                    pipe.transport.close()
            if self.stdin is not None:
                self.stdin.close()
        returncode = self.process.returncode
        assert returncode is not None
        duration = (time.monotonic() - self.started_at) * 1000
        if returncode < 0:
            return ExecExit(None, -returncode, self.reason, duration)
        return ExecExit(returncode, None, self.reason, duration)

    def kill_now(self, reason: str) -> None:
        """The client is gone: end the command (reason recorded for the audit log)."""
        if self.reason is None:
            self.reason = reason
        self.terminate()


async def start_command(
    conn: Connection[Any],
    decision: Decision,
    *,
    cwd: str,
    stdin: bool,
    max_output: int,
) -> RunningCommand:
    """Start ``decision.argv`` in ``cwd`` with pipes wired to ``conn``.

    Raises:
        ServiceError: the program does not exist (code ``not-found``) or cannot be run
            (code ``permission-denied``).
    """
    loop = asyncio.get_running_loop()
    program = decision.program
    path = program if "/" in program else shutil.which(program, path=decision.env.get("PATH"))
    if path is None or not os.path.exists(path):
        raise ServiceError(f"{program}: command not found", code="not-found")
    command = RunningCommand(conn, decision, max_output)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), -1)
    for fd in (out_w, err_w):
        _enlarge(fd)
    child_fds = (in_r, out_w, err_w)
    try:
        try:
            command.process = await asyncio.create_subprocess_exec(
                path,
                *decision.argv[1:],
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                cwd=cwd,
                env=dict(decision.env),
                start_new_session=True,
                close_fds=True,
            )
        except PermissionError as exc:
            raise ServiceError(f"{program}: {exc.strerror}", code="permission-denied") from exc
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise ServiceError(f"{program}: command not found", code="not-found") from exc
            raise ServiceError(f"{program}: {exc.strerror}", code="exec-failed") from exc
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    for fd, channel in ((out_r, STDOUT), (err_r, STDERR)):
        pipe = _OutputPipe(command, channel)
        command.pipes.append(pipe)
        await loop.connect_read_pipe(functools.partial(_same, pipe), os.fdopen(fd, "rb", buffering=0))
    if in_w >= 0:
        transport, _ = await loop.connect_write_pipe(
            functools.partial(_InputPipe, conn), os.fdopen(in_w, "wb", buffering=0)
        )
        command.stdin = transport
    return command


def _same(protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
    return protocol
