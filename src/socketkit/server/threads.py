"""ThreadingMixIn: a handler thread per connection (or a bounded pool), with caps and a
graceful, bounded stop.

It keeps the standard library's names, defaults and attribute shapes
(``daemon_threads``, ``block_on_close``, ``_threads`` as a list,
``process_request_thread``) and adds:

``max_workers``: at most this many handler threads (a pool, started on demand);
``max_connections``: at most this many connections held at once, running or
waiting for a worker. What happens to one more is ``connection_overflow``:

============  ============================================================
``"refuse"``  accept it and close it at once (``refuse_request()`` may say
              why first): the client learns immediately. The default.
``"backlog"`` stop accepting until a slot frees: new clients wait in the
              kernel's listen queue (``request_queue_size``), then time out.
============  ============================================================

Graceful stop: ``server_close()`` closes the listener first, then rings the drain bell
(``socketkit.server.drain``): a ``FramedRequestHandler`` at rest ends at once, telling its
peer why; running handlers get ``drain_timeout`` seconds to finish. Then the cut bell
rings and handlers that wait for input end at their next read (``farewell`` with the
reason), for ``force_close_timeout`` seconds; then connections still held are shut down
under their handlers, which get ``force_close_timeout`` more before the stuck ones are
logged. A second signal (``abort_requests()``), or a second Ctrl-C while draining,
shuts every connection down at once.

Out of threads (a connection whose thread cannot start) the connection is closed with
one log line and its slot freed; nothing is left counted or listed for it.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from socketkit._log import get_logger
from socketkit._shutdown import SHUTTING_DOWN, grace_ran_out
from socketkit.address import format_peer
from socketkit.limits import DEFAULT_DRAIN_TIMEOUT_S, DEFAULT_FORCE_CLOSE_TIMEOUT_S
from socketkit.server import _eofguard
from socketkit.server._threadlist import ThreadsAttribute
from socketkit.server.drain import DrainBells

__all__ = ["ThreadingMixIn"]

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

        _bells: DrainBells | None

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
            format_peer(client_address),
            self._held,
        )

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the request to a thread (new, or from the pool), or refuse it over the cap."""
        self._state_ready()
        if self._bells is None:  # before the first handler thread that may wait on them
            self._bells = DrainBells()
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
                name=f"socketkit-handler-{format_peer(client_address)}",
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
                    format_peer(client_address),
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
            format_peer(client_address),
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
        bells = self._bells
        if bells is not None:
            bells.ring_drain()
        if self.max_workers is not None:
            for _ in self._workers:
                self._queue.put(None)
        if self.daemon_threads or not self.block_on_close:
            return  # the bells stay open: handler threads may still wait on them
        try:
            self._drain()
        finally:
            if bells is not None and not any(t.is_alive() for t in self._handler_threads()):
                self._bells = None
                bells.close()

    def abort_requests(self) -> None:
        """Shut every connection down under its handler now (a second signal): handlers
        blocked on their connection end at once. Safe in a signal handler (no lock)."""
        self._state_ready()
        self._aborted = True
        if self._bells is not None:
            self._bells.ring_cut(SHUTTING_DOWN)
        for request in list(self._live.values()):
            _close_under_handler(request)

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
        ended = False
        try:
            ended = _join_all(self._handler_threads(), deadline)
            if ended:
                return
            self._cut()
            with self._lock:
                stuck = dict(self._live)
            if stuck:
                logger.warning(
                    "closing %d connection(s) still being handled after %.1f s (drain_timeout)",
                    len(stuck),
                    self.drain_timeout,
                )
                for request in stuck.values():
                    _close_under_handler(request)
        except KeyboardInterrupt:  # a second Ctrl-C while draining: abort, then go on stopping
            self.abort_requests()
            raise
        finally:
            force = time.monotonic() + self.force_close_timeout
            if not ended and not _join_all(self._handler_threads(), force):
                names = ", ".join(t.name for t in self._handler_threads() if t.is_alive())
                logger.error("handler threads still running after their connections were closed: %s", names)
            with self._lock:
                self._workers = [t for t in self._workers if t.is_alive()]
                self._threads.reap()

    def _cut(self) -> None:
        """The drain timeout ran out: ring the cut bell; handlers that wait for input on
        the bells get ``force_close_timeout`` to say goodbye and end."""
        bells = self._bells
        if bells is None or getattr(self, "_aborted", False):
            return
        bells.ring_cut(grace_ran_out(self.drain_timeout or 0.0))
        with self._lock:
            polite = [thread for thread in self._live if bells.waited_on_by(thread)]
        if polite:
            _join_all(polite, time.monotonic() + self.force_close_timeout)


def _join_all(threads: list[threading.Thread], deadline: float | None) -> bool:
    """Join threads until ``deadline`` (monotonic); return whether all have ended."""
    for thread in threads:
        if thread is threading.current_thread():
            continue
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return False
    return True
