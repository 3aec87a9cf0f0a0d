"""argparse types for ports, addresses, durations and counts (the kinds of
``socketkit.options``, so a flag a client takes reads as a server's does), with clear
error messages: a bad value is a usage error (exit status 2), never a traceback later."""

from __future__ import annotations

import argparse

from socketkit.address import Address, parse_address, parse_port
from socketkit.options import COUNT, MAX_SECONDS, MAX_SIZE, RATE, SECONDS, SIZE
from socketkit.runtime.flags import argparse_type

__all__ = [
    "MAX_SECONDS",
    "MAX_SIZE",
    "address_arg",
    "port_arg",
    "positive_float",
    "positive_int",
    "positive_number",
    "size_arg",
]

positive_float = argparse_type(SECONDS.parse)
"""argparse type: a finite number of seconds, more than 0 and at most a year."""

positive_number = argparse_type(RATE.parse)
"""argparse type: a finite number more than 0 (a rate)."""

positive_int = argparse_type(COUNT.parse)
"""argparse type: a whole number >= 1."""

size_arg = argparse_type(SIZE.parse)
"""argparse type: a size of at least 1 byte, as ``1048576``, ``512K``, ``64M``, ``2G``,
``1T`` (powers of 1024; ``MiB``, ``GB`` and the like read the same)."""


def port_arg(text: str) -> int:
    """argparse type: a port 0-65535."""
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def address_arg(text: str) -> Address:
    """argparse type: HOST:PORT, [v6]:PORT, :PORT, PORT or unix:PATH."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
