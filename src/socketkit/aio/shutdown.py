"""The graceful drain of an ``AsyncServer``'s connections, step by step.

``AsyncServer.aclose()`` closes its listeners first (new connections are refused at
once), then runs ``drain``:

1. every connection is asked to finish (``Connection.request_shutdown``): an idle one
   closes at once with the service's farewell; a request in progress (``busy()``), or
   input the peer had already sent, goes on;
2. after ``grace`` seconds, what is still open is cut with ``grace_ran_out``: a session
   gets ``shutdown_forced(reason)``; a handler task is cancelled, so its own cleanup
   runs (an exec command is stopped, an upload keeps its partial), and then the
   connection gets the farewell and closes;
3. after ``CUT_TIMEOUT_S`` more, whatever is left is aborted.

A second signal (``AsyncServer.handle_signal``) aborts every connection at any step, so
each wait ends at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from socketkit._log import get_logger
from socketkit._shutdown import grace_ran_out
from socketkit.aio.connection import Connection
from socketkit.aio.registry import ConnectionRegistry
from socketkit.limits import DEFAULT_FORCE_CLOSE_TIMEOUT_S

__all__ = ["CUT_TIMEOUT_S", "drain"]

logger = get_logger(__name__)

CUT_TIMEOUT_S: Final = DEFAULT_FORCE_CLOSE_TIMEOUT_S
"""After the grace, how long cut connections get to run their cleanup and flush their
farewell before they are aborted: the blocking engine's ``force_close_timeout`` (stopping
an exec command with SIGKILL and reaping it takes milliseconds; a peer that reads
nothing of the farewell is not waited for longer)."""


async def drain(
    registry: ConnectionRegistry, grace: float, cut: Callable[[Connection[Any], str], None]
) -> None:
    """Ask every connection to finish, cut what is left after ``grace`` seconds with
    ``cut(conn, reason)``, abort what is left ``CUT_TIMEOUT_S`` later."""
    for conn in registry.connections():
        conn.request_shutdown()
    if await _idle_within(registry, grace):
        return
    reason = grace_ran_out(grace)
    logger.warning("cutting %d connection(s) still open after the %.1f s grace", len(registry), grace)
    for conn in registry.connections():
        cut(conn, reason)
    if await _idle_within(registry, CUT_TIMEOUT_S):
        return
    logger.warning("aborting %d connection(s) still open %.1f s after the cut", len(registry), CUT_TIMEOUT_S)
    for conn in registry.connections():
        conn.abort()


async def _idle_within(registry: ConnectionRegistry, seconds: float) -> bool:
    """Wait up to ``seconds`` until no connection is open or pending."""
    try:
        async with asyncio.timeout(seconds):
            await registry.idle.wait()
    except TimeoutError:
        return False
    return True
