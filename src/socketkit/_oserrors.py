"""The one place where raw ``OSError``s become socketkit errors: resource errors for
sockets, typed service errors for file-system calls made for a request, and the errors
of a client that cannot connect or a server that cannot listen (``connect_error``,
``listen_error``: every client and every server start-up goes through these, so each
such failure names the address, says why in words and what to try).

Both engines wrap their socket calls in ``translate_os_errors()`` (trio's
``_translate_socket_errors_to_stream_errors`` is the model), so code above them sees
``ClosedResourceError`` (we closed it), ``BrokenResourceError`` (the peer or network
broke it, with the ``OSError`` as ``__cause__``) or the builtin ``TimeoutError``.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from socketkit.errors import (
    BrokenResourceError,
    ClosedResourceError,
    ConnectError,
    ListenError,
    ServiceError,
)

__all__ = ["connect_error", "listen_error", "service_error_from_os", "translate_os_errors"]

_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


@contextmanager
def translate_os_errors() -> Iterator[None]:
    """Re-raise ``OSError`` as ``ClosedResourceError`` or ``BrokenResourceError``.

    ``TimeoutError`` (including ``socket.timeout``) passes through unchanged.

    Raises:
        ClosedResourceError: the socket was closed on our side (EBADF, ENOTSOCK).
        BrokenResourceError: any other ``OSError``.
    """
    try:
        yield
    except TimeoutError:
        raise
    except OSError as exc:
        if exc.errno in _CLOSED_ERRNOS:
            raise ClosedResourceError("the connection was closed") from exc
        raise BrokenResourceError(f"the connection broke: {exc}") from exc


_SERVICE_CODES: dict[int, tuple[str, str]] = {
    errno.ENOENT: ("not-found", "no such file or directory"),
    errno.EEXIST: ("exists", "already exists"),
    errno.ENOTDIR: ("not-a-directory", "a component of the path is not a directory"),
    errno.EISDIR: ("is-a-directory", "is a directory"),
    errno.ENOTEMPTY: ("not-empty", "the directory is not empty"),
    errno.ENAMETOOLONG: ("name-too-long", "a name in the path is too long for the file system"),
    errno.ELOOP: ("path-outside-root", "the path goes through a symbolic link"),
    errno.EACCES: ("permission-denied", "permission denied"),
    errno.EPERM: ("permission-denied", "operation not permitted"),
    errno.EROFS: ("read-only", "the file system is read-only"),
    errno.ENOSPC: ("disk-full", "no space left on the device"),
    errno.EDQUOT: ("disk-full", "disk quota exceeded"),
    errno.EFBIG: ("too-large", "file too large"),
    errno.EMFILE: ("busy", "the server has too many open files; try again later"),
    errno.ENFILE: ("busy", "the system has too many open files; try again later"),
    errno.EAGAIN: ("busy", "the resource is temporarily unavailable; try again later"),
    errno.EXDEV: ("io-error", "cannot move across file systems"),
    errno.ENXIO: ("not-a-file", "not a regular file"),
    errno.ETXTBSY: ("busy", "the file is in use"),
}


def service_error_from_os(exc: OSError, what: str) -> ServiceError:
    """The typed error a service reports for a failed file-system call on ``what``.

    Every ``OSError`` a request can cause becomes one of a few stable codes (an
    unknown errno is ``io-error``), so the peer always gets an ERROR frame it can act
    on and the server logs one line instead of losing the connection. The message
    names the client's own path, never the server's real one (the strerror is fixed
    text, ``exc.filename`` is not used).
    """
    code, text = _SERVICE_CODES.get(exc.errno or 0, ("io-error", exc.strerror or "input/output error"))
    return ServiceError(f"{what}: {text}", code=code)


# What runs each service, for "is it running there?" (admin: the endpoint of serve all).
_SERVERS = {
    "admin": "`socketkit serve all`",
    "talk": "`socketkit serve talk`",
    **{name: f"`socketkit serve {name}` or `serve all`" for name in ("echo", "chat", "files", "exec")},
}

_CONNECT_REASONS: dict[int, str] = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENOENT: "no such socket",
    errno.ECONNRESET: "the connection was reset",
    errno.EPIPE: "the connection was closed",
    errno.ENETUNREACH: "the network is unreachable",
    errno.EHOSTUNREACH: "the host is unreachable",
    errno.ETIMEDOUT: "no answer (timed out)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EADDRNOTAVAIL: "the address is not available",
}


def _strerror(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[0].lower() + text[1:] if text[:2] != text[:2].upper() else text


def connect_error(
    exc: BaseException, address: object, *, service: str | None = None, timeout: float | None = None
) -> ConnectError:
    """The ``ConnectError`` for a failed connection to ``address`` (raise it ``from exc``).

    Args:
        exc: what connecting raised (an ``OSError``, ``TimeoutError``, ``ssl.SSLError``).
        address: what was dialled, shown as is.
        service: the socketkit service expected there (``exec``, ``admin``...), so the
            hint can say which command runs it; ``None``: any server.
        timeout: the connect timeout, shown when it ran out.
    """
    import ssl  # noqa: PLC0415 (only on a failure: clients without TLS never load it)

    where = str(address)
    server = _SERVERS.get(service or "")
    running = (
        f"is {server} running there? it prints its addresses when it starts"
        if server
        else "is a server listening there?"
    )
    code = getattr(exc, "errno", None)
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or "verification failed"
        return ConnectError(
            where,
            f"its TLS certificate is not trusted: {why}",
            hint="is it the server you meant? trust its CA with --tls-ca FILE",
            errno=code,
        )
    if isinstance(exc, ssl.SSLError):
        why = (exc.reason or _strerror(exc)).lower().replace("_", " ")
        return ConnectError(
            where, f"the TLS handshake failed: {why}", hint="does it serve TLS on this port?", errno=code
        )
    if isinstance(exc, socket.gaierror):
        host = where.rsplit(":", 1)[0].strip("[]")
        return ConnectError(
            where, f"cannot resolve the host name {host!r}: {_strerror(exc)}", hint="is it spelt right?"
        )
    if isinstance(exc, TimeoutError) and code in (None, errno.ETIMEDOUT):
        within = f" within {timeout:g} s" if timeout is not None else ""
        return ConnectError(
            where,
            f"no answer{within}",
            hint="is the address right? a firewall may be dropping the connection",
            errno=code,
        )
    reason = _CONNECT_REASONS.get(code or 0) or _strerror(exc)
    hint = running if code in (errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET) else ""
    if code in (errno.EACCES, errno.EPERM) and where.startswith("unix:"):
        hint = "the socket belongs to another user"
    return ConnectError(where, reason, hint=hint, errno=code)


def listen_error(exc: OSError, address: object, kind: str, *, service: str | None = None) -> ListenError:
    """The ``ListenError`` for a listener that cannot be bound (raise it ``from exc``).

    Args:
        exc: what resolving, binding or listening raised.
        address: where, shown as is (a ``unix:`` path is of kind ``unix``).
        kind: ``tcp`` or ``udp``.
        service: the service that wanted it (``None``: say nothing of one).
    """
    where = str(address)
    unix = where.startswith("unix:")
    kind = "unix" if unix else kind
    code = exc.errno
    if isinstance(exc, socket.gaierror):
        host = where.rsplit(":", 1)[0].strip("[]")
        reason, hint = f"cannot resolve the host name {host!r}: {_strerror(exc)}", "is it spelt right?"
    elif code == errno.EADDRINUSE:
        if unix:
            reason, hint = "another server is listening on it", "stop it, or choose another path"
        else:
            reason, hint = (
                "the address is already in use",
                "another program listens there: stop it, or choose another port",
            )
    elif code == errno.EACCES and not unix and _port(where) < 1024:
        reason, hint = (
            "permission denied",
            "ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a port above 1023",
        )
    elif code == errno.EEXIST and unix:
        reason, hint = _strerror(exc), "remove it, or choose another path"
    elif code == errno.EADDRNOTAVAIL:
        reason = "this machine has no such address"
        hint = "listen on 127.0.0.1, ::1, one of this machine's addresses, or 0.0.0.0/:: for all"
    else:
        reason, hint = _strerror(exc), ""
    return ListenError(where, kind, reason, hint=hint, service=service, errno=code)


def _port(where: str) -> int:
    try:
        return int(where.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0
