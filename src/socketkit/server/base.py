"""BaseServer: the socketserver serve loop, woken by a file descriptor instead of polling.

Same names, hooks and call order as the standard library's ``socketserver.BaseServer``
(the tutorial's programs and code written for the stdlib run unchanged); what differs
is inside:

- ``shutdown()`` writes one byte to a wake-up socket registered in the selector, so
  ``serve_forever()`` returns at once instead of after up to ``poll_interval``
  (0.5 s); ``poll_interval`` still paces ``service_actions()`` for compatibility;
- ``shutdown()`` before or without ``serve_forever()`` returns instead of deadlocking;
- accept errors follow the policy both engines share (``socketkit._oserrors``): out of
  descriptors or memory, the listener rests (logged once per episode); a connection that
  died in the backlog is skipped; a broken listener (closed under us) propagates out of
  ``serve_forever()`` instead of spinning;
- ``install_signal_handlers()``: SIGINT/SIGTERM make ``serve_forever()`` return, so the
  ``with`` block's ``server_close()`` drains (listener closed first, idle connections
  told and closed, running ones given ``drain_timeout``); a second signal aborts every
  connection (``abort_requests()``);
- handlers waiting for input wait on their connection and on the drain bells at once
  (``wait_for_input``, ``socketkit.server.drain``);
- ``handle_error()`` logs with the client address instead of printing a traceback, and
  logs a vanished peer as one line, not as a crash;
- a mix-in can pause accepting (``_accepting()``) and wake the loop when it may resume;
- the stdlib's private ``_BaseServer__shutdown_request`` and ``_BaseServer__is_shut_down``
  are kept, because programs read and set them.
"""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from socketkit._log import get_logger
from socketkit._oserrors import AcceptError, CapacityEpisodes, accept_error
from socketkit.address import format_peer
from socketkit.errors import ResourceError

if TYPE_CHECKING:
    from socketkit.server.drain import DrainBells
    from socketkit.server.handlers import BaseRequestHandler

__all__ = ["BaseServer"]

logger = get_logger(__name__)

# Exceptions that mean the peer went away: worth one log line, not a traceback.
_PEER_GONE = (ConnectionError, TimeoutError, ResourceError)


