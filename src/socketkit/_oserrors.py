"""The one place where raw ``OSError``s become socketkit resource errors.

Both engines wrap their socket calls in ``translate_os_errors()`` (trio's
``_translate_socket_errors_to_stream_errors`` is the model), so code above them sees
``ClosedResourceError`` (we closed it), ``BrokenResourceError`` (the peer or network
broke it, with the ``OSError`` as ``__cause__``) or the builtin ``TimeoutError``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from socketkit.errors import BrokenResourceError, ClosedResourceError

__all__ = ["translate_os_errors"]

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
