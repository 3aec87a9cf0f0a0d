"""socketkit wire format v1: a version handshake, then typed, length-prefixed frames.

The normative description, with byte examples, is ``docs/protocol.md``. In short::

    hello  = magic "\\x89SKW" | min_version u8 | max_version u8 | reserved u16 (0)
    frame  = length u32be | type u8 | channel u8 | payload[length]

    CONTROL 0x01  JSON object (UTF-8), at most max_control_size bytes
    DATA    0x02  raw bytes on a channel, at most max_frame_size bytes
    ERROR   0x03  JSON {"code": str, "message": str}, sent before closing
    BODY    0x04  u64be size N, then N raw bytes outside framing (sendfile-able)

Lengths are checked against the limits as soon as the 6-byte header is complete, before
any payload is buffered. Both sides send their hello at once (no extra round trip); a
peer that is not speaking wire v1 is detected from its first differing byte.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from socketkit.codec._buffer import ReceiveBuffer
from socketkit.codec.base import END_OF_STREAM, NEED_DATA, EndOfStream, NeedData
from socketkit.codec.jsonvalue import loads_object
from socketkit.errors import (
    FrameTooLarge,
    HandshakeError,
    IncompleteFrame,
    LocalProtocolError,
    RemoteProtocolError,
)
from socketkit.limits import DEFAULT_MAX_CONTROL_SIZE, DEFAULT_MAX_FRAME_SIZE, MAX_WIRE_FRAME_SIZE

__all__ = [
    "HELLO_SIZE",
    "MAGIC",
    "VERSION",
    "BodyChunk",
    "BodyEnd",
    "BodyStart",
    "Control",
    "Data",
    "ErrorFrame",
    "FrameType",
    "Hello",
    "WireDecoder",
    "WireEvent",
    "data_header",
    "encode",
    "encode_body_header",
    "encode_control",
    "encode_data",
    "encode_error",
    "encode_hello",
    "negotiate_version",
]

MAGIC: Final = b"\x89SKW"
"""First bytes of every wire-v1 connection. 0x89 is not ASCII, so a text protocol
(HTTP, IRC, a person typing into netcat) is told apart at its first byte."""

VERSION: Final = 1
"""The highest version this implementation speaks."""

_HELLO = struct.Struct(">4sBBH")
_HEADER = struct.Struct(">IBB")
_BODY_SIZE = struct.Struct(">Q")
HELLO_SIZE: Final = _HELLO.size
HEADER_SIZE: Final = _HEADER.size


class FrameType:
    """Frame type numbers (a namespace, so new types can be added without an enum break)."""

    CONTROL: Final = 0x01
    DATA: Final = 0x02
    ERROR: Final = 0x03
    BODY: Final = 0x04


@dataclass(frozen=True, slots=True)
class Hello:
    """The peer's handshake: the range of versions it speaks."""

    min_version: int
    max_version: int


@dataclass(frozen=True, slots=True)
class Control:
    """A control frame: a JSON object naming a request, a reply or a state change."""

    header: Mapping[str, Any]
    channel: int = 0


@dataclass(frozen=True, slots=True)
class Data:
    """A data frame: raw bytes on a channel (an empty one is allowed; services give it
    meaning, exec uses it for end of input)."""

    data: bytes
    channel: int = 0


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """An error report, sent before the sender closes the connection."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class BodyStart:
    """A raw body of ``size`` bytes follows, delivered as ``BodyChunk``s then ``BodyEnd``."""

    size: int
    channel: int = 0


@dataclass(frozen=True, slots=True)
class BodyChunk:
    """Part of a raw body, as it arrived (chunk boundaries carry no meaning)."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class BodyEnd:
    """The raw body announced by the last ``BodyStart`` is complete."""

    channel: int = 0


WireEvent = Hello | Control | Data | ErrorFrame | BodyStart | BodyChunk | BodyEnd


def encode_hello(min_version: int = VERSION, max_version: int = VERSION) -> bytes:
    """Return the 8-byte handshake announcing the versions we speak.

    Raises:
        ValueError: the range is empty or outside 1..255.
    """
    if not 1 <= min_version <= max_version <= 255:
        raise ValueError(f"bad version range {min_version}..{max_version}")
    return _HELLO.pack(MAGIC, min_version, max_version, 0)


def negotiate_version(remote: Hello, min_version: int = VERSION, max_version: int = VERSION) -> int:
    """Return the highest version both sides speak.

    Raises:
        HandshakeError: the ranges do not overlap (the message says both ranges).
    """
    version = min(max_version, remote.max_version)
    if version < max(min_version, remote.min_version):
        raise HandshakeError(
            f"no common protocol version: we speak {min_version}..{max_version}, "
            f"the peer speaks {remote.min_version}..{remote.max_version}",
            error_code="version-mismatch",
        )
    return version


def _check_channel(channel: int) -> None:
    if not 0 <= channel <= 255:
        raise LocalProtocolError(f"channel must be 0..255, not {channel}")


