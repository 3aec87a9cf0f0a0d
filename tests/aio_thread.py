"""An AsyncServer on its own event loop in a background thread, for tests whose client
side runs its own loop (the CLI's in-process entry points)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.aio.server import AsyncServer

LOCAL = [Listener(Address("127.0.0.1", 0))]


@contextmanager
def server_thread(
    make_server: Callable[[], AsyncServer],
    listeners: Sequence[Listener] = LOCAL,
    on_started: Callable[[AsyncServer], object] | None = None,
) -> Iterator[list[Address]]:
    """Start the server in a thread; yield its addresses; stop it and join the thread.

    ``on_started(server)`` runs on the server's loop once it listens (to spawn its
    periodic tasks, as the CLI does)."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        state["loop"], state["stop"] = asyncio.get_running_loop(), stop
        try:
            server = make_server()
            async with server:
                state["addresses"] = await server.start(listeners)
                if on_started is not None:
                    on_started(server)
                ready.set()
                await stop.wait()
        except BaseException as exc:
            state["error"] = exc
            raise
        finally:
            ready.set()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="test-server", daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in state:
        thread.join(30)
        raise state["error"]
    try:
        yield state["addresses"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "the server thread did not stop"
