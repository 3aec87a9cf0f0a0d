"""``socketkit serve all``: the main job. Every service at once in one process (echo,
chat, files, exec), plus the admin endpoint with status and metrics over HTTP.

Each service's options are resolved exactly as ``socketkit serve NAME`` resolves them
(the same declaration, file tables and environment), with this command's flags on
top; each is built by the same ``build``, so its limits, token and exposure checks
are the ones of the single service. They share one event loop and one state directory.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from socketkit.cli._args import port_arg
from socketkit.limits import DEFAULT_STATE_DIR
from socketkit.options import declared
from socketkit.runtime.flags import add_config_option
from socketkit.runtime.services import ALL_SERVICES, SERVICES
from socketkit.services.admin.options import AdminOptions

if TYPE_CHECKING:
    from socketkit.runtime.config import ConfigFile
    from socketkit.service import Service
    from socketkit.services.admin.protocol import ServiceStatus

__all__ = ["add_serve_parser", "serve_all", "service_flags"]

_PORTS = {
    name: next(i.default for i in declared(SERVICES[name].options) if i.name == "port")
    for name in ALL_SERVICES
}
_ADMIN_PORT = next(i.default for i in declared(AdminOptions) if i.name == "port")


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
            "interactive (an operator console): run `socketkit serve talk` on its own. "
            "Each service also takes its own options from the configuration file's table."
        ),
    )
    add_config_option(parser)
    parser.add_argument("--host", help="address every service binds (default: 127.0.0.1)")
    parser.add_argument(
        "--state-dir", metavar="DIR", help=f"token, chat state, audit logs (default: {DEFAULT_STATE_DIR})"
    )
    parser.add_argument(
        "--root", metavar="DIR", help="directory served by files and used by exec (default: STATE_DIR/files)"
    )
    for name, port in [*_PORTS.items(), ("admin", _ADMIN_PORT)]:
        parser.add_argument(f"--{name}-port", type=port_arg, metavar="PORT", help=f"(default: {port})")
    parser.add_argument("--admin-host", help="address of the admin endpoint (default: 127.0.0.1)")
    parser.add_argument("--any-port", action="store_true", help="let the system pick every port")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=[*ALL_SERVICES, "admin"],
        help="leave a service out (repeat; or `enabled = false` in its table)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="TLS for files and exec (needed off loopback)")
    parser.add_argument("--tls-key", metavar="FILE", help="private key (PEM), if not in --tls-cert")
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="exec: run commands unconfined where no sandbox works (at your own risk)",
    )
    parser.set_defaults(func=serve_all)


def service_flags(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """What ``serve all``'s flags set for the service ``name`` (as if its own flags)."""
    flags: dict[str, Any] = {}
    if args.host is not None:
        flags["host"] = args.host
    port = getattr(args, f"{name}_port")
    if args.any_port:
        flags["port"] = 0
    elif port is not None:
        flags["port"] = port
    declared_names = {item.name for item in declared(SERVICES[name].options)}
    for option in ("state_dir", "root"):  # to every service that keeps state or serves a root
        if option in declared_names and getattr(args, option) is not None:
            flags[option] = getattr(args, option)
    if name in ("files", "exec"):  # TLS for these only: chat's and echo's ports stay plain
        if args.tls_cert is not None:
            flags["tls_cert"] = args.tls_cert
        if args.tls_key is not None:
            flags["tls_key"] = args.tls_key
    if name == "exec" and args.no_sandbox:
        flags["no_sandbox"] = True
    if name == "chat" and args.any_port:
        flags["tls_port"] = None  # a file's TLS port would not be "any"
    return flags


def _base(name: str) -> dict[str, Any]:
    """``serve all``'s own defaults for a service, below the file and the environment:
    echo on TCP and UDP; as root, files gives what it stores to exec's run-as user, so
    that commands can work on it."""
    if name == "echo":
        return {"tcp": True, "udp": True}
    if name == "files" and os.geteuid() == 0:
        from socketkit.services.rexec.policy import DEFAULT_RUN_AS  # noqa: PLC0415

        return {"owner": DEFAULT_RUN_AS}
    return {}


