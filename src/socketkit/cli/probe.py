"""``socketkit probe HOST PORTS``: which TCP ports accept a connection (``connect_ex``).

Many non-blocking ``connect_ex`` calls are outstanding at once, watched by one selector
(epoll on Linux): at most ``--concurrency`` (and never more than the open-file limit
allows), each with ``--timeout``:

- ``open``: the connection was accepted (and closed at once);
- ``closed``: refused (RST), which is ``connect_ex`` returning ECONNREFUSED;
- ``timeout``: no answer in time (filtered, or the host is down);
- ``error``: any other errno (unreachable network...), named in the output.

A port's time runs from the start of its own connect to its outcome: on loopback the
kernel answers inside the ``connect`` call, so the outcome is read right there; an
answer that comes later is stamped when the selector reports it, and the selector is
polled every POLL_EVERY connects so a long batch of starts does not delay the stamp.

Output: a table (or only the summary when no port is to be shown), or ``--json``. Exit
status 0 when every port is open, 1 otherwise.
"""

from __future__ import annotations

import _socket
import argparse
import errno
import os
import selectors
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, Final

from socketkit.address import MAX_PORTS, parse_ports
from socketkit.cli._args import positive_float
from socketkit.cli._probe_results import OPEN_FILES_RESERVE, ProbeResult, in_flight_limit, outcome, render

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT_S",
    "MAX_CONCURRENCY",
    "POLL_EVERY",
    "ProbeResult",
    "add_parsers",
    "probe",
    "probe_ports",
]

DEFAULT_TIMEOUT_S: Final = 1.0
"""Seconds a port has to answer: a LAN or loopback answers in well under a millisecond
and a distant host in a few hundred; a silent port (filtered) costs this much once."""

DEFAULT_CONCURRENCY: Final = 100
"""Connects outstanding at once by default: enough to hide the round trips of a
distant host, few enough not to look like a flood to a firewall."""

MAX_CONCURRENCY: Final = 4096
"""The most ``--concurrency`` takes: below common open-file hard limits; a probe
never needs more at once (loopback answers inside each connect call)."""

POLL_EVERY: Final = 16
"""Starting connects, look for finished ones (a non-blocking select) after this many:
an outcome is then stamped at most this many connect calls (a few microseconds each)
late, while the selector costs one syscall per 16 ports."""

SHOW_ALL_UP_TO: Final = 50
"""Lists up to this long show every port in the table; longer ones only the open ports
(``--all`` shows every port): a scan of 1-65535 should not print 65,535 rows."""

# SOCK_NONBLOCK at creation saves the extra ioctl that setblocking(False) costs (Linux).
_NONBLOCK: Final = getattr(socket, "SOCK_NONBLOCK", 0)
# The probing sockets are the C type under socket.socket: they live for one connect
# and never meet makefile() or a context manager, and skipping socket.py's Python-level
# __init__/close wrappers is a fifth of the time per loopback port.
_RawSocket: Final = _socket.socket
_IN_PROGRESS: Final = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK})


