"""--workers: a named cap refused at argument parsing, and signals during the start.

The signal tests run ``run_workers`` in a child Python, so that the signal the test
sends, and the forks, stay out of the pytest process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from socketkit.aio.workers import run_workers
from socketkit.cli.main import build_parser, main
from socketkit.limits import MAX_WORKERS, MAX_WORKERS_CEILING, MAX_WORKERS_PER_CPU
from tests.helpers import TIMEOUT

SERVICES = ["echo", "exec", "files"]
ONE_PROCESS = ["talk", "chat"]  # a console, a channel table: no --workers offered at all


@pytest.mark.parametrize("service", ONE_PROCESS)
def test_services_of_one_process_offer_no_workers_flag(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", service, "--help"]) == 0
    assert "--workers" not in capsys.readouterr().out
    assert main(["serve", service, "--port", "0", "--workers", "2"]) == 2
    assert "unrecognized arguments: --workers" in capsys.readouterr().err


def test_the_cap_is_four_per_usable_cpu_and_never_above_256() -> None:
    """The numbers docs/tools.md states."""
    assert (MAX_WORKERS_PER_CPU, MAX_WORKERS_CEILING) == (4, 256)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert min(4 * cpus, 256) == MAX_WORKERS


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("count", ["100000", str(MAX_WORKERS + 1)])
def test_workers_over_the_cap_is_a_usage_error(
    service: str, count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", service, "--port", "0", "--workers", count]) == 2
    err = capsys.readouterr().err
    assert f"argument --workers: at most {MAX_WORKERS} here" in err
    assert f"not {count}" in err


def test_workers_at_the_cap_is_accepted() -> None:
    args = build_parser().parse_args(["serve", "echo", "--workers", str(MAX_WORKERS)])
    assert args.workers == MAX_WORKERS


def test_run_workers_refuses_more_than_the_cap_before_forking() -> None:
    ran: list[int] = []

    def worker(index: int, ready: object) -> int:  # pragma: no cover - must not run
        ran.append(index)
        return 0

    with pytest.raises(ValueError, match=f"at most {MAX_WORKERS}"):
        run_workers(MAX_WORKERS + 1, worker)
    assert ran == []


# The parent sends itself the signal (with signal 0: fails) from its on_forked hook once
# INTERRUPT_AFTER workers are forked: exactly the moment of a Ctrl-C in the middle of the
# fork loop. Each worker says it is ready and sleeps; only the forwarded signal (or the
# SIGTERM of a failed start) ends it early: exit 99 would mean it slept the whole
# TIMEOUT, never told. The script then checks that run_workers() reaped every pid it
# saw forked.
INTERRUPT_AFTER = 2
SCRIPT = """
import os, sys, time
from socketkit.aio.workers import run_workers

signum, count, interrupt_after, sleep = (float(a) for a in sys.argv[1:])
forked = []

def on_forked(pid):
    forked.append(pid)
    if len(forked) == interrupt_after:
        if not signum:
            raise RuntimeError("the start failed")
        os.kill(os.getpid(), int(signum))

def worker(index, ready):
    ready()
    time.sleep(sleep)
    return 99

def announce():
    print("announced", flush=True)

try:
    status = run_workers(int(count), worker, on_ready=announce, on_forked=on_forked)
except RuntimeError as exc:
    status = 3
    print("raised", exc, flush=True)
unreaped = []
for pid in forked:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        continue
    unreaped.append(pid)
print("forked", len(forked), "unreaped", unreaped, "status", status, flush=True)
sys.exit(status)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_fork_loop_stops_forwards_reaps_and_exits_128_plus_n(
    signum: signal.Signals,
) -> None:
    count = min(MAX_WORKERS, INTERRUPT_AFTER + 2)
    assert count > INTERRUPT_AFTER, "needs a cap above INTERRUPT_AFTER to interrupt the loop"
    proc = run_script(signum, count)
    assert proc.returncode == 128 + signum, proc.stderr
    # Forking stopped at the signal; nothing announced a start that did not complete.
    assert proc.stdout.splitlines() == [f"forked {INTERRUPT_AFTER} unreaped [] status {128 + signum}"]
    assert f"{signum.name} while starting workers: stopping the {INTERRUPT_AFTER} of {count} started" in (
        proc.stderr
    )
    assert "status 99" not in proc.stderr  # every worker was told, none slept it out


