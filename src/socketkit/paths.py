"""The path jail: client paths are virtual, always resolved under a served root.

Two parts:

- pure: ``split_virtual`` checks a client path and splits it into components, and
  ``jail_parts`` also applies ``..`` lexically (refusing any climb above the root), so
  what the file service hands to ``socketkit.fsjail`` is a list of plain names that
  the kernel resolves beneath the root's directory fd, one at a time, never through a
  symlink (no string is checked and then opened by name: that is a race);
- ``resolve_under``: ``realpath`` and containment, as pyftpdlib's ``validpath`` does,
  for callers that need a path string (the exec service's working directory, the
  file client's local destinations). It checks a name and then uses it, so it only
  suits directories no one else is changing.

A client path is refused (``PathOutsideRoot``, or ``PermissionDenied`` with code
``bad-path``) when it:

- holds a character that is not plain visible text (``unsafe_character``): a control
  character, C0 or C1 (terminal escapes, newlines that forge log lines), a format
  character (bidi controls such as U+202E, which make ``rtl\u202etxt.exe`` show as
  ``rtlexe.txt``; zero-width characters and the BOM, which make two names look the
  same), a line or paragraph separator (U+2028/9 split log lines), a private-use or
  unassigned code point (no agreed glyph), a lone surrogate (bytes that are not
  UTF-8), or another character that shows as nothing (``INVISIBLE``: fillers,
  joiners, variation selectors);
- is made only of dots and blanks (spaces of any kind, U+2800);
- has a component longer than ``MAX_NAME_LENGTH`` bytes (code ``name-too-long``);
- is absolute, or has a drive letter or a UNC prefix (``C:``, ``\\\\server``);
- uses a Windows-reserved device name (``CON``, ``NUL``, ``COM1``...), which would
  open a device on Windows clients that download it;
- resolves (after ``..`` and symlinks) outside the root.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from typing import Final

from socketkit.errors import PathOutsideRoot, PermissionDenied

__all__ = [
    "MAX_PATH_LENGTH",
    "MAX_NAME_LENGTH",
    "INVISIBLE",
    "REFUSED_CATEGORIES",
    "check_name",
    "display_name",
    "jail_parts",
    "relative_to_root",
    "resolve_under",
    "split_virtual",
    "unsafe_character",
    "virtual_path",
]

MAX_PATH_LENGTH = 4096
"""Longest client path in bytes (Linux PATH_MAX)."""

MAX_NAME_LENGTH = 255
"""Longest path component in bytes (NAME_MAX of Linux, the BSDs and macOS): refused here,
with the same code on every file system, instead of an ENAMETOOLONG from the kernel."""

_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_DRIVE = re.compile(r"^[A-Za-z]:")

REFUSED_CATEGORIES: Final[Mapping[str, str]] = {
    "Cc": "a control character",
    "Cf": "an invisible format character (bidi control, zero-width character, BOM...)",
    "Cs": "a lone surrogate (the name is not valid UTF-8)",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
"""Unicode general categories a name may not hold, with what each is: everything that
is not visible text of its own. ZWJ and ZWNJ (U+200D, U+200C) are format characters
too, so emoji sequences and the Persian and Indic names that use them are refused: a
character that shows as nothing is what makes two different names look alike.
Homoglyphs (Latin ``a`` and Cyrillic ``\u0430``), unusual spaces and decomposed accents
(``e`` + U+0301 beside ``\u00e9``) are allowed: they are visible, and telling them
apart is a matter for the reader's font (see ``docs/security.md``)."""

INVISIBLE: Final = (
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x115F, 0x1160),  # HANGUL CHOSEONG and JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ, AA
    (0x180B, 0x180F),  # MONGOLIAN FREE VARIATION SELECTORS (and the vowel separator)
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xFE00, 0xFE0D),  # VARIATION SELECTOR-1 to 14 (15 and 16 choose text or emoji style)
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xE0100, 0xE01EF),  # VARIATION SELECTOR-17 to 256
)
"""Letters and marks that Unicode says show as nothing (its Default_Ignorable_Code_Point
property, less the format characters ``REFUSED_CATEGORIES`` already refuses): refused
too. U+FE0E and U+FE0F stay allowed: emoji need them (``\u2764\ufe0f``)."""

_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _why_refused(char: str) -> str | None:
    what = REFUSED_CATEGORIES.get(unicodedata.category(char))
    if what is None and any(low <= ord(char) <= high for low, high in INVISIBLE):
        what = "an invisible character (a filler, joiner or variation selector)"
    return what