class BaseServer:
    """Base class of all servers: the request loop, without any socket of its own.

    Args:
        server_address: where to serve (its form depends on the subclass).
        RequestHandlerClass: called as ``RequestHandlerClass(request, client_address,
            self)`` for each request.

    Attributes:
        timeout: seconds ``handle_request()`` waits before ``handle_timeout()``
            (``None``: wait forever), as in the standard library.
    """

    timeout: float | None = None
    _bells: DrainBells | None = None  # made by the mix-ins that run handlers concurrently
    _stop_signals_installed: tuple[int, ...] = ()

    def __init__(self, server_address: Any, RequestHandlerClass: type[BaseRequestHandler]) -> None:  # noqa: N803 (stdlib name)
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        self._stop_requested = threading.Event()
        # The stdlib's private names, kept because code reads them (this class is also
        # called BaseServer, so they mangle alike: _BaseServer__is_shut_down). Set while
        # nothing serves, so shutdown() without serve_forever() returns.
        self.__is_shut_down = threading.Event()
        self.__is_shut_down.set()
        self._wakeup_lock = threading.Lock()
        self._wakeup_send: socket.socket | None = None
        self._accept_paused_until = 0.0
        self._episodes = CapacityEpisodes()
        self._stop_signals = 0  # SIGINT/SIGTERM received (install_signal_handlers)
        self._stopped_by: str | None = None  # the first one's name, logged by server_close

    # --- the loop -------------------------------------------------------------------

    def fileno(self) -> int:
        """Return the file descriptor the serve loop waits on (the listening socket)."""
        raise NotImplementedError

    def server_activate(self) -> None:
        """Called by the constructor to start listening; may be overridden."""

    def serve_forever(self, poll_interval: float | None = 0.5) -> None:
        """Handle requests until ``shutdown()`` is called.

        Args:
            poll_interval: how often ``service_actions()`` runs while idle (``None``:
                only after requests); shutdown does not wait for it.
        """
        self.__is_shut_down.clear()
        receive, send = socket.socketpair()
        receive.setblocking(False)
        with self._wakeup_lock:
            self._wakeup_send = send
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(receive, selectors.EVENT_READ)
                for fileobj, callback in self._selectables():
                    selector.register(fileobj, selectors.EVENT_READ, callback)
                listening = False
                while not self._stop_requested.is_set():
                    now = time.monotonic()
                    if self._accept_paused_until and now >= self._accept_paused_until:
                        self._accept_paused_until = 0.0
                    want = not self._accept_paused_until and self._accepting()
                    if want != listening:
                        if want:
                            selector.register(self, selectors.EVENT_READ)
                        else:
                            selector.unregister(self)
                        listening = want
                    timeout = poll_interval
                    if self._accept_paused_until:
                        rest = self._accept_paused_until - now
                        timeout = rest if poll_interval is None else min(poll_interval, rest)
                    ready = selector.select(timeout)
                    if self._stop_requested.is_set():
                        break
                    for key, _ in ready:
                        if key.fileobj is receive:
                            with contextlib.suppress(BlockingIOError):
                                receive.recv(4096)
                        elif key.data is not None:
                            key.data()
                        else:
                            self._handle_request_noblock()
                    self.service_actions()
        finally:
            with self._wakeup_lock:
                self._wakeup_send = None
            send.close()
            receive.close()
            self._stop_requested.clear()
            self.__is_shut_down.set()

    def shutdown(self) -> None:
        """Make ``serve_forever()`` return, and wait until it has.

        Safe from any thread but the one running ``serve_forever()`` (which would wait
        for itself, as in the standard library). Returns at once if nothing is serving.
        """
        self._stop_requested.set()
        self._wake()
        self.__is_shut_down.wait()

    @property
    def __shutdown_request(self) -> bool:
        """``_BaseServer__shutdown_request``: the stdlib's stop flag. Code sets it to stop
        ``serve_forever()`` from inside a handler, where ``shutdown()`` would deadlock;
        here setting it also wakes the loop, so it stops at once."""
        return self._stop_requested.is_set()

    @__shutdown_request.setter
    def __shutdown_request(self, value: bool) -> None:
        if value:
            self._stop_requested.set()
            self._wake()
        else:
            self._stop_requested.clear()

    def _wake(self) -> None:
        """Interrupt the selector wait of ``serve_forever()`` (from any thread)."""
        with self._wakeup_lock:
            if self._wakeup_send is not None:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    self._wakeup_send.send(b"\0")

    def _selectables(self) -> list[tuple[Any, Callable[[], None]]]:
        """Extra file objects for the serve loop to wait on, with what to call when ready."""
        return []

    def _accepting(self) -> bool:
        """Whether the loop should accept now; mix-ins with caps return False when full."""
        return True

    def service_actions(self) -> None:
        """Called by ``serve_forever()`` after every wake-up; may be overridden."""

    def handle_request(self) -> None:
        """Handle one request, waiting at most ``timeout`` (then ``handle_timeout()``)."""
        timeout = self._socket_timeout()
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            while True:
                if selector.select(timeout):
                    self._handle_request_noblock()
                    return
                if deadline is not None:
                    timeout = deadline - time.monotonic()
                    if timeout < 0:
                        self.handle_timeout()
                        return

    def _socket_timeout(self) -> float | None:
        """The listening socket's own timeout, which ``handle_request()`` honours."""
        return None

    def _handle_request_noblock(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError as exc:
            self._accept_failed(exc)
            return
        self._episodes.succeeded()
        if self.verify_request(request, client_address):
            try:
                self.process_request(request, client_address)
            except Exception:  # noqa: BLE001 (a request's failure never stops the server)
                self.handle_error(request, client_address)
                self.shutdown_request(request)
            except BaseException:
                self.shutdown_request(request)
                raise
        else:
            self.shutdown_request(request)

    def _accept_failed(self, exc: OSError) -> None:
        kind = accept_error(exc)
        if kind is AcceptError.NOTHING_PENDING or kind is AcceptError.CONNECTION_LOST:
            return
        if kind is AcceptError.OUT_OF_RESOURCES:
            self._episodes.failed(exc)
            self._accept_paused_until = time.monotonic() + self._episodes.backoff
            return
        raise exc

    # --- stopping ------------------------------------------------------------------------

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Stop gracefully on SIGINT/SIGTERM (call from the main thread): the first makes
        ``serve_forever()`` return, and ``server_close()`` (the end of the ``with``
        block) then drains; a second one aborts every connection (``abort_requests``).

        Raises:
            ValueError: not called from the main thread.
        """
        for signum in signals:
            signal.signal(signum, self._on_stop_signal)
        self._stop_signals_installed = tuple(signals)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signals += 1
        name = signal.Signals(signum).name
        if self._stop_signals == 1:
            # Logged by server_close(), once the listener is closed: whoever reads the
            # line may count on new connections being refused.
            self._stopped_by = name
            self._stop_requested.set()
            self._wake()
        else:
            logger.warning("second %s: aborting every connection now", name)
            self.abort_requests()

    def abort_requests(self) -> None:
        """End every request now (a second signal): mix-ins that run handlers
        concurrently close their connections under them; here, nothing runs."""

    def wait_for_input(self, sock: Any, timeout: float | None, *, at_rest: bool = True) -> str | None:
        """Wait until ``sock`` has bytes to read (``None``), or the server is stopping
        and the handler must end: return why (``socketkit._shutdown``). A handler
        ``at_rest`` (between requests) ends when the drain begins unless its peer sent
        more; any handler ends when the drain timeout runs out. Without concurrent
        handlers (no drain), returns ``None`` at once.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        bells = self._bells
        if bells is None:
            return None
        return bells.wait(sock, timeout, at_rest=at_rest)

    # --- hooks (same meaning as in the standard library) -------------------------------

    def get_request(self) -> tuple[Any, Any]:
        """Return ``(request, client_address)`` for the next request."""
        raise NotImplementedError

    def handle_timeout(self) -> None:
        """Called when ``handle_request()`` times out; may be overridden."""

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Return whether to serve this request (``True``); may be overridden."""
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the request (mix-ins run it in a thread or a child process)."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Run the request handler class for one request."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Any) -> None:
        """End one request (stream servers shut the socket down, then close it)."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Release one request's resources."""

    def server_close(self) -> None:
        """Release the server's resources (subclasses close their listener first; the
        mix-ins then drain their handlers)."""
        self._accept_paused_until = 0.0
        name, self._stopped_by = self._stopped_by, None
        if name is not None:
            logger.info("%s: shutting down", name)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log the exception being handled, with the client address; the server goes on.

        A peer that vanished (reset, broken pipe, timeout) is one INFO line; anything
        else is logged with its traceback through ``logging`` (the standard library
        prints to stderr instead).
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, _PEER_GONE):
            # Routine on any network: worth a line at INFO, not a warning per client.
            logger.info(
                "connection from %s ended: %s: %s",
                format_peer(client_address),
                type(exc).__name__,
                exc,
            )
        else:
            logger.exception(  # noqa: LOG004 (called from an except block, as in the stdlib)
                "error while handling a request from %s", format_peer(client_address)
            )

    def __enter__(self) -> BaseServer:
        return self

    def __exit__(self, *args: object) -> None:
        self.server_close()
