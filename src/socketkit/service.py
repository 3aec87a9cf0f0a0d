"""The ``Service`` every service's ``build(options)`` returns, and its listeners.

A ``Service`` is a server ready to run: how to make it, where it listens, what to do
once it is started and after it has stopped, its gauges for the admin endpoint, and how
to apply changed options while it runs (SIGHUP). Running one or several is the job of
``socketkit.runtime``; this module is what a service needs to describe itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from socketkit.address import Address

if TYPE_CHECKING:
    from socketkit.aio.listeners import Listener
    from socketkit.aio.server import AsyncServer

__all__ = ["ENGINE_CAPS", "Service", "engine_caps", "listeners_for", "tls_context_for"]


@dataclass
class Service:
    """A service ready to run.

    ``reconfigure(options)`` checks new options for the running service (in a thread:
    it may read files) and returns the function that applies them on the loop;
    it raises ``ConfigError`` to refuse them (the old ones stay).
    """

    name: str
    make_server: Callable[[], AsyncServer]
    listeners: Sequence[Listener]
    options: Any = None
    app: Any = None  # the service's own object (ChatServer, ExecServer...): its state
    on_started: Callable[[AsyncServer], Any] | None = None
    cleanups: list[Callable[[], Any]] = field(default_factory=list)
    gauges: Callable[[], dict[str, float]] | None = None  # for the admin endpoint
    reconfigure: Callable[[Any], Callable[[], None]] | None = None
    servers: list[AsyncServer] = field(default_factory=list)  # the running ones (workers: ours)
    addresses: list[str] = field(default_factory=list)  # where they listen, once bound

    def close(self) -> None:
        """Run the cleanups (close stores and databases), last added first."""
        for cleanup in reversed(self.cleanups):
            cleanup()


def tls_context_for(options: Any) -> Any:
    """The server TLS context of ``options.tls_cert``/``tls_key`` (None: no TLS).

    Raises:
        ConfigError: the certificate or key cannot be loaded (the message names the file).
    """
    if not getattr(options, "tls_cert", None):
        return None
    from socketkit.tls import server_context  # noqa: PLC0415 (lazy: ssl is slow to import)

    return server_context(options.tls_cert, options.tls_key)


def listeners_for(options: Any, ssl_context: Any = None) -> list[Listener]:
    """The listeners ``options`` ask for: TCP unless ``udp``/``unix`` say otherwise
    (``tcp`` too: both). Options a service does not declare count as not given."""
    from socketkit.aio.listeners import Listener  # noqa: PLC0415 (lazy: fast --help)

    want_udp = getattr(options, "udp", False)
    want_unix = getattr(options, "unix", None)
    want_tcp = getattr(options, "tcp", False) or not (want_udp or want_unix)
    inet = Address(options.host, options.port)
    listeners = []
    if want_tcp:
        listeners.append(Listener(inet, "tcp", ssl_context))
    if want_udp:
        listeners.append(Listener(inet, "udp"))
    if want_unix:
        listeners.append(Listener(Address(path=want_unix), "tcp", ssl_context))
    return listeners


ENGINE_CAPS = {
    "max_connections": "max_connections",
    "max_per_address": "max_connections_per_address",
    "shutdown_grace": "shutdown_grace",
}
"""Each ``ListenOptions`` cap and the ``AsyncServer`` argument (and attribute) it sets."""


def engine_caps(options: Any) -> dict[str, Any]:
    """The ``AsyncServer`` caps every service's options declare (``ListenOptions``)."""
    return {argument: getattr(options, option) for option, argument in ENGINE_CAPS.items()}
