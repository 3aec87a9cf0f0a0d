"""``socketkit config check FILE`` and ``socketkit config show [--config FILE]``.

``check`` exits 0 on a good file and 1 on a bad one, printing each mistake as
``FILE:LINE: [TABLE] KEY: what is wrong``. ``show`` prints the effective options of
every service and where each value came from (default, the file and line, an
environment variable).
"""

from __future__ import annotations

import argparse
import os
import sys

from socketkit.runtime.config import CONFIG_NAME, check, load_config, resolve
from socketkit.runtime.services import option_classes

__all__ = ["add_parsers"]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config check`` and ``config show``."""
    config = commands.add_parser(
        "config",
        help="check or show the configuration file",
        description=f"The configuration file ({CONFIG_NAME}).",
    )
    actions = config.add_subparsers(title="actions", metavar="ACTION", required=True)
    checker = actions.add_parser(
        "check", help="check a configuration file", description="Exit 0 if FILE is good, 1 with its mistakes."
    )
    checker.add_argument("file", metavar="FILE")
    checker.set_defaults(func=check_command)
    show = actions.add_parser(
        "show",
        help="print the effective options and where each comes from",
        description="Print every service's options: value and source (default, FILE:LINE, env NAME).",
    )
    show.add_argument("--config", metavar="FILE", help=f"the file (default: ./{CONFIG_NAME} if it exists)")
    show.add_argument("services", nargs="*", metavar="SERVICE", help="only these (default: all)")
    show.set_defaults(func=show_command)


def check_command(args: argparse.Namespace) -> int:
    """``config check FILE``."""
    config = load_config(args.file)
    findings = check(config, option_classes())
    for finding in findings:
        print(finding, file=sys.stderr)
    if findings:
        print(f"{args.file}: {len(findings)} mistake{'s' if len(findings) > 1 else ''}", file=sys.stderr)
        return 1
    print(f"{args.file}: good")
    return 0


def show_command(args: argparse.Namespace) -> int:
    """``config show``."""
    from socketkit.errors import ConfigError  # noqa: PLC0415

    config = load_config(args.config)
    classes = option_classes()
    unknown = [name for name in args.services if name not in classes]
    if unknown:
        raise ConfigError(f"no service {', '.join(unknown)}; services: {', '.join(classes)}")
    for name in args.services or list(classes):
        resolved = resolve(classes[name], name, flags={}, env=os.environ, config=config)
        print(f"[{name}]")
        for key, source in resolved.sources.items():
            value = getattr(resolved.options, key)
            if value is None:  # TOML has no null: shown as a comment
                print(f"# {key} is not set  # {source}")
            else:
                print(f"{key} = {_toml(value)}  # {source}")
        print()
    return 0


def _toml(value: object) -> str:
    """A value as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)
