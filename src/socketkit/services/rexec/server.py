"""The exec server: hello, authentication, one command per connection, then the exit.

The connection's handler reads the request, checks it against the policy and the path
jail, starts the command (``runner``), and then, while the command runs, relays the
client's stdin and signals; a client that disconnects kills the command. Every
command is in the audit log (SQLite in the state directory): who, what, where, when,
how it ended, how long it took and how much it printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from socketkit._log import get_logger
from socketkit._oserrors import service_error_from_os
from socketkit.aio.connection import Connection, ConnectionLimits
from socketkit.aio.listeners import Listener
from socketkit.aio.server import AsyncServer
from socketkit.aio.threads import to_thread_shielded
from socketkit.aio.wire import send_error
from socketkit.auth.exposure import check_exposure
from socketkit.auth.session import WireGate, receive_control
from socketkit.auth.throttle import AuthThrottle
from socketkit.codec.wire import Control, Data, WireDecoder, WireEvent, encode_control
from socketkit.errors import ProtocolError, ResourceError, ServiceError
from socketkit.limits import DEFAULT_HANDSHAKE_TIMEOUT_S
from socketkit.paths import resolve_under
from socketkit.services.rexec.policy import ExecPolicy
from socketkit.services.rexec.protocol import (
    EXEC_FRAME_SIZE,
    STDIN,
    ExecExit,
    ExecRequest,
    parse_exec_request,
    parse_signal_request,
)
from socketkit.services.rexec.runner import RunningCommand, start_command
from socketkit.state import StateDB, to_json

__all__ = ["DEFAULT_MAX_OUTPUT", "DEFAULT_MAX_PROCS", "ExecServer", "ExecSettings"]

logger = get_logger(__name__)

DEFAULT_MAX_OUTPUT = 1 << 40
"""Bytes of stdout+stderr per command before it is stopped: 1 TiB (the stream is never
buffered, so the cap is about runaway commands and disk-filling clients, not memory)."""

DEFAULT_MAX_PROCS = 32
"""Commands running at once: each is a process tree; more queue up as "busy" errors."""


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


class ExecServer:
    """The exec service (one instance per server process)."""

    def __init__(self, settings: ExecSettings) -> None:
        self.settings = settings
        self.running = 0
        self.gate = WireGate("exec", settings.token, settings.throttle)
        if settings.db is not None:
            settings.db.ensure_schema("exec", 1, _SCHEMA)

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
            ),
            check_listener=self.check_listener,
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
            request = parse_exec_request((await receive_control(conn)).header)
            await self._serve(conn, request)
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
        cwd = resolve_under(settings.root, request.cwd)
        if not os.path.isdir(cwd):
            raise ServiceError(f"working directory {request.cwd!r} does not exist", code="not-found")
        if self.running >= settings.max_procs:
            raise ServiceError(
                f"busy: {settings.max_procs} commands are running; try again later", code="busy"
            )
        self.running += 1
        try:
            command = await start_command(
                conn, decision, cwd=cwd, stdin=request.stdin, max_output=settings.max_output
            )
            logger.info("exec: %s runs %s (pid %d)", conn.peer, request.display(), command.pid)
            # The audit row is written while the command runs (not before it starts):
            # the database never adds to a command's latency.
            audit = asyncio.get_running_loop().create_task(self._audit_start(conn, request, command))
            try:
                conn.send(encode_control({"event": "started", "pid": command.pid}))
                result = await self._supervise(conn, command)
            finally:
                audit_id = await asyncio.shield(audit)  # the row is written even on shutdown
        finally:
            self.running -= 1
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
        await self._audit_end(audit_id, command, result)

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
        try:
            async for event in conn:
                if isinstance(event, Data) and event.channel == STDIN:
                    command.write_stdin(event.data)
                elif isinstance(event, Control):
                    name = parse_signal_request(event.header)
                    logger.info("exec: %s sends SIG%s to pid %d", conn.peer, name, command.pid)
                    command.signal(name)
            # End of the stream from the client. Our protocol ends input with an empty
            # channel-0 frame, never a TCP half-close, so the client is gone (or the
            # server is stopping): the command must not outlive it.
            reason = "server-stopping" if conn.shutdown_requested else "disconnected"
            logger.info("exec: %s closed its connection; stopping pid %d", conn.peer, command.pid)
            command.kill_now(reason)
        except (ResourceError, ProtocolError) as exc:
            logger.info("exec: %s is gone (%s); stopping pid %d", conn.peer, exc, command.pid)
            command.kill_now("disconnected")

    async def _audit_start(
        self, conn: Connection[WireEvent], request: ExecRequest, command: RunningCommand
    ) -> int | None:
        db = self.settings.db
        if db is None:
            return None
        row = (
            time.time(),
            conn.peer,
            to_json(list(request.argv)),
            request.shell,
            request.cwd or ".",
            command.pid,
        )
        return await to_thread_shielded(
            db.execute,
            "INSERT INTO exec_audit (started_at, peer, argv, shell, cwd, pid) VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )

    async def _audit_end(self, audit_id: int | None, command: RunningCommand, result: ExecExit) -> None:
        db = self.settings.db
        if db is None or audit_id is None:
            return
        await to_thread_shielded(
            db.execute,
            "UPDATE exec_audit SET status = ?, signal = ?, reason = ?, duration_ms = ?, bytes_out = ?, "
            "bytes_err = ?, finished_at = ? WHERE id = ?",
            (
                result.status,
                result.signal,
                result.reason,
                result.duration_ms,
                command.counters.stdout,
                command.counters.stderr,
                time.time(),
                audit_id,
            ),
        )
