"""serving(): a server running in a background thread for the length of a ``with`` block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

__all__ = ["serving"]


class _Serveable(Protocol):
    def serve_forever(self, poll_interval: float = ...) -> None: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


S = TypeVar("S", bound=_Serveable)


@contextmanager
def serving(server: S, *, poll_interval: float = 0.5) -> Iterator[S]:
    """Run ``server.serve_forever()`` in a thread; stop, join and close it on exit.

    The server is already bound and listening when it is constructed, so clients may
    connect as soon as the block starts (connections wait in the listen backlog until
    the loop accepts them). Works with stdlib ``socketserver`` servers too.

    Args:
        server: a constructed (bound, activated) server.
        poll_interval: passed to ``serve_forever()``.

    Yields:
        the server.

    Raises:
        RuntimeError: the serve loop thread did not end after ``shutdown()``.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.serve_forever(poll_interval)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)
            raise

    thread = threading.Thread(target=run, name="socketkit-serving", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        try:
            server.shutdown()
            thread.join(30)
            if thread.is_alive():
                raise RuntimeError("serve_forever() did not return after shutdown()")
        finally:
            server.server_close()
    if errors:
        raise errors[0]
