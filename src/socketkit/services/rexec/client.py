"""The exec client: run one command remotely, like ``ssh host cmd``.

Remote stdout and stderr are written to ours as they arrive; our stdin is forwarded
(end of input included); Ctrl-C is forwarded as SIGINT (a second Ctrl-C gives up);
the return value is the remote exit status, 128+N for signal N, and for failures
before the command ran: 126 (not allowed), 127 (not found), 255 (anything else:
unreachable, authentication, protocol), as ssh uses 255.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from socketkit._log import get_logger
from socketkit._stdio import write_all
from socketkit._text import escape_controls
from socketkit.aio.connection import Connection
from socketkit.auth.connect import ServiceTarget, connect_authenticated
from socketkit.codec.wire import (
    Control,
    Data,
    ErrorFrame,
    WireEvent,
    encode_control,
    encode_data,
)
from socketkit.errors import ResourceError, ServiceError
from socketkit.limits import DEFAULT_TERMINATE_GRACE_S
from socketkit.services.rexec.protocol import (
    EXEC_FRAME_SIZE,
    STDERR,
    STDIN,
    STDOUT,
    ExecRequest,
    exit_status_for_client,
    parse_exit,
)

__all__ = ["EXIT_FAILURE", "run_remote"]

logger = get_logger(__name__)

EXIT_NOT_ALLOWED = 126
EXIT_NOT_FOUND = 127
EXIT_FAILURE = 255
_STDIN_CHUNK = 256 * 1024
REFUSAL_SHOWN = 500
"""Characters of a server's refusal message shown on stderr (one line, never a flood)."""


def _writer(stream: BinaryIO) -> Callable[[bytes], None]:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):

        def write_file(data: bytes) -> None:
            stream.write(data)
            stream.flush()

        return write_file

    def write_fd(data: bytes) -> None:
        write_all(fd, data)  # our stdout's reader gone (`| head`): StdoutClosed, a quiet end

    return write_fd


def _pump_stdin(
    stdin: BinaryIO,
    loop: asyncio.AbstractEventLoop,
    conn: Connection[WireEvent],
    stop: threading.Event,
) -> None:
    """Thread: forward ``stdin`` until end of input; waits while the server is slow."""
    try:
        fd = stdin.fileno()
        read: Callable[[int], bytes] = lambda n: os.read(fd, n)  # noqa: E731
    except (AttributeError, OSError, ValueError):
        read = stdin.read
    try:
        while not stop.is_set():
            data = read(_STDIN_CHUNK)
            future = asyncio.run_coroutine_threadsafe(conn.send_all(encode_data(data, STDIN)), loop)
            future.result()
            if not data:
                return
    except (OSError, ValueError, ResourceError, RuntimeError, asyncio.CancelledError):
        return  # the connection or the loop is gone: nothing left to feed


async def run_remote(
    target: ServiceTarget,
    request: ExecRequest,
    *,
    stdin: BinaryIO | None,
    stdout: BinaryIO,
    stderr: BinaryIO,
    timeout: float | None = None,
    forward_sigint: bool = False,
    on_started: Callable[[int], None] | None = None,
) -> int:
    """Run ``request`` on ``target``; return the exit status as ``socketkit exec`` does.

    ``on_started(pid)`` is called once the server has started the command.

    Raises:
        OSError: unreachable or refused (callers map it to 255).
        TimeoutError: no connection in time, or the command outlived ``timeout``.
        ServiceError, PermissionDenied, ProtocolError: refused or broken exchange.
    """
    conn = await connect_authenticated(
        target, service="exec", max_frame_size=EXEC_FRAME_SIZE, pipelined=request.to_header()
    )
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            conn.abort()
            return
        with contextlib.suppress(ResourceError):
            conn.send(encode_control({"op": "signal", "signal": "INT"}))

    try:
        if forward_sigint:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        # The server enforces `timeout` and reports it; wait a little longer for that report.
        grace = None if timeout is None else timeout + DEFAULT_TERMINATE_GRACE_S + 3.0
        try:
            async with asyncio.timeout(grace):
                return await _converse(conn, request, stdin, stdout, stderr, stop=stop, on_started=on_started)
        except TimeoutError:
            raise TimeoutError(f"no exit status from {target.address} within {grace:g} s") from None
    finally:
        stop.set()
        if forward_sigint:
            loop.remove_signal_handler(signal.SIGINT)
        conn.abort()


async def _converse(
    conn: Connection[WireEvent],
    request: ExecRequest,
    stdin: BinaryIO | None,
    stdout: BinaryIO,
    stderr: BinaryIO,
    *,
    stop: threading.Event,
    on_started: Callable[[int], None] | None,
) -> int:
    write_out, write_err = _writer(stdout), _writer(stderr)
    started = False
    pump: threading.Thread | None = None
    async for event in conn:
        if isinstance(event, Data):
            if event.channel == STDOUT:
                write_out(event.data)
            elif event.channel == STDERR:
                write_err(event.data)
        elif isinstance(event, Control):
            kind = event.header.get("event")
            if kind == "started" and not started:
                started = True
                if on_started is not None:
                    on_started(int(event.header.get("pid") or 0))
                if request.stdin:
                    if stdin is None:
                        conn.send(encode_data(b"", STDIN))
                    else:
                        pump = threading.Thread(
                            target=_pump_stdin,
                            args=(stdin, asyncio.get_running_loop(), conn, stop),
                            name="socketkit-exec-stdin",
                            daemon=True,
                        )
                        pump.start()
            elif kind == "refused":
                # A request of ours the server could not honour (a signal it does not
                # forward); the command goes on.
                message = escape_controls(str(event.header.get("message", "")))[:REFUSAL_SHOWN]
                write_err(f"socketkit exec: the server refused a request: {message}\n".encode())
            elif kind == "exit":
                result = parse_exit(event.header)
                if result.reason is not None:
                    note = {"timeout": "it ran out of time", "output-limit": "it passed the output cap"}
                    write_err(
                        f"socketkit exec: the server stopped the command: "
                        f"{note.get(result.reason, result.reason)}\n".encode()
                    )
                return exit_status_for_client(result)
        elif isinstance(event, ErrorFrame):
            raise ServiceError(event.message, code=event.code)
    raise ResourceError("the server closed the connection before reporting the exit status")


def exit_status_for_error(exc: BaseException) -> int:
    """126/127/255 for a failure before or instead of the remote command."""
    if isinstance(exc, ServiceError):
        if exc.code == "not-found":
            return EXIT_NOT_FOUND
        if exc.code == "permission-denied":
            return EXIT_NOT_ALLOWED
    return EXIT_FAILURE


def default_streams() -> dict[str, Any]:
    """The process's own binary streams."""
    return {"stdin": sys.stdin.buffer, "stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