def all_options(
    args: argparse.Namespace, config: ConfigFile, env: Mapping[str, str], *, fit: bool = False
) -> dict[str, Any]:
    """Every service's options (and ``admin``'s) for ``serve all``; a service left out
    (``--without``, ``enabled = false``) is not in the result. ``fit``: the services'
    connection caps fitted to the open-file limit the process can get (raising it; a
    default lowered silently, a chosen value kept: socketkit._fdlimit)."""
    from socketkit.runtime.config import enabled, resolve  # noqa: PLC0415

    chosen: dict[str, Any] = {}
    caps: list[tuple[str, Any, str]] = []  # each service's options, where max_connections came from
    for name in [*ALL_SERVICES, "admin"]:
        if name in args.without or not enabled(config, name):
            continue
        if name == "admin":
            flags: dict[str, Any] = {}
            if args.admin_host is not None:
                flags["host"] = args.admin_host
            if args.any_port:
                flags["port"] = 0
            elif args.admin_port is not None:
                flags["port"] = args.admin_port
            chosen[name] = resolve(AdminOptions, "admin", flags=flags, env=env, config=config).options
            continue
        flags = service_flags(name, args)
        resolved = resolve(
            SERVICES[name].options, name, flags=flags, env=env, config=config, base=_base(name)
        )
        chosen[name] = resolved.options
        caps.append((name, resolved.options, resolved.sources["max_connections"]))
    if fit:
        from socketkit._fdlimit import fit_options  # noqa: PLC0415
        from socketkit.limits import ADMIN_MAX_CONNECTIONS  # noqa: PLC0415

        reserved = ADMIN_MAX_CONNECTIONS if "admin" in chosen else 0
        fitted = fit_options(caps, reserved=reserved)
        chosen.update((name, options) for (name, _, _), options in zip(caps, fitted, strict=True))
    return chosen


def _build_exec(options: Any) -> Service | None:
    """exec, or None (with one line saying why and what to do) where no sandbox works:
    the Quick start must run on a machine with only Python."""
    from socketkit.errors import SandboxUnavailable  # noqa: PLC0415

    try:
        return SERVICES["exec"].build(options)
    except SandboxUnavailable as exc:
        print(f"{exc}; serve all goes on without exec (serve all --no-sandbox to include it)", flush=True)
        return None


def serve_all(args: argparse.Namespace) -> int:
    """``serve all``: build every service, then run them on one event loop."""
    from socketkit.address import Address  # noqa: PLC0415 (lazy imports: fast CLI)
    from socketkit.aio.listeners import Listener  # noqa: PLC0415
    from socketkit.aio.loop import run  # noqa: PLC0415
    from socketkit.runtime.config import load_config  # noqa: PLC0415
    from socketkit.runtime.logconfig import apply_log_format  # noqa: PLC0415
    from socketkit.runtime.run import serve  # noqa: PLC0415

    config = load_config(args.config)
    apply_log_format(args, config, os.environ)
    chosen = all_options(args, config, os.environ, fit=True)  # before the services are built
    admin_options = chosen.pop("admin", None)
    services: list[Service] = []
    try:
        for name, options in chosen.items():
            service = _build_exec(options) if name == "exec" else SERVICES[name].build(options)
            if service is None:
                continue
            services.append(service)
        admin_listener = None
        make_admin: Callable[[], Any] | None = None
        if admin_options is not None:
            admin_listener = Listener(Address(admin_options.host, admin_options.port), "tcp")
            make_admin = _admin_factory(services, admin_options)

        def reload() -> dict[str, Any]:
            return all_options(args, load_config(args.config), os.environ, fit=True)

        run(serve(services, admin=make_admin, admin_listener=admin_listener, reload=reload))
        return 0
    finally:
        for service in services:
            service.close()


def _admin_factory(services: list[Service], options: AdminOptions) -> Callable[[], Any]:
    """The admin endpoint's server, reading each running service's counters."""

    def snapshot() -> list[ServiceStatus]:
        from socketkit.services.admin.protocol import ServiceStatus  # noqa: PLC0415

        statuses = []
        for service in services:
            for server in service.servers:
                stats = server.stats()
                gauges = service.gauges() if service.gauges is not None else {}
                statuses.append(
                    ServiceStatus(
                        service.name, service.addresses, stats.as_dict(), gauges, stats.datagrams_dropped
                    )
                )
        return statuses

    def make() -> Any:
        from socketkit.services.admin.server import make_admin_server  # noqa: PLC0415

        # A name given as the admin host is its own (the Host header check).
        return make_admin_server(snapshot, names=frozenset({options.host}))

    return make
