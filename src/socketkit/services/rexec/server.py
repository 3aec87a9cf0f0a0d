"""The exec server: hello, authentication, one command per connection, then the exit.

The connection's handler reads the request, checks it against the policy and the path
jail, starts the command (``runner``) in the sandbox chosen at start (``sandbox``: the
server refuses to start without one unless told ``backend="none"``), and then, while
the command runs, relays the client's stdin and signals; a client that disconnects, or
gives up with an ERROR frame, has its command stopped; a control request the server
cannot honour (an unknown signal) is answered with a ``refused`` event and the command
goes on. Every command is in the audit log (SQLite in the state directory): who, what,
where, when, how it ended, how long it took and how much it printed; a row that was
started is finished however the connection ends.

With ``--workers N`` each worker is a copy of this server: ``max_procs`` stays the
service's total (``slots.CommandSlots``, shared by the workers), while the limits of
the unauthenticated phase, which each worker keeps for itself, are divided by N
(``ExecSettings.workers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from socketkit._log import get_logger
from socketkit._oserrors import service_error_from_os
from socketkit._shutdown import wire_farewell
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.aio.listeners import Listener
from socketkit.aio.server import AsyncServer
from socketkit.aio.wire import send_error
from socketkit.auth.exposure import check_exposure
from socketkit.auth.session import WireGate
from socketkit.auth.throttle import AuthThrottle
from socketkit.codec.wire import Control, Data, ErrorFrame, WireDecoder, WireEvent, encode_control
from socketkit.errors import ConfigError, ProtocolError, RemoteProtocolError, ResourceError, ServiceError
from socketkit.limits import (
    DEFAULT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_WRITE_TIMEOUT_S,
)
from socketkit.paths import resolve_under
from socketkit.services.rexec.policy import DEFAULT_MAX_OUTPUT, DEFAULT_MAX_PROCS, SAFE_PATH, ExecPolicy
from socketkit.services.rexec.protocol import (
    EXEC_FRAME_SIZE,
    STDIN,
    ExecExit,
    ExecRequest,
    parse_exec_request,
    parse_signal_request,
)
from socketkit.services.rexec.runner import (
    STDIN_HIGH_WATER,
    TERMINATE_GRACE_S,
    RunningCommand,
    select_sandbox,
    start_command,
)
from socketkit.services.rexec.sandbox import SYSTEM_DIRS, Sandbox, SandboxSettings
from socketkit.services.rexec.slots import CommandSlots
from socketkit.state import StateDB, to_json

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_MAX_PROCS",
    "EXEC_PENDING_FRAMES",
    "MAX_STDIN_BUFFERED",
    "ExecServer",
    "ExecSettings",
    "prepare_sandbox",
]

logger = get_logger(__name__)

PEER_TEXT_LOGGED = 200
"""Characters of a peer's own error message that go into the log line (it is the
peer's text: enough to tell what it meant, never a flood)."""

EXEC_PENDING_FRAMES = 4
"""Decoded frames an exec connection holds for its handler before reading from the client
pauses (the engine's default, 256, is for small messages: 256 stdin frames of 1 MiB
would be 256 MiB waiting for a command that does not read)."""

MAX_STDIN_BUFFERED = STDIN_HIGH_WATER + (EXEC_PENDING_FRAMES + 4) * EXEC_FRAME_SIZE
"""The most the server holds on the way to one command's stdin (8.25 MiB): the pipe
transport's queue (its high-water mark plus the frame that crossed it), the connection's
inbox (EXEC_PENDING_FRAMES, plus the one that paused it), the rest of the last socket
read and a partial frame in the decoder; then it stops reading from the client."""


_SCHEMA = [
    """CREATE TABLE exec_audit (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        peer TEXT NOT NULL,
        argv TEXT NOT NULL,
        shell TEXT,
        cwd TEXT NOT NULL,
        pid INTEGER,
        status INTEGER,
        signal INTEGER,
        reason TEXT,
        duration_ms REAL,
        bytes_out INTEGER,
        bytes_err INTEGER,
        finished_at REAL
    )""",
    "CREATE INDEX exec_audit_started ON exec_audit (started_at)",
]


