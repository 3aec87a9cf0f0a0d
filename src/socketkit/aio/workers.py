"""--workers N: N processes serving the same ports through SO_REUSEPORT groups.

The parent binds one socket per port first (reuse-port, not listening), so that port 0
resolves to one concrete port for every worker; each forked worker then binds its own
listening socket in the group and the kernel spreads connections across them. The
parent forwards SIGINT/SIGTERM to the workers, reaps each one, and exits with the
worst status. It never runs an event loop itself (fork happens before any loop exists).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType

from socketkit.address import Address
from socketkit.aio.listeners import Listener, bind_datagram, bound_address, resolve_bind

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


def run_workers(
    count: int,
    worker: Callable[[int, Callable[[], None]], int],
    holders: Sequence[socket.socket] = (),
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Fork ``count`` workers running ``worker(index, ready)``; return the worst exit status.

    Args:
        count: number of processes (at least 1).
        worker: the body of each process; it calls ``ready()`` once it is listening, and
            its return value is the exit status.
        holders: sockets reserving the ports, closed in the parent once workers listen.
        on_ready: called in the parent once every worker is listening (or has exited).

    Raises:
        ValueError: ``count`` is below 1.
    """
    if count < 1:
        raise ValueError("--workers must be at least 1")
    ready_r, ready_w = os.pipe()
    pids: list[int] = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            status = 1
            try:
                os.close(ready_r)
                for holder in holders:
                    holder.close()

                def ready() -> None:
                    os.write(ready_w, b"r")

                status = worker(index, ready)
            finally:
                os._exit(status)
        pids.append(pid)
    os.close(ready_w)
    # Wait until every worker listens (EOF early if one died) before announcing.
    seen = 0
    while seen < count:
        chunk = os.read(ready_r, count - seen)
        if not chunk:
            break
        seen += len(chunk)
    os.close(ready_r)
    for holder in holders:
        holder.close()
    if on_ready is not None:
        on_ready()

    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    worst = 0
    try:
        for pid in pids:
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                logger.warning("worker %d exited with status %d", pid, code)
            worst = max(worst, code if code >= 0 else 128 - code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return worst
