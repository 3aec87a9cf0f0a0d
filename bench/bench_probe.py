"""`socketkit probe` against `nc -z`, side by side in one run.

Alternating rounds (the order rotates each round, so drift of the machine hits every
side alike), median and min-max of each:

1. `nc -z 127.0.0.1 PORTS`, the whole process (netcat-openbsd; skipped when absent);
2. `socketkit probe 127.0.0.1 PORTS`, the whole process;
3. `socketkit --version`: the interpreter's start and the CLI's imports, the floor under
   any socketkit command;
4. `probe_ports("127.0.0.1", PORTS)` inside this process: the probing alone.

Then the per-port times probe reports for refused ports (p50/p99), and a check that
nc and probe found the same open ports.

Second, ports that never answer (what a firewall that drops SYNs looks like): loopback
listeners whose accept queue is full, so Linux drops further SYNs; `nc -z -w 1` tries
them one after the other, `probe --timeout 1` all at once. Loopback only; by default the ports of
`nc -z 127.0.0.1 1-1024` (privileged ports: other programs' test servers on port 0 do
not land there, so the benchmark disturbs nobody).

    python bench/bench_probe.py [--rounds N] [--ports 1-1024] [--silent N] [--silent-rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine, table

from socketkit.address import parse_ports
from socketkit.cli.probe import probe_ports

HOST = "127.0.0.1"
SOCKETKIT = [sys.executable, "-m", "socketkit"]


def timed_process(argv: list[str]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return time.perf_counter() - started

    return run


def timed_in_process(ports: list[int]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        probe_ports(HOST, ports)
        return time.perf_counter() - started

    return run


@contextlib.contextmanager
def silent_ports(count: int) -> Iterator[list[int]]:
    """Loopback ports that drop SYNs: backlog-0 listeners with their one queue slot taken."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            listener = stack.enter_context(socket.socket())
            listener.bind((HOST, 0))
            listener.listen(0)
            stack.enter_context(socket.create_connection(listener.getsockname(), timeout=5))
            ports.append(int(listener.getsockname()[1]))
        yield ports


def alternate(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every contender once per round (rotating the order); milliseconds each."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            samples[name].append(contenders[name]() * 1000)
    return samples


def ratio_table(samples: dict[str, list[float]]) -> str:
    """Median (min-max) of each, and its ratio to the first."""
    names = list(samples)
    reference = statistics.median(samples[names[0]])
    rows = []
    for name in names:
        ms = sorted(samples[name])
        median = statistics.median(ms)
        rows.append([name, f"{median:,.1f} ({ms[0]:,.1f}-{ms[-1]:,.1f})", f"{median / reference:.2f}x"])
    return table(["command", "ms", f"ratio to {names[0]}"], rows)


def open_ports_nc(spec: str) -> set[int]:
    out = subprocess.run(["nc", "-zv", HOST, spec], capture_output=True, text=True, check=False)
    return {int(m.group(1)) for m in re.finditer(r" (\d+) port \[tcp/[^\]]*\] succeeded", out.stderr)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=21, help="alternating rounds (median counts)")
    parser.add_argument("--ports", default="1-1024", help="ports to probe on 127.0.0.1 (default: 1-1024)")
    parser.add_argument("--silent", type=int, default=4, help="ports that never answer (default: 4)")
    parser.add_argument("--silent-rounds", type=int, default=3, help="rounds of the silent-port test")
    args = parser.parse_args()
    ports = parse_ports(args.ports)
    print(f"# socketkit probe vs nc -z, {HOST} {args.ports} ({len(ports)} ports) -- {machine()}\n")

    have_nc = shutil.which("nc") is not None
    contenders: dict[str, Callable[[], float]] = {}
    if have_nc:
        contenders[f"nc -z {HOST} {args.ports}"] = timed_process(["nc", "-z", HOST, args.ports])
    else:
        print("(nc not found: apt-get install netcat-openbsd for the nc column)\n")
    contenders[f"socketkit probe {HOST} {args.ports}"] = timed_process(
        [*SOCKETKIT, "probe", HOST, args.ports]
    )
    contenders["socketkit --version (start-up floor)"] = timed_process([*SOCKETKIT, "--version"])
    contenders["probe_ports() in-process (probing alone)"] = timed_in_process(ports)

    for run in contenders.values():  # one warm-up each: page cache, .pyc files
        run()
    samples = alternate(contenders, args.rounds)
    print(f"## wall time, ms: median (min-max) of {args.rounds} alternating rounds\n")
    print(ratio_table(samples))

    report = subprocess.run(
        [*SOCKETKIT, "probe", HOST, args.ports, "--json"], capture_output=True, text=True, check=False
    )
    results = json.loads(report.stdout)["results"]
    refused = sorted(r["ms"] for r in results if r["state"] == "closed")
    found = {r["port"] for r in results if r["state"] == "open"}
    if refused:
        p50, p99 = refused[len(refused) // 2], refused[min(len(refused) - 1, int(len(refused) * 0.99))]
        print(f"\nper-port times probe reports, {len(refused)} refused: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    line = f"open ports found by probe: {sorted(found) or 'none'}"
    if have_nc:
        by_nc = open_ports_nc(args.ports)
        line += "; nc agrees" if by_nc == found else f"; nc found {sorted(by_nc)}"
    print(line)

    with silent_ports(args.silent) as silent:
        listed = ",".join(str(port) for port in silent)
        slow: dict[str, Callable[[], float]] = {}
        if have_nc:
            slow[f"nc -z -w 1 ({args.silent} silent ports)"] = timed_process(
                ["nc", "-z", "-w", "1", HOST, *(str(port) for port in silent)]
            )
        slow[f"socketkit probe --timeout 1 ({args.silent} silent ports)"] = timed_process(
            [*SOCKETKIT, "probe", "--timeout", "1", HOST, listed]
        )
        print(f"\n## ports that never answer: median (min-max) of {args.silent_rounds} alternating rounds\n")
        print(ratio_table(alternate(slow, args.silent_rounds)))


if __name__ == "__main__":
    main()
