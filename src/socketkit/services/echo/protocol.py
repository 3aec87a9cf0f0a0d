"""The echo protocol: no framing (RFC 862 echoes a byte stream), so no codec; its limits.

Echo has no messages to wait for, so no handshake or message timeout applies: a client
may connect and type later. An idle connection is closed after the idle timeout, and a
client that sends without reading is stopped by flow control (the engine stops reading
from a peer whose replies are not being read) and then by the write timeout.
"""

from __future__ import annotations

from typing import Final

from socketkit.limits import DEFAULT_IDLE_TIMEOUT_S

__all__ = ["DEFAULT_PORT", "IDLE_TIMEOUT_S"]

DEFAULT_PORT: Final = 7007
"""Echo's registered port is 7 (RFC 862); 7007 needs no privileges."""

IDLE_TIMEOUT_S: Final = DEFAULT_IDLE_TIMEOUT_S
