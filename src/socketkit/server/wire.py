"""Wire-v1 services on the blocking engine: the hello and the token authentication that
exec and files use, then frames, in a ``socketserver``-style handler.

``WireRequestHandler`` opens every connection through the same pure objects as the
asyncio services: ``socketkit.auth.wiresession.ServerSession`` for the exchange and
``socketkit.auth.gate.GateRules`` for the unauthenticated phase (the per-peer and total
caps, the deadline, the throttle's delayed verdicts, the log lines). So its clients are
socketkit's own (``socketkit.auth.connect.connect_authenticated``), and a client cannot
tell which engine serves it. The rules are kept per server, in its process: a forking
server, whose children would each start from an empty throttle, is refused.

``run_opening`` is the blocking driver of any session (both roles) over a socket.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from socketkit._log import REFUSALS, get_logger, sampled
from socketkit._oserrors import translate_os_errors
from socketkit._shutdown import wire_farewell
from socketkit.address import format_peer
from socketkit.auth.gate import Eviction, GateRules
from socketkit.auth.handshake import NONCE_SIZE
from socketkit.auth.wiresession import (
    Authenticated,
    HelloReceived,
    Refused,
    SessionEvent,
    WireSession,
    opening_refusal,
)
from socketkit.codec.base import NEED_DATA
from socketkit.codec.wire import (
    BodyStart,
    Control,
    Data,
    ErrorFrame,
    WireDecoder,
    WireEvent,
    encode,
    encode_control,
    encode_error,
)
from socketkit.errors import RemoteProtocolError, ResourceError
from socketkit.limits import (
    DEFAULT_AUTH_TIMEOUT_S,
    DEFAULT_MAX_CONTROL_SIZE,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_RECV_SIZE,
)
from socketkit.peercred import peer_key
from socketkit.server.forking import ForkingMixIn
from socketkit.server.handlers import FramedRequestHandler

__all__ = ["WireRequestHandler", "run_opening"]

logger = get_logger(__name__)


def run_opening(
    sock: socket.socket,
    session: WireSession,
    *,
    recv_size: int = DEFAULT_RECV_SIZE,
    clock: Callable[[], float] = time.monotonic,
) -> HelloReceived | Authenticated | Refused:
    """Drive ``session`` (started at ``clock()`` time) over a blocking ``sock`` until it
    is open or refused; return the event that ended the opening. Reads wait no longer
    than the session's deadline (the socket's own timeout applies when it has none); a
    verdict's ``not_before`` is waited out unless the connection is shut down meanwhile
    (the peer left, or the server is closing). What arrived behind the opening stays in
    the session's decoder. A refusal's ERROR frame has been sent.

    Never raises for what the peer does (that is a ``Refused``).
    """
    if not _send(sock, session.data_to_send()):
        return Refused(ResourceError("the connection broke before the hello"), by_peer=True)
    while True:
        event = session.next_event()
        if event is NEED_DATA:
            _receive_into(sock, session, recv_size, clock)
            continue
        assert isinstance(event, SessionEvent), event  # frames come only once it is open
        if isinstance(event, (Authenticated, Refused)):
            _hold(sock, event.not_before - clock())
        data = session.data_to_send()
        if isinstance(event, Refused):
            _send(sock, data)
            return event
        if not _send(sock, data):
            return Refused(ResourceError("the connection broke during the opening"), by_peer=True)
        if session.is_open:
            assert isinstance(event, (HelloReceived, Authenticated)), event  # what opens it
            return event


def _receive_into(
    sock: socket.socket, session: WireSession, recv_size: int, clock: Callable[[], float]
) -> None:
    if session.deadline is not None:
        remaining = session.deadline - clock()
        if remaining <= 0:
            session.check_deadline(clock())
            return
        sock.settimeout(remaining)
    try:
        with translate_os_errors():
            data = sock.recv(recv_size)
    except TimeoutError as exc:
        if not session.check_deadline(clock()) and session.deadline is None:
            session.receive_error(exc)  # the socket's own (idle) timeout
        return
    except ResourceError as exc:
        session.receive_error(exc)
        return
    session.feed(data)


def _send(sock: socket.socket, data: bytes) -> bool:
    """Send all of ``data``; ``False`` when the connection could not take it."""
    if not data:
        return True
    try:
        with translate_os_errors():
            sock.sendall(data)
    except (ResourceError, TimeoutError):
        return False
    return True


_HANGUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def _hold(sock: socket.socket, seconds: float) -> None:
    """Wait ``seconds``, or less if the connection is shut down: the peer hung up, or
    the server's ``server_close()`` shut it down under us to end the handler. Data the
    peer sends meanwhile (its first request) does not end the wait."""
    if seconds <= 0:
        return
    poller = select.poll()
    poller.register(sock, _HANGUP)
    poller.poll(seconds * 1000)


@dataclass(slots=True)
class _Gate:
    rules: GateRules
    lock: threading.Lock


_gates: weakref.WeakKeyDictionary[Any, _Gate] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


class WireRequestHandler(FramedRequestHandler[WireEvent]):
    """A ``FramedRequestHandler`` for wire-v1 protocols: each connection opens with the
    hello and (with a ``token``) the challenge-response of ``docs/protocol.md`` section
    4; then ``session_opened()`` runs and every frame goes to ``handle_message()``.

    A connection that fails the opening (a wrong token, bad bytes, too slow, over the
    unauthenticated caps) gets an ERROR frame where it can read one, one log line, and
    is closed; the service never sees it.

    Attributes:
        service: the name announced in the challenge (clients check it).
        token: the shared secret; ``None``: no authentication (the challenge says
            "none": keep such a server on loopback).
        auth_timeout: seconds for the hello and the authentication (plus the throttle's
            announced delay), whatever ``timeout`` (the idle timeout) is.
        max_frame_size, max_control_size: the decoder's limits.
    """

    service: str = ""
    token: str | None = None
    auth_timeout: float = DEFAULT_AUTH_TIMEOUT_S
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_control_size: int = DEFAULT_MAX_CONTROL_SIZE

    def make_decoder(self) -> WireDecoder:
        """The connection's decoder, with the class's limits."""
        return WireDecoder(self.max_frame_size, max_control_size=self.max_control_size)

    @classmethod
    def make_gate(cls) -> GateRules:
        """The rules of the server's unauthenticated phase, made once per server (override
        to change the caps or the throttle)."""
        return GateRules(cls.service, cls.token, timeout=cls.auth_timeout)

    def session_opened(self) -> None:
        """Called once the opening succeeded, before the first frame; default: nothing."""

    def handle(self) -> None:
        if self.open_session():
            self.session_opened()
            super().handle()

    def protocol_error(self, exc: RemoteProtocolError) -> None:
        """Tell the peer in an ERROR frame before the connection closes."""
        self.send(encode_error(exc.error_code, str(exc)))

    def farewell(self, reason: str) -> None:
        """The server stops serving the connection (shutting down): an ERROR frame
        ``shutting-down`` says why (``socketkit._shutdown.wire_farewell``)."""
        self.send(wire_farewell(reason))

    def send_frame(self, frame: Control | Data | ErrorFrame | BodyStart) -> None:
        """Send one frame (``BodyStart``: its header; the body follows with ``send()``).

        Raises:
            LocalProtocolError: the frame cannot be encoded.
            BrokenResourceError, TimeoutError: see ``send()``.
        """
        self.send(encode(frame))

    def send_control(self, header: Mapping[str, Any], channel: int = 0) -> None:
        """Send a CONTROL frame carrying ``header``."""
        self.send(encode_control(header, channel))

    def open_session(self) -> bool:
        """The hello and the authentication; whether the peer may go on. On ``False``
        the peer has been told why where it can read it, and one line logged."""
        decoder = self.decoder
        assert isinstance(decoder, WireDecoder), "make_decoder() must return a WireDecoder"
        peer = format_peer(self.client_address)
        if isinstance(self.server, ForkingMixIn) and self.token is not None:
            logger.error(
                "%s: refused %s: a forking server cannot keep the authentication throttle; "
                "serve with ThreadingTCPServer",
                self.service,
                peer,
            )
            _send(self.request, opening_refusal("internal-error", "the server cannot authenticate"))
            return False
        gate = self._gate()
        key = peer_key(self.request, self.client_address)
        sock = self.request
        with gate.lock:
            eviction = gate.rules.admit(key, sock)
        if eviction is not None:
            _evict(eviction, self.service)
        try:
            with gate.lock:
                session = gate.rules.start(
                    key, secrets.token_bytes(NONCE_SIZE), time.monotonic(), decoder=decoder, handle=sock
                )
            end = run_opening(sock, session, recv_size=self.recv_size)
            assert not isinstance(end, HelloReceived)  # a ServerSession ends authenticated
        finally:
            with gate.lock:
                kept = gate.rules.release(sock)
            with contextlib.suppress(OSError):
                sock.settimeout(self.timeout)
        with gate.lock:
            line = gate.rules.settle(key, peer, end, time.monotonic(), evicted=not kept)
        if line is not None:
            level, text = line
            logger.log(logging.getLevelNamesMapping()[level.upper()], "%s", text)
        return kept and isinstance(end, Authenticated)

    def _gate(self) -> _Gate:
        with _gates_lock:
            gate = _gates.get(self.server)
            if gate is None:
                gate = _gates[self.server] = _Gate(self.make_gate(), threading.Lock())
            return gate


def _evict(eviction: Eviction, service: str) -> None:
    """Tell the connection ``admit`` evicted why and shut it down: its own handler's
    reads (or its wait for a held verdict) end, and it leaves quietly."""
    victim = eviction.handle
    assert isinstance(victim, socket.socket)
    count = REFUSALS.count(f"{service} unauthenticated")
    if sampled(count):
        logger.warning(
            "%s: evicted %s for a newer connection: %s (%d so far)",
            service,
            format_peer(_peer_name(victim)),
            eviction.why,
            count,
        )
    with contextlib.suppress(OSError):
        victim.send(GateRules.eviction_notice(), socket.MSG_DONTWAIT)  # a short frame: fits
        victim.shutdown(socket.SHUT_RDWR)


def _peer_name(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return "?"