@dataclass(slots=True)
class ExecSettings:
    """Everything ``serve exec`` is configured with."""

    root: str
    policy: ExecPolicy
    token: str | None
    db: StateDB | None = None
    max_output: int = DEFAULT_MAX_OUTPUT
    max_procs: int = DEFAULT_MAX_PROCS
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    write_timeout: float | None = DEFAULT_WRITE_TIMEOUT_S
    workers: int = 1  # processes this server is forked into (--workers)


def prepare_sandbox(settings: ExecSettings) -> Sandbox:
    """Check the root, choose the sandbox (trying it once: blocking, a few ms) and check
    the allow-list against it: everything that can refuse a start, before anything is
    created (token, state).

    Raises:
        ConfigError: a setting that cannot work (allow-list, root, run-as user).
        SandboxUnavailable: no sandbox backend works here (``backend="none"`` opts out).
    """
    root = os.path.realpath(settings.root)
    if not os.path.isdir(root):
        raise ConfigError(f"exec: --root {settings.root} is not a directory")
    sandbox = select_sandbox(settings.sandbox, root)
    check_allowed(settings.policy, sandbox)
    return sandbox


def check_allowed(policy: ExecPolicy, sandbox: Sandbox) -> None:
    """Every allowed program must exist on the safe PATH (or at its absolute path) and,
    sandboxed, lie where commands can see it.

    Raises:
        ConfigError: an empty name, a relative path, a program not found.
    """
    if policy.allow_any:
        return
    if not policy.allow:
        raise ConfigError("exec: the allow-list is empty: name programs with --allow, or use --allow-any")
    for program in sorted(policy.allow):
        if not program.strip():
            raise ConfigError("exec: --allow needs a program name, not an empty string")
        if "/" in program and not program.startswith("/"):
            raise ConfigError(f"exec: --allow {program}: a relative path (give a name or an absolute path)")
        path = program if "/" in program else shutil.which(program, path=SAFE_PATH)
        if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise ConfigError(f"exec: --allow {program}: no such program on {SAFE_PATH}")
        if sandbox.name != "none":
            real = os.path.realpath(path)
            visible = (*SYSTEM_DIRS, sandbox.root)
            if not any(real == d or real.startswith(d + "/") for d in map(os.path.realpath, visible)):
                raise ConfigError(f"exec: --allow {program}: {real} is not visible inside the sandbox")


