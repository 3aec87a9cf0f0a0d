"""aio_serving(): an AsyncServer listening on loopback for the length of an ``async with``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.aio.server import AsyncServer

__all__ = ["aio_serving"]


@asynccontextmanager
async def aio_serving(
    server: AsyncServer, listeners: Sequence[Listener] | None = None
) -> AsyncIterator[list[Address]]:
    """Start ``server`` (default: one TCP listener on 127.0.0.1, port 0), yield the bound
    addresses, then close it gracefully. Readiness is the return of ``start()``: the
    sockets are listening before the body runs, no sleep needed.

    Raises:
        OSError: a listener could not be bound.
    """
    async with server:
        yield await server.start(listeners or [Listener(Address("127.0.0.1", 0))])
