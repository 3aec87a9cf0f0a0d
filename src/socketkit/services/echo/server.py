"""Echo servers: a Session for the asyncio engine (stream), a datagram handler (UDP) with
the reflection policy, and a handler for the blocking engine. Each is a few lines: the
engine does the rest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from socketkit._log import get_logger
from socketkit.address import Address
from socketkit.aio.connection import ConnectionLimits, Session, format_peer
from socketkit.aio.datagram import DatagramEndpoint
from socketkit.aio.listeners import Listener
from socketkit.aio.server import AsyncServer
from socketkit.server.handlers import BaseRequestHandler
from socketkit.services.echo.policy import EchoPolicy
from socketkit.services.echo.protocol import IDLE_TIMEOUT_S

__all__ = ["EchoDatagrams", "EchoHandler", "EchoServer", "EchoSession", "make_echo_server"]

logger = get_logger(__name__)


class EchoSession(Session[bytes]):
    """Stream echo: each chunk goes straight back (inline, no task switch).

    It writes to the transport directly, the one hot path that skips ``conn.send``'s
    checks: nothing arrives after a close, and a peer that does not read the echo is
    not read from (the engine pauses reading above the write high-water mark), so the
    send-queue cap cannot be reached.
    """

    __slots__ = ("_write",)

    def connection_made(self) -> None:
        assert self.conn.transport is not None
        self._write = self.conn.transport.write

    def message_received(self, message: bytes) -> None:
        self._write(message)
        self.conn.bytes_out += len(message)


class EchoDatagrams:
    """UDP echo: the datagram goes back to its sender, unless ``policy`` refuses the
    sender (a forged source: see ``socketkit.services.echo.policy``); a refused one is
    counted by reason in the server's stats and logged the 1st, 2nd, 4th, 8th... time.

    Args:
        policy: who gets an answer.
        clock: monotonic seconds (tests pass a fake one).
    """

    __slots__ = ("_check", "_clock", "policy")

    def __init__(self, policy: EchoPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._check = policy.check
        self._clock = clock

    def __call__(self, data: bytes, addr: Any, endpoint: DatagramEndpoint) -> None:
        # A Unix datagram sender's path is set by the kernel: it cannot be forged.
        if type(addr) is tuple:
            reason = self._check(addr[0], addr[1], self._clock())
            if reason is not None:
                count = endpoint.drop(reason)
                if count & (count - 1) == 0:
                    logger.warning("echo: no answer to %s: %s (%d so far)", format_peer(addr), reason, count)
                return
        endpoint.sendto(data, addr)


class EchoServer(AsyncServer):
    """``AsyncServer`` whose UDP echo knows the server's own ports (its policy refuses
    datagrams from them)."""

    def __init__(self, *, datagram_handler: EchoDatagrams, **options: Any) -> None:
        super().__init__(datagram_handler=datagram_handler, **options)
        self.echo_policy = datagram_handler.policy

    async def start(self, listeners: Sequence[Listener]) -> list[Address]:
        """Bind ``listeners`` (see ``AsyncServer.start``), then tell the policy the ports."""
        policy = self.echo_policy
        # The ports asked for count from the first datagram on; port 0's once bound.
        policy.set_own_ports(policy.own_ports | _ports(listener.address for listener in listeners))
        try:
            return await super().start(listeners)
        finally:
            policy.set_own_ports(_ports(self.addresses))


def _ports(addresses: Any) -> frozenset[int]:
    return frozenset(a.port for a in addresses if a.path is None and a.port)


class EchoHandler(BaseRequestHandler):
    """Echo on the blocking engine (socketkit.server), with an idle timeout."""

    timeout = IDLE_TIMEOUT_S

    def handle(self) -> None:
        self.request.settimeout(self.timeout)
        while data := self.request.recv(65536):
            self.request.sendall(data)


def make_echo_server(
    *, policy: EchoPolicy | None = None, idle_timeout: float | None = IDLE_TIMEOUT_S, **overrides: Any
) -> EchoServer:
    """A server of echo on stream and datagram listeners.

    Args:
        policy: which UDP senders get an answer (default: ``EchoPolicy()``, the
            limits of ``socketkit.services.echo.policy``).
        idle_timeout: seconds a silent connection stays open (echo's only timeout).
        overrides: ``AsyncServer`` keyword arguments (caps...).
    """
    options: dict[str, Any] = {
        "session_factory": EchoSession,
        "limits": ConnectionLimits(idle_timeout=idle_timeout, handshake_timeout=None, message_timeout=None),
    }
    options.update(overrides)
    options.setdefault("datagram_handler", EchoDatagrams(policy or EchoPolicy()))
    return EchoServer(**options)
