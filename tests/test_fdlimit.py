"""Servers fit their connection caps to the open-file limit they can get: the soft limit
is raised (never above the hard limit), caps left at their defaults are lowered to what
the limit backs, silently, and only a cap the user chose that cannot be met is said, in
one line. Run in child processes: the tests change their limits."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TIMEOUT

resource = pytest.importorskip("resource")

CHILD = """
import json, logging, resource, sys
from socketkit._fdlimit import FD_HEADROOM, ConnectionCap, fit_connection_caps
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
soft, hard, reserved = (int(x) for x in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
caps = [ConnectionCap(name, n, given, f"--max-connections {n}") for name, n, given in json.loads(sys.argv[4])]
fitted = fit_connection_caps(caps, reserved=reserved)
limit = resource.getrlimit(resource.RLIMIT_NOFILE)
print(json.dumps({"fitted": fitted, "limit": limit, "headroom": FD_HEADROOM}))
"""


def _fit(
    soft: int, hard: int, caps: list[tuple[str, int, bool]], reserved: int = 0
) -> tuple[list[int], list[int], int, str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft), str(hard), str(reserved), json.dumps(caps)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    result = json.loads(out.stdout)
    return result["fitted"], result["limit"], result["headroom"], out.stderr


def _hard() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)


def test_a_low_soft_limit_is_raised_to_what_the_caps_need() -> None:
    hard = _hard()
    fitted, limit, headroom, err = _fit(256, hard, [("echo", hard - 1000, False)])
    assert fitted == [hard - 1000]
    assert limit == [hard - 1000 + headroom, hard]
    assert err == ""


def test_defaults_the_hard_limit_cannot_back_are_lowered_silently() -> None:
    hard = _hard()
    caps = [("echo", 10_000, False), ("chat", 10_000, False), ("files", 5_000, False)]
    fitted, limit, headroom, err = _fit(256, hard, caps, reserved=64)
    assert limit == [hard, hard]  # raised as far as it goes
    budget = hard - 64 - headroom
    assert sum(fitted) <= budget
    assert fitted[0] == fitted[1] == 2 * fitted[2]  # shared in proportion
    assert sum(fitted) > budget - len(caps)  # and nothing wasted but rounding
    assert err == ""


def test_a_cap_the_user_chose_is_kept_and_said_once_when_it_cannot_be_met() -> None:
    hard = _hard()
    fitted, limit, headroom, err = _fit(256, hard, [("echo", hard * 2, True), ("chat", 10_000, False)])
    assert limit == [hard, hard]
    assert fitted == [hard * 2, 1]  # the chosen cap as chosen; the default gets what is left
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"WARNING echo --max-connections {hard * 2} cannot be met: ")
    assert f"the open-file limit is {hard} (hard limit {hard})" in lines[0]
    assert f"connections past about {hard - headroom} will be refused" in lines[0]


def test_a_chosen_cap_that_fits_leaves_the_rest_to_the_defaults() -> None:
    hard = _hard()
    fitted, _, headroom, err = _fit(256, hard, [("echo", 1000, True), ("chat", 10_000, False)])
    assert fitted == [1000, hard - headroom - 1000]
    assert err == ""


def test_a_sufficient_limit_is_left_alone() -> None:
    hard = _hard()
    fitted, limit, _, err = _fit(hard, hard, [("echo", 10, False)])
    assert (fitted, limit, err) == ([10], [hard, hard], "")


# --- the command line: `make serve` (serve all) and `serve echo` under a low limit -------

LAUNCH = """
import resource, runpy, sys
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
sys.argv[0] = "socketkit"
runpy.run_module("socketkit", run_name="__main__")
"""


@dataclass
class Served:
    """A server started by ``serve_under_limit``: what it printed (stdout and stderr)."""

    proc: subprocess.Popen[str]
    lines: list[str]

    def until(self, text: str) -> str:
        """Read on until a line containing ``text``; return it."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}: {self.lines}")


