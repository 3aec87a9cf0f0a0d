"""Running services: one or several on one event loop, or one on ``--workers`` processes.

A server prints one line per listener (``SERVICE listening on ADDRESS (KIND)``) once it
is bound (port 0 shows the port picked) and its signal handlers are in place, serves
until SIGINT/SIGTERM, then stops gracefully (a second signal aborts open connections).
SIGHUP calls ``reload``: it returns each service's new options, and what may change
live is applied (``runtime.reload``) without dropping a connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from socketkit._log import get_logger
from socketkit.address import Address
from socketkit.service import Service

if TYPE_CHECKING:
    from socketkit.aio.listeners import Listener
    from socketkit.aio.server import AsyncServer

__all__ = ["Reload", "print_listening", "run_service", "serve", "start_listeners"]

logger = get_logger(__name__)

Reload = Callable[[], Mapping[str, Any]]
"""Re-reads the configuration; returns each service's new options (by name)."""


async def start_listeners(
    server: AsyncServer, listeners: Sequence[Listener], service: str | None = None
) -> list[tuple[Address, Listener]]:
    """Bind ``listeners`` on an entered ``server``; return each bound address with its
    listener. TCP and UDP asked for on port 0 get one number.

    Raises:
        ListenError: a listener cannot be bound (naming ``service`` and the address).
    """
    from socketkit.errors import ListenError  # noqa: PLC0415

    shared_port = 0
    kinds: set[str] = set()
    bound = []
    for listener in listeners:
        inet_any = listener.address.path is None and listener.address.port == 0
        if inet_any and shared_port and listener.kind not in kinds:
            listener = replace(listener, address=replace(listener.address, port=shared_port))  # noqa: PLW2901
        try:
            (address,) = await server.start([listener])
        except ListenError as exc:
            raise exc.replace(service=service) from exc.__cause__
        bound.append((address, listener))
        if address.path is None:
            shared_port = shared_port or address.port
            kinds.add(listener.kind)
    return bound


def listening_line(name: str, address: Address, listener: Listener, note: str = "") -> str:
    """``NAME listening on ADDRESS (KIND)``: ``unix`` for a Unix socket, ``+tls``."""
    kind = "unix" if address.path else listener.kind
    return f"{name} listening on {address} ({kind}{'+tls' if listener.ssl else ''}{note})"


def print_listening(name: str, bound: Sequence[tuple[Address, Listener]]) -> None:
    """Print a listening line per listener. Called once the signal handlers are in
    place: whoever reads the line may stop the server right away."""
    for address, listener in bound:
        print(listening_line(name, address, listener), flush=True)


async def serve(
    services: Sequence[Service],
    *,
    admin: Callable[[], AsyncServer] | None = None,
    admin_listener: Listener | None = None,
    announce: bool = True,
    reload: Reload | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Run ``services`` (and the admin endpoint) on this loop until a signal."""
    import asyncio  # noqa: PLC0415 (lazy: `socketkit --help` should not load asyncio)
    import contextlib  # noqa: PLC0415
    import signal  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    servers: list[AsyncServer] = []
    announcements: list[tuple[str, list[tuple[Address, Listener]]]] = []
    async with contextlib.AsyncExitStack() as stack:
        for service in services:
            server = await stack.enter_async_context(service.make_server())
            bound = await start_listeners(server, service.listeners, service.name)
            service.servers.append(server)
            service.addresses = [str(address) for address, _ in bound]
            servers.append(server)
            announcements.append((service.name, bound))
        if admin is not None and admin_listener is not None:
            admin_server = await stack.enter_async_context(admin())
            servers.append(admin_server)
            announcements.append(("admin", await start_listeners(admin_server, [admin_listener], "admin")))

        def on_signal(signum: int) -> None:
            # One handler for every server; the first logs for all (and ignores the same
            # keypress arriving twice, so the others see it once too).
            # Every listener closes before the first server logs "shutting down": whoever
            # reads that line may rely on new connections to any service being refused.
            for running in servers:
                running.stop_listening()
            for index, running in enumerate(servers):
                running.handle_signal(signum, log=index == 0)

        for service in services:
            if service.on_started is not None:
                for server in service.servers:
                    service.on_started(server)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        if reload is not None:
            from socketkit.runtime.reload import reload_services  # noqa: PLC0415

            pending: list[asyncio.Task[None]] = []

            def on_hangup() -> None:
                # Reading files (the configuration, operator lists) is I/O: off the loop.
                task = loop.create_task(reload_services(services, reload), name="socketkit-reload")
                pending.append(task)
                task.add_done_callback(pending.remove)

            loop.add_signal_handler(signal.SIGHUP, on_hangup)
        if on_started is not None:
            on_started()
        if announce:  # last: whoever reads these lines may signal us at once
            for name, bound in announcements:
                print_listening(name, bound)
                if name == "admin":
                    address = bound[0][0]
                    print(
                        f"status at http://{address}/status, metrics at http://{address}/metrics", flush=True
                    )
        await asyncio.gather(*(server.serve_forever() for server in servers))


def run_service(service: Service, *, workers: int = 1, reload: Reload | None = None) -> int:
    """Serve one service in the foreground (on ``workers`` processes) until a signal;
    return 0. Its cleanups run however it ends.

    Raises:
        OSError: a listener cannot be bound.
    """
    from socketkit.aio.loop import run  # noqa: PLC0415 (lazy: fast --help)

    try:
        if workers == 1:
            run(serve([service], reload=reload))
            return 0
        from socketkit.aio.workers import reserve_ports, run_workers  # noqa: PLC0415

        resolved, holders = reserve_ports(service.listeners)

        def announce() -> None:
            for listener in resolved:
                print(
                    listening_line(service.name, listener.address, listener, f", {workers} workers"),
                    flush=True,
                )

        def worker(index: int, ready: Callable[[], None]) -> int:
            run(
                serve([replace(service, listeners=resolved)], announce=False, reload=reload, on_started=ready)
            )
            return 0

        return run_workers(workers, worker, holders, announce)
    finally:
        service.close()
