"""Text from peers made safe for a terminal or a log (pure).

A peer's text may hold control characters: a newline starts a forged log line or a
forged chat line, ``ESC [2J`` clears the operator's screen, ``ESC ] 0;...`` retitles
the window, and C1 codes (``\\x9b`` is CSI) do the same on terminals that read them.
Everything that shows peer text (logs, the talk console, the chat client) passes it
through here: control characters are shown as ``\\xNN``, never sent to the terminal.
"""

from __future__ import annotations

import re

__all__ = ["CONTROL", "escape_controls", "strip_irc_formatting"]

# Besides C0, DEL and C1: U+2028/U+2029 (line and paragraph separators: some log tools
# split lines there) and the bidirectional controls (U+202E shows "rtl\u202etxt.exe" as
# "rtlexe.txt"), which reorder what the reader sees.
_UNICODE = "\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_UNICODE}]")
_CONTROL_BUT_TAB_NL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_UNICODE}]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# mIRC formatting: bold, italics, underline, strike, monospace, reverse, reset, and
# colours (\x03 with up to two 1-2 digit numbers, \x04 with hex RGB).
_IRC_FORMAT = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\x02\x1d\x1f\x1e\x11\x16\x0f]"
)


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character shown as ``\\xNN`` (the separators and
    bidirectional controls as ``\\uNNNN``; ``keep_newlines``: tab and newline stay, for
    multi-line messages whose lines the caller marks)."""
    pattern = _CONTROL_BUT_TAB_NL if keep_newlines else CONTROL
    return pattern.sub(_shown, text)


def strip_irc_formatting(text: str) -> str:
    """``text`` without IRC's formatting codes (a plain display does not render them)."""
    return _IRC_FORMAT.sub("", text)
