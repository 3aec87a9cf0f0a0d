"""A service's command-line flags, derived from its options declaration.

Every flag's default and help come from the declaration (``socketkit.options``), so
neither is written twice. The parsed namespace holds only the flags the user gave
(argparse's defaults are suppressed): what was not given comes from the environment,
the configuration file or the declaration, in that order (``runtime.config``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from socketkit.options import FLAG, TEXT, Declared, declared

__all__ = ["add_config_option", "argparse_type", "add_option_flags", "flags_given", "help_text"]

CONFIG_HELP = (
    "read options from this TOML file (default: ./socketkit.toml if it exists; "
    "flags and SOCKETKIT_<SERVICE>_<OPTION> variables override it)"
)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``."""
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def help_text(item: Declared) -> str:
    """The flag's help: the declared text and the declared default."""
    shown = item.default_text
    return item.info.help if shown is None else f"{item.info.help} (default: {shown})"


def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a kind's parser: its ``ValueError`` becomes a usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_option_flags(
    parser: argparse.ArgumentParser, cls: type, *, skip: frozenset[str] = frozenset()
) -> None:
    """Add a flag for every option ``cls`` declares (but ``skip``), grouped as declared."""
    groups: dict[str, Any] = {"options": parser}  # the parser's own section
    items = [item for item in declared(cls) if item.name not in skip]
    for item in items:
        group_name = item.info.group
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        group = groups[group_name]
        kind = item.info.kind
        common: dict[str, Any] = {"dest": item.name, "default": argparse.SUPPRESS, "help": help_text(item)}
        if kind is FLAG:
            group.add_argument(item.flag, action="store_true", **common)
            continue
        metavar = item.info.metavar or kind.metavar
        if kind.multiple:
            # Each flag is one value (the environment's comma-separated list is for
            # the environment only): `--allow a --allow b`.
            single = argparse_type(TEXT.parse)
            group.add_argument(item.flag, action="append", type=single, metavar=metavar, **common)
        else:
            group.add_argument(item.flag, type=argparse_type(kind.parse), metavar=metavar, **common)


def flags_given(args: argparse.Namespace, cls: type) -> Mapping[str, Any]:
    """The options of ``cls`` given on the command line, with their values."""
    given = {}
    for item in declared(cls):
        if hasattr(args, item.name):
            value = getattr(args, item.name)
            given[item.name] = tuple(value) if item.info.kind.multiple else value
    return given