class ExecServer:
    """The exec service (one instance per server process)."""

    def __init__(self, settings: ExecSettings, sandbox: Sandbox | None = None) -> None:
        """Check the settings and choose the sandbox (``prepare_sandbox``, unless the
        caller did already and passes its ``sandbox``).

        Raises:
            ConfigError: a setting that cannot work (allow-list, root, run-as user).
            SandboxUnavailable: no sandbox backend works here (``backend="none"`` opts out).
        """
        self.settings = settings
        self.commands: set[RunningCommand] = set()
        self.sandbox = sandbox if sandbox is not None else prepare_sandbox(settings)
        if self.sandbox.name == "none":
            logger.warning("exec: no sandbox: commands run unconfined (the allow-list is the only rule)")
        else:
            logger.info("exec: commands run in the %s sandbox", self.sandbox.name)
        workers = max(settings.workers, 1)
        # Shared by the workers forked from here: the cap is the service's, not a worker's.
        self.slots = CommandSlots(settings.max_procs, shared=workers > 1)
        self.gate = WireGate.for_workers("exec", settings.token, settings.throttle, workers)
        if settings.db is not None:
            settings.db.ensure_schema("exec", 1, _SCHEMA)

    @property
    def running(self) -> int:
        """Commands this process is running now."""
        return self.slots.held

    def close(self) -> None:
        """Release what the server holds outside its connections (the shared slots)."""
        self.slots.close()

    def make_server(self, **options: Any) -> AsyncServer:
        """The ``AsyncServer`` running this service."""
        return AsyncServer(
            handler=self.handle,
            decoder_factory=lambda: WireDecoder(max_frame_size=EXEC_FRAME_SIZE),
            # A command may run silently for a long time: no idle timeout on the
            # connection (the command's own timeout bounds it); the handshake has one.
            limits=ConnectionLimits(
                idle_timeout=None,
                handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT_S,
                message_timeout=60.0,
                write_timeout=self.settings.write_timeout,
                max_pending_messages=EXEC_PENDING_FRAMES,
            ),
            check_listener=self.check_listener,
            farewell=wire_farewell,
            **options,
        )

    def check_listener(self, listener: Listener) -> None:
        """The exposure rule: off loopback, exec needs its token and TLS.

        Raises:
            PermissionDenied: the listener would expose commands without them.
        """
        check_exposure(
            "exec",
            listener.address,
            has_token=self.settings.token is not None,
            has_tls=listener.ssl is not None,
            needs_tls=True,
        )

    async def handle(self, conn: Connection[WireEvent]) -> None:
        """One connection: hello, auth, one command."""
        try:
            if not await self.gate.open(conn):
                return
            event = await conn.receive()
            if isinstance(event, ErrorFrame):
                logger.info("exec: %s gave up before its request (%s)", conn.peer, _peer_error(event))
                conn.close()
                return
            if not isinstance(event, Control):
                raise RemoteProtocolError(f"expected an exec request, got {type(event).__name__}")
            # A command that started runs to its end when the server stops (up to the
            # grace): its client gets the real exit status.
            with conn.busy():
                await self._serve(conn, parse_exec_request(event.header))
        except (ProtocolError, ServiceError) as exc:
            logger.info("exec: refused %s: %s", conn.peer, exc)
            send_error(conn, exc)
        except OSError as exc:  # the working directory or the program, before anything ran
            error = service_error_from_os(exc, "cannot run the command")
            logger.info("exec: refused %s: %s", conn.peer, error)
            send_error(conn, error)
        except (EOFError, ResourceError) as exc:
            logger.info("exec: %s left before running anything (%s)", conn.peer, exc)

    async def _serve(self, conn: Connection[WireEvent], request: ExecRequest) -> None:
        settings = self.settings
        decision = settings.policy.decide(request)
        cwd = resolve_under(self.sandbox.root, request.cwd)
        if not os.path.isdir(cwd):
            raise ServiceError(f"working directory {request.cwd!r} does not exist", code="not-found")
        slot = self.slots.acquire()
        if slot is None:
            raise ServiceError(
                f"busy: {settings.max_procs} commands are running; try again later", code="busy"
            )
        try:
            command = await start_command(
                conn,
                decision,
                cwd=cwd,
                stdin=request.stdin,
                max_output=settings.max_output,
                sandbox=self.sandbox,
            )
        except BaseException:
            self.slots.release(slot)
            raise
        self.commands.add(command)
        logger.info("exec: %s runs %s (pid %d)", conn.peer, request.display(), command.pid)
        # The audit row is written while the command runs (not before it starts): the
        # database never adds to a command's latency. Its end is written however this
        # handler ends (normal exit, client gone, write timeout, cancelled at shutdown).
        audit = _AuditRow(settings.db, conn, request, command)
        result = None
        try:
            # Announced before any output is read: "started" is always the first frame.
            conn.send(encode_control({"event": "started", "pid": command.pid}))
            await command.forward_output()
            result = await self._supervise(conn, command)
        except BaseException:
            command.abandon("server-stopping" if conn.shutdown_requested else "disconnected")
            # SIGKILL is quick: reap the process before the loop goes away (a process
            # nobody waits for would outlive its transport).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(command.reaped()), TERMINATE_GRACE_S)
            raise
        finally:
            self.slots.release(slot)
            self.commands.discard(command)
            audit.finish(result if result is not None else command.result(), command)
        assert result is not None
        logger.info(
            "exec: pid %d of %s ended: status=%s signal=%s reason=%s in %.1f ms",
            command.pid,
            conn.peer,
            result.status,
            result.signal,
            result.reason,
            result.duration_ms,
        )
        with contextlib.suppress(ResourceError):
            conn.send(encode_control(result.to_header()))
        conn.close()

    async def _supervise(self, conn: Connection[WireEvent], command: RunningCommand) -> ExecExit:
        relay = asyncio.get_running_loop().create_task(self._relay_client(conn, command))
        try:
            return await command.wait()
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay

    async def _relay_client(self, conn: Connection[WireEvent], command: RunningCommand) -> None:
        """Client -> command: stdin and signals, until the command ends or the client goes."""
        closed = asyncio.get_running_loop().create_task(conn.wait_closed())
        try:
            async for event in conn:
                if isinstance(event, Data) and event.channel == STDIN:
                    command.write_stdin(event.data)
                    if command.stdin_waiting:
                        # The command is not reading: take nothing more from the client
                        # (its frames pile up in the inbox, then reading pauses) until
                        # the pipe has room or the client is gone.
                        room = asyncio.ensure_future(command.wait_stdin_room())
                        await asyncio.wait({room, closed}, return_when=asyncio.FIRST_COMPLETED)
                        room.cancel()
                elif isinstance(event, Control):
                    try:
                        name = parse_signal_request(event.header)
                    except ProtocolError as exc:
                        # A request we cannot honour, from a client that is still here:
                        # say so and let the command go on.
                        logger.info("exec: %s: refused control request: %s", conn.peer, exc)
                        code = exc.error_code
                        conn.send(encode_control({"event": "refused", "code": code, "message": str(exc)}))
                        continue
                    logger.info("exec: %s sends SIG%s to pid %d", conn.peer, name, command.pid)
                    command.signal(name)
                elif isinstance(event, ErrorFrame):
                    logger.info(
                        "exec: %s gave up (%s); stopping pid %d", conn.peer, _peer_error(event), command.pid
                    )
                    command.kill_now("client-error")
                    return
            # End of the stream from the client. Our protocol ends input with an empty
            # channel-0 frame, never a TCP half-close, so the client is gone: the
            # command must not outlive it.
            logger.info("exec: %s closed its connection; stopping pid %d", conn.peer, command.pid)
            command.kill_now("disconnected")
        except (ResourceError, ProtocolError) as exc:
            # Aborted by a stopping server (a second signal), or the client is gone.
            logger.info("exec: %s is gone (%s); stopping pid %d", conn.peer, exc, command.pid)
            command.kill_now("server-stopping" if conn.shutdown_requested else "disconnected")
        finally:
            closed.cancel()


