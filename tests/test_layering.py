"""The layering rules of STYLE.md, enforced: pure modules import no I/O, the core needs
no third-party package, and arrows only point down."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "socketkit"

# Protocol code: a pure function of (state, input) -> (state, output).
PURE_NAMES = {
    "protocol.py",
    "state.py",
    "commands.py",
    "session.py",
    "policy.py",
    "paths.py",
    "numerics.py",
    "history.py",
    "replies.py",
}
FORBIDDEN = {
    "socket",
    "selectors",
    "select",
    "ssl",
    "asyncio",
    "threading",
    "subprocess",
    "signal",
    "logging",
    "time",
    "multiprocessing",
    "concurrent",
    "uvloop",
    "socketkit.server",
    "socketkit.aio",
    "socketkit.cli",
}


def pure_modules() -> list[Path]:
    modules = [
        *sorted((SRC / "codec").glob("*.py")),
        SRC / "errors.py",
        SRC / "limits.py",
        SRC / "address.py",
        SRC / "paths.py",
        *sorted((SRC / "auth").glob("handshake.py")),
        *sorted((SRC / "auth").glob("throttle.py")),
        # What listen and probe decide, apart from their sockets.
        SRC / "cli" / "_listen_state.py",
        SRC / "cli" / "_probe_results.py",
        # The wire-v1 session and the rules of the unauthenticated phase: both engines
        # drive them, so they hold no I/O of either.
        SRC / "auth" / "wiresession.py",
        SRC / "auth" / "wireevents.py",
        SRC / "auth" / "gate.py",
    ]
    modules += sorted(p for p in (SRC / "services").rglob("*.py") if p.name in PURE_NAMES)
    # The chat service's protocol logic is a package of pure modules.
    chat = SRC / "services" / "chat"
    modules += sorted(
        p
        for p in chat.rglob("*.py")
        if p.name not in ("server.py", "client.py", "client_input.py", "store.py", "build.py")
    )
    modules.append(SRC / "services" / "talk" / "text.py")  # which language a peer speaks
    return [p for p in modules if p.exists()]


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def is_forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = sorted(n for n in imported_names(path) if is_forbidden(n))
    assert not bad, f"{path.relative_to(SRC)} imports {bad}: protocol code must stay sans-IO"


def test_the_pure_set_is_not_empty() -> None:
    assert len(pure_modules()) >= 5


def test_codec_does_not_reach_up() -> None:
    for path in (SRC / "codec").glob("*.py"):
        for name in imported_names(path):
            assert not name.startswith(("socketkit.services", "socketkit.testing")), (path, name)


def test_core_imports_with_the_standard_library_alone() -> None:
    code = (
        "import sys\n"
        "import socketkit, socketkit.codec, socketkit.server, socketkit.testing\n"
        "std = set(sys.stdlib_module_names)\n"
        "extra = sorted({m.split('.')[0] for m in sys.modules} - std - {'socketkit', '__main__'})\n"
        "print(','.join(e for e in extra if not e.startswith('_')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"third-party modules imported by the core: {out.stdout}"
