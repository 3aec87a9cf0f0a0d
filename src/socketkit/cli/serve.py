"""``socketkit serve SERVICE``: run a service in the foreground until Ctrl-C or SIGTERM.

Every ``serve X`` is made from the service's options declaration: its flags, their
defaults and help (``runtime.flags``), and the same options read from ``--config
FILE`` (or ``./socketkit.toml``) and ``SOCKETKIT_X_OPTION`` (``runtime.config``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from socketkit.runtime.config import ConfigFile, load_config, resolve
from socketkit.runtime.flags import add_config_option, add_option_flags, flags_given
from socketkit.runtime.services import SERVICES, ServiceKind

__all__ = ["add_parsers", "build_from_args", "options_for", "serve_service"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` and its services."""
    serve = commands.add_parser("serve", help="run a service", description="Run a service.")
    services = serve.add_subparsers(title="services", metavar="SERVICE", required=True)
    for kind in SERVICES.values():
        parser = services.add_parser(kind.name, help=kind.summary, description=kind.description)
        add_config_option(parser)
        add_option_flags(parser, kind.options)
        parser.set_defaults(func=serve_service, service=kind.name)

    from socketkit.cli.serve_all import add_serve_parser as add_all  # noqa: PLC0415

    add_all(services)


def options_for(
    kind: ServiceKind, args: argparse.Namespace, config: ConfigFile, env: Mapping[str, str]
) -> Any:
    """The service's options: flag > environment > file > declared default."""
    return resolve(
        kind.options, kind.name, flags=flags_given(args, kind.options), env=env, config=config
    ).options


def _fitted_options(
    kind: ServiceKind, args: argparse.Namespace, config: ConfigFile, env: Mapping[str, str]
) -> Any:
    """``options_for``, with the connection cap fitted to the open-file limit the
    process can get (a default lowered silently; a chosen value kept: socketkit._fdlimit)."""
    from socketkit._fdlimit import fit_options  # noqa: PLC0415 (lazy: fast --help)

    resolved = resolve(kind.options, kind.name, flags=flags_given(args, kind.options), env=env, config=config)
    (options,) = fit_options([(kind.name, resolved.options, resolved.sources["max_connections"])])
    return options


def build_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Any:
    """The service ``serve X`` with these arguments builds (no configuration file unless
    ``--config`` names one; ``env`` defaults to none: for tests and programs)."""
    kind = SERVICES[args.service]
    config = load_config(args.config) if args.config else ConfigFile()
    return kind.build(options_for(kind, args, config, env or {}))


def _talk_console() -> dict[str, Any]:
    """``serve talk``'s operator console: it reads the terminal once the server runs."""
    from socketkit.cli.talk import start_console  # noqa: PLC0415

    return {"console": start_console}


def serve_service(args: argparse.Namespace) -> int:
    """``serve X``: resolve the options, build the service, run it."""
    from socketkit.runtime.logconfig import apply_log_format  # noqa: PLC0415 (lazy: fast --help)
    from socketkit.runtime.run import run_service  # noqa: PLC0415

    kind = SERVICES[args.service]
    config = load_config(args.config)
    apply_log_format(args, config, os.environ)
    options = _fitted_options(kind, args, config, os.environ)  # before forking: workers inherit the limit

    def reload() -> dict[str, Any]:
        return {kind.name: _fitted_options(kind, args, load_config(args.config), os.environ)}

    extra = _talk_console() if kind.name == "talk" else {}
    service = kind.build(options, **extra)
    sys.stdout.flush()
    return run_service(service, workers=getattr(options, "workers", 1), reload=reload)