def _ports_arg(text: str) -> list[int]:
    try:
        ports = parse_ports(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(ports) > MAX_PORTS:
        raise argparse.ArgumentTypeError("too many ports")
    return ports


def _concurrency_arg(text: str) -> int:
    """argparse type: probes at once, 1..MAX_CONCURRENCY."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_CONCURRENCY}, not {text!r}")
    return int(text)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``probe``."""
    parser = commands.add_parser(
        "probe",
        help="check which TCP ports are open",
        description="Try a TCP connection to each port (connect_ex semantics); report each state.",
    )
    parser.add_argument("host", metavar="HOST", help="host name or address")
    parser.add_argument("ports", type=_ports_arg, metavar="PORTS", help="ports, as in 22,80,8000-8100")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per port (default: {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_arg,
        default=DEFAULT_CONCURRENCY,
        help=f"ports probed at once (default: {DEFAULT_CONCURRENCY}, max {MAX_CONCURRENCY})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"list every port, not only open ones, in lists over {SHOW_ALL_UP_TO} ports",
    )
    parser.set_defaults(func=probe)


class _Attempt:
    """One outstanding connect."""

    __slots__ = ("deadline", "done", "port", "sock", "started")

    def __init__(self, sock: _socket.socket, port: int, started: float, deadline: float) -> None:
        self.sock = sock
        self.port = port
        self.started = started
        self.deadline = deadline
        self.done = False


def _connect_state(sock: _socket.socket) -> int | None:
    """The errno of a connect that may have finished inside the call (0: connected), or
    None while it is still in progress."""
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        return int(code)
    try:
        sock.getpeername()
    except OSError:  # ENOTCONN: the handshake is still under way
        return None
    return 0


class _Scan:
    """Connects to many ports of one address, ``limit`` outstanding at once."""

    def __init__(
        self, family: int, sockaddr: tuple[Any, ...], timeout: float, limit: int, clock: Callable[[], float]
    ) -> None:
        self.family = family
        self.sockaddr = sockaddr
        self.timeout = timeout
        self.limit = limit
        self.clock = clock
        self.kind = socket.SOCK_STREAM | _NONBLOCK
        self.host, self.tail = sockaddr[0], sockaddr[2:]  # (host, port) or (host, port, flow, scope)
        self.outcomes: dict[int, tuple[int, float]] = {}  # port -> (errno, seconds)
        self.waiting: dict[int, _Attempt] = {}  # by fd
        # One timeout for all, so start order is deadline order: a FIFO, not a heap.
        self.deadlines: deque[_Attempt] = deque()
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()

    def run(self, ports: Sequence[int]) -> list[ProbeResult]:
        try:
            for count, port in enumerate(ports, 1):
                while not self._start(port):
                    # Fewer descriptors than the limit promised (files opened elsewhere in
                    # the process): hold at what is outstanding now and wait for one.
                    self.limit = max(1, len(self.waiting))
                    self._collect(block=True)
                if self.waiting and count % POLL_EVERY == 0:
                    self._collect(block=False)
                while len(self.waiting) >= self.limit:
                    self._collect(block=True)
            while self.waiting:
                self._collect(block=True)
        finally:
            for attempt in self.waiting.values():
                attempt.sock.close()
            self.selector.close()
        results = []
        for port in ports:
            code, seconds = self.outcomes[port]
            state, reason = outcome(code)
            results.append(ProbeResult(port, state, code, reason, round(seconds * 1000, 3)))
        return results

    def _start(self, port: int) -> bool:
        """Start the connect to ``port`` (finish it when the kernel answered at once);
        False when out of descriptors while others are outstanding."""
        try:
            sock = _RawSocket(self.family, self.kind)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE) and self.waiting:
                return False
            raise
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            started = self.clock()
            code: int | None = sock.connect_ex((self.host, port, *self.tail))
            if code in _IN_PROGRESS:
                code = _connect_state(sock)
            if code is not None:
                ended = self.clock()
                sock.close()
                self.outcomes[port] = (code, ended - started)
                return True
            attempt = _Attempt(sock, port, started, started + self.timeout)
            self.selector.register(sock, selectors.EVENT_WRITE, attempt)
        except BaseException:
            sock.close()
            raise
        self.waiting[sock.fileno()] = attempt
        self.deadlines.append(attempt)
        return True

    def _collect(self, *, block: bool) -> None:
        """Finish the connects that have an outcome (waiting, when ``block``, until the
        first one does or the earliest deadline passes), then the timed-out ones."""
        wait = 0.0
        if block:
            while self.deadlines and self.deadlines[0].done:
                self.deadlines.popleft()
            if self.deadlines:
                wait = max(0.0, self.deadlines[0].deadline - self.clock())
        events = self.selector.select(wait)
        now = self.clock()  # one stamp for the batch: handling the others adds nothing
        for key, _ in events:
            attempt: _Attempt = key.data
            code = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._finish(attempt, code, now - attempt.started)
        while self.deadlines and (self.deadlines[0].done or self.deadlines[0].deadline <= now):
            attempt = self.deadlines.popleft()
            if not attempt.done:
                self._finish(attempt, errno.ETIMEDOUT, self.timeout)

    def _finish(self, attempt: _Attempt, code: int, seconds: float) -> None:
        attempt.done = True
        del self.waiting[attempt.sock.fileno()]
        self.selector.unregister(attempt.sock)
        attempt.sock.close()
        self.outcomes[attempt.port] = (code, seconds)


def _open_files_limit() -> int | None:
    """The soft open-file limit, or None where there is none to respect."""
    try:
        import resource  # noqa: PLC0415 (Unix only)
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _raise_open_files_limit(wanted: int) -> None:
    """Raise the soft open-file limit towards ``wanted`` (never above the hard limit),
    so ``--concurrency`` is not cut short by a default soft limit of 1,024."""
    try:
        import resource  # noqa: PLC0415 (Unix only)
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            return  # the probe then keeps under the soft limit (in_flight_limit)


def probe_ports(
    host: str,
    ports: Sequence[int],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    concurrency: int = DEFAULT_CONCURRENCY,
    clock: Callable[[], float] = time.perf_counter,
) -> list[ProbeResult]:
    """Probe ``ports`` on ``host``; results in the order of ``ports``.

    Args:
        host: a name or address (the first address it resolves to is probed).
        ports: the ports.
        timeout: seconds each port has to answer.
        concurrency: connects outstanding at once (also kept under the open-file limit).
        clock: seconds, for the per-port times (monotonic).

    Raises:
        socket.gaierror: the host name does not resolve.
        ValueError: concurrency out of 1..MAX_CONCURRENCY.
    """
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    family, _, _, _, sockaddr = infos[0]
    limit = in_flight_limit(concurrency, _open_files_limit())
    return _Scan(family, tuple(sockaddr), timeout, limit, clock).run(ports)


def probe(args: argparse.Namespace) -> int:
    """Run ``probe``: 0 when every port is open, 1 otherwise."""
    _raise_open_files_limit(args.concurrency + OPEN_FILES_RESERVE)
    results = probe_ports(args.host, args.ports, timeout=args.timeout, concurrency=args.concurrency)
    if args.json:
        import json  # noqa: PLC0415 (lazy: the table is the common case)

        print(json.dumps({"host": args.host, "results": [asdict(r) for r in results]}, indent=1))
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        lines = render(args.host, results, show_all=args.all or len(results) <= SHOW_ALL_UP_TO, colour=colour)
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    return 0 if all(r.state == "open" for r in results) else 1
