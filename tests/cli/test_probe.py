"""``socketkit probe``: what a range shows, the per-port timeout, the bounds on
descriptors, and per-port times that do not include the rest of the batch.

Ports are loopback ports this test holds: a block of consecutive ports bound (not
listening, so a connect is refused) keeps every other process off them for the test,
so "exactly one open port" cannot be spoiled by a neighbour's server."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import socket
import time
from collections.abc import Iterator

import pytest

from socketkit.cli import probe as probe_module
from socketkit.cli._probe_results import (
    OPEN_FILES_RESERVE,
    ProbeResult,
    format_ms,
    in_flight_limit,
    outcome,
    render,
    summary,
)
from socketkit.cli.main import main
from tests.helpers import TIMEOUT


@contextlib.contextmanager
def held_ports(count: int) -> Iterator[list[socket.socket]]:
    """``count`` consecutive loopback ports, each bound by a socket of ours (below the
    ephemeral range, where servers started on port 0 do not land)."""
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20_000, 32_000 - count)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            for sock in socks:
                sock.close()
            continue
        try:
            yield socks
        finally:
            for sock in socks:
                sock.close()
        return
    raise RuntimeError(f"no {count} consecutive free loopback ports found")


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def test_probe_range_lists_exactly_the_open_port_and_says_when_none_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with held_ports(128) as socks:
        base, open_sock = _port(socks[0]), socks[100]
        open_sock.listen()
        assert main(["probe", "127.0.0.1", f"{base}-{base + 127}"]) == 1
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "127.0.0.1: 128 port(s)"
        assert lines[1].split() == ["port", "state", "ms", "why"]
        assert lines[2].split()[:2] == [str(_port(open_sock)), "open"]
        assert lines[2].split()[3] == "accepted"
        assert lines[3:] == ["1 open, 127 closed"]
        assert main(["probe", "127.0.0.1", f"{base}-{base + 63}"]) == 1
        assert capsys.readouterr().out == "no open ports among 64 probed on 127.0.0.1 (64 closed)\n"
        assert main(["probe", "127.0.0.1", f"{base}-{base + 63}", "--all"]) == 1
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 + 64 + 1
        assert lines[-1] == "no open ports among 64 probed on 127.0.0.1 (64 closed)"


def test_probe_times_each_connect_alone_not_its_batch(capsys: pytest.CaptureFixture[str]) -> None:
    """A port's time runs from its own connect to its outcome: on loopback these do not
    overlap, so all of them together fit in the time the whole command took. Timing
    from the start of a batch of 128 (what probe did) sums to many times the command."""
    with held_ports(128) as socks:
        socks[5].listen()
        base = _port(socks[0])
        started = time.perf_counter()
        status = main(["probe", "127.0.0.1", f"{base}-{base + 127}", "--concurrency", "128", "--json"])
        wall_ms = (time.perf_counter() - started) * 1000
    assert status == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 128
    assert {r["state"] for r in results} == {"open", "closed"}
    assert sum(r["ms"] for r in results) <= wall_ms


@contextlib.contextmanager
def silent_ports(count: int) -> Iterator[list[int]]:
    """Loopback ports that never answer a SYN: listeners whose accept queue (backlog 0:
    room for one) is already full, so Linux drops new SYNs, as a firewall would."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            stack.enter_context(socket.create_connection(listener.getsockname(), timeout=TIMEOUT))
            ports.append(_port(listener))
        yield ports


def test_probe_gives_each_port_its_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with silent_ports(3) as ports, held_ports(2) as held:
        closed = [_port(sock) for sock in held]
        listed = ",".join(str(p) for p in [*ports, *closed])
        assert main(["probe", "127.0.0.1", listed, "--timeout", "0.2", "--json"]) == 1
    results = json.loads(capsys.readouterr().out)["results"]
    states = {r["port"]: (r["state"], r["errno"], r["ms"]) for r in results}
    for port in ports:
        assert states[port] == ("timeout", 110, 200.0)
    assert {states[port][0] for port in closed} == {"closed"}


@pytest.mark.parametrize("knows_the_limit", [True, False])
def test_probe_stays_within_the_open_file_limit(
    knows_the_limit: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--concurrency far above what the open-file limit allows: probe keeps under the
    limit it reads, and when descriptors run out anyway (files opened elsewhere), it
    waits for outstanding connects instead of failing."""
    if not knows_the_limit:
        monkeypatch.setattr(probe_module, "_open_files_limit", lambda: None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with silent_ports(6) as ports:
        in_use = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 3, hard))
        try:
            results = probe_module.probe_ports("127.0.0.1", ports, timeout=0.1, concurrency=4096)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [r.state for r in results] == ["timeout"] * 6


def test_probe_raises_the_soft_open_file_limit_for_its_concurrency(
    capsys: pytest.CaptureFixture[str],
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2000 + OPEN_FILES_RESERVE
    if hard != resource.RLIM_INFINITY and hard < wanted:
        wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 512), hard))
    try:
        with held_ports(1) as socks:
            assert main(["probe", "127.0.0.1", str(_port(socks[0])), "--concurrency", "2000"]) == 1
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert capsys.readouterr().out.splitlines()[-1].startswith("no open ports among 1 probed")


def test_outcome_names_each_state() -> None:
    assert outcome(0) == ("open", "accepted")
    assert outcome(111) == ("closed", "ECONNREFUSED")
    assert outcome(110) == ("timeout", "no answer")
    assert outcome(113) == ("error", "EHOSTUNREACH")
    assert outcome(99999) == ("error", "errno 99999")


def test_in_flight_limit_keeps_under_the_open_file_limit() -> None:
    assert in_flight_limit(100, None) == 100
    assert in_flight_limit(100, 1024) == 100
    assert in_flight_limit(4096, 1024) == 1024 - OPEN_FILES_RESERVE
    assert in_flight_limit(4096, OPEN_FILES_RESERVE) == 1  # always some progress


def _result(port: int, state: str, ms: float = 0.02) -> ProbeResult:
    return ProbeResult(port, state, 0, "accepted" if state == "open" else "ECONNREFUSED", ms)


def test_render_shows_open_ports_or_only_the_summary() -> None:
    results = [_result(1, "closed"), _result(22, "open", 0.031), _result(3, "closed", 12.34)]
    assert render("h", results, show_all=False) == [
        "h: 3 port(s)",
        "port  state     ms  why",
        "  22  open   0.031  accepted",
        "1 open, 2 closed",
    ]
    assert render("h", results, show_all=True)[2:] == [
        "   1  closed  0.020  ECONNREFUSED",
        "  22  open    0.031  accepted",
        "   3  closed   12.3  ECONNREFUSED",
        "1 open, 2 closed",
    ]
    assert render("h", [_result(1, "closed")], show_all=False) == [
        "no open ports among 1 probed on h (1 closed)"
    ]
    coloured = render("h", results, show_all=False, colour=True)
    assert coloured[2] == "  22  \x1b[32mopen\x1b[0m   0.031  accepted"
    assert summary("h", []) == "no open ports among 0 probed on h"
    assert (format_ms(0.0123), format_ms(1.25)) == ("0.012", "1.2")
