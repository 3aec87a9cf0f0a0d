"""Strict JSON for wire-v1 CONTROL and ERROR payloads (pure): the one parser every header
goes through before any service sees it.

``json.loads`` alone accepts things no header should carry and that break code further
on: ``NaN`` and ``Infinity`` (a ``"timeout": NaN`` reached the process runner), numbers
that overflow to infinity (``1e400``), lone surrogates such as ``"\\udcff"`` (valid JSON
escapes, but no UTF-8 encoding exists for them, so the first ``.encode()``, log line or
SQLite insert fails), nesting deep enough to raise ``RecursionError`` (30,000 ``[``),
and duplicate keys (two parsers may disagree on which one wins). Each of these is
refused here, as a ``RemoteProtocolError`` with code ``bad-json``, so that what comes
out is a tree of dicts, lists, str, int, finite float, bool and None, at most
``max_depth`` deep, every string valid Unicode.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from socketkit.errors import RemoteProtocolError
from socketkit.limits import MAX_JSON_DEPTH

__all__ = ["has_surrogates", "loads_object"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (a code point no UTF-8 can carry)."""
    return _SURROGATE.search(text) is not None


def _bad(what: str, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{what} payload is not acceptable JSON: {reason}", error_code="bad-json")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return obj


def loads_object(payload: bytes, what: str = "CONTROL", *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse a UTF-8 JSON object, refusing what the module docstring lists.

    Args:
        payload: the frame's payload.
        what: names the frame in error messages.
        max_depth: deepest nesting of objects and arrays (the top object is depth 1).

    Raises:
        RemoteProtocolError: (code ``bad-json``) not UTF-8, not JSON, not an object, or
            refused for depth, a non-finite number, a lone surrogate or a duplicate key.
    """
    try:
        text = payload.decode("utf-8")
        obj = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise _bad(what, f"nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(what, str(exc)) from None
    if not isinstance(obj, dict):
        raise _bad(what, "it must be an object")
    # One iterative pass (no recursion to exhaust): depth and the strings' Unicode.
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                raise _bad(what, f"nested deeper than {max_depth} levels")
            for key, item in value.items():
                if has_surrogates(key):
                    raise _bad(what, "a key holds a lone surrogate (not valid Unicode)")
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > max_depth:
                raise _bad(what, f"nested deeper than {max_depth} levels")
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and has_surrogates(value):
            raise _bad(what, "a string holds a lone surrogate (not valid Unicode)")
    return obj
