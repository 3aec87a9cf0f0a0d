"""Event loop selection: uvloop when it is installed, the stdlib loop otherwise.

``SOCKETKIT_UVLOOP=0`` in the environment forces the stdlib loop (for comparisons and
for debugging with asyncio's debug mode).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "uvloop_enabled"]

T = TypeVar("T")


def uvloop_enabled() -> bool:
    """Whether ``run()`` will use uvloop (installed, and not disabled by the environment)."""
    if os.environ.get("SOCKETKIT_UVLOOP", "1") == "0":
        return False
    try:
        import uvloop  # noqa: F401, PLC0415 (optional dependency, probed lazily)
    except ImportError:
        return False
    return True


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """Return a factory for the best available event loop."""
    if uvloop_enabled():
        import uvloop  # noqa: PLC0415 (optional dependency)

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a new event loop (uvloop when available).

    Args:
        main: the coroutine to run.
        debug: asyncio debug mode (default: from the environment, as ``asyncio.run``).

    Returns:
        what ``main`` returns.
    """
    with asyncio.Runner(debug=debug, loop_factory=loop_factory()) as runner:
        return runner.run(main)
