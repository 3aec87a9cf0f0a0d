"""AsyncServer: listeners, owned connections, limits, timeouts, stats and graceful shutdown.

Usage::

    server = AsyncServer(session_factory=EchoSession)          # or handler=async_fn
    async with server:
        await server.start([Listener(Address("127.0.0.1", 0))])
        print(server.addresses)
        await server.serve_forever()                            # until aclose() / a signal

Resource handling: every accepted socket belongs to a ``Connection`` registered here
until ``connection_lost``; handler tasks (task style) and the timeout sweeper live in a
``TaskGroup`` owned by the server, so none outlives it. ``aclose()`` closes the
listeners first, tells every connection (``Session.shutdown_requested``), waits up to
``shutdown_grace`` for them to finish, then aborts what is left and cancels its own
tasks, never anyone else's.

Error handling: a handler's or session's exception is logged with the peer address and
ends that connection only. In the accept loop, capacity errors (EMFILE, ENFILE,
ENOBUFS, ENOMEM) are logged once per episode and the listener rests for 100 ms; a
connection that died in the backlog is skipped; a failed TLS handshake is one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit.address import Address
from socketkit.aio.connection import Connection, ConnectionLimits, Session, format_peer
from socketkit.aio.datagram import DatagramEndpoint, DatagramHandler
from socketkit.aio.listeners import (
    Listener,
    bind_datagram,
    bind_stream,
    bound_address,
    remove_unix_socket,
)
from socketkit.aio.stats import ServerStats
from socketkit.aio.timeouts import expired, sweeper_needed
from socketkit.codec.base import Decoder
from socketkit.limits import (
    DEFAULT_ACCEPT_BACKOFF_S,
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

_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BATCH = 64  # accepts per readiness event: drains bursts without starving the loop
_SIGNAL_DEDUP_S = 0.2
_SERIALS = itertools.count(1)

Handler = Callable[[Connection[Any]], Awaitable[None]]


class _Refusal(Protocol):
    def __call__(self, reason: str) -> bytes | None: ...


@dataclass(slots=True)
class _Bound:
    listener: Listener
    sock: socket.socket
    address: Address
    inode: tuple[int, int] | None = None
    endpoint: DatagramEndpoint | None = None


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
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self._refusal = refusal
        self._backlog = backlog
        self.shutdown_grace = shutdown_grace
        self._tls_handshake_timeout = tls_handshake_timeout
        self._sweep_interval = sweep_interval
        self._check_listener = check_listener
        self._evict = evict
        self._peer_keys = PeerKeys()  # computed once per accept, carried as conn.limit_key
        self.serial = next(_SERIALS)  # names this server in sampled logs (ids get reused)
        self._bound: list[_Bound] = []
        self._connections: dict[int, Connection[Any]] = {}
        self._per_address: dict[str, int] = {}
        self._pending: set[int] = set()  # accepted, transport not up yet (TLS handshake...)
        self._next_id = 0
        self._stats = ServerStats()
        self._closed_totals = [0, 0, 0]  # bytes in, bytes out, messages of closed connections
        self._task_group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._closed_event: asyncio.Event | None = None
        self._idle_event: asyncio.Event | None = None
        self._out_of_capacity = False
        self._last_signal_at = float("-inf")
        self.started = asyncio.Event()

    # --- lifetime --------------------------------------------------------------------

    async def __aenter__(self) -> AsyncServer:
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._closed_event = asyncio.Event()
        self._idle_event = asyncio.Event()
        self._idle_event.set()
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
        if self._task_group is None or self._closing:
            raise RuntimeError("use `async with AsyncServer(...)` before start()")
        if self._check_listener is not None:
            for listener in listeners:
                self._check_listener(listener)
        loop = asyncio.get_running_loop()
        new: list[_Bound] = []
        try:
            for listener in listeners:
                new.append(await self._bind(listener, loop))  # noqa: PERF401 (cleanup needs the partial list)
        except BaseException:
            for bound in new:
                self._close_bound(bound, loop)
            raise
        self._bound.extend(new)
        if sweeper_needed(self.limits) and not any(t.get_name() == "socketkit-sweeper" for t in self._tasks):
            self.spawn(self._sweep(), name="socketkit-sweeper")
        self.started.set()
        return [bound.address for bound in new]

    async def _bind(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> _Bound:
        if listener.kind == "udp":
            handler = self._datagram_handler
            if handler is None:
                raise ValueError("a UDP listener needs datagram_handler")
            sock = bind_datagram(listener.address, reuse_port=listener.reuse_port)
            bound = _Bound(listener, sock, bound_address(sock))
            try:
                bound.endpoint = DatagramEndpoint(sock, handler, self._stats)  # reads the socket itself
            except BaseException:
                sock.close()
                raise
        else:
            if (self._session_factory is None) == (self._handler is None):
                raise ValueError("a stream listener needs session_factory or handler")
            sock = bind_stream(listener.address, backlog=self._backlog, reuse_port=listener.reuse_port)
            bound = _Bound(listener, sock, bound_address(sock))
            loop.add_reader(sock.fileno(), self._on_acceptable, bound)
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
            for conn in list(self._connections.values()):
                conn.abort()
            return
        if log:
            logger.info("%s: shutting down (grace %.1f s)", signal.Signals(signum).name, self.shutdown_grace)
        self.spawn(self.aclose(), name="socketkit-shutdown")

    async def aclose(self, grace: float | None = None) -> None:
        """Stop accepting, let connections finish for ``grace`` seconds, then abort them.

        Returns when every connection is closed and every task of the server is done.
        """
        if self._closing:
            if self._closed_event is not None:
                await self._closed_event.wait()
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        for bound in self._bound:
            self._close_bound(bound, loop)
        for conn in list(self._connections.values()):
            conn.request_shutdown()
        grace = self.shutdown_grace if grace is None else grace
        if self._connections or self._pending:
            assert self._idle_event is not None
            try:
                async with asyncio.timeout(grace):
                    await self._idle_event.wait()
            except TimeoutError:
                logger.warning(
                    "aborting %d connection(s) still open after %.1f s",
                    len(self._connections),
                    grace,
                )
                for conn in list(self._connections.values()):
                    conn.abort()
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

    def _close_bound(self, bound: _Bound, loop: asyncio.AbstractEventLoop) -> None:
        if bound.endpoint is not None:
            bound.endpoint.close()
        else:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(bound.sock.fileno())
            bound.sock.close()
        remove_unix_socket(bound.listener.address, bound.inode)

    # --- accepting ---------------------------------------------------------------------

    def _on_acceptable(self, bound: _Bound) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = bound.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _CAPACITY_ERRNOS:
                    self._rest_listener(bound, exc)
                    return
                if exc.errno == errno.EBADF:  # closed under us during shutdown
                    return
                continue  # ECONNABORTED and friends: that one connection died in the backlog
            if self._out_of_capacity:
                self._out_of_capacity = False
                logger.warning("accept() works again")
            self._accepted(sock, addr, bound)

    def _rest_listener(self, bound: _Bound, exc: OSError) -> None:
        if not self._out_of_capacity:  # once per episode, not per retry
            self._out_of_capacity = True
            logger.error(
                "accept() failed (%s); pausing the listener for %d ms",
                exc,
                DEFAULT_ACCEPT_BACKOFF_S * 1000,
            )
        loop = asyncio.get_running_loop()
        loop.remove_reader(bound.sock.fileno())

        def resume() -> None:
            if not self._closing and bound.sock.fileno() >= 0:
                loop.add_reader(bound.sock.fileno(), self._on_acceptable, bound)

        loop.call_later(DEFAULT_ACCEPT_BACKOFF_S, resume)

    def _accepted(self, sock: socket.socket, addr: Any, bound: _Bound) -> None:
        self._stats.accepted += 1
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = addr[0] if isinstance(addr, tuple) else None
        key = self._peer_keys.key(sock, addr)
        reason = self._over_cap(key)
        if reason is not None and not self._make_room(key, reason):
            self._refuse(sock, addr, reason, tls=bound.listener.ssl is not None)
            return
        conn_id = self._next_id = self._next_id + 1
        self._pending.add(conn_id)
        self._per_address[key] = self._per_address.get(key, 0) + 1
        assert self._idle_event is not None
        self._idle_event.clear()
        self.spawn(
            self._attach(conn_id, sock, addr, bound, host, key),
            name=f"socketkit-attach-{format_peer(addr)}",
        )

    def _over_cap(self, key: str) -> str | None:
        if len(self._connections) + len(self._pending) >= self.max_connections:
            return f"server full ({self.max_connections} connections)"
        if self._per_address.get(key, 0) >= self.max_connections_per_address:
            return f"too many connections from {key} ({self.max_connections_per_address})"
        return None

    def _make_room(self, key: str, reason: str) -> bool:
        """Evict the oldest connection the service lets go (``evict``) of peer ``key``,
        or of anyone when the server is full; return whether one was.

        The evicted connection is counted until it is gone (its close is under way):
        a burst can exceed a cap by the connections it evicts, for a loop turn. The
        scan is over open connections, oldest first: for small servers (the admin
        endpoint), not for ten thousand connections."""
        if self._evict is None:
            return False
        anyone = reason.startswith("server full")
        for conn in self._connections.values():  # registration order: oldest first
            if (anyone or conn.limit_key == key) and not conn.is_closing and self._evict(conn):
                count = REFUSALS.count(f"evicted {self.serial}")
                if sampled(count):
                    logger.info(
                        "evicted %s for a newer connection: %s (%d in the last minute)",
                        conn.peer,
                        reason,
                        count,
                    )
                return True
        return False

    def _refuse(self, sock: socket.socket, addr: Any, reason: str, *, tls: bool) -> None:
        self._stats.refused += 1
        kind = "full" if reason.startswith("server full") else "per-address"  # never the peer: bounded
        count = REFUSALS.count(f"refused {self.serial} {kind}")
        if sampled(count):
            logger.warning("refused %s: %s (%d in the last minute)", format_peer(addr), reason, count)
        message = None if tls or self._refusal is None else self._refusal(reason)
        with contextlib.suppress(OSError):
            if message:
                sock.send(message)  # best effort: a short line fits any socket buffer
        sock.close()

    async def _attach(
        self, conn_id: int, sock: socket.socket, addr: Any, bound: _Bound, host: str | None, key: str
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
                self.spawn(self._run_handler(conn), name=f"socketkit-handler-{conn.peer}")
        finally:
            self._pending.discard(conn_id)  # connection_opened() did it if the transport came up
            if not registered:
                self._forget_address(key)
                self._check_idle()

    async def _run_handler(self, conn: Connection[Any]) -> None:
        assert self._handler is not None
        try:
            await self._handler(conn)
        except Exception:
            logger.exception("error in the handler of %s; closing that connection", conn.peer)
            conn.abort()
        else:
            conn.close()

    # --- called by Connection ------------------------------------------------------------

    def connection_opened(self, conn: Connection[Any]) -> None:
        """Register a connection (called by Connection once its transport is up)."""
        self._pending.discard(conn.id)
        self._connections[conn.id] = conn
        self._stats.open = len(self._connections)
        logger.debug("connection #%d from %s", conn.id, conn.peer)

    def connection_closed(self, conn: Connection[Any]) -> None:
        """Unregister a connection (called by Connection from connection_lost)."""
        if self._connections.pop(conn.id, None) is None:
            return
        totals = self._closed_totals
        totals[0] += conn.bytes_in
        totals[1] += conn.bytes_out
        totals[2] += conn.messages_in
        self._stats.closed += 1
        self._stats.open = len(self._connections)
        self._forget_address(conn.limit_key)
        logger.debug("connection #%d from %s closed", conn.id, conn.peer)
        self._check_idle()

    def _forget_address(self, key: str) -> None:
        left = self._per_address.get(key, 0) - 1
        if left > 0:
            self._per_address[key] = left
        else:
            self._per_address.pop(key, None)

    def _check_idle(self) -> None:
        if not self._connections and not self._pending and self._idle_event is not None:
            self._idle_event.set()

    # --- timeouts ------------------------------------------------------------------------

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        """Close the connections whose timeouts expired at time ``now`` (loop clock)."""
        limits = self.limits
        for conn in list(self._connections.values()):
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
        s = self._stats
        live = list(self._connections.values())
        return ServerStats(
            open=len(live),
            accepted=s.accepted,
            refused=s.refused,
            closed=s.closed,
            bytes_in=self._closed_totals[0] + sum(c.bytes_in for c in live) + s.bytes_in,
            bytes_out=self._closed_totals[1] + sum(c.bytes_out for c in live) + s.bytes_out,
            messages_in=self._closed_totals[2] + sum(c.messages_in for c in live),
            datagrams_in=s.datagrams_in,
            datagrams_out=s.datagrams_out,
            timeouts=s.timeouts,
            tls_failures=s.tls_failures,
            per_address=dict(self._per_address),
            datagrams_dropped=dict(s.datagrams_dropped),
        )

    def connections(self) -> list[Connection[Any]]:
        """The open connections."""
        return list(self._connections.values())

    def spawn(self, coro: Awaitable[Any], *, name: str) -> None:
        """Run ``coro`` as a task the server owns: cancelled by ``aclose()``, and its
        failure is the server's (a periodic job of the service, for example)."""
        assert self._task_group is not None
        task: asyncio.Task[Any] = self._task_group.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