@contextmanager
def serve_under_limit(limit: int, ready: str, *args: str) -> Iterator[Served]:
    """``socketkit ARGS`` with RLIMIT_NOFILE at ``limit`` (soft and hard), once it has
    printed a line containing ``ready``; the rest of its lines are added once stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(limit), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(proc, [])
    try:
        served.until(ready)
        yield served
    finally:
        proc.terminate()
        try:
            rest = proc.communicate(timeout=TIMEOUT)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[0]
        served.lines.extend(rest.splitlines())


def _port(line: str) -> int:
    return int(line.rsplit(":", maxsplit=1)[-1].split(maxsplit=1)[0])


def _assert_cap(port: int, cap: int) -> None:
    """``cap`` clients are served; one more is closed at once, the others still served."""
    clients = []
    try:
        for n in range(cap):
            client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            clients.append(client)
            client.sendall(b"%d" % n)
            assert client.recv(16) == b"%d" % n
        extra = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        clients.append(extra)
        assert extra.recv(16) == b""
        clients[0].sendall(b"still")
        assert clients[0].recv(16) == b"still"
    finally:
        for client in clients:
            client.close()


def test_serve_all_says_nothing_about_a_limit_its_default_caps_were_fitted_to(tmp_path: Path) -> None:
    # The four services' 10,000 connections each need 40,000+ descriptors; 2,048 is a
    # common hard limit in containers.
    argv = ["serve", "all", "--any-port", "--state-dir", str(tmp_path / "state"), "--without", "exec"]
    with serve_under_limit(2048, "admin listening on", *argv) as served:
        pass
    assert not [line for line in served.lines if "WARNING" in line or "open-file" in line], served.lines


def test_a_fitted_default_cap_refuses_politely_instead_of_running_out_of_descriptors() -> None:
    from socketkit._fdlimit import FD_HEADROOM

    cap = 20
    with serve_under_limit(FD_HEADROOM + cap, "echo listening on", "serve", "echo", "--port", "0") as served:
        _assert_cap(_port(served.lines[-1]), cap)
    assert not [line for line in served.lines if "open-file" in line], served.lines
    assert [line for line in served.lines if f"server full ({cap} connections)" in line], served.lines


def test_a_reload_keeps_the_fitted_cap() -> None:
    from socketkit._fdlimit import FD_HEADROOM

    cap = 20
    with serve_under_limit(FD_HEADROOM + cap, "echo listening on", "serve", "echo", "--port", "0") as served:
        port = _port(served.lines[-1])
        served.proc.send_signal(signal.SIGHUP)
        assert served.until("SIGHUP: echo:").rstrip().endswith("SIGHUP: echo: nothing changed")
        _assert_cap(port, cap)


def test_a_cap_the_user_gave_that_the_limit_cannot_back_is_said_in_one_line() -> None:
    from socketkit._fdlimit import FD_HEADROOM

    limit = FD_HEADROOM + 20
    argv = ["serve", "echo", "--port", "0", "--max-connections", "100"]
    with serve_under_limit(limit, "echo listening on", *argv) as served:
        pass
    said = [line for line in served.lines if "open-file" in line]
    assert len(said) == 1, served.lines
    assert "WARNING" in said[0]
    assert "echo --max-connections 100 cannot be met: " in said[0]
    assert f"the open-file limit is {limit} (hard limit {limit})" in said[0]


def test_a_cap_from_the_environment_is_a_chosen_one_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from socketkit._fdlimit import FD_HEADROOM

    limit = FD_HEADROOM + 20
    monkeypatch.setenv("SOCKETKIT_ECHO_MAX_CONNECTIONS", "100")
    with serve_under_limit(limit, "echo listening on", "serve", "echo", "--port", "0") as served:
        pass
    said = [line for line in served.lines if "open-file" in line]
    assert len(said) == 1, served.lines
    assert "echo max_connections = 100 (env SOCKETKIT_ECHO_MAX_CONNECTIONS) cannot be met: " in said[0]
