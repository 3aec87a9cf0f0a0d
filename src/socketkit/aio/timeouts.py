"""Which timeout, if any, a connection has run out of (the server's sweeper asks).

One pass over every connection per sweep interval instead of a timer per connection per
message: the hot path only bumps counters (bytes, messages), and the sweeper turns them
into "last active" times here. Time comes in as ``now`` (the loop's clock).
"""

from __future__ import annotations

from typing import Any

from socketkit.aio.connection import Connection
from socketkit.aio.connection_limits import ConnectionLimits

__all__ = ["expired", "sweeper_needed"]


def sweeper_needed(limits: ConnectionLimits) -> bool:
    """Whether any timeout is on (no sweeper task otherwise)."""
    return any(
        t is not None
        for t in (limits.idle_timeout, limits.handshake_timeout, limits.message_timeout, limits.write_timeout)
    )


def expired(conn: Connection[Any], limits: ConnectionLimits, now: float) -> str | None:
    """Update the connection's bookkeeping from its counters; return why it must close
    (``None``: it may go on)."""
    total = conn.bytes_in + conn.bytes_out
    if total != conn.seen_total:
        conn.seen_total = total
        conn.last_active = now
    # Raw connections (no decoder) count chunks as messages: progress in bytes.
    messages = conn.messages_in if conn.has_decoder else conn.bytes_in
    if messages != conn.seen_messages:
        conn.seen_messages = messages
        conn.last_message_at = now
        conn.bytes_at_message = conn.bytes_in
    if limits.idle_timeout is not None and now - conn.last_active > limits.idle_timeout:
        return f"idle for {limits.idle_timeout:g} s"
    if messages == 0 and limits.handshake_timeout is not None:
        if now - conn.connected_at > limits.handshake_timeout:
            return f"no complete message within {limits.handshake_timeout:g} s"
    elif (
        limits.message_timeout is not None
        and conn.bytes_in > conn.bytes_at_message
        and now - conn.last_message_at > limits.message_timeout
    ):
        return f"a message took longer than {limits.message_timeout:g} s to arrive"
    if (
        limits.write_timeout is not None
        and conn.write_paused
        and now - conn.write_paused_at > limits.write_timeout
    ):
        return f"not reading for {limits.write_timeout:g} s"
    return None
