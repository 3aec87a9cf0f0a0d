"""The one place where raw ``OSError``s become socketkit errors: resource errors for
sockets, typed service errors for file-system calls made for a request.

Both engines wrap their socket calls in ``translate_os_errors()`` (trio's
``_translate_socket_errors_to_stream_errors`` is the model), so code above them sees
``ClosedResourceError`` (we closed it), ``BrokenResourceError`` (the peer or network
broke it, with the ``OSError`` as ``__cause__``) or the builtin ``TimeoutError``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from socketkit.errors import BrokenResourceError, ClosedResourceError, ServiceError

__all__ = ["service_error_from_os", "translate_os_errors"]

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