def _json_bytes(obj: Mapping[str, Any], max_size: int) -> bytes:
    try:
        payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"header is not JSON-serialisable: {exc}") from exc
    if len(payload) > max_size:
        raise LocalProtocolError(
            f"JSON header of {len(payload)} bytes exceeds the limit of {max_size} bytes",
            error_code="frame-too-large",
        )
    return payload


def encode_control(
    header: Mapping[str, Any], channel: int = 0, *, max_size: int = DEFAULT_MAX_CONTROL_SIZE
) -> bytes:
    """Return a CONTROL frame carrying ``header`` as compact JSON.

    Raises:
        LocalProtocolError: not serialisable, too large, or a bad channel.
    """
    _check_channel(channel)
    payload = _json_bytes(header, max_size)
    return _HEADER.pack(len(payload), FrameType.CONTROL, channel) + payload


def data_header(size: int, channel: int = 0) -> bytes:
    """Return only the 6-byte header of a DATA frame, for scatter/gather writes.

    Raises:
        LocalProtocolError: the size does not fit the length field, or a bad channel.
    """
    _check_channel(channel)
    if not 0 <= size <= MAX_WIRE_FRAME_SIZE:
        raise LocalProtocolError(f"DATA payload of {size} bytes cannot be framed")
    return _HEADER.pack(size, FrameType.DATA, channel)


def encode_data(data: bytes, channel: int = 0) -> bytes:
    """Return a DATA frame (header and payload in one buffer).

    Raises:
        LocalProtocolError: the payload does not fit the length field, or a bad channel.
    """
    return data_header(len(data), channel) + data


def encode_error(code: str, message: str, *, max_size: int = DEFAULT_MAX_CONTROL_SIZE) -> bytes:
    """Return an ERROR frame; an over-long message is shortened, never refused.

    Raises:
        LocalProtocolError: ``code`` alone does not fit in ``max_size``.
    """
    budget = max_size - len(code.encode()) - 64
    if budget <= 0:
        raise LocalProtocolError("error code too long for an ERROR frame")
    # A message may quote the peer's own input: one that cannot be encoded (a lone
    # surrogate) is shown escaped rather than turning the error report into a crash.
    raw = message.encode("utf-8", errors="backslashreplace")
    if len(raw) > budget:
        raw = raw[:budget] + b"..."
    message = raw.decode("utf-8", errors="ignore")
    payload = _json_bytes({"code": code, "message": message}, max_size)
    return _HEADER.pack(len(payload), FrameType.ERROR, 0) + payload


def encode_body_header(size: int, channel: int = 0) -> bytes:
    """Return a BODY frame announcing ``size`` raw bytes; the caller then sends them.

    Raises:
        LocalProtocolError: a negative size, or a bad channel.
    """
    _check_channel(channel)
    if not 0 <= size < 1 << 64:
        raise LocalProtocolError(f"body size {size} cannot be framed")
    return _HEADER.pack(_BODY_SIZE.size, FrameType.BODY, channel) + _BODY_SIZE.pack(size)


def encode(event: Control | Data | ErrorFrame | BodyStart) -> bytes:
    """Return the wire bytes of one frame event (``BodyStart``: the header only).

    Raises:
        LocalProtocolError: the event cannot be framed.
        TypeError: the event is not a frame (``Hello`` has ``encode_hello``).
    """
    if isinstance(event, Data):
        return encode_data(event.data, event.channel)
    if isinstance(event, Control):
        return encode_control(event.header, event.channel)
    if isinstance(event, ErrorFrame):
        return encode_error(event.code, event.message)
    if isinstance(event, BodyStart):
        return encode_body_header(event.size, event.channel)
    raise TypeError(f"cannot encode {type(event).__name__} as a frame")


