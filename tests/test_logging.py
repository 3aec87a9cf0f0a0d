"""Every log line is one line, whatever a peer put in it (paths, argv, nicks): control
characters are escaped by every socketkit logger (socketkit._log.get_logger)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from socketkit._log import escape_controls, get_logger

SRC = Path(__file__).resolve().parents[1] / "src" / "socketkit"


def test_a_newline_from_a_peer_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("socketkit.test.forging")
    forged = "x.txt\n2026-12-01 12:00:00 INFO socketkit: admin logged in"
    with caplog.at_level(logging.INFO):
        logger.info("files: %s put %s", "127.0.0.1:5", forged)
        logger.info("escape \x1b[2J and C1 \x9b and DEL \x7f")
    first, second = (record.getMessage() for record in caplog.records)
    assert "\n" not in first
    assert first == "files: 127.0.0.1:5 put x.txt\\x0a2026-12-01 12:00:00 INFO socketkit: admin logged in"
    assert second == "escape \\x1b[2J and C1 \\x9b and DEL \\x7f"
    assert caplog.text.count("\n") == 2  # two records, two lines


def test_formatting_errors_and_percent_signs_survive(caplog: pytest.LogCaptureFixture) -> None:
    logger = get_logger("socketkit.test.percent")
    with caplog.at_level(logging.INFO):
        logger.info("100%% done for %s", "a%sb")
    assert caplog.records[0].getMessage() == "100% done for a%sb"


def test_escape_controls_keeps_printable_text() -> None:
    assert escape_controls("café ☕ tab\there") == "café ☕ tab\\x09here"


def test_every_module_takes_its_logger_from_get_logger() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "_log.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == [], "use socketkit._log.get_logger"
