"""The asyncio engine: many connections per process, uvloop when installed.

- ``AsyncServer``: TCP/UDP/Unix listeners (several at once), TLS, connection caps
  (global and per address), handshake/idle/message/write timeouts, back-pressure,
  stats and a graceful drain (requests marked ``Connection.busy()`` and input already
  sent finish, idle connections get the service's farewell, the rest are cut with the
  reason after the grace); connections owned by a TaskGroup.
- ``Connection``: one stream connection driven by a ``socketkit.codec`` decoder; a
  ``Session`` (callbacks, no task per message) or a handler task (``async for``).
- ``open_connection``: the same glue for clients.
- ``run``: ``asyncio.run`` on uvloop when available.
"""

from socketkit.aio.client import open_connection
from socketkit.aio.connection import Connection, ConnectionLimits, Session, format_peer
from socketkit.aio.datagram import DatagramEndpoint, DatagramHandler
from socketkit.aio.listeners import Listener
from socketkit.aio.loop import loop_factory, run, uvloop_enabled
from socketkit.aio.server import AsyncServer
from socketkit.aio.stats import ServerStats

__all__ = [
    "AsyncServer",
    "Connection",
    "ConnectionLimits",
    "DatagramEndpoint",
    "DatagramHandler",
    "Listener",
    "ServerStats",
    "Session",
    "format_peer",
    "loop_factory",
    "open_connection",
    "run",
    "uvloop_enabled",
]
