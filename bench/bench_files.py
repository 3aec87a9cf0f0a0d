"""Uploading and downloading a 1 GiB file over loopback, side by side in one run:
socketkit (`socketkit put/get`, SHA-256 verified, atomic durable writes), raw `nc`,
an rsync daemon, and pyftpdlib with the stdlib ftplib client.

Reported: MB/s for the whole client command (startup, connection and verification
included) and the server's peak RSS (VmHWM). Processes are not pinned to cores here
(``--pin`` pins server and client to one core each): a transfer tool gets every core
in practice, and socketkit hashes in one thread while another receives or writes.

Needs: nc (netcat-openbsd), rsync, and `pip install pyftpdlib` (the `bench` extra);
missing tools are skipped.

    python bench/bench_files.py [--size-mib N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    LOAD_CPU,
    SERVER_CPU,
    free_port,
    listening,
    machine,
    peak_rss_mib,
    pinned,
    started_process,
    table,
)

TOKEN = "b" * 64
PIN = False


def maybe_pinned(cpu: str, argv: list[str]) -> list[str]:
    return pinned(cpu, argv) if PIN else argv


def timed(argv: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(maybe_pinned(LOAD_CPU, argv), check=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - started


def process(argv: list[str], **kwargs: Any) -> Any:
    """``started_process`` on the server's core when ``--pin``, else anywhere."""
    return started_process(argv, cpu=SERVER_CPU if PIN else None, **kwargs)


def bench_socketkit(work: Path, source: Path) -> tuple[float, float, float]:
    root, state, out = work / "sk-root", work / "sk-state", work / "sk-out"
    for d in (root, state, out):
        d.mkdir()
    (state / "token").write_text(TOKEN)
    os.chmod(state / "token", 0o600)
    env = {**os.environ, "SOCKETKIT_TOKEN": TOKEN}
    argv = [
        sys.executable,
        "-m",
        "socketkit",
        "-q",
        "serve",
        "files",
        "--port",
        "0",
        "--root",
        str(root),
        "--state-dir",
        str(state),
    ]
    with process(argv, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        address = proc.stdout.readline().decode().split()[3]
        client = [sys.executable, "-m", "socketkit"]
        up = timed([*client, "put", "--no-progress", address, str(source), "file.bin"], env=env)
        down = timed([*client, "get", "--no-progress", address, "file.bin", str(out / "file.bin")], env=env)
        rss = peak_rss_mib(proc.pid)
    assert (out / "file.bin").stat().st_size == source.stat().st_size
    return up, down, rss


def bench_nc(work: Path, source: Path) -> tuple[float, float, float] | None:
    if shutil.which("nc") is None:
        return None
    port = free_port()
    with (
        open(work / "nc-up.bin", "wb") as sink,
        process(["nc", "-l", "127.0.0.1", str(port)], stdout=sink, ready=lambda: True) as server,
    ):
        time.sleep(0.3)  # nc -l has no readiness signal; a probe connect would be taken as the client
        started = time.perf_counter()
        with open(source, "rb") as src:
            timed(["nc", "-N", "127.0.0.1", str(port)], stdin=src)
        server.wait(60)  # the upload is done when the receiver has written everything
        up = time.perf_counter() - started
        rss_up = peak_rss_mib(server.pid)
    port = free_port()
    with (
        open(source, "rb") as src,
        process(["nc", "-N", "-l", "127.0.0.1", str(port)], stdin=src, ready=lambda: True) as server,
    ):
        time.sleep(0.3)
        with open(work / "nc-down.bin", "wb") as sink:
            down = timed(["nc", "-d", "127.0.0.1", str(port)], stdout=sink)
        rss = max(rss_up, peak_rss_mib(server.pid))
    return up, down, rss


def bench_rsync(work: Path, source: Path) -> tuple[float, float, float] | None:
    if shutil.which("rsync") is None:
        return None
    root = work / "rsync-root"
    root.mkdir()
    port = free_port()
    (work / "rsyncd.conf").write_text(
        f"port = {port}\naddress = 127.0.0.1\nuse chroot = no\npid file = {work / 'rsyncd.pid'}\n"
        f"[files]\npath = {root}\nread only = no\nuid = root\ngid = root\n"
    )
    argv = ["rsync", "--daemon", "--no-detach", f"--config={work / 'rsyncd.conf'}"]
    with process(argv, ready=listening(port)) as server:
        url = f"rsync://127.0.0.1:{port}/files/file.bin"
        up = timed(["rsync", "--whole-file", "--inplace", str(source), url])
        down = timed(["rsync", "--whole-file", url, str(work / "rsync-down.bin")])
        rss = peak_rss_mib(server.pid)
    return up, down, rss


def bench_ftp(work: Path, source: Path) -> tuple[float, float, float] | None:
    try:
        import pyftpdlib  # noqa: F401
    except ImportError:
        return None
    root = work / "ftp-root"
    root.mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-w", "-d", str(root)]
    with process(argv, ready=listening(port), stderr=subprocess.DEVNULL) as server:
        script = (
            "import ftplib, sys\n"
            "ftp = ftplib.FTP(); ftp.connect('127.0.0.1', int(sys.argv[2])); ftp.login()\n"
            "if sys.argv[1] == 'put':\n"
            "    with open(sys.argv[3], 'rb') as f: ftp.storbinary('STOR file.bin', f, blocksize=1 << 20)\n"
            "else:\n"
            "    with open(sys.argv[3], 'wb') as f:\n"
            "        ftp.retrbinary('RETR file.bin', f.write, blocksize=1 << 20)\n"
            "ftp.quit()\n"
        )
        up = timed([sys.executable, "-c", script, "put", str(port), str(source)])
        down = timed([sys.executable, "-c", script, "get", str(port), str(work / "ftp-down.bin")])
        rss = peak_rss_mib(server.pid)
    return up, down, rss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (default: 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (the best counts)")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, client on CPU 1")
    args = parser.parse_args()
    global PIN  # noqa: PLW0603 (a benchmark script's one switch)
    PIN = args.pin
    size = args.size_mib << 20
    print(f"# file transfer of {args.size_mib} MiB over loopback -- {machine()}\n")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        source = work / "source.bin"
        with open(source, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                f.write(block)
        rows = []
        for label, bench in (
            ("socketkit (SHA-256, atomic, fsync)", bench_socketkit),
            ("nc (raw bytes)", bench_nc),
            ("rsync daemon", bench_rsync),
            ("pyftpdlib + ftplib", bench_ftp),
        ):
            runs = []
            for _ in range(args.repeat):
                scratch = work / "scratch"
                scratch.mkdir()
                result = bench(scratch, source)
                shutil.rmtree(scratch)
                if result is None:
                    break
                runs.append(result)
            if not runs:
                rows.append([label, "not installed", "", ""])
                continue
            up, down = min(r[0] for r in runs), min(r[1] for r in runs)
            rss = max(r[2] for r in runs if r[2] == r[2]) if any(r[2] == r[2] for r in runs) else float("nan")
            rows.append(
                [
                    label,
                    f"{size / up / 1e6:,.0f}",
                    f"{size / down / 1e6:,.0f}",
                    "-" if rss != rss else f"{rss:,.1f}",
                ]
            )
            print(f"  {label} done", file=sys.stderr)
        pin = "server on CPU 0, client on CPU 1" if PIN else "not pinned"
        print(f"best of {args.repeat} runs each; files written under {work.parent}; {pin}\n")
        print(table(["server and client", "upload MB/s", "download MB/s", "server peak RSS MiB"], rows))


if __name__ == "__main__":
    main()
