"""The one place where raw ``OSError``s get their meaning, for both engines.

- Socket calls: ``translate_os_errors()`` (a ``with`` block; trio's
  ``_translate_socket_errors_to_stream_errors`` is the model) and ``resource_error()``
  (for an ``OSError`` handed over, as asyncio's ``connection_lost`` does) turn it into
  ``ClosedResourceError`` (we closed it) or ``BrokenResourceError`` (the peer or network
  broke it), always with the ``OSError`` as ``__cause__``; ``TimeoutError`` stays itself.
- ``accept()``: ``accept_error()`` sorts a failed accept into what to do about it
  (``AcceptError``), and ``CapacityEpisodes`` logs running out of descriptors once per
  episode. The asyncio engine and the blocking one both act on it, so a failed accept
  means the same thing in each.
- File-system calls made for a request: ``service_error_from_os`` gives the typed
  service error the peer is told.
- A client that cannot connect or a server that cannot listen (``connect_error``,
  ``listen_error``: every client and every server start-up goes through these, so each
  such failure names the address, says why in words and what to try).
"""

from __future__ import annotations

import enum
import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from socketkit._log import get_logger
from socketkit.errors import (
    BrokenResourceError,
    ClosedResourceError,
    ConnectError,
    ListenError,
    ResourceError,
    ServiceError,
)
from socketkit.limits import DEFAULT_ACCEPT_BACKOFF_S

__all__ = [
    "AcceptError",
    "CapacityEpisodes",
    "accept_error",
    "connect_error",
    "listen_error",
    "resource_error",
    "service_error_from_os",
    "translate_os_errors",
]

logger = get_logger("socketkit.accept")

_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


def resource_error(exc: BaseException, what: str = "the connection") -> ResourceError:
    """The socketkit error for ``exc`` (an ``OSError``, or what else a transport gave up
    with: an SSL error) from a socket call on ``what``, caused by it.

    ``ClosedResourceError`` when the socket was closed on our side (EBADF, ENOTSOCK),
    ``BrokenResourceError`` for anything else.
    """
    error: ResourceError
    if isinstance(exc, OSError) and exc.errno in _CLOSED_ERRNOS:
        error = ClosedResourceError(f"{what} was closed")
    else:
        error = BrokenResourceError(f"{what} broke: {exc}")
    error.__cause__ = exc
    return error


@contextmanager
def translate_os_errors(what: str = "the connection") -> Iterator[None]:
    """Re-raise ``OSError`` as ``ClosedResourceError`` or ``BrokenResourceError``
    (``resource_error``), with the ``OSError`` as its cause.

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
        raise resource_error(exc, what) from exc


# What other servers do with a failed accept(), and why this sorting: trio's serve loop
# (``_highlevel_serve_listeners``) logs and sleeps on EMFILE/ENFILE/ENOMEM/ENOBUFS and
# lets anything else propagate; Twisted and Tornado skip ECONNABORTED and friends (the
# client gave up while queued: one connection, not the listener); Go's net package
# retries "temporary" errors with a growing sleep. Linux can also hand accept() errors
# of the new connection itself (EPROTO, ENETDOWN, EHOSTUNREACH... see accept(2)), and a
# firewall can refuse it (EPERM). The blocking engine's datagram "accept" (a recvmsg)
# adds EMSGSIZE (a truncated datagram) and ECONNREFUSED (an ICMP error for an earlier
# reply): one datagram each.
class AcceptError(enum.Enum):
    """What a failed ``accept()`` means, and what both engines do about it."""

    NOTHING_PENDING = "nothing-pending"
    """EAGAIN, EWOULDBLOCK, EINTR: no connection waiting after all; wait for the next."""
    CONNECTION_LOST = "connection-lost"
    """That one connection (or datagram) failed before we took it; accept the next."""
    OUT_OF_RESOURCES = "out-of-resources"
    """EMFILE, ENFILE, ENOBUFS, ENOMEM: rest the listener ``DEFAULT_ACCEPT_BACKOFF_S``,
    then try again (``CapacityEpisodes`` logs it once per episode)."""
    LISTENER_BROKEN = "listener-broken"
    """Anything else (EBADF, ENOTSOCK, EINVAL: the listener was closed or is no
    listener): stop accepting on it. The blocking engine raises it out of
    ``serve_forever()`` (never spins on it); the asyncio engine stops that listener and
    logs it, unless the server is closing."""


_PENDING_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
_LOST_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "ECONNRESET",
        "ECONNREFUSED",
        "EMSGSIZE",
        "EPROTO",
        "ENOPROTOOPT",
        "EPERM",
        "ENETDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "EOPNOTSUPP",
        "ETIMEDOUT",
    )
    if hasattr(errno, name)
)
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def accept_error(exc: OSError) -> AcceptError:
    """Sort a failed ``accept()`` (or a datagram server's receive) for both engines."""
    if isinstance(exc, (BlockingIOError, InterruptedError)) or exc.errno in _PENDING_ERRNOS:
        return AcceptError.NOTHING_PENDING
    if exc.errno in _RESOURCE_ERRNOS:
        return AcceptError.OUT_OF_RESOURCES
    if exc.errno in _LOST_ERRNOS:
        return AcceptError.CONNECTION_LOST
    return AcceptError.LISTENER_BROKEN


class CapacityEpisodes:
    """One log line when accepting runs out of resources, one when it works again: a
    listener retried every ``DEFAULT_ACCEPT_BACKOFF_S`` must not log ten lines a second.
    """

    __slots__ = ("failing",)

    backoff = DEFAULT_ACCEPT_BACKOFF_S

    def __init__(self) -> None:
        self.failing = False

    def failed(self, exc: OSError) -> None:
        """An ``OUT_OF_RESOURCES`` accept error: log it if it starts an episode."""
        if not self.failing:
            self.failing = True
            logger.error("accept() failed (%s); pausing the listener for %d ms", exc, self.backoff * 1000)

    def succeeded(self) -> None:
        """An accept worked: end the episode, if any."""
        if self.failing:
            self.failing = False
            logger.warning("accept() works again")


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
