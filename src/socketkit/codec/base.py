"""The one shape every socketkit decoder has, and its two sentinels.

A decoder owns a receive buffer and its hard limit; the caller owns the socket::

    decoder.feed(data)            # bytes from the peer; b"" means end of stream
    event = decoder.next_event()  # a message, NEED_DATA, or END_OF_STREAM
    for message in decoder: ...   # every complete message buffered so far

After ``feed(b"")`` a decoder either returns its remaining messages and then
``END_OF_STREAM``, or raises ``IncompleteFrame`` if the stream stopped mid-message.
Decoders never return partial messages.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Literal, Protocol, TypeVar

__all__ = ["END_OF_STREAM", "NEED_DATA", "Decoder", "EndOfStream", "NeedData"]


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    END_OF_STREAM = "END_OF_STREAM"

    def __repr__(self) -> str:
        return self.value


NeedData = Literal[_Sentinel.NEED_DATA]
EndOfStream = Literal[_Sentinel.END_OF_STREAM]

NEED_DATA: NeedData = _Sentinel.NEED_DATA
"""Returned by ``next_event()`` when more bytes are needed for the next message."""

END_OF_STREAM: EndOfStream = _Sentinel.END_OF_STREAM
"""Returned by ``next_event()`` once the peer ended the stream at a message boundary."""

T_co = TypeVar("T_co", covariant=True)


class Decoder(Protocol[T_co]):
    """What both engines and ``socketkit.testing.check_decoder`` expect of a decoder."""

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer; ``b""`` marks the end of the stream."""

    def next_event(self) -> T_co | NeedData | EndOfStream:
        """Return the next complete message, ``NEED_DATA`` or ``END_OF_STREAM``."""

    def __iter__(self) -> Iterator[T_co]:
        """Yield every complete message buffered so far."""
