"""argparse types for ports and addresses, with the parser's own clear error messages."""

from __future__ import annotations

import argparse

from socketkit.address import Address, parse_address, parse_port

__all__ = ["address_arg", "port_arg"]


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
