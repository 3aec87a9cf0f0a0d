"""Servers raise their open-file limit to what their connection cap needs (never above
the hard limit), and warn when the hard limit is too low. Run in a child process: the
test changes its limits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")

CHILD = """
import json, logging, resource, sys
from socketkit._fdlimit import FD_HEADROOM, raise_open_files_limit
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
soft, hard = (int(x) for x in sys.argv[1:3])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
now = raise_open_files_limit(int(sys.argv[3]))
limit = resource.getrlimit(resource.RLIMIT_NOFILE)
print(json.dumps({"returned": now, "limit": limit, "headroom": FD_HEADROOM}))
"""


def _run(soft: int, hard: int, connections: int) -> tuple[dict[str, object], str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft), str(hard), str(connections)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(out.stdout), out.stderr


def _hard() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)


def test_a_low_soft_limit_is_raised_to_the_cap_plus_headroom() -> None:
    hard = _hard()
    result, err = _run(256, hard, hard - 1000)
    wanted = hard - 1000 + int(result["headroom"])  # type: ignore[call-overload]
    assert result["returned"] == wanted
    assert result["limit"] == [wanted, hard]
    assert err == ""


def test_the_hard_limit_is_never_passed_and_the_shortfall_is_logged() -> None:
    hard = _hard()
    result, err = _run(256, hard, hard * 2)
    assert result["limit"] == [hard, hard]
    assert "below the" in err
    assert "raise `ulimit -n`" in err


def test_a_sufficient_limit_is_left_alone() -> None:
    hard = _hard()
    result, err = _run(hard, hard, 10)
    assert result["limit"] == [hard, hard]
    assert err == ""
