"""Running blocking work that must complete (audit rows) in a thread.

``asyncio.to_thread`` work is cancelled with its caller if the thread pool has not
started it yet: on a busy machine a server shutting down (which cancels its handlers)
then loses the last audit rows. ``to_thread_shielded`` hands the work to the pool at
once (not from a task that might itself be cancelled before it runs) and waits for it
behind ``asyncio.shield``: a cancelled caller stops waiting, the work still runs, and
``asyncio.run`` waits for the thread pool before it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["to_thread_shielded"]

P = ParamSpec("P")
R = TypeVar("R")


async def to_thread_shielded(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``asyncio.to_thread(func, *args, **kwargs)`` that cancelling the caller cannot stop.

    Raises:
        Exception: what ``func`` raised.
        asyncio.CancelledError: the caller was cancelled (the work goes on).
    """
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    # run_in_executor submits now; only cancelling this future could withdraw the job,
    # and the shield keeps the caller's cancellation from reaching it.
    future = asyncio.get_running_loop().run_in_executor(None, call)
    return await asyncio.shield(future)