def unsafe_character(text: str) -> str | None:
    """The first character of ``text`` that a name may not hold (``REFUSED_CATEGORIES``,
    ``INVISIBLE``), or ``None``."""
    if text.isascii():
        match = _ASCII_CONTROL.search(text)
        return match.group() if match else None
    for char in text:
        if _why_refused(char) is not None:
            return char
    return None


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}{f' ({name})' if name else ''}, {_why_refused(char)}"


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def display_name(text: str) -> str:
    """``text`` safe to print or log: every character ``unsafe_character`` refuses is
    shown as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN`` (a name on disk that the rule
    refuses can still be reported, and what a peer sent can be quoted)."""
    if unsafe_character(text) is None:
        return text
    return "".join(_escape(c) if _why_refused(c) is not None else c for c in text)


_BLANK = frozenset(". \u2800")  # and every whitespace character (str.isspace)


def _byte_length(text: str) -> int:
    """Bytes of ``text`` on disk (a name decoded with ``surrogateescape`` counts its
    original bytes; any other lone surrogate, 3 bytes)."""
    try:
        return len(text.encode("utf-8", errors="surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", errors="surrogatepass"))


def check_name(name: str) -> None:
    """Refuse one path component that is unsafe on any platform a file may travel to.

    Raises:
        PermissionDenied: a character ``unsafe_character`` refuses, a reserved device
            name, a name made only of dots and blanks (code ``bad-path``), or a name
            longer than ``MAX_NAME_LENGTH`` bytes (code ``name-too-long``).
    """
    if _byte_length(name) > MAX_NAME_LENGTH:
        raise PermissionDenied(
            f"a name in the path is longer than {MAX_NAME_LENGTH} bytes", code="name-too-long"
        )
    char = unsafe_character(name)
    if char is not None:
        raise PermissionDenied(f"the name '{display_name(name)}' holds {_describe(char)}", code="bad-path")
    stem = name.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED:
        raise PermissionDenied(f"{name!r} is a reserved device name on Windows", code="bad-path")
    if all(c in _BLANK or c.isspace() for c in name) and name not in (".", ".."):
        shown = "".join(c if c in ". " else f"\\u{ord(c):04x}" for c in name)
        raise PermissionDenied(f"'{shown}' is not a usable name (it shows as blank or dots)", code="bad-path")


def split_virtual(path: str) -> list[str]:
    """Check a client path and return its components (``""`` and ``"."`` mean the root).

    Raises:
        PathOutsideRoot: absolute, drive-lettered or UNC paths.
        PermissionDenied: too long, or a component that fails ``check_name``.
    """
    if _byte_length(path) > MAX_PATH_LENGTH:
        raise PermissionDenied(f"path longer than {MAX_PATH_LENGTH} bytes", code="bad-path")
    if "\0" in path:
        raise PermissionDenied("NUL byte in path", code="bad-path")
    if path.startswith(("/", "\\")) or _DRIVE.match(path):
        raise PathOutsideRoot(f"absolute paths are not allowed: {path!r} (paths are relative to the root)")
    parts = [p for p in re.split(r"[/\\]", path) if p not in ("", ".")]
    for part in parts:
        check_name(part)
    return parts


def jail_parts(path: str) -> list[str]:
    """The components of a client path with ``..`` applied: plain names, root first.

    ``a/../b`` is ``["b"]``; a path that climbs above the root at any point is refused
    (even if it would come back: ``../root/x``), so the result never holds ``..``.

    Raises:
        PathOutsideRoot: absolute, or climbs above the root.
        PermissionDenied: see ``split_virtual``.
    """
    parts: list[str] = []
    for part in split_virtual(path):
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise PathOutsideRoot(f"{path!r} leaves the root")
    return parts


def virtual_path(parts: list[str]) -> str:
    """Join checked components into the canonical client-facing path (``""`` = root)."""
    return "/".join(parts)


def resolve_under(root: str | os.PathLike[str], path: str) -> str:
    """Return the real path ``path`` names under ``root``, symlinks resolved.

    ``..`` may be used inside the root (``a/../b``) but never to leave it, and a
    symlink inside the root that points outside it is refused too.

    Args:
        root: the served directory.
        path: the client's virtual path.

    Returns:
        an absolute real path inside the (real) root.

    Raises:
        PathOutsideRoot: the path leaves the root.
        PermissionDenied: see ``split_virtual``.
    """
    real_root = os.path.realpath(root)
    parts = split_virtual(path)
    # Normalise ``..`` lexically first: a path that climbs above the root is refused
    # even if a symlink would bring it back.
    depth = 0
    for part in parts:
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            raise PathOutsideRoot(f"{path!r} leaves the root")
    candidate = os.path.realpath(os.path.join(real_root, *parts)) if parts else real_root
    if candidate != real_root and not candidate.startswith(real_root.rstrip(os.sep) + os.sep):
        raise PathOutsideRoot(f"{path!r} resolves outside the root")
    return candidate


def relative_to_root(root: str | os.PathLike[str], real: str) -> str:
    """The virtual path of a real path inside ``root`` (for listings and messages)."""
    rel = os.path.relpath(real, os.path.realpath(root))
    return "" if rel == "." else rel.replace(os.sep, "/")
