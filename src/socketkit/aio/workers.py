"""--workers N: N processes serving the same ports through SO_REUSEPORT groups.

The parent binds one socket per port first (reuse-port, not listening), so that port 0
resolves to one concrete port for every worker; each forked worker then binds its own
listening socket in the group and the kernel spreads connections across them. The
parent forwards SIGINT/SIGTERM to the workers (from before the first fork, so a signal
during the start stops it), reaps each one, and exits with the worst status. While the
workers start it waits on their readiness records and on SIGCHLD together, so a worker
that dies before it is ready stops the start (the others are stopped and reaped) instead
of leaving the parent waiting for readiness that never comes. It never runs an event
loop itself (fork happens before any loop exists). At most ``MAX_WORKERS`` processes.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any, NoReturn

from socketkit._log import get_logger
from socketkit.address import Address
from socketkit.aio.listeners import Listener, bind_datagram, bound_address, resolve_bind
from socketkit.errors import SocketkitError
from socketkit.limits import MAX_WORKERS

__all__ = ["reserve_ports", "run_workers"]

logger = get_logger(__name__)


def reserve_ports(listeners: Sequence[Listener]) -> tuple[list[Listener], list[socket.socket]]:
    """Resolve port 0 to concrete ports shared by every worker.

    Returns:
        the listeners with ``reuse_port`` on and concrete ports, and the reserving sockets
        (close them once the workers have bound theirs).

    Raises:
        OSError: a port could not be reserved, or SO_REUSEPORT is missing.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--workers needs SO_REUSEPORT, which this system lacks")
    resolved: list[Listener] = []
    holders: list[socket.socket] = []
    port = 0
    try:
        for listener in listeners:
            address = listener.address
            if address.path is not None:
                raise OSError("--workers cannot share a Unix socket path")
            if address.port == 0 and port:
                address = replace(address, port=port)  # TCP and UDP on the same number
            if address.port == 0:
                # A bound, never-listening member of the group only holds the number.
                holder = (
                    bind_datagram(address, reuse_port=True)
                    if listener.kind == "udp"
                    else _hold_stream(address)
                )
                holders.append(holder)
                address = replace(address, port=bound_address(holder).port)
            port = port or address.port
            resolved.append(replace(listener, address=address, reuse_port=True))
    except BaseException:
        for holder in holders:
            holder.close()
        raise
    return resolved, holders


def _hold_stream(address: Address) -> socket.socket:
    family, sockaddr = resolve_bind(address, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


_FORWARDED = (signal.SIGINT, signal.SIGTERM)

_Worker = Callable[[int, Callable[[], None]], int]

# What ready() writes: the worker's index, so that the parent knows WHICH workers are
# ready (a worker that dies before it is ready is then named); two bytes, far below
# PIPE_BUF, so records from different workers never interleave.
_READY = struct.Struct(">H")


def run_workers(
    count: int,
    worker: _Worker,
    holders: Sequence[socket.socket] = (),
    on_ready: Callable[[], None] | None = None,
    on_forked: Callable[[int], None] | None = None,
) -> int:
    """Fork ``count`` workers running ``worker(index, ready)``; return the worst exit status.

    SIGINT and SIGTERM are forwarded to the workers from before the first fork: one that
    arrives while they are being started stops the forking and reaches every worker
    already started, and the status is then 128 + the signal's number, as a shell
    reports a program stopped by it. A worker that exits before it called ``ready()``
    fails the start: one line is logged naming it and its status, the other workers are
    stopped (SIGTERM) and reaped, and its status (at least 1) is returned. Every worker
    is reaped before this returns or raises.

    Args:
        count: number of processes, 1 to ``MAX_WORKERS``.
        worker: the body of each process; it calls ``ready()`` once it is listening, and
            its return value is the exit status.
        holders: sockets reserving the ports, closed in the parent once workers listen
            (or the start failed).
        on_ready: called in the parent once every worker is listening (some may have
            exited since), unless a signal or a worker's failure stopped the start.
        on_forked: called in the parent with each worker's pid as it is forked.

    Raises:
        ValueError: ``count`` is below 1 or above ``MAX_WORKERS``.
        OSError: a fork failed (the workers already started are stopped first).
    """
    if count < 1:
        raise ValueError("--workers must be at least 1")
    if count > MAX_WORKERS:
        raise ValueError(f"--workers is at most {MAX_WORKERS} here (MAX_WORKERS), not {count}")
    group = _Group()
    previous: dict[signal.Signals, Any] = {}
    try:
        # Installed before the first fork: a signal during the start must neither kill
        # the parent (orphaning the workers started) nor be lost, and no worker's exit
        # may go unnoticed while the parent waits for readiness.
        for sig in _FORWARDED:
            previous[sig] = signal.signal(sig, group.forward)
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, group.child_exited)
        failed = group.start(count, worker, holders, previous, on_forked)
        for holder in holders:
            holder.close()
        interrupted = group.stopped_by  # a signal from now on is the normal way to stop
        if failed is not None:
            group.stop_all()
            status = failed
        else:
            if interrupted is None and on_ready is not None:
                on_ready()
            worst = group.reap()
            status = worst if interrupted is None else 128 + interrupted
    except BaseException:
        group.stop_all()  # a fork or a callback failed: no worker outlives us
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        group.close()  # after the handlers that write to its wake-up pipe are gone
        for holder in holders:  # also when the start failed (closing twice is harmless)
            holder.close()
    return status


