"""The log format a server uses: ``--log-format``, else ``SOCKETKIT_ALL_LOG_FORMAT``,
else ``[all] log_format`` in the configuration file, else readable text."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping

from socketkit._logformat import formatter
from socketkit.runtime.config import ConfigFile, shared_value

__all__ = ["apply_log_format", "set_log_format"]


def set_log_format(name: str) -> None:
    """Give every handler of the root logger the format ``name``."""
    for handler in logging.root.handlers:
        handler.setFormatter(formatter(name))


def apply_log_format(args: argparse.Namespace, config: ConfigFile, env: Mapping[str, str]) -> None:
    """Apply the format the flag, environment or file asks for.

    Raises:
        ConfigError: the environment or the file names an unknown format.
    """
    name = getattr(args, "log_format", None) or shared_value(config, env, "log_format", "text")
    set_log_format(name)
