"""A server's token at start-up: loaded or created, announced once, never logged.

The value itself is shown only on a terminal: a server's standard output is often a
log (journald, ``make serve > log``), where the token would stay readable by whoever
reads the logs; there the line says where the file is instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from socketkit.auth.exposure import check_exposure

__all__ = ["check_listeners", "server_token"]


def _is_terminal(stream: Any) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def server_token(
    service: str, state_dir: str, *, no_auth: bool, say: Callable[[str], None] | None = None
) -> str | None:
    """The server token (created and announced through ``say`` on first start), or
    None with ``no_auth``.

    Raises:
        OSError, PermissionDenied: the state directory or token file is unusable.
    """
    if no_auth:
        return None
    from socketkit.auth.token import TOKEN_ENV, load_or_create_token  # noqa: PLC0415

    token = load_or_create_token(state_dir)
    if token.created:
        announce = say or (lambda line: print(line, flush=True))
        where = (
            f"{service}: created a token in {token.path} (mode 0600); clients on this machine find it there"
        )
        if _is_terminal(sys.stdout):
            announce(
                f"{where}; elsewhere give it to them once:\n  {TOKEN_ENV}={token.value}  "
                f"(or copy the file and pass --token-file)"
            )
        else:
            announce(
                f"{where}; to give it to a client elsewhere, read it from that file as its owner "
                f"(cat {token.path}) and pass it as {TOKEN_ENV} or copy the file for --token-file "
                "(the value is shown only on a terminal, never in a log)"
            )
    return token.value


def check_listeners(service: str, listeners: Sequence[Any], *, has_token: bool, needs_tls: bool) -> None:
    """The exposure rule for every listener, before anything is built (the servers apply
    it again to every listener they bind).

    Raises:
        PermissionDenied: a listener is not loopback and the safety is missing.
    """
    for listener in listeners:
        check_exposure(
            service,
            listener.address,
            has_token=has_token,
            has_tls=listener.ssl is not None,
            needs_tls=needs_tls,
        )
