"""The one line a failed command prints (``TypeName: message``), shared by every command."""

from __future__ import annotations

__all__ = ["error_line"]


def error_line(exc: BaseException) -> str:
    """The one line a failure prints: ``TypeName: message``, in words a user can act on
    where Python's own are cryptic (``gaierror: [Errno -2] ...``, a path left out)."""
    name = type(exc).__name__
    if name == "gaierror":  # socket.gaierror, without importing socket here
        return f"LookupError: cannot resolve the host name: {getattr(exc, 'strerror', None) or exc}"
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{name}: {exc.filename}: {exc.strerror}"
    return f"{name}: {exc}"
