"""Options every ``socketkit serve SERVICE`` shares, and running a server in the foreground.

A server prints one line per listener (``SERVICE listening on ADDRESS (KIND)``) as
soon as it is bound (port 0 shows the port picked), serves until SIGINT/SIGTERM, then
stops gracefully (a second signal aborts open connections).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from socketkit.address import Address
from socketkit.cli._args import port_arg, positive_float, positive_int
from socketkit.limits import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    DEFAULT_SHUTDOWN_GRACE_S,
    MAX_WORKERS,
    MAX_WORKERS_CEILING,
    MAX_WORKERS_PER_CPU,
)

if TYPE_CHECKING:
    from socketkit.aio.listeners import Listener
    from socketkit.aio.server import AsyncServer

__all__ = [
    "Service",
    "positive_float",
    "positive_int",
    "add_server_options",
    "listeners_from_args",
    "run_server",
    "run_service",
    "print_listening",
    "start_listeners",
]


@dataclass
class Service:
    """A service ready to run: how to make its server, where it listens, and what to do
    once it is started and after it has stopped."""

    name: str
    make_server: Callable[[], AsyncServer]
    listeners: Sequence[Listener]
    on_started: Callable[[AsyncServer], Any] | None = None
    cleanups: list[Callable[[], Any]] = field(default_factory=list)
    gauges: Callable[[], dict[str, float]] | None = None  # for the admin endpoint

    def close(self) -> None:
        """Run the cleanups (close stores and databases), last added first."""
        for cleanup in reversed(self.cleanups):
            cleanup()


def workers_count(text: str) -> int:
    """argparse type: a number of worker processes, 1 to ``MAX_WORKERS``."""
    count = positive_int(text)
    if count > MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_WORKERS} here ({MAX_WORKERS_PER_CPU} per CPU, never more than "
            f"{MAX_WORKERS_CEILING}), not {count}"
        )
    return count


def add_server_options(
    parser: argparse.ArgumentParser,
    *,
    default_port: int,
    udp: bool = False,
    unix: bool = True,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
    idle_help: str = "close connections idle this many seconds",
) -> None:
    """Add --host/--port, listener kinds, TLS, caps, timeouts and --workers (a service
    may give --idle-timeout its own default and meaning, or none: ``None``)."""
    where = parser.add_argument_group("where to listen")
    where.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1; '::' for every IPv4 and IPv6 address)",
    )
    where.add_argument(
        "--port",
        type=port_arg,
        default=default_port,
        help=f"port (default: {default_port}; 0 picks a free one)",
    )
    where.add_argument("--tcp", action="store_true", help="serve TCP (the default unless --udp/--unix)")
    if udp:
        where.add_argument("--udp", action="store_true", help="serve UDP (instead of TCP unless --tcp)")
    if unix:
        where.add_argument(
            "--unix", metavar="PATH", help="serve on a Unix socket (instead of TCP unless --tcp)"
        )
    tls = parser.add_argument_group("TLS")
    tls.add_argument(
        "--tls-cert", metavar="FILE", help="certificate chain (PEM): serve TLS on stream listeners"
    )
    tls.add_argument("--tls-key", metavar="FILE", help="private key (PEM), if not in --tls-cert")
    caps = parser.add_argument_group("limits")
    caps.add_argument(
        "--max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"open connections at once (default: {DEFAULT_MAX_CONNECTIONS})",
    )
    caps.add_argument(
        "--max-per-address",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        help=f"open connections from one IP address (default: {DEFAULT_MAX_CONNECTIONS_PER_ADDRESS})",
    )
    if idle_timeout is not None:
        caps.add_argument(
            "--idle-timeout",
            type=positive_float,
            default=idle_timeout,
            help=f"{idle_help} (default: {idle_timeout:g})",
        )
    caps.add_argument(
        "--shutdown-grace",
        type=positive_float,
        default=DEFAULT_SHUTDOWN_GRACE_S,
        help=f"seconds connections get to finish on shutdown (default: {DEFAULT_SHUTDOWN_GRACE_S:g})",
    )
    caps.add_argument(
        "--workers",
        type=workers_count,
        default=1,
        help=f"processes sharing the port (SO_REUSEPORT; default: 1, at most {MAX_WORKERS} here)",
    )


def listeners_from_args(args: argparse.Namespace) -> list[Listener]:
    """The listeners the options ask for (TCP unless --udp/--unix say otherwise).

    Raises:
        ValueError: --tls-key without --tls-cert.
        OSError, ssl.SSLError: the certificate or key cannot be loaded.
    """
    from socketkit.aio.listeners import Listener  # noqa: PLC0415 (lazy: fast --help)

    ssl_context = None
    if args.tls_cert:
        from socketkit.tls import server_context  # noqa: PLC0415

        ssl_context = server_context(args.tls_cert, args.tls_key)
    elif args.tls_key:
        raise ValueError("--tls-key needs --tls-cert")
    want_udp = getattr(args, "udp", False)
    want_unix = getattr(args, "unix", None)
    want_tcp = args.tcp or not (want_udp or want_unix)
    inet = Address(args.host, args.port)
    listeners = []
    if want_tcp:
        listeners.append(Listener(inet, "tcp", ssl_context))
    if want_udp:
        listeners.append(Listener(inet, "udp"))
    if want_unix:
        listeners.append(Listener(Address(path=want_unix), "tcp", ssl_context))
    return listeners


async def start_listeners(
    name: str, server: AsyncServer, listeners: Sequence[Listener]
) -> list[tuple[Address, Listener]]:
    """Bind ``listeners`` on an entered ``server``; return each bound address with its
    listener (for ``announce``). TCP and UDP asked for on port 0 get one number.

    Raises:
        OSError: a listener cannot be bound.
    """
    shared_port = 0
    kinds: set[str] = set()
    bound = []
    for listener in listeners:
        inet_any = listener.address.path is None and listener.address.port == 0
        if inet_any and shared_port and listener.kind not in kinds:
            listener = replace(listener, address=replace(listener.address, port=shared_port))  # noqa: PLW2901
        (address,) = await server.start([listener])
        bound.append((address, listener))
        if address.path is None:
            shared_port = shared_port or address.port
            kinds.add(listener.kind)
    return bound


def print_listening(name: str, bound: Sequence[tuple[Address, Listener]]) -> None:
    """Print ``NAME listening on ADDRESS (KIND)`` per listener. Called once the signal
    handlers are in place: whoever reads the line may stop the server right away."""
    for address, listener in bound:
        kind = "unix" if address.path else listener.kind
        print(f"{name} listening on {address} ({kind}{'+tls' if listener.ssl else ''})", flush=True)


async def _serve(
    name: str,
    make_server: Callable[[], AsyncServer],
    listeners: Sequence[Listener],
    announce: bool,
    on_started: Callable[[AsyncServer], Any] | None,
) -> None:
    server = make_server()
    async with server:
        bound = await start_listeners(name, server, listeners)
        if on_started is not None:
            on_started(server)
        server.install_signal_handlers()
        if announce:  # last: whoever reads the line may signal us at once
            print_listening(name, bound)
        await server.serve_forever()


def run_server(
    name: str,
    make_server: Callable[[], AsyncServer],
    args: argparse.Namespace,
    *,
    on_started: Callable[[AsyncServer], Any] | None = None,
    listeners: Sequence[Listener] | None = None,
) -> int:
    """Serve in the foreground (on ``args.workers`` processes) until a signal; return 0.

    ``listeners`` defaults to what the options ask for (``listeners_from_args``).

    Raises:
        OSError: a listener cannot be bound.
    """
    from socketkit._fdlimit import raise_open_files_limit  # noqa: PLC0415 (lazy: fast --help)
    from socketkit.aio.loop import run  # noqa: PLC0415

    if listeners is None:
        listeners = listeners_from_args(args)
    raise_open_files_limit(args.max_connections)  # before forking: workers inherit it
    if args.workers == 1:
        run(_serve(name, make_server, listeners, True, on_started))
        return 0
    from socketkit.aio.workers import reserve_ports, run_workers  # noqa: PLC0415

    resolved, holders = reserve_ports(listeners)

    def announce() -> None:
        for listener in resolved:
            kind = f"{listener.kind}, {args.workers} workers"
            print(f"{name} listening on {listener.address} ({kind})", flush=True)

    def worker(index: int, ready: Callable[[], None]) -> int:
        def started(server: AsyncServer) -> None:
            ready()
            if on_started is not None:
                on_started(server)

        run(_serve(name, make_server, resolved, False, started))
        return 0

    return run_workers(args.workers, worker, holders, announce)


def run_service(service: Service, args: argparse.Namespace) -> int:
    """``run_server`` for a built ``Service``; its cleanups run however it ends."""
    try:
        return run_server(
            service.name,
            service.make_server,
            args,
            on_started=service.on_started,
            listeners=service.listeners,
        )
    finally:
        service.close()
