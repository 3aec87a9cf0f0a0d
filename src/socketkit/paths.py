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
- looks like something it is not (``misleading``): it shows as nothing, as blanks or as
  dots (``.`` and ``..`` are the path syntax; a name that only looks like them is
  refused), it starts with a combining mark (which joins whatever is shown before it),
  or it holds a character that looks like a path separator (``SLASH_LIKE``, or one whose
  compatibility form is ``/`` or ``\\``, as U+FF0F FULLWIDTH SOLIDUS);
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
    "DOT_LIKE",
    "INVISIBLE",
    "REFUSED_CATEGORIES",
    "SLASH_LIKE",
    "check_name",
    "display_name",
    "jail_parts",
    "misleading",
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


DOT_LIKE: Final = frozenset(
    {
        "\u0660",  # ARABIC-INDIC DIGIT ZERO: drawn as a dot
        "\u06f0",  # EXTENDED ARABIC-INDIC DIGIT ZERO: the same
        "\u0701",  # SYRIAC SUPRALINEAR FULL STOP
        "\u0702",  # SYRIAC SUBLINEAR FULL STOP
        "\ua4f8",  # LISU LETTER TONE MYA TI
        "\ua60e",  # VAI FULL STOP
        "\U00010a50",  # KHAROSHTHI PUNCTUATION DOT
    }
)
"""Characters drawn as a lone dot whose compatibility form (NFKC) is not ``.``: Unicode's
confusables of FULL STOP. Those whose NFKC form is dots (U+2024 ONE DOT LEADER, U+2025,
U+2026, U+FF0E FULLWIDTH FULL STOP...) need no list: the rule looks at the NFKC form."""

SLASH_LIKE: Final = frozenset(
    {
        "\u0337",  # COMBINING SHORT SOLIDUS OVERLAY: on a blank, a slash
        "\u0338",  # COMBINING LONG SOLIDUS OVERLAY
        "\u20e5",  # COMBINING REVERSE SOLIDUS OVERLAY
        "\u20eb",  # COMBINING LONG DOUBLE SOLIDUS OVERLAY
        "\u1735",  # PHILIPPINE SINGLE PUNCTUATION
        "\u2044",  # FRACTION SLASH
        "\u2215",  # DIVISION SLASH
        "\u2216",  # SET MINUS (a backslash)
        "\u2571",  # BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT
        "\u2572",  # BOX DRAWINGS LIGHT DIAGONAL UPPER LEFT TO LOWER RIGHT
        "\u27cb",  # MATHEMATICAL RISING DIAGONAL
        "\u27cd",  # MATHEMATICAL FALLING DIAGONAL
        "\u29f5",  # REVERSE SOLIDUS OPERATOR
        "\u29f8",  # BIG SOLIDUS
        "\u29f9",  # BIG REVERSE SOLIDUS
        "\u2e4a",  # DOTTED SOLIDUS
        "\u2f03",  # KANGXI RADICAL SLASH
        "\u31d3",  # CJK STROKE SP
        "\U0001f67c",  # VERY HEAVY SOLIDUS
        "\U0001f67d",  # VERY HEAVY REVERSE SOLIDUS
    }
)
"""Symbols, punctuation and marks drawn as a lone ``/`` or ``\\`` (Unicode's confusables
of SOLIDUS and REVERSE SOLIDUS) whose NFKC form is not one: ``a\u2215b`` shows as the
path ``a/b``. Those whose NFKC form holds one (U+FF0F, U+FF3C, U+FE68, and U+2105 CARE
OF, ``c/o``) need no list. Letters that resemble a slash (KATAKANA LETTER NO, the
ideograph U+4E3F) stay allowed: they are words' letters, and refusing them would refuse
ordinary Japanese and Chinese names."""

_BLANK = frozenset(" \u2800")  # BRAILLE PATTERN BLANK draws nothing; and str.isspace, Zs


def _byte_length(text: str) -> int:
    """Bytes of ``text`` on disk (a name decoded with ``surrogateescape`` counts its
    original bytes; any other lone surrogate, 3 bytes)."""
    try:
        return len(text.encode("utf-8", errors="surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", errors="surrogatepass"))


def _blank(char: str) -> bool:
    return char in _BLANK or char.isspace() or unicodedata.category(char) == "Zs"


def _mark(char: str) -> bool:
    """A combining mark (Mn, Mc, Me; variation selectors are Mn): drawn on the character
    before it, never on its own."""
    return unicodedata.category(char)[0] == "M"


def _shown(name: str) -> str:
    """``name`` with every character outside printable ASCII escaped (``\\uNNNN``): what a
    misleading name really holds, in a message."""
    return "".join(c if " " <= c <= "~" else _escape(c) for c in name)


def misleading(name: str) -> str | None:
    """What makes ``name`` look like something it is not, or ``None``.

    Checked on a name whose characters ``unsafe_character`` accepts:

    - it shows as nothing, or as blanks: no character but combining marks and blanks
      (whitespace, the space separators, U+2800);
    - it shows as dots: once in its compatibility form (NFKC, where U+2024 ONE DOT
      LEADER is ``.``) and without marks and blanks, only ``.`` and ``DOT_LIKE``
      characters are left (``.`` and ``..`` themselves are path syntax, for the caller);
    - it starts with a combining mark, which is drawn on what is shown before the name;
    - it holds a path separator's look-alike: a ``SLASH_LIKE`` character, or one whose
      NFKC form holds ``/`` or ``\\``.
    """
    if name.isascii():
        if name.strip(" .") == "" and name not in (".", ".."):
            return "it shows as blank or dots"
        return None
    if _mark(name[0]):
        return f"it starts with {_describe_plain(name[0])}, which joins what is shown before it"
    if all(_mark(c) or _blank(c) for c in name):
        return "it shows as nothing or as blanks"
    folded = unicodedata.normalize("NFKC", name)
    seen = [c for c in folded if not (_mark(c) or _blank(c))]
    if seen and all(c == "." or c in DOT_LIKE for c in seen):
        return "it shows as dots"
    if "/" in folded or "\\" in folded or not SLASH_LIKE.isdisjoint(name):
        char = next(c for c in name if c in SLASH_LIKE or {"/", "\\"} & set(unicodedata.normalize("NFKC", c)))
        return f"it holds {_describe_plain(char)}, which looks like a path separator"
    return None


def _describe_plain(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}{f' ({name})' if name else ''}"


def check_name(name: str) -> None:
    """Refuse one path component that is unsafe on any platform a file may travel to.

    Raises:
        PermissionDenied: a character ``unsafe_character`` refuses, a reserved device
            name, a name that looks like something it is not (``misleading``: blank,
            dots, a leading combining mark, a slash look-alike) (code ``bad-path``), or
            a name longer than ``MAX_NAME_LENGTH`` bytes (code ``name-too-long``).
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
    why = misleading(name)
    if why is not None:
        raise PermissionDenied(f"'{_shown(name)}' is not a usable name ({why})", code="bad-path")


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
