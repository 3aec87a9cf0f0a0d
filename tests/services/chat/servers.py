"""A chat server on a background thread for loopback tests, with its ticker and store."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from socketkit.address import Address
from socketkit.aio.listeners import Listener
from socketkit.services.chat.server import ChatServer, PasswordChecker
from socketkit.services.chat.state import ChatConfig
from socketkit.services.chat.store import ChatStore
from socketkit.state import StateDB
from tests.aio_thread import LOCAL, server_thread


@contextlib.contextmanager
def chat_server(
    state_dir: Path | None = None,
    listeners: list[Listener] = LOCAL,
    *,
    server_options: dict[str, Any] | None = None,
    passwords: PasswordChecker | None = None,
    clock: Callable[[], float] = time.time,
    **config: Any,
) -> Iterator[list[Address]]:
    """A chat server (with its SQLite store if ``state_dir``) on a thread."""
    config.setdefault("server_name", "irc.test")
    db = StateDB(state_dir) if state_dir is not None else None
    store = ChatStore(db) if db is not None else None
    chat = ChatServer(ChatConfig(**config), store, passwords=passwords, clock=clock)
    try:
        with server_thread(
            lambda: chat.make_server(**(server_options or {})), listeners, chat.start_ticker
        ) as addrs:
            yield addrs
    finally:
        chat.close()
        if store is not None:
            store.close()
        if db is not None:
            db.close()