class _Group:
    """The workers of one ``run_workers()`` and the signals forwarded to them."""

    def __init__(self) -> None:
        self.pids: list[int] = []  # in index order: pids[i] runs worker(i, ...)
        self.stopped_by: int | None = None  # the first signal, once one has arrived
        self._signalled: set[int] = set()  # the pids a forwarded signal reached
        self._reaped: set[int] = set()  # never signalled again: the number may be reused
        self._codes: dict[int, int] = {}  # pid -> os.waitstatus_to_exitcode() (-N: signal N)
        # Written by the signal handlers, so that waiting for readiness wakes up on a
        # worker's exit or a signal (a handler alone would not end a select()).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)  # drained without blocking
        os.set_blocking(self._wake_w, False)  # a handler must never block

    def close(self) -> None:
        """Close the wake-up pipe (once no handler can write to it any more)."""
        wake_r, wake_w = self._wake_r, self._wake_w
        self._wake_r = self._wake_w = -1
        os.close(wake_r)
        os.close(wake_w)

    def _wake(self) -> None:
        if self._wake_w >= 0:
            # Full means a wake-up is already pending.
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"w")

    def _kill(self, signum: int, *, missed_only: bool = False) -> None:
        for pid in self.pids:
            if pid in self._reaped or (missed_only and pid in self._signalled):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            self._signalled.add(pid)

    def forward(self, signum: int, frame: FrameType | None) -> None:
        """The parent's SIGINT/SIGTERM handler: pass the signal on to every worker."""
        if self.stopped_by is None:
            self.stopped_by = signum
        self._kill(signum)
        self._wake()

    def child_exited(self, signum: int, frame: FrameType | None) -> None:
        """The parent's SIGCHLD handler: wake ``wait_ready()`` to look at the workers."""
        self._wake()

    def start(
        self,
        count: int,
        worker: _Worker,
        holders: Sequence[socket.socket],
        handlers: dict[signal.Signals, Any],
        on_forked: Callable[[int], None] | None,
    ) -> int | None:
        """Fork the workers, then wait until they are ready (see ``wait_ready()``)."""
        ready_r, ready_w = os.pipe()
        try:
            try:
                self._fork(count, worker, holders, (ready_r, ready_w), handlers, on_forked)
            finally:
                os.close(ready_w)
            return self.wait_ready(ready_r)
        finally:
            os.close(ready_r)

    def _fork(
        self,
        count: int,
        worker: _Worker,
        holders: Sequence[socket.socket],
        ready_pipe: tuple[int, int],
        handlers: dict[signal.Signals, Any],
        on_forked: Callable[[int], None] | None,
    ) -> None:
        """Fork workers until ``count`` run or a signal stops the loop."""
        inherited = (ready_pipe[0], self._wake_r, self._wake_w)  # the parent's ends
        for index in range(count):
            if self.stopped_by is not None:
                break
            # Blocked across the fork: the child must not run these handlers before it
            # has put its own back, and the parent records the pid before a signal is
            # handled (it is delivered when the mask is restored).
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, list(handlers))
            try:
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child
                    _child(index, worker, holders, ready_pipe[1], inherited, handlers, mask)
                self.pids.append(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if on_forked is not None:
                on_forked(pid)
        if self.stopped_by is None:
            return
        logger.warning(
            "%s while starting workers: stopping the %d of %d started",
            signal.Signals(self.stopped_by).name,
            len(self.pids),
            count,
        )
        # With other threads in the parent, the handler may have run between a fork and
        # the pid being recorded: make sure that worker hears the signal too.
        self._kill(self.stopped_by, missed_only=True)

    def wait_ready(self, ready_r: int) -> int | None:
        """Wait until every worker started said it is ready, or one exited first.

        A worker that exits before it is ready is a failed start: it is logged (which
        worker, its status) and its status (at least 1) returned; the caller stops the
        others. A worker that exits after it was ready is not a failure (it is reaped,
        and its status counts in ``reap()``). A signal ends the wait too (it is
        forwarded; the caller reaps).

        Returns:
            ``None`` once every worker is ready or a signal arrived, else the status
            ``run_workers()`` exits with.
        """
        os.set_blocking(ready_r, False)
        ready: set[int] = set()
        pending = b""
        eof = False
        with selectors.DefaultSelector() as selector:
            selector.register(ready_r, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while len(ready) < len(self.pids) and self.stopped_by is None:
                selector.select()  # retried after a handler ran (PEP 475); it wrote _wake_r
                _read_available(self._wake_r)
                # Reap first, then read: a worker writes its record before it exits, so
                # every record of a worker seen exited here is already in the pipe.
                exited = self._poll_exits()
                chunk = b"" if eof else _read_available(ready_r)
                if chunk is None:  # every worker has closed it: only SIGCHLD wakes us now
                    selector.unregister(ready_r)
                    eof, chunk = True, b""
                pending += chunk
                whole = len(pending) - len(pending) % _READY.size
                ready.update(index for (index,) in _READY.iter_unpack(pending[:whole]))
                pending = pending[whole:]
                for index, pid in enumerate(self.pids):
                    if pid in exited and index not in ready and self.stopped_by is None:
                        return self._failed(index, pid)
        return None

    def _failed(self, index: int, pid: int) -> int:
        code = _shell_status(self._codes[pid])
        logger.error(
            "worker %d (pid %d) %s before it was ready: stopping the %d other worker(s)",
            index,
            pid,
            _describe(self._codes[pid]),
            sum(other not in self._reaped for other in self.pids),
        )
        return code or 1  # even a worker that returned 0 without being ready failed

    def _poll_exits(self) -> set[int]:
        """Reap the workers that have exited, without waiting; return their pids."""
        exited: set[int] = set()
        for pid in self.pids:
            if pid in self._reaped:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self._record(pid, status)
                exited.add(pid)
        return exited

    def _record(self, pid: int, status: int) -> None:
        self._reaped.add(pid)
        self._codes[pid] = os.waitstatus_to_exitcode(status)

    def reap(self) -> int:
        """Wait for every worker; return the worst status (128 + N for signal N)."""
        for pid in self.pids:
            if pid not in self._reaped:
                _, status = os.waitpid(pid, 0)  # retried after a signal handler ran (PEP 475)
                self._record(pid, status)
            code = _shell_status(self._codes[pid])
            if code != 0:
                logger.warning("worker %d exited with status %d", pid, code)
        return max((_shell_status(self._codes[pid]) for pid in self.pids), default=0)

    def stop_all(self) -> None:
        """Stop the workers not reaped yet (something failed): SIGTERM, then reap each."""
        self._kill(signal.SIGTERM)
        for pid in self.pids:
            if pid not in self._reaped:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                self._reaped.add(pid)


def _shell_status(code: int) -> int:
    """An ``os.waitstatus_to_exitcode()`` value as a shell reports it: 128 + N for signal N."""
    return code if code >= 0 else 128 - code


def _describe(code: int) -> str:
    """``exited with status 3``, or ``was killed by SIGKILL (status 137)``."""
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name} (status {_shell_status(code)})"


def _read_available(fd: int) -> bytes | None:
    """Read what a non-blocking pipe holds now; ``None`` at end of file."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return data
        if not chunk:
            return data or None
        data += chunk


def _child(
    index: int,
    worker: _Worker,
    holders: Sequence[socket.socket],
    ready_w: int,
    inherited: Iterable[int],
    handlers: dict[signal.Signals, Any],
    mask: Iterable[int],
) -> NoReturn:  # pragma: no cover - runs in the child
    """A worker's life: the parent's signal handlers and fds undone, then ``worker``."""
    status = 1
    try:
        for sig, handler in handlers.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in inherited:
            os.close(fd)
        for holder in holders:
            holder.close()

        def ready() -> None:
            try:
                os.write(ready_w, _READY.pack(index))
            except BrokenPipeError:
                # The parent closed the pipe: it is stopping the workers (another one
                # failed). Nothing to say; end as the stop it is.
                os._exit(128 + signal.SIGTERM)

        status = worker(index, ready)
    except KeyboardInterrupt:  # SIGINT before the worker took it over
        status = 128 + signal.SIGINT
    except (OSError, SocketkitError) as exc:  # a listener that cannot be bound (ListenError)...
        # ...is said here, once, or os._exit would lose it: the parent only sees status 1.
        logger.error("worker %d cannot start: %s: %s", index, type(exc).__name__, exc)  # noqa: TRY400
    finally:
        os._exit(status)
