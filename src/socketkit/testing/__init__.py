"""Helpers for testing socketkit and code built on it (public, like ``trio.testing``).

- ``serving(server)``: run a ``socketkit.server`` (or stdlib ``socketserver``) server in
  a thread for the duration of a ``with`` block, then stop and close it.
- ``aio_serving(server)``: the same for an ``AsyncServer``, as an ``async with``.
- ``check_decoder(make_decoder, stream, expected)``: the conformance check every
  decoder passes: any split of the stream decodes the same, truncation and EOF give
  typed errors, nothing partial is ever handed out.
"""

from socketkit.testing.aio_loopback import aio_serving
from socketkit.testing.check_decoder import check_decoder, decode_all, decode_chunks
from socketkit.testing.loopback import serving

__all__ = ["aio_serving", "check_decoder", "decode_all", "decode_chunks", "serving"]
