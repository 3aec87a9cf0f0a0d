"""The remote-exec protocol on socketkit wire v1 (pure: messages, channels, validation).

After the hello and the auth exchange (``socketkit.auth.handshake``)::

    client  CONTROL {"op": "exec", "argv": [...], "env": {...}, "cwd": "sub/dir",
                     "shell": null | "command line", "stdin": true, "timeout": 30}
    server  CONTROL {"event": "started", "pid": 1234}
    server  DATA ch1 ...   stdout, as the program writes it
    server  DATA ch2 ...   stderr, as the program writes it
    client  DATA ch0 ...   stdin; an empty DATA on ch0 is end of input
    client  CONTROL {"op": "signal", "signal": "INT"}            (Ctrl-C, forwarded)
    server  CONTROL {"event": "refused", "code": "bad-request", "message": "..."}
                                          (a control request it cannot honour; goes on)
    server  CONTROL {"event": "exit", "status": 0 | null, "signal": null | 9,
                     "reason": null | "timeout" | "output-limit" | "disconnected"
                               | "client-error" | "server-stopping"}
    then the server closes. A refused request is an ERROR frame instead of "started";
    an ERROR frame from the client is the client giving up (its command is stopped).

Channels mirror file descriptors (0 stdin, 1 stdout, 2 stderr).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from socketkit.codec.fields import Fields
from socketkit.errors import RemoteProtocolError
from socketkit.paths import MAX_PATH_LENGTH

__all__ = [
    "EXEC_FRAME_SIZE",
    "MAX_ARGS",
    "MAX_TIMEOUT_S",
    "MIN_TIMEOUT_S",
    "MAX_ARGV_BYTES",
    "SIGNALS",
    "STDERR",
    "STDIN",
    "STDOUT",
    "EXIT_TIMEOUT",
    "ExecExit",
    "ExecRequest",
    "exit_status_for_client",
    "parse_exec_request",
    "parse_exit",
    "parse_signal_request",
]

STDIN: Final = 0
STDOUT: Final = 1
STDERR: Final = 2

MAX_ARGS: Final = 4096
"""Arguments per command (far above any hand-written command; bounds the request)."""

MAX_ARGV_BYTES: Final = 128 * 1024
"""Total bytes of argv + env: Linux's per-argument limit (MAX_ARG_STRLEN) is 128 KiB."""

EXEC_FRAME_SIZE: Final = 1 << 20
"""Largest DATA frame either way (stdin, stdout, stderr): 1 MiB, so a fast stream costs
a header per MiB; pipe reads are smaller anyway."""

MIN_TIMEOUT_S: Final = 0.001
"""The shortest timeout a client may ask for (a millisecond; zero would mean "now")."""

MAX_TIMEOUT_S: Final = 366 * 24 * 3600.0
"""The longest timeout a client may name (a year): the server's own limit caps it anyway;
this only keeps the value a sane, finite number."""

