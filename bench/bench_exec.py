"""`socketkit exec` against `ssh host cmd`, side by side in one run.

1. round trip of `true` through the Python API (a new connection and the full auth
   handshake each time): p50/p99 over --runs runs, for each sandbox backend (none,
   bubblewrap, Landlock) side by side, in alternating rounds, with the ratio to none;
2. the whole `socketkit exec ADDR -- true` process against `ssh host true` with a new
   connection and with ControlMaster reuse (a throwaway sshd on a high port, with its
   own host key and client key, started and stopped by this script);
3. streaming 256 MiB of remote output to /dev/null.

Needs `sshd` and `ssh` (Debian: apt-get install openssh-server openssh-client); without
them the ssh columns are skipped.

    python bench/bench_exec.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import machine, table

from socketkit.address import Address
from socketkit.auth.connect import ServiceTarget
from socketkit.services.rexec.client import run_remote
from socketkit.services.rexec.protocol import ExecRequest

SANDBOXES = ("none", "bwrap", "landlock")
ROUNDS = 10
STREAM_BYTES = 256 * 1024 * 1024
STREAM_BYTES_LARGE = 1024 * 1024 * 1024
SSHD = "/usr/sbin/sshd"


@contextmanager
def exec_server(state: Path, sandbox: str = "auto") -> Iterator[tuple[Address, str]]:
    root = state.parent / f"root-{state.name}"  # outside the state directory: no token in sight
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o777)  # commands may run as nobody (a root server's --run-as)
    sandbox_args = ["--no-sandbox"] if sandbox == "none" else ["--sandbox", sandbox]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "socketkit",
            "-q",
            "serve",
            "exec",
            "--port",
            "0",
            "--state-dir",
            str(state),
            "--allow",
            "true",
            "--allow",
            "head",
            "--root",
            str(root),
            *sandbox_args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the exec server did not start")
            if "listening on" in line:
                host, port = line.split()[3].rsplit(":", 1)
                break
        yield Address(host, int(port)), (state / "token").read_text().strip()
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def sshd(work: Path) -> Iterator[list[str] | None]:
    """A throwaway sshd on a free high port; yields the ssh command prefix (None if missing)."""
    if not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        yield None
        return
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    (work / "authorized_keys").write_text((work / "client.pub").read_text())
    os.chmod(work / "authorized_keys", 0o600)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\n"
        f"PidFile {work / 'sshd.pid'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "PermitRootLogin prohibit-password\nAcceptEnv LANG\nLogLevel QUIET\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(work / "sshd_config")])
    base = [
        "ssh",
        "-q",
        "-p",
        str(port),
        "-i",
        str(work / "client"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        f"UserKnownHostsFile={work / 'known_hosts'}",
        "-o",
        "BatchMode=yes",
    ]
    try:
        deadline = time.monotonic() + 10
        while subprocess.run([*base, "127.0.0.1", "true"], check=False, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not come up")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def time_runs(runs: int, fn: Callable[[], None]) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def api_latency(address: Address, token: str, runs: int) -> list[float]:
    async def go() -> list[float]:
        samples = []
        target = ServiceTarget(address, token)
        request = ExecRequest(("true",), stdin=False)
        for _ in range(runs):
            started = time.perf_counter()
            status = await run_remote(target, request, stdin=None, stdout=io.BytesIO(), stderr=io.BytesIO())
            samples.append((time.perf_counter() - started) * 1000)
            assert status == 0
        return samples

    from socketkit.aio.loop import run

    return run(go())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200, help="runs per latency measurement")
    args = parser.parse_args()
    print(f"# socketkit exec vs ssh -- {machine()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "state").mkdir()
        with contextlib.ExitStack() as stack:
            servers = {}
            for backend in SANDBOXES:
                (work / backend).mkdir()
                servers[backend] = stack.enter_context(exec_server(work / backend, backend))
            ssh = stack.enter_context(sshd(work))
            address, token = servers["bwrap"]
            env = {**os.environ, "SOCKETKIT_TOKEN": token}
            sk_cli = [sys.executable, "-m", "socketkit", "exec", "-n", str(address), "--", "true"]

            rows = []
            samples: dict[str, list[float]] = {backend: [] for backend in SANDBOXES}
            per_round = max(1, args.runs // ROUNDS)
            for _ in range(ROUNDS):  # alternating, so a drift of the machine hits all alike
                for backend, (addr, tok) in servers.items():
                    samples[backend] += api_latency(addr, tok, per_round)
            base = percentiles(samples["none"])[0]
            for backend in SANDBOXES:
                p50, p99 = percentiles(samples[backend])
                rows.append(
                    [
                        f"socketkit, Python API, sandbox {backend}",
                        f"{p50:.2f}",
                        f"{p99:.2f}",
                        f"{p50 / base:.2f}",
                    ]
                )
            cli_runs = max(20, args.runs // 4)
            sk = time_runs(cli_runs, lambda: subprocess.run(sk_cli, env=env, check=True))
            rows.append(
                [
                    "`socketkit exec ADDR -- true` (whole process, bwrap)",
                    *(f"{v:.1f}" for v in percentiles(sk)),
                    "",
                ]
            )
            if ssh is not None:
                new = time_runs(cli_runs, lambda: subprocess.run([*ssh, "127.0.0.1", "true"], check=True))
                ratio = f"{percentiles(sk)[0] / percentiles(new)[0]:.2f} (socketkit/ssh)"
                rows.append(
                    ["`ssh host true`, new connection", *(f"{v:.1f}" for v in percentiles(new)), ratio]
                )
                control = work / "cm.sock"
                master = [
                    *ssh,
                    "-o",
                    "ControlMaster=auto",
                    "-o",
                    f"ControlPath={control}",
                    "-o",
                    "ControlPersist=60",
                ]
                subprocess.run([*master, "127.0.0.1", "true"], check=True)
                reuse = time_runs(
                    cli_runs, lambda: subprocess.run([*master, "127.0.0.1", "true"], check=True)
                )
                rows.append(
                    ["`ssh host true`, ControlMaster reuse", *(f"{v:.1f}" for v in percentiles(reuse)), ""]
                )
                subprocess.run([*master, "-O", "exit", "127.0.0.1"], check=False, capture_output=True)
            print(f"## running `true` remotely, ms ({args.runs} API runs, {cli_runs} process runs)\n")
            print(table(["how", "p50", "p99", "p50 ratio to no sandbox"], rows))

            # Whole-process rates include starting the client, connecting and
            # authenticating; the streaming rate subtracts the p50 of running `true` the
            # same way (measured above), leaving the transfer itself.
            rows = []
            startup = {"socketkit exec": percentiles(sk)[0] / 1000}
            commands: dict[str, Callable[[list[str]], list[str]]] = {
                "socketkit exec": lambda cmd: [
                    sys.executable,
                    "-m",
                    "socketkit",
                    "exec",
                    "-n",
                    str(address),
                    "--",
                    *cmd,
                ],
            }
            if ssh is not None:
                startup["ssh (new connection)"] = percentiles(new)[0] / 1000
                commands["ssh (new connection)"] = lambda cmd: [*ssh, "127.0.0.1", *cmd]
            with open(os.devnull, "wb") as null:
                for label, build in commands.items():
                    for size in (STREAM_BYTES, STREAM_BYTES_LARGE):
                        argv = build(["head", "-c", str(size), "/dev/zero"])
                        best = (
                            min(
                                time_runs(
                                    3,
                                    lambda argv=argv: subprocess.run(argv, env=env, stdout=null, check=True),
                                )
                            )
                            / 1000
                        )
                        rows.append(
                            [
                                label,
                                f"{size >> 20} MiB",
                                f"{size / best / 1e9:.2f}",
                                f"{size / max(best - startup[label], 1e-9) / 1e9:.2f}",
                            ]
                        )
            print("\n## streaming remote output to /dev/null (best of 3)\n")
            print(table(["how", "size", "GB/s, whole process", "GB/s, streaming"], rows))


if __name__ == "__main__":
    main()
