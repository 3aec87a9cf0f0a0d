"""Admission at a cap: making room by evicting the oldest connection a service lets
go, and refusing a connection with one sampled log line and the service's message."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable
from typing import Any

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit.address import format_peer
from socketkit.aio.connection import Connection

__all__ = ["make_room", "refuse"]

logger = get_logger("socketkit.aio.server")  # the server's log lines, as before the split


def make_room(
    connections: Iterable[Connection[Any]],
    key: str,
    reason: str,
    evict: Callable[[Connection[Any]], bool] | None,
    serial: int,
) -> bool:
    """Evict the oldest connection the service lets go (``evict``) of peer ``key``, or
    of anyone when the server is full; return whether one was.

    The evicted connection is counted until it is gone (its close is under way): a burst
    can exceed a cap by the connections it evicts, for a loop turn. The scan is over
    open connections, oldest first: for small servers (the admin endpoint), not for ten
    thousand connections."""
    if evict is None:
        return False
    anyone = reason.startswith("server full")
    for conn in connections:  # registration order: oldest first
        if (anyone or conn.limit_key == key) and not conn.is_closing and evict(conn):
            count = REFUSALS.count(f"evicted {serial}")
            if sampled(count):
                logger.info(
                    "evicted %s for a newer connection: %s (%d in the last minute)", conn.peer, reason, count
                )
            return True
    return False


def refuse(
    sock: socket.socket, addr: Any, reason: str, refusal: Callable[[str], bytes | None] | None, serial: int
) -> None:
    """Close a connection over a cap, after the service's message (``refusal``)."""
    kind = "full" if reason.startswith("server full") else "per-address"  # never the peer: bounded
    count = REFUSALS.count(f"refused {serial} {kind}")
    if sampled(count):
        logger.warning("refused %s: %s (%d in the last minute)", format_peer(addr), reason, count)
    message = None if refusal is None else refusal(reason)
    with contextlib.suppress(OSError):
        if message:
            sock.send(message)  # best effort: a short line fits any socket buffer
    sock.close()