def _peer_error(event: ErrorFrame) -> str:
    text = f"{event.code}: {event.message}"
    return text if len(text) <= PEER_TEXT_LOGGED else text[: PEER_TEXT_LOGGED - 3] + "..."


class _AuditRow:
    """One exec_audit row: inserted at once on the default executor, updated with the
    end as soon as both are known. Callbacks, not awaits, chain the two, so a cancelled
    handler cannot lose the end; ``asyncio.run`` waits for the executor's jobs."""

    def __init__(
        self, db: StateDB | None, conn: Connection[WireEvent], request: ExecRequest, command: RunningCommand
    ) -> None:
        self.db = db
        self.end: tuple[Any, ...] | None = None
        self.inserted: asyncio.Future[int | None] | None = None
        if db is None:
            return
        row = (
            time.time(),
            conn.peer,
            to_json(list(request.argv)),
            request.shell,
            request.cwd or ".",
            command.pid,
        )
        self.inserted = self._submit(
            db.execute,
            "INSERT INTO exec_audit (started_at, peer, argv, shell, cwd, pid) VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )
        self.inserted.add_done_callback(lambda _: self._write_end())

    def _submit(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().run_in_executor(None, func, *args)
        future.add_done_callback(_log_failure)
        return future

    def finish(self, result: ExecExit, command: RunningCommand) -> None:
        """Record how the command ended (written once the row exists)."""
        self.end = (
            result.status,
            result.signal,
            result.reason,
            result.duration_ms,
            command.counters.stdout,
            command.counters.stderr,
            time.time(),
        )
        self._write_end()

    def _write_end(self) -> None:
        inserted, end, db = self.inserted, self.end, self.db
        if db is None or inserted is None or end is None or not inserted.done():
            return
        self.end = None  # written once
        if inserted.cancelled() or inserted.exception() is not None:
            return
        self._submit(
            db.execute,
            "UPDATE exec_audit SET status = ?, signal = ?, reason = ?, duration_ms = ?, bytes_out = ?, "
            "bytes_err = ?, finished_at = ? WHERE id = ?",
            (*end, inserted.result()),
        )


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("exec: cannot write the audit log: %s", future.exception())
