"""--workers N: N processes serving the same ports through SO_REUSEPORT groups.

The parent binds one socket per port first (reuse-port, not listening), so that port 0
resolves to one concrete port for every worker; each forked worker then binds its own
listening socket in the group and the kernel spreads connections across them. The
parent forwards SIGINT/SIGTERM to the workers (from before the first fork, so a signal
during the start stops it), reaps each one, and exits with the worst status. It never
runs an event loop itself (fork happens before any loop exists). At most
``MAX_WORKERS`` processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any, NoReturn

from socketkit.address import Address
from socketkit.aio.listeners import Listener, bind_datagram, bound_address, resolve_bind
from socketkit.limits import MAX_WORKERS

__all__ = ["reserve_ports", "run_workers"]

logger = logging.getLogger(__name__)


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
    reports a program stopped by it. Every worker is reaped before this returns or
    raises.

    Args:
        count: number of processes, 1 to ``MAX_WORKERS``.
        worker: the body of each process; it calls ``ready()`` once it is listening, and
            its return value is the exit status.
        holders: sockets reserving the ports, closed in the parent once workers listen
            (or the start failed).
        on_ready: called in the parent once every worker is listening (or has exited),
            unless a signal stopped the start.
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
    # Installed before the first fork: a signal during the start must neither kill the
    # parent (orphaning the workers started) nor be lost.
    previous = {sig: signal.signal(sig, group.forward) for sig in _FORWARDED}
    try:
        ready_r, ready_w = os.pipe()
        try:
            try:
                group.start(count, worker, holders, (ready_r, ready_w), previous, on_forked)
            finally:
                os.close(ready_w)
            _wait_ready(ready_r, len(group.pids))
        finally:
            os.close(ready_r)
        for holder in holders:
            holder.close()
        interrupted = group.stopped_by  # a signal from now on is the normal way to stop
        if interrupted is None and on_ready is not None:
            on_ready()
        worst = group.reap()
    except BaseException:
        group.stop_all()  # a fork or a callback failed: no worker outlives us
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for holder in holders:  # also when the start failed (closing twice is harmless)
            holder.close()
    return worst if interrupted is None else 128 + interrupted


class _Group:
    """The workers of one ``run_workers()`` and the signals forwarded to them."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.stopped_by: int | None = None  # the first signal, once one has arrived
        self._signalled: set[int] = set()  # the pids a forwarded signal reached
        self._reaped: set[int] = set()  # never signalled again: the number may be reused

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

    def start(
        self,
        count: int,
        worker: _Worker,
        holders: Sequence[socket.socket],
        ready_pipe: tuple[int, int],
        handlers: dict[signal.Signals, Any],
        on_forked: Callable[[int], None] | None,
    ) -> None:
        """Fork workers until ``count`` run or a signal stops the loop."""
        for index in range(count):
            if self.stopped_by is not None:
                break
            # Blocked across the fork: the child must not run this forwarding handler
            # before it has put its own back, and the parent records the pid before a
            # signal is handled (it is delivered when the mask is restored).
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
            try:
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child
                    _child(index, worker, holders, ready_pipe, handlers, mask)
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

    def reap(self) -> int:
        """Wait for every worker; return the worst status (128 + N for signal N)."""
        worst = 0
        for pid in self.pids:
            _, status = os.waitpid(pid, 0)  # retried after a signal handler ran (PEP 475)
            self._reaped.add(pid)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                logger.warning("worker %d exited with status %d", pid, code)
            worst = max(worst, code if code >= 0 else 128 - code)
        return worst

    def stop_all(self) -> None:
        """Stop the workers not reaped yet (something failed): SIGTERM, then reap each."""
        self._kill(signal.SIGTERM)
        for pid in self.pids:
            if pid not in self._reaped:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                self._reaped.add(pid)


def _child(
    index: int,
    worker: _Worker,
    holders: Sequence[socket.socket],
    ready_pipe: tuple[int, int],
    handlers: dict[signal.Signals, Any],
    mask: Iterable[int],
) -> NoReturn:  # pragma: no cover - runs in the child
    """A worker's life: the parent's signal handlers undone, then ``worker``; never returns."""
    status = 1
    try:
        for sig, handler in handlers.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        ready_r, ready_w = ready_pipe
        os.close(ready_r)
        for holder in holders:
            holder.close()

        def ready() -> None:
            os.write(ready_w, b"r")

        status = worker(index, ready)
    except KeyboardInterrupt:  # SIGINT before the worker took it over
        status = 128 + signal.SIGINT
    finally:
        os._exit(status)


def _wait_ready(ready_r: int, count: int) -> None:
    """Wait until ``count`` workers said they listen (EOF early once all have exited)."""
    seen = 0
    while seen < count:
        chunk = os.read(ready_r, count - seen)
        if not chunk:
            break
        seen += len(chunk)
