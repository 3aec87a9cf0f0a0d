"""Typed fields of a JSON request header (pure): the validation layer of every service.

A service reads its request through ``Fields`` instead of ``header.get``, so every value
it uses has been checked for its type, its range and its size before any code acts on
it. Headers reach here through ``socketkit.codec.jsonvalue`` (finite numbers, valid
Unicode, bounded depth); this layer adds what each field means::

    fields = Fields(header)
    path = fields.text("path", max_bytes=MAX_PATH_LENGTH)
    timeout = fields.number("timeout", minimum=0.001, maximum=86400.0, default=None)
    argv = fields.text_list("argv", max_items=4096, max_item_bytes=131072)

Every refusal is a ``RemoteProtocolError`` with code ``bad-request`` naming the field,
which the servers send back in an ERROR frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from socketkit.codec.jsonvalue import has_surrogates
from socketkit.errors import RemoteProtocolError

__all__ = ["MISSING", "Fields"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""The default of a required field."""

_MAX_TEXT_BYTES: Final = 64 * 1024  # the whole control frame's limit


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


class Fields:
    """Checked access to one header's fields.

    Args:
        header: the decoded JSON object.
        code: the error code of refusals (``bad-request``).
    """

    __slots__ = ("code", "header")

    def __init__(self, header: Mapping[str, Any], *, code: str = "bad-request") -> None:
        if not isinstance(header, Mapping):
            raise RemoteProtocolError("a request header must be a JSON object", error_code=code)
        self.header = header
        self.code = code

    def _bad(self, name: str, expectation: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"{name} must be {expectation}", error_code=self.code)

    def _get(self, name: str, default: Any) -> tuple[Any, bool]:
        """The raw value and whether it was present (``null`` counts as absent)."""
        value = self.header.get(name)
        if value is None:
            if default is MISSING:
                raise RemoteProtocolError(f"{name} is required", error_code=self.code)
            return default, False
        return value, True

    def text(
        self,
        name: str,
        *,
        default: str | _Missing = MISSING,
        max_bytes: int = _MAX_TEXT_BYTES,
        allow_empty: bool = True,
        allow_control: bool = True,
    ) -> str:
        """A string of at most ``max_bytes`` UTF-8 bytes, never with NUL (C strings end
        there) nor lone surrogates; ``allow_control=False`` refuses every C0/C1 control
        character too. Returns ``default`` when absent."""
        value = self.optional_text(
            name, max_bytes=max_bytes, allow_empty=allow_empty, allow_control=allow_control
        )
        if value is None:
            if isinstance(default, _Missing):
                raise RemoteProtocolError(f"{name} is required", error_code=self.code)
            return default
        return value

    def optional_text(
        self,
        name: str,
        *,
        max_bytes: int = _MAX_TEXT_BYTES,
        allow_empty: bool = True,
        allow_control: bool = True,
    ) -> str | None:
        """``text``, or ``None`` when absent or ``null``."""
        value = self.header.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        self.check_text(
            name, value, max_bytes=max_bytes, allow_empty=allow_empty, allow_control=allow_control
        )
        return value

    def check_text(
        self,
        name: str,
        value: str,
        *,
        max_bytes: int = _MAX_TEXT_BYTES,
        allow_empty: bool = True,
        allow_control: bool = True,
    ) -> None:
        """The checks of ``text`` for a string found elsewhere (a list item, a map key)."""
        if not allow_empty and not value:
            raise self._bad(name, "a non-empty string")
        if "\0" in value:
            raise self._bad(name, "a string without NUL bytes")
        if has_surrogates(value):
            raise self._bad(name, "valid Unicode (it holds a lone surrogate)")
        if not allow_control and any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
            raise self._bad(name, "a string without control characters")
        if _utf8_size(value) > max_bytes:
            raise self._bad(name, f"at most {max_bytes} bytes long")

    def integer(self, name: str, *, minimum: int, maximum: int, default: int | _Missing = MISSING) -> int:
        """A whole number in ``minimum..maximum`` (``true``/``false`` are not numbers)."""
        value, present = self._get(name, default)
        if not present:
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise self._bad(name, f"a whole number from {minimum} to {maximum}")
        return value

    def number(
        self, name: str, *, minimum: float, maximum: float, default: float | _Missing = MISSING
    ) -> float:
        """A finite number in ``minimum..maximum`` (ints accepted), as a float."""
        value = self.optional_number(name, minimum=minimum, maximum=maximum)
        if value is None:
            if isinstance(default, _Missing):
                raise RemoteProtocolError(f"{name} is required", error_code=self.code)
            return default
        return value

    def optional_number(self, name: str, *, minimum: float, maximum: float) -> float | None:
        """``number``, or ``None`` when absent or ``null``."""
        value = self.header.get(name)
        if value is None:
            return None
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not minimum <= value <= maximum
        ):
            raise self._bad(name, f"a number from {minimum:g} to {maximum:g}")
        return float(value)

    def flag(self, name: str, *, default: bool = False) -> bool:
        """``true`` or ``false``."""
        value, present = self._get(name, default)
        if present and not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return bool(value)

    def choice(self, name: str, options: frozenset[str], *, default: str | _Missing = MISSING) -> str:
        """One of ``options``."""
        value, present = self._get(name, default)
        if present and (not isinstance(value, str) or value not in options):
            raise self._bad(name, f"one of {', '.join(sorted(options))}")
        return str(value)

    def text_list(
        self,
        name: str,
        *,
        max_items: int,
        max_item_bytes: int = _MAX_TEXT_BYTES,
        allow_control: bool = True,
        default: tuple[str, ...] | _Missing = MISSING,
    ) -> tuple[str, ...]:
        """A list of at most ``max_items`` strings, each checked as ``text``."""
        value, present = self._get(name, default)
        if not present:
            return tuple(value)
        if not isinstance(value, list) or len(value) > max_items:
            raise self._bad(name, f"a list of at most {max_items} strings")
        for item in value:
            if not isinstance(item, str):
                raise self._bad(name, "a list of strings")
            self.check_text(name, item, max_bytes=max_item_bytes, allow_control=allow_control)
        return tuple(value)

    def text_map(
        self,
        name: str,
        *,
        max_items: int,
        max_item_bytes: int = _MAX_TEXT_BYTES,
        default: Mapping[str, str] | _Missing = MISSING,
    ) -> dict[str, str]:
        """An object of at most ``max_items`` string values, keys and values checked as
        ``text`` (keys non-empty, without control characters)."""
        value, present = self._get(name, default)
        if not present:
            return dict(value)
        if not isinstance(value, dict) or len(value) > max_items:
            raise self._bad(name, f"an object of at most {max_items} strings")
        for key, item in value.items():
            self.check_text(
                f"{name} name", key, max_bytes=max_item_bytes, allow_empty=False, allow_control=False
            )
            if not isinstance(item, str):
                raise self._bad(f"{name}[{key!r}]", "a string")
            self.check_text(f"{name}[{key!r}]", item, max_bytes=max_item_bytes)
        return dict(value)