class WireDecoder:
    """Decode a wire-v1 byte stream into ``WireEvent``s.

    Args:
        max_frame_size: largest DATA payload accepted.
        max_control_size: largest CONTROL/ERROR payload accepted.
        expect_hello: the stream starts with the peer's hello (``False`` to decode frames
            of a connection whose handshake was read elsewhere).

    Raises:
        ValueError: a limit is not positive or larger than the length field allows.
    """

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        *,
        max_control_size: int = DEFAULT_MAX_CONTROL_SIZE,
        expect_hello: bool = True,
    ) -> None:
        for name, value in (
            ("max_frame_size", max_frame_size),
            ("max_control_size", max_control_size),
        ):
            if not 0 < value <= MAX_WIRE_FRAME_SIZE:
                raise ValueError(f"{name} must be 1..{MAX_WIRE_FRAME_SIZE}, not {value}")
        self.max_frame_size = max_frame_size
        self.max_control_size = max_control_size
        self._buffer = ReceiveBuffer()
        self._need_hello = expect_hello
        self._body_remaining = 0
        self._body_channel = 0
        self._in_body = False
        self._direct: bytes | None = None

    @property
    def body_remaining(self) -> int:
        """Raw body bytes still expected (0 outside a body)."""
        return self._body_remaining if self._in_body else 0

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` marks the end of the stream."""
        if self._in_body and data and self._direct is None and not len(self._buffer):
            # Fast path for bulk bodies: hand the received bytes out as they are,
            # without copying them through the buffer (a 1 GiB upload is 4,000 chunks).
            take = min(len(data), self._body_remaining)
            if take:
                self._direct = data if take == len(data) else data[:take]
                if take < len(data):
                    self._buffer.append(data[take:])
                return
        self._buffer.append(data)

    def next_event(self) -> WireEvent | NeedData | EndOfStream:
        """Return the next event, ``NEED_DATA`` or ``END_OF_STREAM``.

        Raises:
            HandshakeError: the peer is not speaking wire v1.
            FrameTooLarge: a declared length is over its limit (nothing was buffered).
            IncompleteFrame: the stream ended inside the hello, a frame or a body.
            RemoteProtocolError: unknown frame type or malformed payload.
        """
        if self._need_hello:
            return self._next_hello()
        if self._in_body:
            return self._next_body_event()
        buffer = self._buffer
        if len(buffer) < HEADER_SIZE:
            return self._need_more("frame")
        length, frame_type, channel = _HEADER.unpack(buffer.peek(HEADER_SIZE))
        self._check_length(length, frame_type)
        if len(buffer) < HEADER_SIZE + length:
            return self._need_more("frame")
        buffer.skip(HEADER_SIZE)
        payload = buffer.take(length)
        if frame_type == FrameType.DATA:
            return Data(payload, channel)
        if frame_type == FrameType.CONTROL:
            return Control(loads_object(payload, "CONTROL"), channel)
        if frame_type == FrameType.ERROR:
            obj = loads_object(payload, "ERROR")
            code, message = obj.get("code"), obj.get("message")
            if not isinstance(code, str) or not isinstance(message, str):
                raise RemoteProtocolError(
                    "ERROR frame needs string 'code' and 'message'", error_code="bad-json"
                )
            return ErrorFrame(code, message)
        # BODY: _check_length accepted only the 8-byte size payload.
        (size,) = _BODY_SIZE.unpack(payload)
        self._in_body, self._body_remaining, self._body_channel = True, size, channel
        return BodyStart(size, channel)

    def __iter__(self) -> Iterator[WireEvent]:
        """Yield every complete event buffered so far."""
        while True:
            event = self.next_event()
            if event is NEED_DATA or event is END_OF_STREAM:
                return
            yield event

    def _check_length(self, length: int, frame_type: int) -> None:
        if frame_type == FrameType.DATA:
            if length > self.max_frame_size:
                raise FrameTooLarge(self.max_frame_size, length, "DATA frame")
        elif frame_type in (FrameType.CONTROL, FrameType.ERROR):
            if length > self.max_control_size:
                raise FrameTooLarge(self.max_control_size, length, "CONTROL frame")
        elif frame_type == FrameType.BODY:
            if length != _BODY_SIZE.size:
                raise RemoteProtocolError(f"BODY frame payload must be 8 bytes, not {length}")
        else:
            raise RemoteProtocolError(f"unknown frame type 0x{frame_type:02x}", error_code="bad-frame-type")

    def _need_more(self, what: str) -> NeedData | EndOfStream:
        buffer = self._buffer
        if not buffer.eof:
            return NEED_DATA
        if len(buffer):
            raise IncompleteFrame(buffer.take_all(), what)
        return END_OF_STREAM

    def _next_hello(self) -> Hello | NeedData | EndOfStream:
        buffer = self._buffer
        head = buffer.peek(HELLO_SIZE)
        if not MAGIC.startswith(head[: len(MAGIC)]):
            raise HandshakeError(
                f"peer is not speaking socketkit wire v1 (it sent {head!r})", error_code="bad-magic"
            )
        if len(head) < HELLO_SIZE:
            return self._need_more("hello")
        buffer.skip(HELLO_SIZE)
        _, min_version, max_version, _reserved = _HELLO.unpack(head)
        if not 1 <= min_version <= max_version:
            raise HandshakeError(f"bad version range {min_version}..{max_version} in hello")
        self._need_hello = False
        return Hello(min_version, max_version)

    def _next_body_event(self) -> BodyChunk | BodyEnd | NeedData | EndOfStream:
        if self._direct is not None:
            chunk, self._direct = self._direct, None
            self._body_remaining -= len(chunk)
            return BodyChunk(chunk)
        if self._body_remaining == 0:
            self._in_body = False
            return BodyEnd(self._body_channel)
        buffer = self._buffer
        if not len(buffer):
            if buffer.eof:
                raise IncompleteFrame(b"", "body", detail=f"{self._body_remaining} bytes before its end")
            return NEED_DATA
        chunk = buffer.take(self._body_remaining)
        self._body_remaining -= len(chunk)
        return BodyChunk(chunk)
