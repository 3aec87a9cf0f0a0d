"""ConnectionLimits: the timeouts and buffer caps of one stream connection (a value object
that the connection, the server's sweeper and the services share)."""

from __future__ import annotations

from dataclasses import dataclass

from socketkit.limits import (
    DEFAULT_HANDSHAKE_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_PENDING_MESSAGES,
    DEFAULT_MAX_SEND_QUEUE,
    DEFAULT_MESSAGE_TIMEOUT_S,
    DEFAULT_WRITE_HIGH_WATER,
    DEFAULT_WRITE_TIMEOUT_S,
)

__all__ = ["ConnectionLimits"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits; ``None`` turns a timeout off. Defaults: ``socketkit.limits``.

    Attributes:
        idle_timeout: no byte in either direction for this long: close.
        handshake_timeout: no complete first message this long after connecting: close.
        message_timeout: bytes arrive but no message completes for this long: close.
        write_timeout: the peer reads nothing this long while we have data queued: abort.
        max_send_queue: bytes queued for the peer before it is aborted.
        write_high_water: queued bytes above which the peer counts as slow.
        max_pending_messages: decoded messages waiting for a busy handler task before
            reading from the socket pauses.
    """

    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT_S
    message_timeout: float | None = DEFAULT_MESSAGE_TIMEOUT_S
    write_timeout: float | None = DEFAULT_WRITE_TIMEOUT_S
    max_send_queue: int = DEFAULT_MAX_SEND_QUEUE
    write_high_water: int = DEFAULT_WRITE_HIGH_WATER
    max_pending_messages: int = DEFAULT_MAX_PENDING_MESSAGES
