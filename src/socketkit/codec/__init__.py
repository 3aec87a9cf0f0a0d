"""Sans-IO codecs: bytes in, messages out, with hard limits and no I/O of their own.

Every decoder has the same shape (see ``socketkit.codec.base``), so both engines and
``socketkit.testing.check_decoder`` drive all of them the same way.
"""

from socketkit.codec.base import END_OF_STREAM, NEED_DATA, Decoder, EndOfStream, NeedData
from socketkit.codec.lines import LineDecoder, encode_line
from socketkit.codec.wire import (
    BodyChunk,
    BodyEnd,
    BodyStart,
    Control,
    Data,
    ErrorFrame,
    Hello,
    WireDecoder,
    WireEvent,
    encode,
    encode_body_header,
    encode_control,
    encode_data,
    encode_error,
    encode_hello,
    negotiate_version,
)

__all__ = [
    "END_OF_STREAM",
    "NEED_DATA",
    "BodyChunk",
    "BodyEnd",
    "BodyStart",
    "Control",
    "Data",
    "Decoder",
    "EndOfStream",
    "ErrorFrame",
    "Hello",
    "LineDecoder",
    "NeedData",
    "WireDecoder",
    "WireEvent",
    "encode",
    "encode_body_header",
    "encode_control",
    "encode_data",
    "encode_error",
    "encode_hello",
    "encode_line",
    "negotiate_version",
]
