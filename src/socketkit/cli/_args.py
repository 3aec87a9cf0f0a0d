"""argparse types for ports, addresses, durations and counts, with the parser's own clear
error messages: a bad value is a usage error (exit status 2), never a traceback later."""

from __future__ import annotations

import argparse
import math

from socketkit.address import Address, parse_address, parse_port

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

MAX_SECONDS = 366 * 24 * 3600.0
"""The longest duration any option takes (a year): ``inf`` and ``1e300`` are refused
here, where they would overflow the kernel's timeval (``settimeout``) or never end."""


def positive_float(text: str) -> float:
    """argparse type: a finite number of seconds, more than 0 and at most a year."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds more than 0 and at most a year ({MAX_SECONDS:.0f}), not {text}"
        )
    return value


def positive_number(text: str) -> float:
    """argparse type: a finite number more than 0 (a rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not math.isfinite(value) or not value > 0 or value > 1e9:
        raise argparse.ArgumentTypeError(f"expected a number more than 0 and at most 1e9, not {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


MAX_SIZE = 1 << 60
"""The largest size any option takes (1 EiB): beyond any disk or memory, and well inside
the kernel's 64-bit limits (``setrlimit``)."""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size_arg(text: str) -> int:
    """argparse type: a size of at least 1 byte, as ``1048576``, ``512K``, ``64M``,
    ``2G``, ``1T`` (powers of 1024; ``MiB``, ``GB`` and the like read the same)."""
    digits = text.rstrip("KMGTkmgtiBb")
    unit = text[len(digits) :].upper().replace("IB", "").replace("B", "")
    if not digits.isdigit() or unit not in _UNITS or not 1 <= int(digits) * _UNITS[unit] <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"expected a size such as 64M or 2G (at least 1 byte), not {text!r}")
    return int(digits) * _UNITS[unit]


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
