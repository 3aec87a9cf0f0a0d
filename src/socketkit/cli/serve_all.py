"""``socketkit serve all``: the main job. Every service at once in one process (echo,
chat, files, exec), plus the admin endpoint with status and metrics over HTTP.

Each service is built exactly as ``socketkit serve NAME`` builds it (the same options
parsed by the same parser), so its limits, token and exposure checks are the ones of
the single service; they share one event loop and one state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from socketkit.cli._args import port_arg
from socketkit.cli._serving import Service
from socketkit.cli.chat import CHAT_PORT
from socketkit.cli.files import FILES_PORT
from socketkit.cli.rexec import DEFAULT_RUN_AS, EXEC_PORT
from socketkit.cli.serve import ECHO_PORT

if TYPE_CHECKING:
    from socketkit.aio.listeners import Listener
    from socketkit.aio.server import AsyncServer
    from socketkit.services.admin.protocol import ServiceStatus

__all__ = ["add_serve_parser", "serve_all"]

ADMIN_PORT = 7080
DEFAULT_PORTS = {
    "echo": ECHO_PORT,
    "chat": CHAT_PORT,
    "files": FILES_PORT,
    "exec": EXEC_PORT,
    "admin": ADMIN_PORT,
}
SERVICE_NAMES = ("echo", "chat", "files", "exec")


def add_serve_parser(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve all``."""
    parser = services.add_parser(
        "all",
        help="every service at once, plus an admin endpoint (status, metrics)",
        description=(
            "Run echo, chat, files and exec in one process, and an HTTP admin endpoint "
            "(/status as JSON, /metrics for Prometheus). Binds 127.0.0.1 unless --host "
            "says otherwise (the admin endpoint only with --admin-host: it has no "
            "authentication); files and exec use the token in --state-dir. talk is "
            "interactive (an operator console): run `socketkit serve talk` on its own."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--state-dir", default=".socketkit", help="token, chat state, audit logs")
    parser.add_argument(
        "--root", help="directory served by files and used by exec (default: STATE_DIR/files)"
    )
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=port_arg, default=port, help=f"(default: {port})")
    parser.add_argument(
        "--admin-host", default="127.0.0.1", help="address of the admin endpoint (default: 127.0.0.1)"
    )
    parser.add_argument("--any-port", action="store_true", help="let the system pick every port")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=[*SERVICE_NAMES, "admin"],
        help="leave a service out (repeat)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="TLS for files and exec (needed off loopback)")
    parser.add_argument("--tls-key", metavar="FILE", help="private key (PEM), if not in --tls-cert")
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="exec: run commands unconfined where no sandbox works (at your own risk)",
    )
    parser.set_defaults(func=serve_all)


def _service_argv(name: str, args: argparse.Namespace, port: int, root: str) -> list[str]:
    argv = ["serve", name, "--host", args.host, "--port", str(port)]
    if name == "echo":
        return [*argv, "--tcp", "--udp"]
    argv += ["--state-dir", args.state_dir]
    if name in ("files", "exec"):
        argv += ["--root", root]
        if args.tls_cert:
            argv += ["--tls-cert", args.tls_cert]
        if args.tls_key:
            argv += ["--tls-key", args.tls_key]
    if name == "exec" and args.no_sandbox:
        argv.append("--no-sandbox")
    if name == "files" and os.geteuid() == 0:
        # exec's commands (run as DEFAULT_RUN_AS) work on what files stores: give it to them.
        argv += ["--owner", DEFAULT_RUN_AS]
    return argv


def _give_default_root(root: str, options: argparse.Namespace) -> None:
    """As root, exec's commands run as --run-as (nobody): the default root, which we
    created, becomes theirs so that they can write in it (files, running as root, can
    write anywhere anyway)."""
    import pwd  # noqa: PLC0415

    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(options.run_as)
    except KeyError:
        return  # exec refuses the user itself, with the reason
    if os.stat(root).st_uid == 0:
        os.chown(root, entry.pw_uid, entry.pw_gid)


def _build_exec(
    build: Callable[[argparse.Namespace], Service], options: argparse.Namespace
) -> Service | None:
    """exec, or None (with one line saying why and what to do) where no sandbox works:
    the Quick start must run on a machine with only Python."""
    from socketkit.errors import SandboxUnavailable  # noqa: PLC0415

    try:
        return build(options)
    except SandboxUnavailable as exc:
        print(f"{exc}; serve all goes on without exec (serve all --no-sandbox to include it)", flush=True)
        return None


