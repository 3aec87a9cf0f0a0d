"""The remote-exec protocol on socketkit wire v1 (pure: messages, channels, validation).

After the hello and the auth exchange (``socketkit.auth.handshake``)::

    client  CONTROL {"op": "exec", "argv": [...], "env": {...}, "cwd": "sub/dir",
                     "shell": null | "command line", "stdin": true, "timeout": 30}
    server  CONTROL {"event": "started", "pid": 1234}
    server  DATA ch1 ...   stdout, as the program writes it
    server  DATA ch2 ...   stderr, as the program writes it
    client  DATA ch0 ...   stdin; an empty DATA on ch0 is end of input
    client  CONTROL {"op": "signal", "signal": "INT"}            (Ctrl-C, forwarded)
    server  CONTROL {"event": "exit", "status": 0 | null, "signal": null | 9,
                     "reason": null | "timeout" | "output-limit" | "disconnected"}
    then the server closes. A refused request is an ERROR frame instead of "started".

Channels mirror file descriptors (0 stdin, 1 stdout, 2 stderr).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from socketkit.errors import RemoteProtocolError

__all__ = [
    "MAX_ARGS",
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


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string")
    if "\0" in value:
        raise _bad(f"NUL byte in {what}")
    return value


def parse_exec_request(header: Mapping[str, Any]) -> ExecRequest:
    """Validate an ``{"op": "exec"}`` header.

    Raises:
        RemoteProtocolError: a malformed request (code ``bad-request``).
    """
    if header.get("op") != "exec":
        raise _bad("expected an exec request")
    shell = header.get("shell")
    raw_argv = header.get("argv") or []
    if not isinstance(raw_argv, list):
        raise _bad("argv must be a list of strings")
    if shell is None and not raw_argv:
        raise _bad("argv is empty: name a program")
    if shell is not None:
        shell = _check_text(shell, "shell command")
        if raw_argv:
            raise _bad("give argv or shell, not both")
    if len(raw_argv) > MAX_ARGS:
        raise _bad(f"more than {MAX_ARGS} arguments")
    argv = tuple(_check_text(a, "argv") for a in raw_argv)
    raw_env = header.get("env") or {}
    if not isinstance(raw_env, dict):
        raise _bad("env must be an object of strings")
    env = {_check_text(k, "env name"): _check_text(v, "env value") for k, v in raw_env.items()}
    for name in env:
        if not name or "=" in name:
            raise _bad(f"bad environment variable name {name!r}")
    size = sum(len(a.encode()) + 1 for a in argv) + sum(len(k) + len(v) + 2 for k, v in env.items())
    size += len((shell or "").encode())
    if size > MAX_ARGV_BYTES:
        raise _bad(f"argv and env total {size} bytes, over {MAX_ARGV_BYTES}")
    cwd = _check_text(header.get("cwd") or "", "cwd")
    timeout = header.get("timeout")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise _bad("timeout must be a positive number of seconds")
    stdin = header.get("stdin", True)
    if not isinstance(stdin, bool):
        raise _bad("stdin must be true or false")
    return ExecRequest(argv, env, cwd, shell, stdin, None if timeout is None else float(timeout))


def parse_signal_request(header: Mapping[str, Any]) -> str:
    """The signal name of an ``{"op": "signal"}`` header.

    Raises:
        RemoteProtocolError: not a signal request, or a signal not in ``SIGNALS``.
    """
    if header.get("op") != "signal":
        raise _bad(f"unexpected control message {header.get('op')!r}")
    name = header.get("signal")
    if not isinstance(name, str) or name.upper().removeprefix("SIG") not in SIGNALS:
        raise _bad(f"cannot forward signal {name!r} (allowed: {', '.join(sorted(SIGNALS))})")
    return name.upper().removeprefix("SIG")


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
    status, sig = header.get("status"), header.get("signal")
    if status is not None and not isinstance(status, int):
        raise RemoteProtocolError("exit status must be an integer")
    if sig is not None and not isinstance(sig, int):
        raise RemoteProtocolError("exit signal must be an integer")
    reason = header.get("reason")
    return ExecExit(
        status,
        sig,
        reason if isinstance(reason, str) else None,
        float(header.get("duration_ms") or 0),
    )


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
