"""`socketkit serve echo` against the alternatives, side by side in one run.

1. the load generator's own ceiling: bench/loadgen.c against a C epoll echo server;
2. TCP echo, 64-byte ping-pong at 1, 10, 100 and 1000 connections: socketkit (the real
   `socketkit serve echo`, with its limits and timeouts on), a bare uvloop Protocol,
   asyncio streams (on uvloop and on the stdlib loop) and the stdlib
   ThreadingTCPServer; requests/s and p99 latency as ratios to the bare uvloop Protocol;
3. 10,000 idle connections: server memory per connection (RSS growth / 10,000);
4. UDP echo with 100 flows: socketkit, a bare uvloop DatagramProtocol and the stdlib
   ThreadingUDPServer (a thread per datagram).

Server on CPU 0, load generator on CPU 1.

    python bench/bench_echo.py [--seconds S] [--repeat N] [--idle N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    LOAD_CPU,
    SERVER_CPU,
    build_loadgen,
    machine,
    pinned,
    rss_kib,
    run_load,
    server_process,
    table,
)

ECHO = str(Path(__file__).with_name("echo_servers.py"))
CONCURRENCY = [1, 10, 100, 1000]
TCP_SERVERS = [
    "uvloop-protocol",
    "socketkit-aio",
    "asyncio-streams-uvloop",
    "asyncio-streams",
    "stdlib-threading",
]
UDP_SERVERS = ["uvloop-datagram", "socketkit-aio-udp", "stdlib-threading-udp"]
LABEL = {
    "uvloop-protocol": "bare uvloop Protocol",
    "socketkit-aio": "socketkit serve echo",
    "asyncio-streams": "asyncio streams (stdlib loop)",
    "asyncio-streams-uvloop": "asyncio streams on uvloop",
    "stdlib-threading": "stdlib ThreadingTCPServer",
    "uvloop-datagram": "bare uvloop DatagramProtocol",
    "socketkit-aio-udp": "socketkit serve echo --udp",
    "stdlib-threading-udp": "stdlib ThreadingUDPServer",
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, mode: str, conns: int, seconds: float) -> dict[str, Any]:
    """One run; ``busy`` is the server's CPU use over the whole load run (connection set-up
    included): near 1.0 the server is the bottleneck, well below it the load generator."""
    with server_process([sys.executable, ECHO, name]) as (proc, port):
        cpu, started = cpu_seconds(proc.pid), time.monotonic()
        result = run_load(mode, port, conns, seconds)
        result["busy"] = (cpu_seconds(proc.pid) - cpu) / (time.monotonic() - started)
        return result


def ceiling(conns: int, seconds: float) -> dict[str, Any]:
    loadgen = str(build_loadgen())
    with server_process([loadgen, "echo", "0"]) as (_, port):
        return run_load("tcp", port, conns, seconds)


def idle_memory(name: str, count: int) -> tuple[float, float]:
    """(KiB per idle connection, seconds to establish them) for one server."""
    loadgen = str(build_loadgen())
    with server_process([sys.executable, ECHO, name]) as (proc, port):
        before = rss_kib(proc.pid)
        holder = subprocess.Popen(
            pinned(LOAD_CPU, [loadgen, "hold", "127.0.0.1", str(port), str(count)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            line = holder.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"{name}: the load generator could not hold {count} connections")
            after = rss_kib(proc.pid)
            return (after - before) / count, float(line[2]) / 1000
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(60)


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per point (median)")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections to hold")
    parser.add_argument(
        "--only", choices=["tcp", "idle", "udp"], action="append", help="run only these parts (repeat)"
    )
    args = parser.parse_args()
    parts = set(args.only or ["tcp", "idle", "udp"])
    print(f"# socketkit echo vs the alternatives -- {machine()}")
    print(
        f"server on CPU {SERVER_CPU}, load generator on CPU {LOAD_CPU}; median of {args.repeat} "
        f"alternating runs of {args.seconds:g} s\n"
    )

    if "tcp" in parts:
        tcp(args)
    if "idle" in parts:
        idle(args)
    if "udp" in parts:
        udp_echo(args)


def tcp(args: argparse.Namespace) -> None:
    rows = []
    for conns in CONCURRENCY:
        c = median([ceiling(conns, args.seconds) for _ in range(args.repeat)])
        rows.append([conns, f"{c['rps']:,.0f}", f"{c['p99_us']:,.0f}"])
    print("## load generator ceiling (C epoll echo server)\n")
    print(table(["connections", "req/s", "p99 µs"], rows))

    results: dict[tuple[str, int], dict[str, Any]] = {}
    for conns in CONCURRENCY:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in TCP_SERVERS}
        for _ in range(args.repeat):
            for name in TCP_SERVERS:
                runs[name].append(measure(name, "tcp", conns, args.seconds))
        for name in TCP_SERVERS:
            results[(name, conns)] = median(runs[name])
        print(f"  tcp {conns} done", file=sys.stderr)
    print("\n## TCP echo, 64-byte ping-pong: requests/s (ratio to bare uvloop), p99 µs, server CPU busy\n")
    headers = ["server"] + [f"{c} conns" for c in CONCURRENCY]
    rows = []
    for name in TCP_SERVERS:
        row = [LABEL[name]]
        for conns in CONCURRENCY:
            r, ref = results[(name, conns)], results[("uvloop-protocol", conns)]
            row.append(
                f"{r['rps'] / 1000:,.1f}k ({r['rps'] / ref['rps']:.2f}x), p99 {r['p99_us']:,.0f}, "
                f"CPU {r['busy']:.0%}"
            )
        rows.append(row)
    print(table(headers, rows))
    sk = {c: results[("socketkit-aio", c)]["rps"] for c in CONCURRENCY}
    for other in ("asyncio-streams-uvloop", "asyncio-streams", "stdlib-threading"):
        ratio = sk[1000] / results[(other, 1000)]["rps"]
        print(f"\nsocketkit vs {LABEL[other]} at 1000 connections: {ratio:.2f}x")


def idle(args: argparse.Namespace) -> None:
    rows = []
    for name in TCP_SERVERS:
        try:
            kib, seconds = idle_memory(name, args.idle)
            rows.append([LABEL[name], f"{kib * 1.024:.2f}", f"{seconds:.1f}"])
        except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
            rows.append([LABEL[name], f"failed: {exc}", "-"])
        print(f"  idle {name} done", file=sys.stderr)
    print(f"\n## {args.idle:,} idle connections: server memory per connection\n")
    print(table(["server", "KB per connection", "s to open them all"], rows))


def udp_echo(args: argparse.Namespace) -> None:
    rows = []
    udp: dict[str, dict[str, Any]] = {}
    runs = {name: [] for name in UDP_SERVERS}
    for _ in range(args.repeat):
        for name in UDP_SERVERS:
            runs[name].append(measure(name, "udp", 100, args.seconds))
    for name in UDP_SERVERS:
        udp[name] = median(runs[name])
    ref = udp["uvloop-datagram"]["rps"]
    for name in UDP_SERVERS:
        r = udp[name]
        rows.append([LABEL[name], f"{r['rps']:,.0f}", f"{r['rps'] / ref:.2f}x", f"{r['p99_us']:,.0f}"])
    print("\n## UDP echo, 64-byte datagrams, 100 flows\n")
    print(table(["server", "datagrams/s", "ratio to bare uvloop", "p99 µs"], rows))


if __name__ == "__main__":
    main()
