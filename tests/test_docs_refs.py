"""Every test the docs name as the proof of a claim exists: a renamed or deleted test
must take its claim (or the reference) with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

_REF = re.compile(r"((?:tests/)?[\w/]+\.py)?::(test_\w+)|`(test_\w+)`")
_DEF = re.compile(r"^(?:async )?def (test_\w+)", re.M)


def _defined() -> dict[Path, set[str]]:
    return {path: set(_DEF.findall(path.read_text())) for path in TESTS.rglob("test_*.py")}


def _file(name: str) -> Path | None:
    name = name.removeprefix("tests/")
    direct = TESTS / name
    if direct.exists():
        return direct
    matches = [p for p in TESTS.rglob("*.py") if p.as_posix().endswith("/" + name)]
    return matches[0] if len(matches) == 1 else None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_named_in_the_docs_exists(doc: Path) -> None:
    defined = _defined()
    everywhere = set().union(*defined.values())
    missing = []
    current: Path | None = None
    for match in _REF.finditer(doc.read_text()):
        path, qualified, bare = match.groups()
        if path is not None:
            current = _file(path)
            if current is None:
                missing.append(f"{path} (no such test file)")
                continue
        name = qualified or bare
        if qualified and current is not None and path is None and name in defined.get(current, set()):
            continue  # "::name" after a file: that file's test
        if path is not None and current is not None:
            if name not in defined.get(current, set()):
                missing.append(f"{path}::{name}")
            continue
        if name not in everywhere:
            missing.append(name)
    assert missing == []
