"""``socketkit probe HOST PORTS``: which TCP ports accept a connection (``connect_ex``).

Ports are probed concurrently (``--concurrency`` at once), each with ``--timeout``:

- ``open``: the connection was accepted (and closed at once);
- ``closed``: refused (RST), which is ``connect_ex`` returning ECONNREFUSED;
- ``timeout``: no answer in time (filtered, or the host is down);
- ``error``: any other errno (unreachable network...), named in the output.

Output: a table, or ``--json``. Exit status 0 when every port is open, 1 otherwise.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import time
from dataclasses import asdict, dataclass

from socketkit.address import MAX_PORTS, parse_ports
from socketkit.cli._args import positive_float

__all__ = ["ProbeResult", "add_parsers", "probe", "probe_ports"]

DEFAULT_TIMEOUT_S = 1.0
DEFAULT_CONCURRENCY = 100
MAX_CONCURRENCY = 4096  # below common fd limits; a probe never needs more at once


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome for one port."""

    port: int
    state: str  # open | closed | timeout | error
    errno: int  # what connect_ex would return (0 when open, ETIMEDOUT on timeout)
    reason: str
    ms: float


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
        "--all", action="store_true", help="list every port, not only open ones, in long lists"
    )
    parser.set_defaults(func=probe)


async def _probe_one(family: int, sockaddr: tuple[str, int], timeout: float) -> tuple[str, int, str, float]:
    import asyncio  # noqa: PLC0415 (lazy: `socketkit --help` should not load asyncio)

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, sockaddr)
    except TimeoutError:
        return "timeout", errno.ETIMEDOUT, "no answer", timeout * 1000
    except OSError as exc:
        code = exc.errno or 0
        state = "closed" if code == errno.ECONNREFUSED else "error"
        return (
            state,
            code,
            errno.errorcode.get(code, str(exc)),
            (time.perf_counter() - started) * 1000,
        )
    finally:
        sock.close()
    return "open", 0, "accepted", (time.perf_counter() - started) * 1000


async def probe_ports(
    host: str,
    ports: list[int],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[ProbeResult]:
    """Probe ``ports`` on ``host``; results in the order of ``ports``.

    Raises:
        socket.gaierror: the host name does not resolve.
        ValueError: concurrency out of 1..MAX_CONCURRENCY.
    """
    import asyncio  # noqa: PLC0415 (lazy: `socketkit --help` should not load asyncio)

    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    family, _, _, _, sockaddr = infos[0]
    limit = asyncio.Semaphore(concurrency)

    async def one(port: int) -> ProbeResult:
        async with limit:
            state, code, reason, ms = await _probe_one(family, (sockaddr[0], port, *sockaddr[2:]), timeout)
            return ProbeResult(port, state, code, reason, round(ms, 2))

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(port)) for port in ports]
    return [task.result() for task in tasks]


def probe(args: argparse.Namespace) -> int:
    """Run ``probe``: 0 when every port is open, 1 otherwise."""
    from socketkit.aio.loop import run  # noqa: PLC0415 (lazy: fast CLI)

    results = run(probe_ports(args.host, args.ports, timeout=args.timeout, concurrency=args.concurrency))
    if args.json:
        print(json.dumps({"host": args.host, "results": [asdict(r) for r in results]}, indent=1))
    else:
        _print_table(args.host, results, show_all=args.all or len(results) <= 50)
    return 0 if all(r.state == "open" for r in results) else 1


def _print_table(host: str, results: list[ProbeResult], *, show_all: bool) -> None:
    from rich.console import Console  # noqa: PLC0415 (terminal output only)
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{host}: {len(results)} port(s)", title_justify="left")
    for column, justify in (("port", "right"), ("state", "left"), ("ms", "right"), ("why", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    colour = {"open": "green", "closed": "red", "timeout": "yellow", "error": "magenta"}
    for r in results:
        if show_all or r.state == "open":
            table.add_row(str(r.port), f"[{colour[r.state]}]{r.state}[/]", f"{r.ms:.1f}", r.reason)
    console = Console(file=sys.stdout, highlight=False)
    console.print(table)
    counts = {state: sum(r.state == state for r in results) for state in colour}
    console.print(", ".join(f"{n} {state}" for state, n in counts.items() if n))