def run_script(signum: int, count: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(signum), str(count), str(INTERRUPT_AFTER), str(TIMEOUT)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
        check=False,
    )


def test_a_failure_during_the_start_stops_and_reaps_the_workers_started() -> None:
    proc = run_script(0, min(MAX_WORKERS, INTERRUPT_AFTER + 2))
    assert proc.stdout.splitlines() == [
        "raised the start failed",
        f"forked {INTERRUPT_AFTER} unreaped [] status 3",
    ], proc.stderr
    assert "status 99" not in proc.stderr  # stopped, not left to sleep it out


# Worker FAILING ends before it is ready (how: returns 3, returns 0, is SIGKILLed); the
# others say they are ready and "serve forever": they sleep TIMEOUT and exit 99 only if
# no one stops them. The parent must notice the early exit, stop and reap the others,
# announce nothing, and exit with the failed worker's status (at least 1).
FAILING = 1
EARLY_EXIT_SCRIPT = """
import os, signal, sys, time
from socketkit.aio.workers import run_workers

count, failing, how, sleep = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
forked = []

def worker(index, ready):
    if index == failing:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return int(how)
    ready()
    time.sleep(sleep)
    return 99

status = run_workers(count, worker, on_ready=lambda: print("announced", flush=True), on_forked=forked.append)
unreaped = []
for pid in forked:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        continue
    unreaped.append(pid)
print("forked", *forked, flush=True)
print("unreaped", unreaped, "status", status, flush=True)
sys.exit(status)
"""


@pytest.mark.parametrize(
    ("how", "status", "described"),
    [
        ("3", 3, "exited with status 3"),
        ("0", 1, "exited with status 0"),  # returning without ready() is a failure too
        ("kill", 128 + signal.SIGKILL, f"was killed by SIGKILL (status {128 + signal.SIGKILL})"),
    ],
)
def test_a_worker_dying_before_it_is_ready_stops_the_others_and_fails(
    how: str, status: int, described: str
) -> None:
    count = min(MAX_WORKERS, 4)
    proc = subprocess.run(
        [sys.executable, "-c", EARLY_EXIT_SCRIPT, str(count), str(FAILING), how, str(TIMEOUT)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, (proc.stdout, proc.stderr)  # nothing was announced
    forked = lines[0].split()[1:]
    assert len(forked) == count
    assert lines[1] == f"unreaped [] status {status}"
    assert proc.returncode == status
    # One line, naming the worker and its status; the others were stopped, not slept out
    # (a worker that slept TIMEOUT would log "status 99").
    assert proc.stderr.splitlines() == [
        f"worker {FAILING} (pid {forked[FAILING]}) {described} before it was ready: "
        f"stopping the {count - 1} other worker(s)"
    ]


ALL_READY_THEN_EXIT_SCRIPT = """
import sys
from socketkit.aio.workers import run_workers

def worker(index, ready):
    ready()
    return 5 if index == 0 else 0

status = run_workers(int(sys.argv[1]), worker, on_ready=lambda: print("announced", flush=True))
print("status", status, flush=True)
"""


def test_workers_exiting_right_after_ready_are_no_failure() -> None:
    """The exits race the parent's reading of the ready records: a worker that said it
    was ready and then exited is counted ready, and its status is the worst status."""
    for _ in range(5):  # the race goes either way on each run
        proc = subprocess.run(
            [sys.executable, "-c", ALL_READY_THEN_EXIT_SCRIPT, str(min(MAX_WORKERS, 4))],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 3,
            check=False,
        )
        assert proc.stdout.splitlines() == ["announced", "status 5"], proc.stderr
        assert "before it was ready" not in proc.stderr