SIGNALS: Final = frozenset({"INT", "TERM", "HUP", "QUIT", "KILL", "USR1", "USR2"})
"""Signals a client may forward to its command (by name: numbers differ across systems)."""


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, error_code="bad-request")


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """A validated request to run one command."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""
    shell: str | None = None
    stdin: bool = True
    timeout: float | None = None

    def to_header(self) -> dict[str, Any]:
        """The CONTROL header that carries this request."""
        return {
            "op": "exec",
            "argv": list(self.argv),
            "env": dict(self.env),
            "cwd": self.cwd,
            "shell": self.shell,
            "stdin": self.stdin,
            "timeout": self.timeout,
        }

    def display(self) -> str:
        """A one-line rendering for logs (arguments quoted, long lines cut)."""
        text = self.shell if self.shell is not None else shlex.join(self.argv)
        return text if len(text) <= 200 else text[:197] + "..."


def parse_exec_request(header: Mapping[str, Any]) -> ExecRequest:
    """Validate an ``{"op": "exec"}`` header (``socketkit.codec.fields``: types, sizes,
    finite ranges, valid Unicode).

    Raises:
        RemoteProtocolError: a malformed request (code ``bad-request``).
    """
    fields = Fields(header)
    if header.get("op") != "exec":
        raise _bad("expected an exec request")
    shell = fields.optional_text("shell", max_bytes=MAX_ARGV_BYTES)
    argv = fields.text_list("argv", max_items=MAX_ARGS, max_item_bytes=MAX_ARGV_BYTES, default=())
    if shell is None and not argv:
        raise _bad("argv is empty: name a program")
    if shell is not None and argv:
        raise _bad("give argv or shell, not both")
    if argv and not argv[0]:
        raise _bad("the program name is empty")
    env = fields.text_map("env", max_items=MAX_ARGS, max_item_bytes=MAX_ARGV_BYTES, default={})
    for name in env:
        if "=" in name:
            raise _bad(f"bad environment variable name {name!r}")
    size = sum(len(a.encode()) + 1 for a in argv) + sum(
        len(k.encode()) + len(v.encode()) + 2 for k, v in env.items()
    )
    size += len((shell or "").encode())
    if size > MAX_ARGV_BYTES:
        raise _bad(f"argv and env total {size} bytes, over {MAX_ARGV_BYTES}")
    cwd = fields.text("cwd", default="", max_bytes=MAX_PATH_LENGTH)
    timeout = fields.optional_number("timeout", minimum=MIN_TIMEOUT_S, maximum=MAX_TIMEOUT_S)
    stdin = fields.flag("stdin", default=True)
    return ExecRequest(argv, env, cwd, shell, stdin, timeout)


def parse_signal_request(header: Mapping[str, Any]) -> str:
    """The signal name of an ``{"op": "signal"}`` header.

    Raises:
        RemoteProtocolError: not a signal request, or a signal not in ``SIGNALS``.
    """
    fields = Fields(header)
    op = fields.text("op", max_bytes=40, allow_control=False)
    if op != "signal":
        raise _bad(f"unexpected control message {op!r}")
    name = fields.text("signal", max_bytes=40, allow_control=False).upper().removeprefix("SIG")
    if name not in SIGNALS:
        raise _bad(f"cannot forward signal {name!r} (allowed: {', '.join(sorted(SIGNALS))})")
    return name


@dataclass(frozen=True, slots=True)
class ExecExit:
    """How a command ended."""

    status: int | None
    signal: int | None = None
    reason: str | None = None
    duration_ms: float = 0.0

    def to_header(self) -> dict[str, Any]:
        """The CONTROL header that reports it."""
        return {
            "event": "exit",
            "status": self.status,
            "signal": self.signal,
            "reason": self.reason,
            "duration_ms": round(self.duration_ms, 3),
        }


def parse_exit(header: Mapping[str, Any]) -> ExecExit:
    """Read an ``{"event": "exit"}`` header.

    Raises:
        RemoteProtocolError: malformed.
    """
    fields = Fields(header, code="bad-reply")
    status = (
        None
        if header.get("status") is None
        else fields.integer("status", minimum=-(1 << 31), maximum=1 << 31)
    )
    sig = None if header.get("signal") is None else fields.integer("signal", minimum=1, maximum=255)
    reason = fields.optional_text("reason", max_bytes=200, allow_control=False)
    duration = fields.number("duration_ms", minimum=0.0, maximum=1e15, default=0.0)
    return ExecExit(status, sig, reason, duration)


EXIT_TIMEOUT: Final = 124
"""What ``socketkit exec`` returns when the server stopped the command for its timeout
(the status GNU ``timeout`` uses)."""


def exit_status_for_client(result: ExecExit) -> int:
    """The exit status ``socketkit exec`` returns: the remote one, 128+N for signal N,
    124 when the server stopped the command at its timeout."""
    if result.reason == "timeout":
        return EXIT_TIMEOUT
    if result.signal is not None:
        return 128 + result.signal
    if result.status is None:
        return 255
    return result.status & 0xFF
