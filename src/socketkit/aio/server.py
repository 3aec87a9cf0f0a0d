"""AsyncServer: listeners, owned connections, limits, timeouts, stats and graceful shutdown.

Usage::

    server = AsyncServer(session_factory=EchoSession)          # or handler=async_fn
    async with server:
        await server.start([Listener(Address("127.0.0.1", 0))])
        print(server.addresses)
        await server.serve_forever()                            # until aclose() / a signal

The server's own jobs are here: binding, taking accepted sockets through the caps and
the TLS handshake to a ``Connection``, running task-style handlers, the timeout
sweeper, signals and the order of shutdown. Who is connected is the registry's
(``socketkit.aio.registry``), accepting is ``socketkit.aio.accept``'s, and the drain of
open connections is ``socketkit.aio.shutdown``'s.

Resource handling: every accepted socket belongs to a ``Connection`` registered until
``connection_lost``; handler tasks (task style) and the timeout sweeper live in a
``TaskGroup`` owned by the server, so none outlives it. ``aclose()`` closes the
listeners first, drains the connections (``shutdown_grace``; see
``socketkit.aio.shutdown``), then cancels its own tasks, never anyone else's.

Error handling: a handler's or session's exception is logged with the peer address and
ends that connection only. A failed ``accept()`` follows the policy both engines share
(``socketkit._oserrors.accept_error``); a failed TLS handshake is one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit._shutdown import SHUTTING_DOWN
from socketkit.address import Address, format_peer
from socketkit.aio.accept import Acceptor, Bound
from socketkit.aio.admission import make_room, refuse
from socketkit.aio.connection import Connection, ConnectionLimits, Session
from socketkit.aio.datagram import DatagramEndpoint, DatagramHandler
from socketkit.aio.listeners import Listener, bind_datagram, bind_stream, bound_address
from socketkit.aio.registry import ConnectionRegistry
from socketkit.aio.shutdown import drain
from socketkit.aio.stats import ServerStats
from socketkit.aio.timeouts import expired, sweeper_needed
from socketkit.codec.base import Decoder
from socketkit.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_REQUEST_QUEUE_SIZE,
    DEFAULT_SHUTDOWN_GRACE_S,
    DEFAULT_SWEEP_INTERVAL_S,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT_S,
)
from socketkit.peercred import PeerKeys

__all__ = ["AsyncServer", "ServerStats"]

logger = get_logger(__name__)

_SIGNAL_DEDUP_S = 0.2  # one Ctrl-C reaches a --workers child twice (terminal + parent)
_SERIALS = itertools.count(1)

Handler = Callable[[Connection[Any]], Awaitable[None]]


class _Refusal(Protocol):
    def __call__(self, reason: str) -> bytes | None: ...


class AsyncServer:
    """An asyncio server for one service on any number of listeners.

    Args:
        session_factory: callback style: a ``Session`` per connection.
        handler: task style: ``async def handler(conn)`` per connection (give one of
            the two for stream listeners).
        decoder_factory: a fresh decoder per connection (``None``: raw byte chunks).
        datagram_handler: what UDP listeners call for each datagram.
        limits: per-connection timeouts and buffer caps.
        max_connections: open connections at once (all listeners).
        max_connections_per_address: open connections from one peer
            (``socketkit.peercred``: a local peer is its user, IPv6 by /64).
        refusal: bytes to send a peer refused over a cap (``None``: just close).
        farewell: bytes to send a peer the server stops serving at shutdown, given the
            reason (``socketkit._shutdown``; ``None``: just close).
        evict: called with the connections of a peer at its cap (of every peer when
            the server is full), oldest first: returns True if it has told that one
            why and closed it, and the new connection takes its place; ``None``
            (or False for all): the new one is refused.
        backlog: listen() backlog.
        shutdown_grace: seconds connections get to finish in ``aclose()``.
        tls_handshake_timeout: deadline of each TLS handshake.
        sweep_interval: how often timeouts are checked.
        check_listener: called with each listener before it is bound; raises to refuse
            it (a service's exposure rule: ``socketkit.auth.exposure``).

    Raises:
        ValueError: neither or both of ``session_factory`` and ``handler`` were given
            while a stream listener is started, or a limit is not positive.
    """

    def __init__(
        self,
        *,
        session_factory: Callable[[Connection[Any]], Session[Any]] | None = None,
        handler: Handler | None = None,
        decoder_factory: Callable[[], Decoder[Any]] | None = None,
        datagram_handler: DatagramHandler | None = None,
        limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 (frozen, shared)
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        refusal: _Refusal | None = None,
        farewell: _Refusal | None = None,
        backlog: int = DEFAULT_REQUEST_QUEUE_SIZE,
        shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_S,
        tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT_S,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL_S,
        check_listener: Callable[[Listener], None] | None = None,
        evict: Callable[[Connection[Any]], bool] | None = None,
    ) -> None:
        if session_factory is not None and handler is not None:
            raise ValueError("give session_factory or handler, not both")
        if max_connections < 1 or max_connections_per_address < 1:
            raise ValueError("connection caps must be at least 1")
        self._session_factory = session_factory
        self._handler = handler
        self._decoder_factory = decoder_factory
        self._datagram_handler = datagram_handler
        self.limits = limits
        self._refusal = refusal
        self._farewell = farewell
        self._backlog = backlog
        self.shutdown_grace = shutdown_grace
        self._tls_handshake_timeout = tls_handshake_timeout
        self._sweep_interval = sweep_interval
        self._check_listener = check_listener
        self._evict = evict
        self._peer_keys = PeerKeys()  # computed once per accept, carried as conn.limit_key
        self.serial = next(_SERIALS)  # names this server in sampled logs (ids get reused)
        self._bound: list[Bound] = []
        self._registry = ConnectionRegistry(max_connections, max_connections_per_address)
        self._acceptor = Acceptor(self._accepted, lambda: self._closing)
        self._stats = ServerStats()
        self._task_group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handler_tasks: dict[int, asyncio.Task[Any]] = {}
        self._cut: dict[int, str] = {}  # connection id -> why its handler was cancelled
        self._closing = False
        self._stopped_listening = False
        self._closed_event: asyncio.Event | None = None
        self._last_signal_at = float("-inf")
        self.started = asyncio.Event()

    @property
    def max_connections(self) -> int:
        """Open connections at once (all listeners); may be changed while serving."""
        return self._registry.max_connections

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        self._registry.max_connections = value

    @property
    def max_connections_per_address(self) -> int:
        """Open connections from one peer (``limit_key``); may be changed while serving."""
        return self._registry.max_per_address

    @max_connections_per_address.setter
    def max_connections_per_address(self, value: int) -> None:
        self._registry.max_per_address = value

    # --- lifetime --------------------------------------------------------------------

    async def __aenter__(self) -> AsyncServer:
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._closed_event = asyncio.Event()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            assert self._task_group is not None
            # Our tasks are done or cancelled by aclose(); the body's own exception (a
            # failed bind...) propagates as itself, not wrapped in an ExceptionGroup.
            await self._task_group.__aexit__(None, None, None)

    async def start(self, listeners: Sequence[Listener]) -> list[Address]:
        """Bind every listener and start accepting; return the bound addresses.

        Raises:
            OSError: a listener could not be bound (those already bound are closed).
            PermissionDenied: the service's listener check refused one (nothing is bound).
            ValueError: a stream listener without session_factory/handler, or a UDP
                listener without datagram_handler.
            RuntimeError: the server is not entered (``async with``) or is closing.
        """
        if self._task_group is None or self._closing or self._stopped_listening:
            raise RuntimeError("use `async with AsyncServer(...)` before start()")
        if self._check_listener is not None:
            for listener in listeners:
                self._check_listener(listener)
        loop = asyncio.get_running_loop()
        new: list[Bound] = []
        try:
            for listener in listeners:
                new.append(await self._bind(listener, loop))  # noqa: PERF401 (cleanup needs the partial list)
        except BaseException:
            for bound in new:
                bound.close(loop)
            raise
        self._bound.extend(new)
        if sweeper_needed(self.limits) and not any(t.get_name() == "socketkit-sweeper" for t in self._tasks):
            self.spawn(self._sweep(), name="socketkit-sweeper")
        self.started.set()
        return [bound.address for bound in new]

    async def _bind(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> Bound:
        if listener.kind == "udp":
            handler = self._datagram_handler
            if handler is None:
                raise ValueError("a UDP listener needs datagram_handler")
            sock = bind_datagram(listener.address, reuse_port=listener.reuse_port)
            bound = Bound(listener, sock, bound_address(sock))
            try:
                bound.endpoint = DatagramEndpoint(sock, handler, self._stats)  # reads the socket itself
            except BaseException:
                sock.close()
                raise
        else:
            if (self._session_factory is None) == (self._handler is None):
                raise ValueError("a stream listener needs session_factory or handler")
            sock = bind_stream(listener.address, backlog=self._backlog, reuse_port=listener.reuse_port)
            bound = Bound(listener, sock, bound_address(sock))
            self._acceptor.watch(bound, loop)
        if listener.address.path is not None:
            st = os.stat(listener.address.path)
            bound.inode = (st.st_dev, st.st_ino)
        # Debug only: the command line prints one line per listener once it is ready.
        logger.debug("listening on %s (%s%s)", bound.address, listener.kind, "+tls" if listener.ssl else "")
        return bound

    @property
    def addresses(self) -> list[Address]:
        """Where the server listens (ports resolved)."""
        return [bound.address for bound in self._bound]

    def listeners(self) -> list[tuple[Listener, Address]]:
        """Each listener with the address it is bound to."""
        return [(bound.listener, bound.address) for bound in self._bound]

    async def serve_forever(self) -> None:
        """Wait until the server has been closed (by ``aclose()`` or a signal)."""
        assert self._closed_event is not None
        await self._closed_event.wait()

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        """Close gracefully on SIGINT/SIGTERM; a second signal aborts at once."""
        loop = asyncio.get_running_loop()
        for signum in signals:
            loop.add_signal_handler(signum, self.handle_signal, signum)

    def handle_signal(self, signum: int, *, log: bool = True) -> None:
        """What SIGINT/SIGTERM do (for processes that run several servers under one
        handler, which then logs once itself: ``log=False``): the first closes
        gracefully, a second one later aborts every connection."""
        now = asyncio.get_running_loop().time()
        # Ctrl-C reaches a worker from the terminal and again from its --workers parent:
        # one keypress, one graceful stop. A second press later aborts.
        if now - self._last_signal_at < _SIGNAL_DEDUP_S:
            return
        self._last_signal_at = now
        if self._closing:
            if log:
                logger.warning("second %s: aborting every connection now", signal.Signals(signum).name)
            for conn in self._registry.connections():
                conn.abort()
            return
        self.stop_listening()  # now, not when the task below first runs
        if log:
            logger.info("%s: shutting down (grace %.1f s)", signal.Signals(signum).name, self.shutdown_grace)
        self.spawn(self.aclose(), name="socketkit-shutdown")

    @property
    def closing(self) -> bool:
        """Whether the server is stopping (``aclose()`` began)."""
        return self._closing

    async def aclose(self, grace: float | None = None) -> None:
        """Stop accepting, let connections finish for ``grace`` seconds, then cut them
        (see ``socketkit.aio.shutdown``).

        Returns when every connection is closed and every task of the server is done.
        """
        if self._closing:
            if self._closed_event is not None:
                await self._closed_event.wait()
            return
        self._closing = True
        self.stop_listening()
        try:
            await drain(self._registry, self.shutdown_grace if grace is None else grace, self._cut_one)
        finally:
            self._peer_keys.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        pending = [t for t in self._tasks if t is not current]
        if pending:
            await asyncio.wait(pending)
        if self._closed_event is not None:
            self._closed_event.set()

    def stop_listening(self) -> None:
        """Close every listener now: new connections are refused from here on (the
        first step of ``aclose()``)."""
        if self._stopped_listening:
            return
        self._stopped_listening = True
        loop = asyncio.get_running_loop()
        for bound in self._bound:
            bound.close(loop)

    def _cut_one(self, conn: Connection[Any], reason: str) -> None:
        task = self._handler_tasks.get(conn.id)
        if task is None:
            conn.shutdown_forced(reason)
            return
        # The handler's own cleanup runs first (a command is stopped, a partial kept);
        # _run_handler then says goodbye.
        self._cut[conn.id] = reason
        task.cancel()

    def farewell_for(self, reason: str) -> bytes | None:
        """The service's last words to a peer it stops serving for ``reason``."""
        return None if self._farewell is None else self._farewell(reason)

    # --- accepting ---------------------------------------------------------------------

    def _accepted(self, sock: socket.socket, addr: Any, bound: Bound) -> None:
        self._stats.accepted += 1
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = addr[0] if isinstance(addr, tuple) else None
        key = self._peer_keys.key(sock, addr)
        reason = self._registry.over_cap(key)
        if reason is not None and not self._make_room(key, reason):
            self._refuse(sock, addr, reason, tls=bound.listener.ssl is not None)
            return
        conn_id = self._registry.reserve(key)
        self.spawn(
            self._attach(conn_id, sock, addr, bound, host, key),
            name=f"socketkit-attach-{format_peer(addr)}",
        )

    def _make_room(self, key: str, reason: str) -> bool:
        return make_room(self._registry.connections(), key, reason, self._evict, self.serial)

    def _refuse(self, sock: socket.socket, addr: Any, reason: str, *, tls: bool) -> None:
        self._stats.refused += 1
        refuse(sock, addr, reason, None if tls else self._refusal, self.serial)

    async def _attach(
        self, conn_id: int, sock: socket.socket, addr: Any, bound: Bound, host: str | None, key: str
    ) -> None:
        loop = asyncio.get_running_loop()
        registered = False
        try:
            decoder = None if self._decoder_factory is None else self._decoder_factory()
            conn: Connection[Any] = Connection(
                decoder=decoder,
                session_factory=self._session_factory,
                limits=self.limits,
                owner=self,
                conn_id=conn_id,
            )
            conn.host = host
            conn.limit_key = key
            tls = bound.listener.ssl
            try:
                await loop.connect_accepted_socket(
                    lambda: conn,
                    sock,
                    ssl=tls,
                    ssl_handshake_timeout=self._tls_handshake_timeout if tls else None,
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self._stats.tls_failures += 1
                count = REFUSALS.count(f"tls {self.serial}")
                if sampled(count):
                    logger.info(
                        "TLS handshake with %s failed: %s (%d in the last minute)",
                        format_peer(addr),
                        exc or type(exc).__name__,
                        count,
                    )
                with contextlib.suppress(OSError):
                    sock.close()
                return
            registered = conn.transport is not None
            if registered and self._handler is not None and not conn.is_closing:
                task = self.spawn(self._run_handler(conn), name=f"socketkit-handler-{conn.peer}")
                self._handler_tasks[conn.id] = task
        finally:
            if not registered:
                self._registry.release(conn_id, key)

    async def _run_handler(self, conn: Connection[Any]) -> None:
        assert self._handler is not None
        try:
            await self._handler(conn)
        except asyncio.CancelledError:
            reason = self._cut.pop(conn.id, None)
            task = asyncio.current_task()
            # Cancelled by _cut_one alone: the handler has cleaned up, the connection
            # is told why. Any other cancellation (the server's last) goes on.
            if reason is None or task is None or task.uncancel() > 0:
                conn.abort()
                raise
            conn.farewell(reason)
        except Exception:
            logger.exception("error in the handler of %s; closing that connection", conn.peer)
            conn.abort()
        else:
            if conn.shutdown_requested:
                conn.farewell(SHUTTING_DOWN)  # it ended because the server stops
            else:
                conn.close()
        finally:
            self._handler_tasks.pop(conn.id, None)

    # --- called by Connection ------------------------------------------------------------

    def connection_opened(self, conn: Connection[Any]) -> None:
        """Register a connection (called by Connection once its transport is up)."""
        self._registry.opened(conn)
        logger.debug("connection #%d from %s", conn.id, conn.peer)

    def connection_closed(self, conn: Connection[Any]) -> None:
        """Unregister a connection (called by Connection from connection_lost)."""
        if self._registry.closed_connection(conn):
            logger.debug("connection #%d from %s closed", conn.id, conn.peer)

    # --- timeouts ------------------------------------------------------------------------

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        """Close the connections whose timeouts expired at time ``now`` (loop clock)."""
        limits = self.limits
        for conn in self._registry.connections():
            reason = expired(conn, limits, now)
            if reason is not None:
                self._stats.timeouts += 1
                count = REFUSALS.count(f"timeout {self.serial} {reason.split(' ')[0]}")
                if sampled(count):
                    logger.info("closing %s: %s (%d in the last minute)", conn.peer, reason, count)
                conn.abort()

    # --- stats and tasks -------------------------------------------------------------------

    def stats(self) -> ServerStats:
        """A snapshot of the counters."""
        return self._registry.stats(self._stats)

    def connections(self) -> list[Connection[Any]]:
        """The open connections."""
        return self._registry.connections()

    def spawn(self, coro: Awaitable[Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the server owns: cancelled by ``aclose()``, and its
        failure is the server's (a periodic job of the service, for example)."""
        assert self._task_group is not None
        task: asyncio.Task[Any] = self._task_group.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
