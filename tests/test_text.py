"""Peer text shown to people (logs, the talk console, the chat client) cannot drive the
terminal or forge lines: control characters, line separators and bidi controls escaped."""

from __future__ import annotations

import pytest

from socketkit._text import escape_controls, strip_irc_formatting
from socketkit.services.chat.conversation import Line
from socketkit.services.talk.protocol import CONTINUATION, console_line

HOSTILE = [
    ("\x1b[2J", "\\x1b[2J"),  # clear the screen
    ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),  # write the clipboard
    ("\x9b31m", "\\x9b31m"),  # C1 CSI
    ("abc\b\b\bxyz", "abc\\x08\\x08\\x08xyz"),  # overwrite what was shown
    ("a\rb", "a\\x0db"),
    ("a\x00b", "a\\x00b"),
    ("rtl\u202etxt.exe", "rtl\\u202etxt.exe"),  # shows as rtlexe.txt
    ("line\u2028sep", "line\\u2028sep"),
    ("\u2066iso\u2069", "\\u2066iso\\u2069"),
]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_escape_controls(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


def test_ordinary_text_is_left_alone() -> None:
    text = "café ☕ 😀 family 👨\u200d👩\u200d👧 tab\tend"
    assert escape_controls(text, keep_newlines=True) == text
    assert escape_controls("two\nlines", keep_newlines=True) == "two\nlines"


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_the_chat_client_shows_every_line_escaped(raw: str, shown: str) -> None:
    line = Line(0.0, "message", f"hi {raw}", nick=f"n{raw}", target=f"#r{raw}")
    assert line.text == f"hi {shown}"
    assert line.nick == f"n{shown}"
    assert line.target == f"#r{shown}"


def test_the_chat_client_drops_irc_formatting() -> None:
    assert strip_irc_formatting("\x02bold\x02 \x0304,12red\x03 \x1ditalic\x0f") == "bold red italic"
    assert Line(0.0, "message", "\x0303green\x03 \x1b[1m").text == "green \\x1b[1m"


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_the_talk_console_escapes_and_marks_later_lines(raw: str, shown: str) -> None:
    assert console_line("[#1 a]", f"x{raw}") == f"[#1 a] x{shown}"
    forged = console_line("[#1 a]", "hello\n[#2 127.0.0.1:5] I am someone else\r\nbye")
    assert forged.split("\n") == [
        "[#1 a] hello",
        f"{CONTINUATION}[#2 127.0.0.1:5] I am someone else",
        f"{CONTINUATION}bye",
    ]
