"""The one line a failed command prints (``TypeName: message``), shared by every command."""

from __future__ import annotations

import errno
from typing import Any

__all__ = ["error_line"]


def error_line(exc: BaseException, args: Any = None) -> str:
    """The one line a failure prints: ``TypeName: message``, in words a user can act on
    where Python's own are cryptic (``gaierror: [Errno -2] ...``, a path left out).

    ``args`` (the parsed command line) lets a server that cannot listen name the option
    that chooses another port (``--port``, or ``--echo-port`` and ``--any-port`` of
    ``serve all``)."""
    from socketkit.errors import ListenError  # noqa: PLC0415 (small, no dependencies)

    name = type(exc).__name__
    if isinstance(exc, ListenError):
        return f"{name}: {_with_port_option(exc, args)}"
    if name == "gaierror":  # socket.gaierror, without importing socket here
        return f"LookupError: cannot resolve the host name: {getattr(exc, 'strerror', None) or exc}"
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{name}: {exc.filename}: {exc.strerror}"
    return f"{name}: {exc}"


def _with_port_option(exc: Any, args: Any) -> Any:
    """``exc`` with the option to pick another port in its hint, when a port is at fault
    and the command line has one for the service."""
    if exc.errno not in (errno.EADDRINUSE, errno.EACCES) or exc.kind == "unix" or not exc.service:
        return exc
    own = f"{exc.service}_port"
    if hasattr(args, own) and hasattr(args, "any_port"):  # serve all: a port per service
        option = f"--{exc.service}-port N, or let the system pick every port with --any-port"
    elif hasattr(args, "port"):
        option = "--port N (0 lets the system pick one)"
    else:
        return exc
    # The hints of listen_error for these end in "choose another port" / "a port above 1023".
    return exc.replace(hint=f"{exc.hint} with {option}")
