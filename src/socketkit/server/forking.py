"""ForkingMixIn: a child process per request, every child reaped, none left behind.

It keeps the standard library's names and defaults (``max_children``, ``active_children``,
``collect_children``, ``timeout``) and adds a bounded stop: ``server_close()`` closes
the listener first and rings the drain bell (``socketkit.server.drain``: the children
inherit it, so a ``FramedRequestHandler`` at rest ends at once, telling its peer why),
gives running children ``drain_timeout`` seconds, then rings the cut bell and gives them
``force_close_timeout`` to end, then sends SIGTERM, waits ``force_close_timeout`` more and
SIGKILLs what is left. A second signal (``abort_requests()``) SIGKILLs every child.

A failed fork (EAGAIN: the process limit; ENOMEM) closes that connection with one log
line and the server goes on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

from socketkit._log import get_logger
from socketkit._shutdown import grace_ran_out
from socketkit.address import format_peer
from socketkit.limits import DEFAULT_DRAIN_TIMEOUT_S, DEFAULT_FORCE_CLOSE_TIMEOUT_S, DEFAULT_MAX_CHILDREN
from socketkit.server.drain import DrainBells
from socketkit.server.handlers import FramedRequestHandler

__all__ = ["ForkingMixIn"]

logger = get_logger(__name__)


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

        _bells: DrainBells | None
        _stop_signals_installed: tuple[int, ...]
        RequestHandlerClass: type[Any]

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
        if self._bells is None:  # before the first fork: every child inherits them
            self._bells = DrainBells()
        try:
            pid = os.fork()
        except OSError as exc:
            logger.error(  # noqa: TRY400 (one line: a capacity problem, not a bug)
                "could not fork a child for the connection from %s (%s); closing it",
                format_peer(client_address),
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
            self._child_signals()
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

    def _child_signals(self) -> None:
        """A child is stopped by its parent, not by the parent's signal handlers: the
        terminal's Ctrl-C (sent to the whole group) must not end a request the drain
        lets finish, and the parent's SIGTERM at the end of the drain must end it."""
        for signum in self._stop_signals_installed:
            signal.signal(signum, signal.SIG_IGN if signum == signal.SIGINT else signal.SIG_DFL)

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
        """Stop accepting, then wait for children (bounded): the bells, SIGTERM, SIGKILL."""
        super().server_close()  # type: ignore[misc]
        bells = self._bells
        if bells is not None:
            bells.ring_drain()
        try:
            self._stop_children()
        finally:
            if bells is not None and not self.active_children:
                self._bells = None
                bells.close()

    def abort_requests(self) -> None:
        """SIGKILL every child now (a second signal)."""
        self._signal_children(signal.SIGKILL)

    def _stop_children(self) -> None:
        if not self.active_children:
            return
        if not self.block_on_close:
            self.collect_children()
            return
        deadline = None if self.drain_timeout is None else time.monotonic() + self.drain_timeout
        if self._wait_children(deadline):
            return
        if self._bells is not None and issubclass(self.RequestHandlerClass, FramedRequestHandler):
            # Its handlers wait for input on the bells: they end at the cut, saying why.
            self._bells.ring_cut(grace_ran_out(self.drain_timeout or 0.0))
            if self._wait_children(time.monotonic() + self.force_close_timeout):
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