def serve_all(args: argparse.Namespace) -> int:
    """``serve all``: build every service, then run them on one event loop."""
    from socketkit._fdlimit import raise_open_files_limit  # noqa: PLC0415 (lazy imports: fast CLI)
    from socketkit.address import Address  # noqa: PLC0415
    from socketkit.aio.listeners import Listener  # noqa: PLC0415
    from socketkit.aio.loop import run  # noqa: PLC0415
    from socketkit.cli.chat import chat_service  # noqa: PLC0415
    from socketkit.cli.files import files_service  # noqa: PLC0415
    from socketkit.cli.main import build_parser  # noqa: PLC0415 (main imports this module)
    from socketkit.cli.rexec import exec_service  # noqa: PLC0415
    from socketkit.cli.serve import echo_service  # noqa: PLC0415
    from socketkit.limits import ADMIN_MAX_CONNECTIONS  # noqa: PLC0415

    builders: dict[str, Callable[[argparse.Namespace], Service]] = {
        "echo": echo_service,
        "chat": chat_service,
        "files": files_service,
        "exec": exec_service,
    }
    from socketkit._private import private_dir  # noqa: PLC0415

    # The state directory first, itself private (makedirs would have left it at 0755
    # as the parent of the files directory).
    private_dir(args.state_dir)
    root = args.root or os.path.join(args.state_dir, "files")
    if args.root is None:
        # Served content, not state: it sits inside the private state directory, and
        # as root it belongs to exec's run-as user (so no private_dir ownership check).
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    parser = build_parser()
    services: list[Service] = []
    connections = ADMIN_MAX_CONNECTIONS
    try:
        for name in SERVICE_NAMES:
            if name in args.without:
                continue
            port = 0 if args.any_port else getattr(args, f"{name}_port")
            options = parser.parse_args(_service_argv(name, args, port, root))
            if name != "exec":
                services.append(builders[name](options))
            else:
                if args.root is None:
                    _give_default_root(root, options)
                service = _build_exec(builders[name], options)
                if service is None:
                    continue
                services.append(service)
            connections += options.max_connections
        raise_open_files_limit(connections)
        admin = None
        if "admin" not in args.without:
            admin = Listener(Address(args.admin_host, 0 if args.any_port else args.admin_port), "tcp")
        run(_serve_all(services, admin))
        return 0
    finally:
        for service in services:
            service.close()


async def _serve_all(services: Sequence[Service], admin: Listener | None) -> None:
    import asyncio  # noqa: PLC0415
    import contextlib  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from socketkit.cli._serving import print_listening, start_listeners  # noqa: PLC0415
    from socketkit.services.admin.server import make_admin_server  # noqa: PLC0415

    running: list[tuple[Service, AsyncServer, list[str]]] = []

    def snapshot() -> list[ServiceStatus]:
        from socketkit.services.admin.protocol import ServiceStatus  # noqa: PLC0415

        statuses = []
        for service, server, addresses in running:
            stats = server.stats()
            gauges = service.gauges() if service.gauges is not None else {}
            statuses.append(
                ServiceStatus(service.name, addresses, stats.as_dict(), gauges, stats.datagrams_dropped)
            )
        return statuses

    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        servers: list[AsyncServer] = []
        announcements = []
        for service in services:
            server = await stack.enter_async_context(service.make_server())
            bound = await start_listeners(service.name, server, service.listeners)
            running.append((service, server, [str(address) for address, _ in bound]))
            servers.append(server)
            announcements.append((service.name, bound))
        if admin is not None:
            names = frozenset({admin.address.host})  # a name given to --admin-host is its own
            admin_server = await stack.enter_async_context(make_admin_server(snapshot, names=names))
            bound = await start_listeners("admin", admin_server, [admin])
            servers.append(admin_server)
            announcements.append(("admin", bound))

        def on_signal(signum: int) -> None:
            # One handler for every server; the first logs for all (and ignores the same
            # keypress arriving twice, so the others see it once too).
            for index, server in enumerate(servers):
                server.handle_signal(signum, log=index == 0)

        for service, server, _ in running:
            if service.on_started is not None:
                service.on_started(server)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        # Announced only now: whoever reads these lines may stop us at once.
        for name, bound in announcements:
            print_listening(name, bound)
        if admin is not None:
            address = announcements[-1][1][0][0]
            print(f"status at http://{address}/status, metrics at http://{address}/metrics", flush=True)
        await asyncio.gather(*(server.serve_forever() for server in servers))
