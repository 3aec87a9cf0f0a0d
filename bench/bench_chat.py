"""`socketkit serve chat` against ngircd, side by side in one run.

One channel, every client in it; SENDERS of the clients send 100-byte PRIVMSGs and
every client reads everything (a delivery is one PRIVMSG line received). The load tool
is bench/ircload.c (C, epoll, one core), so it is not the bottleneck:

1. the tool's own ceiling: its minimal C relay (no IRC, no limits, no history);
2. full speed at 100 and 1,000 clients (10 senders): deliveries/s and the server's
   peak memory; ratio to ngircd;
3. latency at one offered rate for both servers (1M deliveries/s: 10,000 msg/s into a
   100-member channel, 1,000 msg/s into a 1,000-member one): p50/p99/max;
4. the same 100-client run with one member that stops reading (a 4 KiB receive
   buffer, never read): the others' latency, and whether the server cut it off;
5. with ``--scale N`` (off by default: minutes): N clients join one channel (the JOIN
   storm: each join goes to every member, each joiner gets every name), then 10 of
   them send 100 msg/s: seconds to join all, deliveries/s, peak memory.

socketkit runs as shipped (`serve chat`, SQLite history on, uvloop) with flood control
off and connection caps raised, as ngircd runs with its flood penalty off
(MaxPenaltyTime = 0) and no per-address cap. Server on CPU 0, load tool on CPU 1.
ngircd is skipped if it is not installed (apt-get install ngircd).

    python bench/bench_chat.py [--seconds S] [--repeat N] [--scale N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    LOAD_CPU,
    SERVER_CPU,
    build_tool,
    free_port,
    listening,
    machine,
    peak_rss_mib,
    pinned,
    server_process,
    started_process,
    table,
)

SENDERS = 10
SIZE = 100
FULL_SPEED = [100, 1000]
SAME_RATE = [(100, 10_000), (1000, 1_000)]  # (clients, messages/s): 1M deliveries/s each

NGIRCD_CONF = """\
[Global]
Name = bench.ngircd
Info = bench
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = "bench"
[Limits]
MaxConnectionsIP = 0
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
"""


@contextmanager
def socketkit_server(work: Path) -> Iterator[tuple[int, int]]:
    """``socketkit serve chat`` as shipped, flood control off; yields (pid, port)."""
    state = Path(tempfile.mkdtemp(dir=work))
    argv = [
        sys.executable,
        "-m",
        "socketkit",
        "-q",
        "serve",
        "chat",
        "--port",
        "0",
        "--no-flood-limit",
        "--max-connections",
        "100000",
        "--max-per-address",
        "100000",
        "--state-dir",
        str(state),
    ]
    with server_process(argv) as (proc, port):
        yield proc.pid, port


@contextmanager
def ngircd_server(work: Path) -> Iterator[tuple[int, int]]:
    """ngircd in the foreground with its flood penalty off; yields (pid, port)."""
    binary = shutil.which("ngircd") or "/usr/sbin/ngircd"
    port = free_port()
    conf = Path(tempfile.mkdtemp(dir=work)) / "ngircd.conf"
    conf.write_text(NGIRCD_CONF.format(port=port))
    conf.parent.chmod(0o755)  # ngircd drops to "nobody" after reading it
    argv = [binary, "-n", "-f", str(conf)]
    # Its output is discarded: in the foreground it logs every connection.
    silent = subprocess.DEVNULL
    with started_process(argv, ready=listening(port), stdout=silent, stderr=silent) as proc:
        yield proc.pid, port


@contextmanager
def relay_server(work: Path) -> Iterator[tuple[int, int]]:
    """The load tool's own minimal C relay; yields (pid, port)."""
    with server_process([str(build_tool("ircload")), "relay", "0"]) as (proc, port):
        yield proc.pid, port


SERVERS = {"socketkit": socketkit_server, "ngircd": ngircd_server, "C relay": relay_server}


