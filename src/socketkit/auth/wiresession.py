"""The wire-v1 session of one connection, for either side (pure, sans-IO, h11-shaped).

Every socketkit wire-v1 service opens the same way (``docs/protocol.md`` sections 1
and 4)::

    both     hello                          -> HelloReceived
    server   challenge                      -> ChallengeIssued / ChallengeReceived
    client   response [first request]       (the request may follow without waiting)
    server   ok, or ERROR                   -> Authenticated, or Refused

and then hands the frames that follow to the service unchanged. ``WireSession`` alone
is the hello-only opening (talk); ``ServerSession`` and ``ClientSession`` add the
challenge-response of ``socketkit.auth.handshake``. Both engines drive these objects,
so the order, the refusals and their ERROR frames are written once.

The engine gives the session what it received, as bytes (``feed``: the session decodes
with its ``WireDecoder``, as on the blocking engine) or as frames its connection decoded
(``receive_frame`` and ``receive_error``, as on the asyncio engine); it calls
``next_event()`` until ``NEED_DATA`` and sends ``data_to_send()`` after each event.
Anything out of turn ends the opening with ``Refused`` (the reason, and an ERROR frame
queued where the peer can read one); a ``Refused`` session reads and sends nothing more.
The events are declared in ``socketkit.auth.wireevents`` and exported from here too.

Time comes in as numbers, in whatever clock the engine uses: ``now`` when the session
starts, ``deadline`` (the opening must be over by then; ``check_deadline(now)`` ends it
when it is not), and ``not_before`` on a server's verdict (the throttle's delay, which
the engine waits out before sending it). Nonces come in as arguments: nothing here
reads a clock, draws randomness or touches a socket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from socketkit.auth.handshake import NONCE_SIZE, ClientAuth, ServerAuth
from socketkit.auth.wireevents import (
    SHOWN_ERROR_CHARS,
    Authenticated,
    ChallengeIssued,
    ChallengeReceived,
    HelloReceived,
    Refused,
    SessionEvent,
    State,
    gave_up,
    opening_refusal,
)
from socketkit.codec.base import END_OF_STREAM, NEED_DATA, EndOfStream, NeedData
from socketkit.codec.wire import (
    VERSION,
    Control,
    ErrorFrame,
    Hello,
    WireDecoder,
    WireEvent,
    encode_control,
    encode_error,
    encode_hello,
    negotiate_version,
)
from socketkit.errors import (
    HandshakeError,
    LocalProtocolError,
    PermissionDenied,
    ProtocolError,
    RemoteProtocolError,
    ServiceError,
)
from socketkit.limits import AUTH_MAX_DELAY_S, DEFAULT_AUTH_TIMEOUT_S, DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S

__all__ = [
    "SHOWN_ERROR_CHARS",
    "Authenticated",
    "ChallengeIssued",
    "ChallengeReceived",
    "ClientSession",
    "HelloReceived",
    "Refused",
    "ServerSession",
    "SessionEvent",
    "State",
    "WireSession",
    "gave_up",
    "opening_refusal",
]

_Input = WireEvent | EndOfStream | Exception


class WireSession:
    """The hello-only opening (both sides alike): our hello is queued at once, the peer's
    is checked and a version agreed, then the session is open.

    Args:
        now: the time the connection opened (the engine's clock).
        timeout: seconds the opening may take (``None``: no deadline here).
        decoder: decodes what ``feed()`` gets (default: a ``WireDecoder`` with the
            default limits, made on first use); after the opening it still holds what
            arrived behind it, so the engine may go on reading from it.
        min_version, max_version: the versions we speak.
    """

    _tells_timeouts: ClassVar[bool] = True
    """Whether a missed deadline is reported to the peer in an ERROR frame."""

    def __init__(
        self,
        *,
        now: float = 0.0,
        timeout: float | None = None,
        decoder: WireDecoder | None = None,
        min_version: int = VERSION,
        max_version: int = VERSION,
    ) -> None:
        self.state = State.HELLO
        self.version: int | None = None
        self.deadline: float | None = None if timeout is None else now + timeout
        self.min_version, self.max_version = min_version, max_version
        self._decoder = decoder
        self._out = bytearray(encode_hello(min_version, max_version))
        self._inputs: deque[_Input] = deque()
        self._events: deque[SessionEvent] = deque()

    # --- what the engine calls ---------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the opening is over, every event of it taken by ``next_event()``, and
        the frames belong to the service."""
        return self.state is State.OPEN and not self._events

    @property
    def decoder(self) -> WireDecoder:
        """The decoder ``feed()`` fills."""
        if self._decoder is None:
            self._decoder = WireDecoder()
        return self._decoder

    def data_to_send(self) -> bytes:
        """The bytes queued for the peer since the last call (and forget them)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def feed(self, data: bytes) -> None:
        """Bytes received from the peer; ``b""`` marks the end of the stream."""
        if self.state is not State.REFUSED:
            self.decoder.feed(data)

    def receive_frame(self, frame: WireEvent | EndOfStream) -> None:
        """A frame the engine's own decoder produced (or ``END_OF_STREAM``)."""
        if self.state is not State.REFUSED:
            self._inputs.append(frame)

    def receive_error(self, error: Exception) -> None:
        """The engine could not get the next frame: its decoder refused the input
        (a ``ProtocolError``), the peer ended the stream (``EOFError``) or the connection
        broke (a ``ResourceError``)."""
        if self.state is not State.REFUSED:
            self._inputs.append(error)

    def check_deadline(self, now: float) -> bool:
        """Whether the opening is still going at ``now`` after its deadline; if so the
        session is refused, and ``next_event()`` returns that ``Refused``."""
        if self.deadline is None or now < self.deadline or self.state in (State.OPEN, State.REFUSED):
            return False
        self._refuse(self._timeout_error(), report=self._tells_timeouts)
        return True

    def next_event(self) -> SessionEvent | WireEvent | NeedData | EndOfStream:
        """The next event: one of the opening's, or (once open) the next frame as it is.

        Raises:
            LocalProtocolError: the session was refused already.
            ProtocolError: once open, what the decoder raises for bad input (the
                service's to report).
        """
        while not self._events:
            if self.state is State.REFUSED:
                raise LocalProtocolError("the opening was refused: this session is over")
            item = self._next_input()
            if self.state is State.OPEN:
                if isinstance(item, Exception):
                    raise item
                return item
            if item is NEED_DATA:
                return NEED_DATA
            self._take(item)
        return self._events.popleft()

    def __iter__(self) -> Iterator[SessionEvent | WireEvent]:
        """Yield every event available now (until ``NEED_DATA`` or the end)."""
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is END_OF_STREAM:
                return
            yield event
            if isinstance(event, Refused):
                return

    # --- the state machine -------------------------------------------------------------

    def _next_input(self) -> _Input | NeedData:
        if self._inputs:
            return self._inputs.popleft()
        if self._decoder is None:
            return NEED_DATA
        try:
            return self._decoder.next_event()
        except ProtocolError as exc:
            if self.state is State.OPEN:
                raise
            return exc

    def _take(self, item: _Input) -> None:
        if isinstance(item, ProtocolError):
            self._refuse(item, report=self._reports())
        elif isinstance(item, Exception):
            self._refuse(item, by_peer=True)
        elif item is END_OF_STREAM:
            self._refuse(
                EOFError(f"the peer closed the connection while {self._waiting_for()}"), by_peer=True
            )
        elif self.state is State.HELLO:
            self._hello(item)
        else:
            self._frame(item)

    def _hello(self, item: WireEvent) -> None:
        if not isinstance(item, Hello):
            self._refuse(HandshakeError(f"expected a hello, got {type(item).__name__}"), report=True)
            return
        try:
            self.version = negotiate_version(item, self.min_version, self.max_version)
        except HandshakeError as exc:
            self._refuse(exc, report=True)
            return
        self._events.append(HelloReceived(self.version))
        self._after_hello()

    def _after_hello(self) -> None:
        self.state = State.OPEN

    def _frame(self, item: WireEvent) -> None:
        """A frame in the authentication states (the subclasses have them)."""
        raise AssertionError(f"no frame is expected in state {self.state}")  # pragma: no cover

    def _reports(self) -> bool:
        """Whether a protocol error now gets an ERROR frame (the peer can read one)."""
        return True

    def _timeout_error(self) -> HandshakeError:
        return HandshakeError("the hello did not arrive in time", error_code="handshake-timeout")

    def _waiting_for(self) -> str:
        return {
            State.HELLO: "we waited for its hello",
            State.CHALLENGE: "we waited for the challenge",
            State.RESPONSE: "we waited for its authentication",
            State.VERDICT: "we waited for the server's proof",
        }.get(self.state, "it was opening")

    def _refuse(
        self, error: Exception, *, by_peer: bool = False, report: bool = False, not_before: float = 0.0
    ) -> None:
        if report and isinstance(error, (ProtocolError, ServiceError)):
            code = error.error_code if isinstance(error, ProtocolError) else error.code
            self._out += encode_error(code, str(error))
        else:
            report = False
        self.state = State.REFUSED
        self._inputs.clear()
        self._events.append(Refused(error, by_peer=by_peer, reported=report, not_before=not_before))


class ServerSession(WireSession):
    """The server's opening: hello, challenge, the client's response, the verdict.

    Args:
        token: the shared secret (``None``: the challenge says "none" and the session is
            open right after the hello; keep such a server on loopback).
        nonce: ``NONCE_SIZE`` fresh random bytes (from ``secrets``).
        service: the service's name, announced in the challenge.
        now: the time the connection opened, in the clock the engine will use for
            ``check_deadline`` and ``not_before``.
        timeout: seconds for the whole opening; the deadline is ``now + timeout + delay``.
        delay: the throttle's delay for this peer, announced in the challenge: the
            verdict is not to be sent before ``now + delay`` (``not_before``).
        decoder, min_version, max_version: see ``WireSession``.

    Raises:
        ValueError: the nonce is not ``NONCE_SIZE`` bytes, or the delay is negative.
    """

    def __init__(
        self,
        token: str | None,
        nonce: bytes,
        service: str = "",
        *,
        now: float,
        timeout: float = DEFAULT_AUTH_TIMEOUT_S,
        delay: float = 0.0,
        decoder: WireDecoder | None = None,
        min_version: int = VERSION,
        max_version: int = VERSION,
    ) -> None:
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"the nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
        if delay < 0:
            raise ValueError(f"the delay cannot be negative ({delay})")
        delay = delay if token is not None else 0.0
        super().__init__(
            now=now,
            timeout=timeout + delay,
            decoder=decoder,
            min_version=min_version,
            max_version=max_version,
        )
        self.timeout = timeout
        self.delay = delay
        self.verdict_at = now + delay
        self._auth = ServerAuth(token, nonce, service)

    def _after_hello(self) -> None:
        required = self._auth.token is not None
        self._out += encode_control(self._auth.challenge(self.delay))
        self._events.append(ChallengeIssued(self.delay, required))
        if required:
            self.state = State.RESPONSE
        else:
            self.state = State.OPEN
            self._events.append(Authenticated(verified=False))

    def _frame(self, item: WireEvent) -> None:
        if isinstance(item, ErrorFrame):
            self._refuse(gave_up(item), by_peer=True)
            return
        if not isinstance(item, Control):
            self._refuse(
                RemoteProtocolError(f"expected the authentication, got {type(item).__name__}"), report=True
            )
            return
        # Every verdict on a response waits out the announced delay, a failed one too:
        # otherwise a guesser would learn "wrong" at once and only "right" late.
        try:
            ok = self._auth.verify(item.header)
        except (PermissionDenied, RemoteProtocolError) as exc:
            self._refuse(exc, report=True, not_before=self.verdict_at)
            return
        self._out += encode_control(ok)
        self.state = State.OPEN
        self._events.append(Authenticated(verified=True, not_before=self.verdict_at))

    def _timeout_error(self) -> HandshakeError:
        return HandshakeError(
            f"authentication did not finish within {self.timeout:g} s", error_code="handshake-timeout"
        )


class ClientSession(WireSession):
    """The client's opening: hello, the server's challenge, our response (and the first
    request right behind it), the server's proof.

    Args:
        token: the shared secret (``None``: only a server without one lets us in).
        nonce: ``NONCE_SIZE`` fresh random bytes.
        service: the service we expect (``""``: any); another one is ``wrong-service``.
        now: the time the connection opened, in the engine's clock (see ``deadline``).
        timeout: seconds to wait for the server's answers; a delay the server announces
            (up to ``max_delay``) moves the deadline that much later.
        pipelined: the first request's header, sent right behind our response.
        max_delay: the longest announced delay we accept waiting for.
        decoder, min_version, max_version: see ``WireSession``.

    Raises:
        ValueError: the nonce is not ``NONCE_SIZE`` bytes.
        LocalProtocolError: ``pipelined`` cannot be sent as a control frame.
    """

    def __init__(
        self,
        token: str | None,
        nonce: bytes,
        service: str = "",
        *,
        now: float,
        timeout: float = DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S,
        pipelined: Mapping[str, Any] | None = None,
        max_delay: float = AUTH_MAX_DELAY_S,
        decoder: WireDecoder | None = None,
        min_version: int = VERSION,
        max_version: int = VERSION,
    ) -> None:
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"the nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
        super().__init__(
            now=now, timeout=timeout, decoder=decoder, min_version=min_version, max_version=max_version
        )
        self.timeout = timeout
        self.max_delay = max_delay
        self._request = b"" if pipelined is None else encode_control(pipelined)
        self._auth = ClientAuth(token, nonce, service)

    def _after_hello(self) -> None:
        self.state = State.CHALLENGE

    def _frame(self, item: WireEvent) -> None:
        if isinstance(item, ErrorFrame):
            self._refuse(ServiceError(item.message, code=item.code), by_peer=True)
            return
        if not isinstance(item, Control):
            self._refuse(RemoteProtocolError(f"expected a control frame, got {type(item).__name__}"))
            return
        if self.state is State.CHALLENGE:
            self._challenge(item.header)
            return
        try:
            self._auth.check_ok(item.header)
        except (PermissionDenied, RemoteProtocolError) as exc:
            self._refuse(exc)
            return
        self.state = State.OPEN
        self._events.append(Authenticated(verified=True))

    def _challenge(self, header: Mapping[str, Any]) -> None:
        try:
            response = self._auth.respond(header)
        except (HandshakeError, PermissionDenied, RemoteProtocolError) as exc:
            self._refuse(exc)
            return
        delay = ClientAuth.announced_delay(header, self.max_delay)
        if self.deadline is not None:
            self.deadline += delay
        offered = header.get("service")
        self._events.append(ChallengeReceived(offered if isinstance(offered, str) else "", delay))
        if response is not None:
            self._out += encode_control(response)
        self._out += self._request
        if response is None:
            self.state = State.OPEN
            self._events.append(Authenticated(verified=False))
        else:
            self.state = State.VERDICT

    def _reports(self) -> bool:
        # Only a peer that fails the hello is told (it may be an older socketkit); a
        # server that fails the authentication is not answered.
        return self.state is State.HELLO

    _tells_timeouts = False  # a silent server is not something to talk to

    def _timeout_error(self) -> HandshakeError:
        return HandshakeError(f"no answer within {self.timeout:g} s", error_code="handshake-timeout")
