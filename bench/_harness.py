"""Shared benchmark plumbing: build the C load generator, start servers pinned to a core,
run load, and print tables of ratios. Benchmarks are programs, never timed tests."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD = HERE / ".build"
SERVER_CPU = "0"
LOAD_CPU = "1"


def build_tool(name: str) -> Path:
    """Compile bench/NAME.c once (gcc -O2); return the binary's path."""
    source, binary = HERE / f"{name}.c", BUILD / name
    newest = max(source.stat().st_mtime, (HERE / "bench_common.h").stat().st_mtime)
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    BUILD.mkdir(exist_ok=True)
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        sys.exit(f"the benchmarks need a C compiler (apt-get install gcc) for bench/{name}.c")
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


def build_loadgen() -> Path:
    """The echo load generator, bench/loadgen.c."""
    return build_tool("loadgen")


def free_port() -> int:
    """A port free right now, for third-party servers that cannot report the port they
    bound (nc, rsync, ngircd): a benchmark, not a test, so the small race is acceptable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> Callable[[], bool]:
    """A check that something accepts connections on 127.0.0.1:PORT."""

    def check() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return check


def _status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` line of /proc/PID/status (Linux); None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"{field}:\s+(\d+) kB", text)
    return int(match.group(1)) if match else None


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process in MiB."""
    kib = _status_kib(pid, "VmHWM")
    return float("nan") if kib is None else kib / 1024


@contextmanager
def started_process(
    argv: Sequence[str],
    *,
    ready: Callable[[], bool] | None = None,
    cpu: str | None = SERVER_CPU,
    **popen: Any,
) -> Iterator[subprocess.Popen[Any]]:
    """Start a process (pinned to ``cpu`` unless None), wait until ``ready()`` (bounded:
    20 s), yield it; terminate it by PID afterwards (SIGKILL after 10 s)."""
    proc = subprocess.Popen(pinned(cpu, argv) if cpu is not None else list(argv), **popen)
    try:
        deadline = time.monotonic() + 20
        while ready is not None and not ready():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """Prefix argv with taskset when there are at least two cores to separate."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *argv]
    return list(argv)


@contextmanager
def server_process(argv: Sequence[str], cpu: str = SERVER_CPU) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start a server that prints its port as its first stdout line; stop it by PID."""
    proc = subprocess.Popen(pinned(cpu, argv), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server {argv} exited before printing its port")
        match = re.search(r":(\d+)\b", line) or re.fullmatch(r"\s*(\d+)\s*", line)
        if match is None:
            raise RuntimeError(f"server {argv} printed no port: {line!r}")
        yield proc, int(match.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)  # SIGINT is ignored when started from a background job
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_load(
    mode: str,
    port: int,
    conns: int,
    seconds: float,
    size: int = 64,
    warmup: float = 0.5,
    batch: int = 4,
) -> dict[str, Any]:
    """Run the load generator (pinned to its own core) and return its JSON result.

    ``batch``: connections opened at once while establishing (see loadgen.c).
    """
    argv = [
        str(build_loadgen()),
        mode,
        "127.0.0.1",
        str(port),
        str(conns),
        str(seconds),
        str(size),
        str(warmup),
        str(batch),
    ]
    out = subprocess.run(  # CalledProcessError when the load generator gives up
        pinned(LOAD_CPU, argv),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + warmup + 120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (Linux /proc)."""
    return _status_kib(pid, "VmRSS") or 0


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{time.strftime('%Y-%m-%d')}, {platform.system()} {platform.release()}, {cpu}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (what docs/benchmarks.md holds)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells[1:]]
    return "\n".join(lines)
