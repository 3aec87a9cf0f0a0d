"""ThreadingMixIn and ForkingMixIn: concurrency with caps and a graceful, bounded stop.

Both keep the standard library's names, defaults and attribute shapes
(``daemon_threads``, ``block_on_close``, ``_threads`` as a list, ``max_children``,
``active_children``, ``process_request_thread``, ``collect_children``) and add:

ThreadingMixIn
    ``max_workers``: at most this many handler threads (a pool, started on demand);
    ``max_connections``: at most this many connections held at once, running or
    waiting for a worker. What happens to one more is ``connection_overflow``:

    ============  ============================================================
    ``"refuse"``  accept it and close it at once (``refuse_request()`` may say
                  why first): the client learns immediately. The default.
    ``"backlog"`` stop accepting until a slot frees: new clients wait in the
                  kernel's listen queue (``request_queue_size``), then time out.
    ============  ============================================================

ForkingMixIn
    reaps every child after each loop turn, and never leaves one behind at close.

Graceful stop (both): ``server_close()`` closes the listener first, then gives running
handlers ``drain_timeout`` seconds to finish, then shuts their connections down under
them (threads) or sends SIGTERM (children), waits ``force_close_timeout`` more, and
logs (threads) or SIGKILLs (children) whatever is still running.

Out of threads or processes (both): a connection whose thread or child cannot start is
closed with one log line and its slot freed; nothing is left counted or listed for it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from socketkit._log import get_logger
from socketkit.limits import (
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_FORCE_CLOSE_TIMEOUT_S,
    DEFAULT_MAX_CHILDREN,
)
from socketkit.server import _eofguard
from socketkit.server._threadlist import ThreadsAttribute
from socketkit.server.base import _format_address

__all__ = ["ForkingMixIn", "ThreadingMixIn"]

logger = get_logger(__name__)

_Request = tuple[Any, Any]


def _close_under_handler(request: Any) -> None:
    """Wake a handler blocked on its connection without closing the fd under it
    (closing could let a new connection reuse the number while the handler reads)."""
    if isinstance(request, socket.socket):
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_RDWR)


class ThreadingMixIn:
    """Handle each request in a thread: one per connection, or a bounded pool."""

    daemon_threads: bool = False
    block_on_close: bool = True
    # The non-daemon handler threads, as the stdlib's list (see _threadlist).
    _threads = ThreadsAttribute()
    _watch_eof: bool = True  # handlers run off the serve loop, which can watch for EOF
    max_workers: int | None = None
    max_connections: int | None = None
    connection_overflow: Literal["refuse", "backlog"] = "refuse"
    drain_timeout: float | None = DEFAULT_DRAIN_TIMEOUT_S
    force_close_timeout: float = DEFAULT_FORCE_CLOSE_TIMEOUT_S

    if TYPE_CHECKING:  # provided by the server class this is mixed into

        def finish_request(self, request: Any, client_address: Any) -> None: ...
        def handle_error(self, request: Any, client_address: Any) -> None: ...
        def shutdown_request(self, request: Any) -> None: ...
        def _wake(self) -> None: ...

    def _threading_state(self) -> None:
        # Created lazily: stdlib subclasses often skip calling our __init__ chain.
        self._lock = threading.Lock()
        self._live: dict[threading.Thread, Any] = {}  # handler thread -> its connection
        self._held = 0  # connections accepted and not yet finished (running + queued)
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._queued = 0  # requests put on the queue that no worker has taken yet

    def _state_ready(self) -> None:
        if "_lock" not in self.__dict__:
            self._threading_state()

    def _accepting(self) -> bool:
        self._state_ready()
        if self.max_connections is None or self.connection_overflow != "backlog":
            return True
        return self._held < self.max_connections

    def refuse_request(self, request: Any, client_address: Any) -> None:
        """Called for a connection over ``max_connections`` before it is closed; override
        to tell the client (a "busy" line or frame). Keep it short: it runs on the
        accept loop."""
        logger.warning(
            "refused a connection from %s: %d connections held (max_connections)",
            _format_address(client_address),
            self._held,
        )

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the request to a thread (new, or from the pool), or refuse it over the cap."""
        self._state_ready()
        with self._lock:
            if self.max_connections is not None and self._held >= self.max_connections:
                full = True
            else:
                full = False
                self._held += 1
        if full:
            try:
                self.refuse_request(request, client_address)
            finally:
                self.shutdown_request(request)
            return
        if self.max_workers is None:
            thread = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                daemon=self.daemon_threads,
                name=f"socketkit-handler-{_format_address(client_address)}",
            )
            with self._lock:
                self._live[thread] = request
                self._threads.add(thread)
            try:
                thread.start()
            except Exception as exc:  # noqa: BLE001 (start() raised: the thread never ran)
                self._not_started(thread, request, client_address, exc)
            return
        with self._lock:
            # An idle worker is spoken for by a request queued before this one.
            spare = self._idle_workers - self._queued
            start = spare <= 0 and len(self._workers) < self.max_workers
            if start:
                worker = threading.Thread(
                    target=self._worker,
                    daemon=self.daemon_threads,
                    name=f"socketkit-worker-{len(self._workers) + 1}",
                )
                self._workers.append(worker)
                self._threads.add(worker)
        # Started before the request is queued: if it cannot start and no other worker
        # exists, nothing would ever take the request off the queue.
        if start:
            try:
                worker.start()
            except Exception as exc:  # noqa: BLE001 (start() raised: the thread never ran)
                with self._lock:
                    self._workers.remove(worker)
                    self._threads.discard(worker)
                    alone = not self._workers
                if alone:
                    self._not_started(worker, request, client_address, exc)
                    return
                logger.error(  # noqa: TRY400 (one line: a capacity problem, not a bug)
                    "could not add a worker thread (%s: %s); the connection from %s waits for a busy one",
                    type(exc).__name__,
                    exc,
                    _format_address(client_address),
                )
        with self._lock:
            self._queued += 1
        self._queue.put((request, client_address))

    def _not_started(
        self, thread: threading.Thread, request: Any, client_address: Any, exc: Exception
    ) -> None:
        """No thread could start for this connection (out of threads or memory): forget
        the thread, free its slot, close the connection, in one log line; the server goes
        on. The state is clean before the client sees its connection close."""
        self._request_done(thread)
        logger.error(
            "could not start a thread for the connection from %s (%s: %s); closing it",
            _format_address(client_address),
            type(exc).__name__,
            exc,
        )
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Run one request in the current thread (errors go to ``handle_error``)."""
        self._state_ready()
        current = threading.current_thread()
        with self._lock:
            self._live[current] = request
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 (a request's failure never stops the server)
            self.handle_error(request, client_address)
        finally:
            try:
                self.shutdown_request(request)
            finally:
                self._request_done(current)

    def _request_done(self, thread: threading.Thread) -> None:
        with self._lock:
            self._live.pop(thread, None)
            if thread not in self._workers:  # a pool worker stays listed until it exits
                self._threads.discard(thread)
            was_full = self.max_connections is not None and self._held >= self.max_connections
            self._held -= 1
        if was_full and self.connection_overflow == "backlog":
            self._wake()

    def _worker(self) -> None:
        while True:
            with self._lock:
                self._idle_workers += 1
            item = self._queue.get()
            with self._lock:
                self._idle_workers -= 1
                if item is not None:
                    self._queued -= 1
            if item is None:
                with self._lock:
                    self._threads.discard(threading.current_thread())
                return
            self.process_request_thread(*item)

    def _connection_replaced(self, old: Any, new: Any) -> None:
        self._state_ready()
        with self._lock:
            current = threading.current_thread()
            if self._live.get(current) is old:
                self._live[current] = new

    def server_close(self) -> None:
        """Stop accepting, then drain running handlers (bounded) and join every thread."""
        super().server_close()  # type: ignore[misc]
        self._state_ready()
        if self.max_workers is not None:
            for _ in self._workers:
                self._queue.put(None)
        if self.daemon_threads or not self.block_on_close:
            return
        self._drain()

    def _handler_threads(self) -> list[threading.Thread]:
        """Every thread to join at close: ours, and any registered in ``_threads``."""
        with self._lock:
            return list(dict.fromkeys([*self._live, *self._workers, *self._threads]))

    def _drain(self) -> None:
        deadline = None if self.drain_timeout is None else time.monotonic() + self.drain_timeout
        # The serve loop that watched for closed peers has stopped: guard every live
        # connection now, so a handler spinning at EOF still ends (see _eofguard).
        limit = getattr(self, "max_reads_after_eof", None)
        if limit is not None:
            with self._lock:
                live = list(self._live.values())
            for request in live:
                if isinstance(request, socket.socket):
                    _eofguard.guard(request, limit)
        if not _join_all(self._handler_threads(), deadline):
            with self._lock:
                stuck = dict(self._live)
            logger.warning(
                "closing %d connection(s) still being handled after %.1f s (drain_timeout)",
                len(stuck),
                self.drain_timeout,
            )
            for request in stuck.values():
                _close_under_handler(request)
            if not _join_all(self._handler_threads(), time.monotonic() + self.force_close_timeout):
                names = ", ".join(t.name for t in self._handler_threads() if t.is_alive())
                logger.error("handler threads still running after their connections were closed: %s", names)
        with self._lock:
            self._workers = [t for t in self._workers if t.is_alive()]
            self._threads.reap()


def _join_all(threads: list[threading.Thread], deadline: float | None) -> bool:
    """Join threads until ``deadline`` (monotonic); return whether all have ended."""
    for thread in threads:
        if thread is threading.current_thread():
            continue
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return False
    return True


def _refers_to(request: Any, sock: socket.socket) -> bool:
    """Whether ``request`` is ``sock`` or a tuple holding it (a datagram request)."""
    if request is sock:
        return True
    return isinstance(request, tuple) and any(part is sock for part in request)


class ForkingMixIn:
    """Handle each request in a child process, reaping every child."""

    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children: int = DEFAULT_MAX_CHILDREN
    block_on_close: bool = True
    drain_timeout: float | None = DEFAULT_DRAIN_TIMEOUT_S
    force_close_timeout: float = DEFAULT_FORCE_CLOSE_TIMEOUT_S

    if TYPE_CHECKING:  # provided by the server class this is mixed into
        socket: socket.socket

        def finish_request(self, request: Any, client_address: Any) -> None: ...
        def handle_error(self, request: Any, client_address: Any) -> None: ...
        def shutdown_request(self, request: Any) -> None: ...
        def close_request(self, request: Any) -> None: ...

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children; while ``max_children`` are running, wait for one."""
        if self.active_children is None:
            return
        while len(self.active_children) >= self.max_children:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                self.active_children.clear()
            else:
                self.active_children.discard(pid)
        for pid in list(self.active_children):
            try:
                done, _ = os.waitpid(pid, 0 if blocking else os.WNOHANG)
            except ChildProcessError:
                done = pid  # reaped elsewhere
            if done:
                self.active_children.discard(pid)

    def handle_timeout(self) -> None:
        """Reap children while ``handle_request()`` waits."""
        self.collect_children()

    def service_actions(self) -> None:
        """Reap children after every serve-loop turn."""
        self.collect_children()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Fork; the child serves the request and exits, the parent closes its copy.

        If the fork fails (EAGAIN: the process limit; ENOMEM), the connection is closed
        with one log line and the server goes on.
        """
        try:
            pid = os.fork()
        except OSError as exc:
            logger.error(  # noqa: TRY400 (one line: a capacity problem, not a bug)
                "could not fork a child for the connection from %s (%s); closing it",
                _format_address(client_address),
                exc,
            )
            self.shutdown_request(request)
            return
        if pid:
            if self.active_children is None:
                self.active_children = set()
            self.active_children.add(pid)
            self.close_request(request)
            return
        # Child: never return into the serve loop, whatever happens.
        status = 1
        try:
            self._close_listener_in_child(request)
            self.finish_request(request, client_address)
            status = 0
        except Exception:  # noqa: BLE001 (a request's failure never stops the server)
            self.handle_error(request, client_address)
        finally:
            try:
                self.shutdown_request(request)
            finally:
                os._exit(status)

    def _close_listener_in_child(self, request: Any) -> None:
        """Close the child's copy of the listening socket, unless the request uses it.

        A stream child holding the listener would keep the port bound after the parent
        closes it, and let connections queue where no one accepts them. A datagram
        request is ``(data, server_socket)``: the handler replies through the server's
        socket, so closing it would make every reply fail (EBADF). Whatever the server
        class, a socket the request refers to stays open.
        """
        listener = getattr(self, "socket", None)
        if listener is None or _refers_to(request, listener):
            return
        with contextlib.suppress(OSError):
            listener.close()

    def server_close(self) -> None:
        """Stop accepting, then wait for children (bounded): SIGTERM, then SIGKILL."""
        super().server_close()  # type: ignore[misc]
        if not self.active_children:
            return
        if not self.block_on_close:
            self.collect_children()
            return
        deadline = None if self.drain_timeout is None else time.monotonic() + self.drain_timeout
        if self._wait_children(deadline):
            return
        logger.warning(
            "sending SIGTERM to %d child process(es) still running after %.1f s",
            len(self.active_children),
            self.drain_timeout,
        )
        self._signal_children(signal.SIGTERM)
        if self._wait_children(time.monotonic() + self.force_close_timeout):
            return
        logger.error("sending SIGKILL to child process(es) %s", sorted(self.active_children))
        self._signal_children(signal.SIGKILL)
        self.collect_children(blocking=True)

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.active_children or ()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _wait_children(self, deadline: float | None) -> bool:
        """Reap until none are left (True) or the deadline passes (False)."""
        delay = 0.001
        while self.active_children:
            self.collect_children()
            if not self.active_children:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return False
            # No portable way to wait for any of a set of children with a timeout;
            # back off from 1 ms to 50 ms so a quick child is reaped quickly.
            time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.05)
        return True