def load(port: int, clients: int, rate: int, seconds: float, stuck: int = 0) -> dict[str, Any]:
    argv = [
        str(build_tool("ircload")),
        "fanout",
        "127.0.0.1",
        str(port),
        str(clients),
        str(SENDERS),
        str(seconds),
        str(rate),
        str(SIZE),
        "1",
        str(stuck),
    ]
    out = subprocess.run(
        pinned(LOAD_CPU, argv), capture_output=True, text=True, check=True, timeout=seconds + 180
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure(name: str, work: Path, clients: int, rate: int, seconds: float, stuck: int) -> dict[str, Any]:
    with SERVERS[name](work) as (pid, port):
        result = load(port, clients, rate, seconds, stuck)
        result["rss_mib"] = peak_rss_mib(pid)
    return result


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["deliveries_per_s"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs per point (median)")
    parser.add_argument("--scale", type=int, default=0, help="also: N clients in one channel (e.g. 10000)")
    args = parser.parse_args()
    names = ["socketkit"]
    if shutil.which("ngircd") or Path("/usr/sbin/ngircd").exists():
        names.append("ngircd")
    else:
        print("ngircd not found (apt-get install ngircd): socketkit alone\n", file=sys.stderr)
    print(f"# socketkit chat vs ngircd -- {machine()}")
    print(
        f"server on CPU {SERVER_CPU}, ircload on CPU {LOAD_CPU}; {SENDERS} senders, "
        f"{SIZE}-byte messages, one channel; median of {args.repeat} run(s) of {args.seconds:g} s\n"
    )

    def point(name: str, clients: int, rate: int, stuck: int = 0) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as work:
            runs = [measure(name, Path(work), clients, rate, args.seconds, stuck) for _ in range(args.repeat)]
        print(f"  {name} {clients} clients rate {rate or 'max'} stuck {stuck} done", file=sys.stderr)
        return median(runs)

    rows: list[list[object]] = []
    for clients in FULL_SPEED:
        r = point("C relay", clients, 0)
        rows.append([clients, f"{r['deliveries_per_s'] / 1e6:.2f}M"])
    print("## ircload ceiling (its C relay), deliveries/s at full speed\n")
    print(table(["clients", "deliveries/s"], rows))

    full = {(name, c): point(name, c, 0) for c in FULL_SPEED for name in names}
    print("\n## full speed: deliveries/s (ratio to ngircd), server peak RSS\n")
    rows = []
    for name in names:
        row: list[object] = [name]
        for clients in FULL_SPEED:
            r = full[(name, clients)]
            ratio = ""
            if "ngircd" in names:
                ratio = f" ({r['deliveries_per_s'] / full[('ngircd', clients)]['deliveries_per_s']:.2f}x)"
            delivered = f"{r['deliveries_per_s'] / 1e6:.2f}M{ratio}"
            row.append(f"{delivered}, {r['rss_mib']:.0f} MiB, dropped {r['dropped']}")
        rows.append(row)
    print(table(["server"] + [f"{c} clients" for c in FULL_SPEED], rows))

    print("\n## latency at the same offered load (1M deliveries/s): p50 / p99 / max ms\n")
    rows = []
    same: dict[tuple[str, int], dict[str, Any]] = {}
    for name in names:
        row = [name]
        for clients, rate in SAME_RATE:
            r = same[(name, clients)] = point(name, clients, rate)
            row.append(
                f"{r['p50_us'] / 1000:.1f} / {r['p99_us'] / 1000:.1f} / {r['max_us'] / 1000:.1f}"
                f" (delivered {r['delivered_fraction']:.0%})"
            )
        rows.append(row)
    print(table(["server"] + [f"{c} clients, {r:,} msg/s" for c, r in SAME_RATE], rows))

    clients, rate = SAME_RATE[0]
    print(f"\n## one member stops reading ({clients} clients, {rate:,} msg/s): the others' latency\n")
    rows = []
    for name in names:
        base, r = same[(name, clients)], point(name, clients, rate, stuck=1)
        rows.append(
            [
                name,
                f"{base['p50_us'] / 1000:.1f} / {base['p99_us'] / 1000:.1f}",
                f"{r['p50_us'] / 1000:.1f} / {r['p99_us'] / 1000:.1f}"
                f" (delivered {r['delivered_fraction']:.0%})",
                "yes" if r["stuck_cut"] else "no",
            ]
        )
    print(table(["server", "p50 / p99 ms, all read", "p50 / p99 ms, one stuck", "stuck one cut off"], rows))
    if args.scale:
        scale(names, args.scale, args.seconds)


SCALE_RATE = 100  # messages/s while N clients listen


def scale(names: list[str], clients: int, seconds: float) -> None:
    """Section 5: N clients in one channel, one run per server."""
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as work, SERVERS[name](Path(work)) as (pid, port):
            started = time.monotonic()
            try:
                r = load(port, clients, SCALE_RATE, seconds)
            except subprocess.CalledProcessError as exc:
                rows.append([name, (exc.stderr or "failed").strip(), "-", f"{peak_rss_mib(pid):.0f}"])
                continue
            joined_s = time.monotonic() - started - seconds - 1  # minus the run and its warm-up
            rows.append(
                [
                    name,
                    f"{joined_s:.0f}",
                    f"{r['deliveries_per_s'] / 1e6:.2f}M ({r['delivered_fraction']:.0%}), p99 "
                    f"{r['p99_us'] / 1000:,.0f} ms",
                    f"{peak_rss_mib(pid):.0f}",
                ]
            )
        print(f"  {name} scale {clients} done", file=sys.stderr)
    print(f"\n## {clients:,} clients in one channel, then {SCALE_RATE} msg/s\n")
    print(table(["server", "s to join all", "deliveries/s (of offered), p99", "peak RSS MiB"], rows))


if __name__ == "__main__":
    main()
