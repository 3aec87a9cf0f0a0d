"""socketkit.server against the stdlib socketserver, side by side in one run.

1. shutdown latency: time from shutdown() to serve_forever() returning, at a random
   moment of the poll cycle (the stdlib polls every 0.5 s; socketkit is woken by a fd);
2. threaded echo throughput and latency: the tutorial's echo handler on
   ThreadingTCPServer, 64-byte ping-pong from the C load generator at 1, 10, 100 and
   1000 connections, server and load generator on separate cores. socketkit runs twice:
   as shipped, and with its EOF-spin guard off (max_reads_after_eof=None), which is the
   one thing on the per-request path that differs from the stdlib;
3. connection burst: N clients connect at the same moment; time until every one has
   had its first echo (the stdlib's listen backlog of 5 overflows, socketkit's is 128).

    python bench/bench_server.py [--seconds S] [--repeat N] [--rounds N]
"""

from __future__ import annotations

import argparse
import random
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine, run_load, server_process, table

import socketkit.server

CONCURRENCY = [1, 10, 100, 1000]
SERVERS = ["stdlib-threading", "socketkit-threading", "socketkit-threading-noguard"]
ECHO = str(Path(__file__).with_name("echo_servers.py"))


def shutdown_latency(module: Any, rounds: int, rng: random.Random) -> list[float]:
    class Quiet(module.BaseRequestHandler):  # type: ignore[misc, name-defined]
        def handle(self) -> None:
            self.request.recv(1)

    samples = []
    for _ in range(rounds):
        with module.TCPServer(("127.0.0.1", 0), Quiet) as server:
            thread = threading.Thread(target=server.serve_forever)
            thread.start()
            with socket.create_connection(server.server_address, timeout=5) as sock:
                sock.sendall(b"x")  # the loop is running and has served a request
            time.sleep(rng.uniform(0, 0.5))  # a random point in the stdlib's poll cycle
            started = time.perf_counter()
            server.shutdown()
            samples.append(time.perf_counter() - started)
            thread.join()
    return samples


def median_run(name: str, conns: int, seconds: float, **kw: Any) -> dict[str, Any]:
    with server_process([sys.executable, ECHO, name]) as (_, port):
        return run_load("tcp", port, conns, seconds, **kw)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--repeat", type=int, default=5, help="alternating runs per load point (median)")
    parser.add_argument("--rounds", type=int, default=20, help="shutdown measurements per server")
    args = parser.parse_args()
    print(f"# socketkit.server vs socketserver -- {machine()}\n")

    rng = random.Random(1)
    lat = {
        name: shutdown_latency(mod, args.rounds, rng)
        for name, mod in (("stdlib", socketserver), ("socketkit", socketkit.server))
    }
    rows = []
    for name, samples in lat.items():
        ms = sorted(s * 1000 for s in samples)
        rows.append([name, f"{statistics.mean(ms):.2f}", f"{ms[len(ms) // 2]:.2f}", f"{ms[-1]:.2f}"])
    speedup = statistics.mean(lat["stdlib"]) / statistics.mean(lat["socketkit"])
    print(f"## shutdown() latency, ms ({args.rounds} rounds)\n")
    print(table(["server", "mean", "p50", "max"], rows))
    print(f"\nsocketkit returns from shutdown() {speedup:,.0f}x sooner on average\n")

    # Servers alternate within each point and the median run counts, so that drift of
    # the machine (other load, CPU frequency) hits every side alike. With hundreds of
    # threads fighting for the GIL, single runs vary by +-20%: the spread is shown.
    rows = []
    for conns in CONCURRENCY:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVERS}
        for _ in range(args.repeat):
            for name in SERVERS:
                runs[name].append(median_run(name, conns, args.seconds))
        med = {n: sorted(r, key=lambda x: x["rps"])[len(r) // 2] for n, r in runs.items()}

        def cell(name: str, runs: dict[str, list[dict[str, Any]]] = runs) -> str:
            rps = sorted(r["rps"] for r in runs[name])
            return f"{rps[len(rps) // 2] / 1000:,.1f}k ({rps[0] / 1000:,.0f}-{rps[-1] / 1000:,.0f})"

        std, sk, raw = (med[n] for n in SERVERS)
        rows.append(
            [
                conns,
                cell(SERVERS[0]),
                cell(SERVERS[1]),
                f"{sk['rps'] / std['rps']:.2f}x",
                cell(SERVERS[2]),
                f"{raw['rps'] / std['rps']:.2f}x",
                f"{std['p99_us']:,.0f} / {sk['p99_us']:,.0f}",
                sum(m["starved"] + m["errors"] for m in med.values()),
            ]
        )
        print(f"  {conns} connections done", file=sys.stderr)
    print(f"## threaded echo, 64-byte ping-pong, median (min-max) of {args.repeat} x {args.seconds:g} s\n")
    print(
        table(
            [
                "conns",
                "stdlib req/s",
                "socketkit req/s",
                "ratio",
                "guard off req/s",
                "ratio",
                "p99 µs stdlib / socketkit",
                "starved+errors",
            ],
            rows,
        )
    )

    rows = []
    for conns in (100, 500):
        ms = {}
        for name in ("stdlib-threading", "socketkit-threading"):
            try:
                ms[name] = median_run(name, conns, 0.2, warmup=0.0, batch=conns)["establish_ms"]
            except subprocess.CalledProcessError:
                ms[name] = None  # the load generator gave up after 30 s
        std, sk = ms["stdlib-threading"], ms["socketkit-threading"]
        rows.append(
            [
                conns,
                "> 30,000" if std is None else f"{std:,.0f}",
                "> 30,000" if sk is None else f"{sk:,.0f}",
                "-" if sk is None else f"{(std or 30_000) / sk:,.0f}x" + ("+" if std is None else ""),
            ]
        )
    print("\n## connection burst: N clients connect at once; ms until each has had its first echo\n")
    print(table(["clients", "stdlib ms", "socketkit ms", "socketkit sooner by"], rows))
    print("\n(The stdlib listens with a backlog of 5; clients whose handshake overflowed it wait for")
    print("SYN/SYN-ACK retransmissions. socketkit listens with 128.)")


if __name__ == "__main__":
    main()
