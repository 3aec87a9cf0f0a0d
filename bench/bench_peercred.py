"""What telling local users apart costs per accept (socketkit.peercred), side by side.

Every loopback TCP connection the engine accepts is keyed by the user owning the other
end: one NETLINK_SOCK_DIAG request and reply per accept. Two measurements, each with the
look-up on and off (off: all of loopback one peer, the key from the address alone):

1. the key alone, in this process: microseconds per accepted connection's key;
2. connection churn against a socketkit echo server (pinned to one core, the client to
   the other): CONNS clients each connect, send 1 byte, read it back and close, as fast
   as they can. Reported: the server's CPU time per accepted connection (what the
   look-up adds to the accept path, and the least disturbed by other load on the
   machine) and the connections per second, medians of REPEAT alternating runs.

    python bench/bench_peercred.py [--seconds S] [--repeat N] [--conns N]
    python bench/bench_peercred.py serve on|off        (the server side, internal)
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import LOAD_CPU, machine, pinned, server_process, table

from socketkit.address import Address, limit_key
from socketkit.aio import Listener
from socketkit.aio.loop import run
from socketkit.peercred import PeerKeys
from socketkit.services.echo.server import make_echo_server

KEY_CALLS = 20_000


def key_cost() -> dict[str, float]:
    """Microseconds per key of one accepted loopback connection, each way."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as _client:
            sock, addr = listener.accept()
            with sock:
                peer_keys = PeerKeys()
                try:
                    results = {}
                    for name, call in (
                        ("address only (before)", lambda: limit_key(addr[0])),
                        ("user by sock_diag", lambda: peer_keys.key(sock, addr)),
                    ):
                        call()
                        started = time.perf_counter()
                        for _ in range(KEY_CALLS):
                            call()
                        results[name] = (time.perf_counter() - started) / KEY_CALLS * 1e6
                    assert peer_keys.key(sock, addr).startswith("uid:"), "the look-up failed here"
                    return results
                finally:
                    peer_keys.close()


def serve(mode: str) -> None:
    """An echo server printing its port; with ``off``, the look-up is skipped."""
    if mode == "off":
        PeerKeys.loopback_owner = lambda self, sock, peer: None  # type: ignore[method-assign]
    logging.disable(logging.INFO)

    async def main() -> None:
        server = make_echo_server(max_connections_per_address=100_000, max_connections=100_000)
        async with server:
            (address,) = await server.start([Listener(Address("127.0.0.1", 0))])
            started = time.process_time()
            print(address.port, flush=True)
            server.install_signal_handlers()
            await server.serve_forever()
        cpu = time.process_time() - started
        print(json.dumps({"accepted": server.stats().accepted, "cpu_s": cpu}), flush=True)

    run(main())


CLIENT = r"""
import asyncio, json, sys, time
port, conns, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
async def one(stop, counts):
    while time.perf_counter() < stop:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        if await reader.readexactly(1) == b"x":
            counts[0] += 1
        writer.close()
        await writer.wait_closed()
async def main():
    try:
        import uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    counts = [0]
    warm = time.perf_counter() + 0.5
    await asyncio.gather(*(one(warm, [0]) for _ in range(conns)))
    started = time.perf_counter()
    await asyncio.gather(*(one(started + seconds, counts) for _ in range(conns)))
    print(json.dumps({"rate": counts[0] / (time.perf_counter() - started)}))
asyncio.run(main())
"""


def churn(mode: str, conns: int, seconds: float) -> tuple[float, float]:
    """One run: (server CPU µs per accepted connection, connections per second)."""
    with server_process([sys.executable, __file__, "serve", mode]) as (proc, port):
        argv = pinned(LOAD_CPU, [sys.executable, "-c", CLIENT, str(port), str(conns), str(seconds)])
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
        proc.send_signal(signal.SIGTERM)  # a graceful stop: the server reports its CPU time
        assert proc.stdout is not None
        server = json.loads(proc.stdout.read().strip().splitlines()[-1])
        proc.wait(10)
    rate = float(json.loads(out.stdout.strip().splitlines()[-1])["rate"])
    return server["cpu_s"] / server["accepted"] * 1e6, rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per churn run")
    parser.add_argument("--repeat", type=int, default=5, help="alternating churn runs per mode (median)")
    parser.add_argument("--conns", type=int, default=16, help="concurrent churning clients")
    args = parser.parse_args()
    print(f"# socketkit.peercred: the cost of keying loopback peers by user -- {machine()}\n")

    costs = key_cost()
    before = costs["address only (before)"]
    print(f"### the key of one accepted loopback connection, µs ({KEY_CALLS} calls)\n")
    rows: list[list[Any]] = [[name, f"{us:.2f}", f"{us / before:.1f}"] for name, us in costs.items()]
    print(table(["key", "µs per accept", "ratio"], rows))

    cpu: dict[str, list[float]] = {"off": [], "on": []}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.repeat):
        for mode in ("off", "on"):
            us, rate = churn(mode, args.conns, args.seconds)
            cpu[mode].append(us)
            rates[mode].append(rate)
    print(f"\n### connection churn, {args.conns} clients, median (min-max) of {args.repeat} runs\n")
    names = {"off": "look-up off (all of loopback one peer)", "on": "look-up on (each local user a peer)"}
    base_cpu, base_rate = statistics.median(cpu["off"]), statistics.median(rates["off"])
    rows = []
    for mode in ("off", "on"):
        us, rate = statistics.median(cpu[mode]), statistics.median(rates[mode])
        rows.append(
            [
                names[mode],
                f"{us:.0f} ({_span(cpu[mode])})",
                f"{us / base_cpu:.2f}",
                f"{rate:,.0f} ({_span(rates[mode])})",
                f"{rate / base_rate:.2f}",
            ]
        )
    print(table(["server", "CPU µs per connection", "ratio", "connections/s", "ratio"], rows))


def _span(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2])
    else:
        main()
