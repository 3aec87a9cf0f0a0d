"""What nicks, user names and channel names may hold; ban and WHO masks; counts (pure).

Names are shown to every user (in prefixes, NAMES, LIST, WHO) and written to logs, so
the server refuses any that could pass for something else on screen:

- nicks are RFC 2812's ASCII (a letter or one of ``[]\\`_^{|}`` first, then those,
  digits and ``-``), which is stricter than modern.ircdocs.horse and leaves no room for
  look-alike or invisible characters;
- user names (``USER``) are printable ASCII without space, ``@``, ``!``, ``:``, ``,``,
  ``*`` or ``?`` (they are part of ``nick!user@host`` and of the masks matched on it);
- channel names are ``#`` and any characters but space, comma, BEL and ``:``
  (modern.ircdocs.horse: space, BEL and comma) and, beyond what RFC 2812 refuses,
  every Unicode control, format or separator character: C0 and C1 controls, bidi
  overrides and isolates (U+202A-U+202E, U+2066-U+2069), zero-width characters and
  the BOM (U+200B-U+200F, U+2060, U+FEFF), U+2028 and U+2029, other spaces
  (U+00A0, U+3000...), and unassigned code points. A ``#chat\\u202egnp.exe`` or a
  channel whose name moves the cursor would read as another one. Private-use
  characters stay allowed: they show as themselves or as a box.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from socketkit.codec.irc import casefold

__all__ = [
    "MAX_COUNT",
    "mask_matches",
    "normalize_mask",
    "parse_count",
    "safe_name_text",
    "valid_channel",
    "valid_nick",
    "valid_username",
]

MAX_COUNT: Final = 2**31 - 1
"""The largest number a client may give (a channel limit, a CHATHISTORY or WHOWAS count):
what other servers keep in a 32-bit integer, and what SQLite stores without overflow."""

_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*")
_USERNAME_REFUSED = frozenset(" @!:,*?")
_CHANNEL_REFUSED = frozenset(" ,\x07:")


def valid_nick(nick: str, max_length: int) -> bool:
    """RFC 2812 nicknames (letter or special first), at most ``max_length`` characters."""
    return 0 < len(nick) <= max_length and _NICK.fullmatch(nick) is not None


def valid_username(name: str) -> bool:
    """A ``USER`` name: printable ASCII, none of space, ``@``, ``!``, ``:``, ``,``,
    ``*``, ``?``."""
    return bool(name) and name.isascii() and name.isprintable() and not _USERNAME_REFUSED.intersection(name)


def safe_name_text(text: str) -> bool:
    """Whether ``text`` shows as what it is: no control, format, surrogate, unassigned
    or separator character (Unicode categories C* but Co, and Z*), so no bidi
    override, zero-width character, line or paragraph separator, or odd space."""
    if text.isascii():
        return text.isprintable() and " " not in text
    for char in text:
        category = unicodedata.category(char)
        if (category[0] == "C" and category != "Co") or category[0] == "Z":
            return False
    return True


def valid_channel(name: str, max_length: int) -> bool:
    """``#name`` (at most ``max_length`` characters) without space, comma, BEL or ``:``,
    and nothing ``safe_name_text`` refuses."""
    return (
        1 < len(name) <= max_length
        and name.startswith("#")
        and not _CHANNEL_REFUSED.intersection(name)
        and safe_name_text(name)
    )


def parse_count(text: str, maximum: int = MAX_COUNT) -> int | None:
    """``text`` as a count 0..``maximum``, or ``None``: ASCII digits only (``str.isdigit``
    takes ``²`` and other digits that ``int`` refuses), and never a number SQLite or
    the rest of the server cannot hold."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None


def normalize_mask(mask: str) -> str:
    """Complete a ban mask: ``nick`` -> ``nick!*@*``, ``user@host`` -> ``*!user@host``."""
    if "!" not in mask and "@" not in mask:
        return f"{mask}!*@*"
    if "!" not in mask:
        return f"*!{mask}"
    if "@" not in mask:
        return f"{mask}@*"
    return mask


def mask_matches(mask: str, hostmask: str) -> bool:
    """Glob match (``*``, ``?``) of ``nick!user@host`` against a mask, case-insensitively.

    Masks are anyone's input (WHO, a ban any channel operator sets), so the match must
    not backtrack: a regex made of the mask (``*a*a*a...*b`` as ``.*a.*a.*a....*b``)
    takes exponential time, and one ``WHO`` froze the server. Instead the mask is cut at
    its stars: the first piece must match at the start, the last at the end, and each
    piece between is found leftmost after the previous one (leftmost is always right
    when the gaps can hold anything), each search a plain scan.
    """
    return _glob(casefold(mask), casefold(hostmask))


def _glob(pattern: str, text: str) -> bool:
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return len(pattern) == len(text) and _piece_at(pattern, text, 0)
    first, last = pieces[0], pieces[-1]
    end = len(text) - len(last)  # where the last piece must start
    if end < len(first) or not _piece_at(first, text, 0) or not _piece_at(last, text, end):
        return False
    at = len(first)
    for piece in pieces[1:-1]:
        if piece:
            found = _find_piece(piece, text, at, end)
            if found < 0:
                return False
            at = found + len(piece)
    return True


def _piece_at(piece: str, text: str, start: int) -> bool:
    """Whether ``piece`` (``?`` for any one character) matches ``text`` at ``start``."""
    if "?" not in piece:
        return text.startswith(piece, start)
    return all(c == "?" or c == text[start + i] for i, c in enumerate(piece))


def _find_piece(piece: str, text: str, start: int, end: int) -> int:
    """Where ``piece`` first matches within ``text[start:end]`` (-1: nowhere)."""
    if "?" not in piece:
        return text.find(piece, start, end)
    # Literals and single-character dots only: no repetition, so no backtracking.
    found = re.compile("".join("." if c == "?" else re.escape(c) for c in piece), re.DOTALL).search(
        text, start, end
    )
    return -1 if found is None else found.start()
