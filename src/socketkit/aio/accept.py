"""Accepting on the asyncio engine: the bound listeners and the loop that takes connections.

Each stream listener's socket is watched with ``loop.add_reader``; a readiness event
accepts up to ``ACCEPT_BATCH`` connections and hands each to the server. A failed
``accept()`` is sorted by the policy both engines share (``socketkit._oserrors``):
nothing pending, one connection lost (skipped), out of descriptors or memory (the
listener rests ``DEFAULT_ACCEPT_BACKOFF_S``, logged once per episode), or a broken
listener (it stops accepting, logged unless the server is closing).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from socketkit._log import get_logger
from socketkit._oserrors import AcceptError, CapacityEpisodes, accept_error
from socketkit.address import Address
from socketkit.aio.datagram import DatagramEndpoint
from socketkit.aio.listeners import Listener, remove_unix_socket

__all__ = ["ACCEPT_BATCH", "Acceptor", "Bound"]

logger = get_logger(__name__)

ACCEPT_BATCH: Final = 64
"""Connections accepted per readiness event: drains a burst in one callback without
keeping the loop from its other sockets for long."""


@dataclass(slots=True)
class Bound:
    """A listener and the socket bound for it (with its datagram endpoint, for UDP)."""

    listener: Listener
    sock: socket.socket
    address: Address
    inode: tuple[int, int] | None = None  # a Unix socket file's, to unlink only our own
    endpoint: DatagramEndpoint | None = None

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop reading, close the socket, remove our Unix socket file."""
        if self.endpoint is not None:
            self.endpoint.close()
        else:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self.sock.fileno())
            self.sock.close()
        remove_unix_socket(self.listener.address, self.inode)


class Acceptor:
    """The accept loop of one server's stream listeners.

    Args:
        accepted: called with each new ``(sock, peer address, bound)``.
        closing: whether the server is stopping (a listener closed then is no news).
    """

    def __init__(
        self,
        accepted: Callable[[socket.socket, Any, Bound], None],
        closing: Callable[[], bool],
    ) -> None:
        self._accepted = accepted
        self._closing = closing
        self._episodes = CapacityEpisodes()

    def watch(self, bound: Bound, loop: asyncio.AbstractEventLoop) -> None:
        """Start accepting on ``bound``."""
        loop.add_reader(bound.sock.fileno(), self._on_acceptable, bound)

    def _on_acceptable(self, bound: Bound) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = bound.sock.accept()
            except OSError as exc:
                kind = accept_error(exc)
                if kind is AcceptError.NOTHING_PENDING:
                    return
                if kind is AcceptError.CONNECTION_LOST:
                    continue  # it died in the backlog: take the next one
                if kind is AcceptError.OUT_OF_RESOURCES:
                    self._episodes.failed(exc)
                    self._rest(bound)
                    return
                self._stop(bound, exc)
                return
            self._episodes.succeeded()
            self._accepted(sock, addr, bound)

    def _rest(self, bound: Bound) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(bound.sock.fileno())

        def resume() -> None:
            if not self._closing() and bound.sock.fileno() >= 0:
                loop.add_reader(bound.sock.fileno(), self._on_acceptable, bound)

        loop.call_later(self._episodes.backoff, resume)

    def _stop(self, bound: Bound, exc: OSError) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(bound.sock.fileno())
        if not self._closing():
            logger.error("accept() on %s failed (%s); that listener stops accepting", bound.address, exc)
