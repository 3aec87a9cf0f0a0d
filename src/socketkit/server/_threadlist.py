"""``ThreadingMixIn._threads`` in the standard library's shape: a list of handler threads.

The stdlib keeps ``_threads`` as a ``_Threads`` list on each server (and a degenerate
``_NoThreads`` on the class), and code written for it reads it: ``len(server._threads)``
in the stdlib's own tests, ``for t in server._threads: t.join()`` elsewhere. socketkit
keeps that shape, and its list is exact: the mix-in adds a handler thread when it starts
and removes it when it ends (the stdlib drops finished threads only when it next adds
one). ``append()``, ``reap()``, ``pop_all()`` and ``join()`` mean what they mean in the
stdlib, for code that registers threads of its own.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, overload

__all__ = ["NoThreads", "Threads", "ThreadsAttribute"]


class Threads(list[threading.Thread]):
    """The non-daemon threads a server joins when it closes."""

    def append(self, thread: threading.Thread) -> None:
        """Register ``thread`` (ignored if it is a daemon), forgetting finished ones."""
        self.reap()
        self.add(thread)

    def add(self, thread: threading.Thread) -> None:
        """Register ``thread`` without a sweep: the mix-in removes its own threads itself."""
        if not thread.daemon:
            super().append(thread)

    def discard(self, thread: threading.Thread) -> None:
        """Forget ``thread`` if it is registered."""
        with contextlib.suppress(ValueError):
            self.remove(thread)

    def pop_all(self) -> list[threading.Thread]:
        """Return every registered thread and forget them."""
        self[:], result = [], self[:]
        return result

    def join(self) -> None:
        """Wait for every registered thread (without a bound, as the stdlib does; the
        mix-in's own ``server_close()`` drains with ``drain_timeout`` instead)."""
        for thread in self.pop_all():
            thread.join()

    def reap(self) -> None:
        """Forget the threads that have finished."""
        self[:] = [thread for thread in self if thread.is_alive()]


class NoThreads:
    """What ``ThreadingMixIn._threads`` is on the class itself: nothing to register or join."""

    def append(self, thread: threading.Thread) -> None:
        """Ignore ``thread``."""

    def join(self) -> None:
        """Nothing to wait for."""


_NO_THREADS = NoThreads()


class ThreadsAttribute:
    """``_threads``: ``NoThreads`` on the class, each server's own ``Threads`` on it.

    A non-data descriptor: the list is created on first use (servers written for the
    stdlib often skip the mix-in's set-up) and stored on the instance, which then finds
    it directly; code that assigns ``server._threads`` itself replaces it, as in the
    stdlib.
    """

    @overload
    def __get__(self, server: None, owner: type | None = None) -> NoThreads: ...
    @overload
    def __get__(self, server: object, owner: type | None = None) -> Threads: ...

    def __get__(self, server: Any, owner: type | None = None) -> Threads | NoThreads:
        if server is None:
            return _NO_THREADS
        # setdefault is atomic: two threads reading it first get the same list.
        threads: Threads = server.__dict__.setdefault("_threads", Threads())
        return threads
