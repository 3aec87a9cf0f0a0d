"""``serve chat``'s options, declared once (flags, configuration file, environment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from socketkit.options import (
    COUNT,
    FLAG,
    PATH,
    PORT,
    RATE,
    SECONDS,
    SIZE,
    TEXT,
    ListenOptions,
    StateOption,
    option,
    port_option,
)

__all__ = [
    "CHAT_PORT",
    "CHAT_TLS_PORT",
    "DEFAULT_FLOOD_BURST",
    "DEFAULT_FLOOD_RATE",
    "DEFAULT_PING_S",
    "DEFAULT_SENDQ",
    "MAX_PASSWORD_FILE_SIZE",
    "ChatOptions",
]

CHAT_PORT: Final = 6667
"""IRC's plain-text port (RFC 7194 registers 6697 for TLS)."""

CHAT_TLS_PORT: Final = 6697
"""IRC over TLS (RFC 7194)."""

DEFAULT_SENDQ: Final = 1 << 20
"""Bytes queued for a client that does not read before it is disconnected (ngircd uses
100 KB; a busy channel's history replay can be larger, and the cap is per client)."""

DEFAULT_FLOOD_BURST: Final = 20
"""Lines a client may send at once before the flood rate applies (a paste of 20 lines)."""

DEFAULT_FLOOD_RATE: Final = 5.0
"""Lines per second a client may send after its burst (faster than anyone types)."""

DEFAULT_PING_S: Final = 60.0
"""Seconds of silence before the server PINGs a client, and again before it drops one
that did not answer: IRC's own liveness check, instead of an idle timeout."""

MAX_PASSWORD_FILE_SIZE: Final = 4096
"""Bytes of a password file: a password is a line; anything larger is not one."""


@dataclass(frozen=True)
class ChatOptions(ListenOptions, StateOption):
    """An IRC server: one process (so no ``--workers``), TCP and TLS (no Unix socket)."""

    port: int = port_option(CHAT_PORT)
    idle_timeout: float = option(
        2 * DEFAULT_PING_S,
        "drop a client silent this many seconds (IRC's PING is sent half-way)",
        SECONDS,
        live=True,
        group="limits",
    )
    tls_port: int | None = option(
        None, f"also serve TLS on this port (usually {CHAT_TLS_PORT}; needs --tls-cert)", PORT, group="TLS"
    )
    server_name: str | None = option(None, "name in replies", TEXT, shown="the host name")
    password_file: str | None = option(
        None, "file holding the connection password (PASS)", PATH, live=True, metavar="FILE"
    )
    oper_file: str | None = option(
        None,
        "'NAME PASSWORD' per line (hash from `socketkit passwd`, or plain)",
        PATH,
        live=True,
        metavar="FILE",
    )
    motd_file: str | None = option(None, "message of the day", PATH, live=True, metavar="FILE")
    sendq: int = option(
        DEFAULT_SENDQ,
        "bytes queued for a client that does not read before it is dropped",
        SIZE,
        group="limits",
    )
    flood_burst: int = option(
        DEFAULT_FLOOD_BURST, "lines a client may send at once", COUNT, live=True, group="limits"
    )
    flood_rate: float = option(DEFAULT_FLOOD_RATE, "then lines per second", RATE, live=True, group="limits")
    no_flood_limit: bool = option(
        False, "no flood control (benchmarks, bots)", FLAG, live=True, group="limits"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tls_port is not None and not self.tls_cert:
            raise ValueError("tls_port needs tls_cert (and tls_key)")
