"""``build(options) -> Service``: the chat server its options describe, with its store."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from socketkit._readfile import read_option_text
from socketkit.service import Service, engine_caps, listeners_for, tls_context_for
from socketkit.services.chat.options import MAX_PASSWORD_FILE_SIZE, ChatOptions

__all__ = ["build", "read_opers"]

NO_FLOOD_LIMIT = (10**9, 10.0**9)
"""Burst and rate of ``no_flood_limit``: more than any client can send."""


def read_opers(path: str | None) -> dict[str, str]:
    """The operator file: ``NAME PASSWORD`` per line (``#`` comments, blank lines).

    Raises:
        ConfigError: the file cannot be read, or a line has no password.
    """
    from socketkit.errors import ConfigError  # noqa: PLC0415

    opers = {}
    text = read_option_text(path, "the operator file", secret=True) or ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, stored = line.strip().partition(" ")
            if not stored.strip():
                raise ConfigError(f"{path}:{number}: expected 'NAME PASSWORD'")
            opers[name] = stored.strip()
    return opers


def _settings(options: ChatOptions, config: Any) -> Any:
    """``config`` with what the options set (files read again: SIGHUP)."""
    from socketkit.services.chat.state import MAX_MOTD_FILE_SIZE, motd_lines  # noqa: PLC0415

    password = read_option_text(
        options.password_file, "the password file", MAX_PASSWORD_FILE_SIZE, secret=True
    )
    motd = read_option_text(options.motd_file, "the MOTD file", MAX_MOTD_FILE_SIZE)
    burst, rate = NO_FLOOD_LIMIT if options.no_flood_limit else (options.flood_burst, options.flood_rate)
    config = replace(
        config,
        password=password.strip() if password else None,
        opers=read_opers(options.oper_file),
        flood_burst=burst,
        flood_rate=rate,
        # One silence limit: PING half-way, drop when it is reached.
        ping_interval_s=options.idle_timeout / 2,
        ping_timeout_s=options.idle_timeout / 2,
    )
    if motd is not None:
        config = replace(config, motd=motd_lines(motd))
    return config


def build(options: ChatOptions) -> Service:
    """The chat server (one process), plain text on ``port`` and TLS on ``tls_port``."""
    from socketkit.address import Address  # noqa: PLC0415 (lazy imports: fast CLI)
    from socketkit.aio.listeners import Listener  # noqa: PLC0415
    from socketkit.services.chat.server import ChatServer  # noqa: PLC0415
    from socketkit.services.chat.state import ChatConfig  # noqa: PLC0415
    from socketkit.services.chat.store import ChatStore  # noqa: PLC0415
    from socketkit.state import StateDB  # noqa: PLC0415

    base = ChatConfig(server_name=options.server_name or socket.gethostname() or "socketkit.local")
    config = _settings(options, base)
    tls = tls_context_for(options)
    if options.tls_port is None:
        listeners = listeners_for(options, tls)
    else:
        # ``port`` stays plain text; TLS is served on ``tls_port``, as IRC networks do.
        listeners = [*listeners_for(options), Listener(Address(options.host, options.tls_port), "tcp", tls)]
    db = StateDB(options.state_dir)
    store = ChatStore(db)
    chat = ChatServer(config, store)

    def make() -> Any:
        return chat.make_server(
            sendq=options.sendq,
            **engine_caps(options),
        )

    def reconfigure(new: ChatOptions) -> Callable[[], None]:
        config = _settings(new, chat.state.config)  # reads the files: in the reload's thread

        def commit() -> None:
            chat.state.config = config

        return commit

    return Service(
        "chat",
        make,
        listeners,
        options,
        on_started=chat.start_ticker,
        cleanups=[db.close, store.close, chat.close],
        gauges=lambda: {"clients": len(chat.state.clients), "channels": len(chat.state.channels)},
        reconfigure=reconfigure,
        app=chat,
    )
