"""What a wire-v1 session tells its engine, and the states it goes through (pure).

The events of ``socketkit.auth.wiresession`` (see there for the exchange), and the two
messages a server builds without a session: the refusal of a connection it will not
serve, and the error that a client's ERROR frame ends the connection with.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from socketkit.codec.wire import ErrorFrame, encode_error, encode_hello
from socketkit.errors import BrokenResourceError, ProtocolError, ServiceError

__all__ = [
    "SHOWN_ERROR_CHARS",
    "Authenticated",
    "ChallengeIssued",
    "ChallengeReceived",
    "HelloReceived",
    "Refused",
    "SessionEvent",
    "State",
    "gave_up",
    "opening_refusal",
]

SHOWN_ERROR_CHARS: Final = 200
"""Characters of a peer's ERROR message quoted in our own error (it may be 64 KiB)."""


class State(enum.Enum):
    """Where a session is in the opening."""

    HELLO = "hello"
    """Waiting for the peer's hello."""
    CHALLENGE = "challenge"
    """Client: waiting for the server's challenge."""
    RESPONSE = "response"
    """Server: waiting for the client's response."""
    VERDICT = "verdict"
    """Client: waiting for the server's proof ("ok")."""
    OPEN = "open"
    """The opening is over: what follows belongs to the service."""
    REFUSED = "refused"
    """The opening failed; nothing more is read or sent."""


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """The peer's hello arrived and a version is agreed."""

    version: int


@dataclass(frozen=True, slots=True)
class ChallengeIssued:
    """Server: the challenge is queued (``delay``: seconds announced before the verdict;
    ``required``: ``False`` when the server takes no token and says "none")."""

    delay: float
    required: bool


@dataclass(frozen=True, slots=True)
class ChallengeReceived:
    """Client: the server's challenge arrived, and our response (with the pipelined
    request) is queued. ``delay``: the verdict delay it announced (capped); the
    session's ``deadline`` has moved that much later."""

    service: str
    delay: float


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The opening is over and the peer may go on.

    Attributes:
        verified: a token was checked (``False``: the server runs without one).
        not_before: do not send the verdict (``data_to_send()``) before this time.
    """

    verified: bool
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Refused:
    """The opening failed; the engine sends what is queued and closes.

    Attributes:
        error: why (what a client raises; a server logs it).
        by_peer: the peer ended it (its ERROR frame, end of stream, a broken connection).
        reported: an ERROR frame telling the peer why is queued in ``data_to_send()``.
        not_before: do not send that ERROR frame before this time (a throttled verdict).
    """

    error: Exception
    by_peer: bool = False
    reported: bool = False
    not_before: float = 0.0

    @property
    def code(self) -> str:
        """The error's stable code (``closed`` when the connection simply ended)."""
        if isinstance(self.error, ProtocolError):
            return self.error.error_code
        if isinstance(self.error, ServiceError):
            return self.error.code
        return "closed"


SessionEvent = HelloReceived | ChallengeIssued | ChallengeReceived | Authenticated | Refused


def opening_refusal(code: str, message: str) -> bytes:
    """What a server sends to a connection it will not serve at all (over a cap): its
    hello first, so the peer reads the ERROR frame as ours and not as garbage."""
    return encode_hello() + encode_error(code, message)


def gave_up(frame: ErrorFrame) -> BrokenResourceError:
    """The error for a client's ERROR frame: it gives up and closes, which ends the
    connection like EOF does. Its words are quoted escaped and cut short, and never
    answered (an error frame sent back would echo them)."""
    return BrokenResourceError(
        f"it gave up with an error frame ({frame.code[:40]!r}: {frame.message[:SHOWN_ERROR_CHARS]!r})"
    )
