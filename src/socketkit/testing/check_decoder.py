"""check_decoder(): the conformance check every socketkit decoder must pass.

In the spirit of trio's ``check_two_way_stream``: given a decoder factory, a byte
stream and the messages it encodes, check that

- the stream fed whole, one byte at a time, and split at every offset (and at
  random cut points) always decodes to exactly the expected messages;
- after end of stream at the end, the decoder says ``END_OF_STREAM``;
- every truncation of the stream followed by end of stream yields a prefix of the
  messages and then ``END_OF_STREAM`` or ``IncompleteFrame``: never a partial
  message, never a hang.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from socketkit.codec.base import END_OF_STREAM, NEED_DATA, Decoder
from socketkit.errors import IncompleteFrame

__all__ = ["check_decoder", "decode_all", "decode_chunks"]


def decode_chunks(
    decoder: Decoder[Any], chunks: Iterable[bytes], *, eof: bool = True
) -> tuple[list[Any], bool]:
    """Feed ``chunks`` (then EOF), draining after each feed as glue code does.

    Returns:
        ``(messages, ended)``: the messages, and whether ``END_OF_STREAM`` was seen.

    Raises:
        Whatever the decoder raises.
    """
    messages: list[Any] = []
    for chunk in [*chunks, b""] if eof else chunks:
        decoder.feed(chunk)
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                break
            if event is END_OF_STREAM:
                return messages, True
            messages.append(event)
    return messages, False


def decode_all(decoder: Decoder[Any], data: bytes) -> list[Any]:
    """Feed ``data`` whole, then EOF, and return the messages.

    Raises:
        AssertionError: the decoder did not report ``END_OF_STREAM``.
    """
    messages, ended = decode_chunks(decoder, [data])
    assert ended, "decoder did not report END_OF_STREAM after EOF"
    return messages


def _splits(data: bytes, rng: random.Random, random_cuts: int) -> Iterable[list[bytes]]:
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    for _ in range(random_cuts):
        cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(1, 8))))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def check_decoder(
    make_decoder: Callable[[], Decoder[Any]],
    data: bytes,
    expected: Sequence[Any],
    *,
    random_cuts: int = 50,
    seed: int = 0,
    normalize: Callable[[list[Any]], list[Any]] | None = None,
) -> None:
    """Assert that a decoder handles ``data`` correctly however it is split or cut.

    Args:
        make_decoder: returns a fresh decoder.
        data: a complete stream.
        expected: the messages ``data`` encodes, in order.
        random_cuts: how many random multi-cut splits to try besides the exhaustive ones.
        seed: seed for the random splits (the check is deterministic).
        normalize: maps decoded messages to a split-independent form before comparing
            (for codecs whose chunk boundaries carry no meaning, such as raw bodies).

    Raises:
        AssertionError: the decoder misbehaved (the message says how).
    """
    rng = random.Random(seed)
    norm = normalize or list
    want = norm(list(expected))
    for chunks in _splits(data, rng, random_cuts if len(data) > 1 else 0):
        decoded, ended = decode_chunks(make_decoder(), chunks)
        decoded = norm(decoded)
        assert decoded == want, f"split {[len(c) for c in chunks]}: got {decoded!r}, want {want!r}"
        assert ended, f"split {[len(c) for c in chunks]}: no END_OF_STREAM after EOF"
    for cut in range(len(data)):
        decoder = make_decoder()
        decoder.feed(data[:cut])
        decoder.feed(b"")
        got: list[Any] = []
        try:
            while (event := decoder.next_event()) is not END_OF_STREAM:
                assert event is not NEED_DATA, f"truncated at {cut}: NEED_DATA after EOF (a hang)"
                got.append(event)
        except IncompleteFrame as exc:
            partial = exc.partial
            assert isinstance(partial, bytes), "IncompleteFrame.partial must be bytes"
        got = norm(got)
        # Messages seen before the error or the end must be a prefix of the expected.
        assert got == want[: len(got)], f"truncated at {cut}: got {got!r}"
        assert got != want or not want, f"truncated at {cut}: every message decoded"
