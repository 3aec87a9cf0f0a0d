"""The drain bells: how a stopping blocking server tells its handlers, in threads and in
child processes alike, to finish.

A handler waiting for its peer's next bytes (``FramedRequestHandler``, through
``BaseServer.wait_for_input``) waits on its connection and on two bells at once, so
ringing one wakes every handler at once, without polling:

- the **drain** bell rings when ``server_close()`` begins the drain. A handler at rest
  (between requests, with nothing unread from its peer) stops there and tells its peer
  why (``FramedRequestHandler.farewell``); one whose peer has sent more reads it and
  answers first; one in the middle of a request (a message arriving, or
  ``in_request``) goes on;
- the **cut** bell rings when the drain timeout runs out: every handler stops at its
  next read, input waiting or not, with the reason ``grace_ran_out``.

A bell is a socket pair whose write end was written once: it stays readable for every
waiter (nobody reads it), and a child of ``ForkingMixIn`` inherits it, because the bells
are made before the first fork. The reason of a cut travels in the bell itself (peeked,
never consumed), so a child knows it too.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import threading
import weakref
from typing import Any

from socketkit._shutdown import SHUTTING_DOWN

__all__ = ["DrainBells"]

_REASON_MAX = 512  # bytes of a cut's reason read from its bell (ours are short sentences)


class _Bell:
    __slots__ = ("_receive", "_send")

    def __init__(self) -> None:
        self._receive, self._send = socket.socketpair()
        self._receive.setblocking(False)

    def fileno(self) -> int:
        return self._receive.fileno()

    def ring(self, text: bytes) -> None:
        with contextlib.suppress(OSError):  # rung already: its buffer holds the text
            self._send.send(text)

    def text(self) -> bytes | None:
        """What the bell was rung with (``None``: not rung)."""
        try:
            return self._receive.recv(_REASON_MAX, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # closed: the server is gone, which is a stop too
            return b""

    def close(self) -> None:
        self._send.close()
        self._receive.close()


class DrainBells:
    """The drain and cut bells of one server (see the module docstring)."""

    __slots__ = ("_cut", "_drain", "_lock", "_waiters")

    def __init__(self) -> None:
        self._drain = _Bell()
        self._cut = _Bell()
        self._lock = threading.Lock()
        # Handler threads that wait for their input here: they answer a cut by
        # themselves, the others are only reached by shutting their connection down.
        self._waiters: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def waited_on_by(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` has waited for its input on the bells."""
        with self._lock:
            return thread in self._waiters

    def ring_drain(self) -> None:
        """The drain begins: handlers at rest stop."""
        self._drain.ring(b"d")

    def ring_cut(self, reason: str) -> None:
        """The drain timeout ran out: every handler stops at its next read."""
        self._cut.ring(reason.encode()[:_REASON_MAX] or b"cut")

    def cut_reason(self) -> str | None:
        """Why handlers were cut, once they were."""
        text = self._cut.text()
        if text is None:
            return None
        return text.decode(errors="replace") or SHUTTING_DOWN

    def wait(self, sock: Any, timeout: float | None, *, at_rest: bool) -> str | None:
        """Wait until ``sock`` has something to read (``None``) or its handler must stop:
        return why.

        Raises:
            TimeoutError: nothing happened within ``timeout`` seconds.
        """
        current = threading.current_thread()
        if current not in self._waiters:  # once per thread (adding makes a weakref)
            with self._lock:
                self._waiters.add(current)
        reason = self.cut_reason()
        if reason is not None:
            return reason
        pending = getattr(sock, "pending", None)  # TLS: records already decrypted
        if pending is not None and pending():
            return None
        bells = [self._cut, self._drain] if at_rest else [self._cut]
        readable = _wait_readable([sock, *bells], timeout)
        if not readable:
            raise TimeoutError("timed out")
        reason = self.cut_reason()
        if reason is not None:
            return reason
        if sock.fileno() in readable:
            return None
        return SHUTTING_DOWN  # the drain bell, and nothing unread

    def close(self) -> None:
        """Close both bells (every handler has ended); again is harmless."""
        self._drain.close()
        self._cut.close()

    def __del__(self) -> None:
        # A server that did not wait for its handlers (daemon threads, block_on_close
        # off) leaves its bells open for them; they close with the last reference.
        self.close()


def _wait_readable(objects: list[Any], timeout: float | None) -> set[int]:
    """The descriptors of ``objects`` that are readable (or hung up) within ``timeout``."""
    fds = [obj.fileno() for obj in objects]
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
        return {fd for fd, _ in poller.poll(ms)}
    ready, _, _ = select.select(fds, [], [], timeout)  # pragma: no cover (no poll: Windows)
    return set(ready)
