"""What the sandbox closes beyond files and network namespaces, proven from inside a
command: the fds it holds, user namespaces, capabilities, socket families (the host's
Unix sockets under Landlock), and the roots a server refuses to serve.

Servers that must inherit fds run as the real CLI in a child process (on uvloop, whose
``close_fds`` is ignored, and on the stdlib loop); the others run in a thread. Each
refusal is shown against a control run without the sandbox where one makes sense.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from socketkit.address import Address
from socketkit.errors import ConfigError, SandboxUnavailable
from socketkit.services.rexec.policy import ExecPolicy
from socketkit.services.rexec.process import private_tmpdir, select_sandbox
from socketkit.services.rexec.protocol import ExecRequest
from socketkit.services.rexec.sandbox import SHARED_DIRS, SandboxSettings, candidates, check_root
from socketkit.services.rexec.server import ExecServer, ExecSettings
from tests.helpers import TIMEOUT
from tests.services.rexec.test_rexec_loopback import TOKEN, remote
from tests.services.rexec.test_sandbox import BACKENDS, PROGRAMS, World, run, world

__all__ = ["world"]  # the fixture, shared with test_sandbox


def serve(w: World, backend: str, **options: object) -> ExecServer:
    """An exec server for ``w`` that also allows python3 (the probes are Python)."""
    return ExecServer(
        ExecSettings(
            root=str(w.root),
            policy=ExecPolicy(allow=PROGRAMS | {"python3"}, home=str(w.root)),
            token=TOKEN,
            sandbox=SandboxSettings(backend=backend, hidden=(str(w.state),), **options),  # type: ignore[arg-type]
        )
    )


SANDBOXES = {"bwrap": ["--sandbox", "bwrap"], "landlock": ["--sandbox", "landlock"], "none": ["--no-sandbox"]}


@contextmanager
def cli_server(
    args: list[str],
    *,
    pass_fds: tuple[int, ...] = (),
    uvloop: bool = True,
    prefix: tuple[str, ...] = (),
    python: str = sys.executable,
) -> Iterator[Address]:
    """``socketkit serve exec --port 0 ARGS`` in a child that inherits ``pass_fds`` (at
    the same numbers), as a supervisor or a shell would hand them; ``prefix`` runs it
    through another program (``setpriv``, to serve as another user, with ``python``
    and this tree's sources)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SOCKETKIT_UVLOOP": "1" if uvloop else "0"}
    sources = None
    if python != sys.executable:
        # Another user may not reach this checkout (a clone in a private 0700 directory):
        # it gets a readable copy of the sources.
        sources = Path(tempfile.mkdtemp(prefix="socketkit-src-"))
        sources.chmod(0o755)
        shutil.copytree(Path(__file__).resolve().parents[3] / "src" / "socketkit", sources / "socketkit")
        for path in sources.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        env["PYTHONPATH"] = str(sources)
    popen = subprocess.Popen(
        [*prefix, python, "-m", "socketkit", "serve", "exec", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    err: list[str] = []

    def pump_out() -> None:
        assert popen.stdout is not None
        for raw in popen.stdout:
            lines.put(raw.decode(errors="replace"))
        lines.put(None)

    def pump_err() -> None:
        assert popen.stderr is not None
        err.extend(raw.decode(errors="replace") for raw in popen.stderr)

    threads = [threading.Thread(target=pump_out), threading.Thread(target=pump_err)]
    for thread in threads:
        thread.start()
    try:
        while True:
            line = lines.get(timeout=TIMEOUT)
            assert line is not None, f"the server ended: {''.join(err)[-2000:]}"
            match = re.search(r"exec listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                break
        yield Address("127.0.0.1", int(match.group(1)))
    finally:
        popen.terminate()
        popen.wait(TIMEOUT)
        for thread in threads:
            thread.join(TIMEOUT)
        for stream in (popen.stdout, popen.stderr):
            assert stream is not None
            stream.close()
        if sources is not None:
            shutil.rmtree(sources)


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "stdlib-loop"])
@pytest.mark.parametrize("backend", [*BACKENDS, "none"])
def test_a_command_sees_fds_0_1_2_only(world: World, tmp_path: Path, backend: str, uvloop: bool) -> None:
    """A server handed a directory outside the root and two sockets (a listener on
    loopback and a Unix socket pair, as systemd's LISTEN_FDS or a supervisor would):
    its commands see 0, 1 and 2 (and the fd ``ls`` opens to list), not those, not the
    server's own listening socket or database, whatever the event loop."""
    (world.outside / "secret.txt").write_text("OUTSIDE-SECRET")
    (world.outside / "secret.txt").chmod(0o644)
    directory = os.open(world.outside, os.O_RDONLY | os.O_DIRECTORY)
    listener = socket.create_server(("127.0.0.1", 0))
    left, right = socket.socketpair()
    fds = (directory, listener.fileno(), left.fileno())
    try:
        for fd in fds:
            os.set_inheritable(fd, True)
        args = [
            *SANDBOXES[backend],
            "--no-auth",
            "--root",
            str(world.root),
            "--state-dir",
            str(tmp_path / "state"),
        ]
        with cli_server(args, pass_fds=fds, uvloop=uvloop) as address:
            listing = ExecRequest(("ls", "/proc/self/fd"), stdin=False)
            status, out, err, _ = remote(address, listing, token=None)
            assert status == 0, err
            assert sorted(out.decode().split()) == ["0", "1", "2", "3"]
            request = ExecRequest(("cat", f"/proc/self/fd/{directory}/secret.txt"), stdin=False)
            status, out, _, _ = remote(address, request, token=None)
            assert status != 0
            assert b"OUTSIDE-SECRET" not in out
    finally:
        os.close(directory)
        listener.close()
        left.close()
        right.close()


PROBE = r"""
import ctypes, errno, json, os, socket
found = {}
for name, family, kind in (("unix", socket.AF_UNIX, socket.SOCK_STREAM),
                           ("udp", socket.AF_INET, socket.SOCK_DGRAM),
                           ("vsock", socket.AF_VSOCK, socket.SOCK_STREAM)):
    try:
        socket.socket(family, kind).close()
        found[name] = 0
    except OSError as exc:
        found[name] = exc.errno
a, b = socket.socketpair()
found["socketpair"] = 0
libc = ctypes.CDLL(None, use_errno=True)
found["io_uring"] = 0 if libc.syscall(425, 1, None) >= 0 else ctypes.get_errno()
print(json.dumps(found))
"""


def probe(world: World, backend: str, **options: object) -> dict[str, int]:
    status, out, err = run(serve(world, backend, **options), "python3", "-c", PROBE)
    assert status == 0, err
    return dict(json.loads(out))


def test_socket_families_follow_the_sandboxs_network(world: World) -> None:
    """bwrap without network: Unix sockets (for the sandbox's own files) and the families
    its network namespace isolates; not AF_VSOCK, which reaches the hypervisor whatever
    the namespace. Landlock: no Unix socket ever (it does not control ``connect`` on a
    socket file), and without network no socket at all (its TCP rules leave UDP out).
    Neither gets io_uring, which would create sockets behind the filter's back. The
    errno is the filter's own: EACCES (sockets) and ENOSYS (io_uring)."""
    bwrap = probe(world, "bwrap")
    assert (bwrap["unix"], bwrap["udp"], bwrap["vsock"]) == (0, 0, 13)
    landlock = probe(world, "landlock")
    assert (landlock["unix"], landlock["udp"], landlock["vsock"]) == (13, 13, 13)
    landlock_net = probe(world, "landlock", allow_network=True)
    assert (landlock_net["unix"], landlock_net["udp"]) == (13, 0)
    for found in (bwrap, landlock, landlock_net):
        assert found["socketpair"] == 0  # a connected stream pair reaches nothing: programs use them
        assert found["io_uring"] == 38


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_host_unix_socket_is_out_of_reach(world: World, backend: str) -> None:
    """A listener on a socket file outside the root that anyone may connect to: a
    command cannot reach it (Landlock alone would let ``connect`` through); the
    control run without a sandbox does reach it."""
    path = world.outside / "u.sock"
    connect = f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r}); print('connected')"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        path.chmod(0o777)
        listener.listen(4)
        listener.setblocking(False)
        status, out, _ = run(serve(world, backend), "python3", "-c", connect)
        assert status != 0
        assert "connected" not in out
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert run(serve(world, "none"), "python3", "-c", connect)[1] == "connected\n"
        peer, _ = listener.accept()
        peer.close()


DGRAM_PAIR = r"""
import json, socket, sys
found = {}
for name, kind in (("dgram", socket.SOCK_DGRAM),
                   ("dgram-flags", socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK),
                   ("seqpacket", socket.SOCK_SEQPACKET)):
    try:
        a, b = socket.socketpair(socket.AF_UNIX, kind)
    except OSError as exc:
        found[name] = f"socketpair {exc.errno}"
        continue
    try:
        a.sendto(b"from a pair", sys.argv[1])
        found[name] = "sent"
    except OSError as exc:
        found[name] = f"sendto {exc.errno}"
    try:
        a.connect(sys.argv[1])
        a.send(b"connected again")
        found[name] += ", connected"
    except OSError as exc:
        found[name] += f", connect {exc.errno}"
print(json.dumps(found))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_host_datagram_socket_is_out_of_reach_through_a_socket_pair(world: World, backend: str) -> None:
    """A datagram socket file outside the root that anyone may write to (``/dev/log``,
    the journal, a service's ``--unix``): a datagram socket pair is an ordinary socket
    that can ``sendto`` or ``connect`` it, so Landlock's filter refuses the pair itself
    (EACCES); bwrap keeps its pairs, which find no such file (ENOENT). The control run
    without a sandbox delivers."""
    path = world.outside / "u.d"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        path.chmod(0o777)
        listener.setblocking(False)
        status, out, err = run(serve(world, backend), "python3", "-c", DGRAM_PAIR, str(path))
        assert status == 0, err
        found = json.loads(out)
        if backend == "landlock":
            assert found == dict.fromkeys(("dgram", "dgram-flags", "seqpacket"), "socketpair 13")
        else:
            assert found["dgram"] == found["dgram-flags"] == "sendto 2, connect 2"
        with pytest.raises(BlockingIOError):
            listener.recv(100)
        status, out, err = run(serve(world, "none"), "python3", "-c", DGRAM_PAIR, str(path))
        assert json.loads(out)["dgram"] == "sent, connected"
        assert listener.recv(100) == b"from a pair"


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_user_namespace_inside(world: World, backend: str) -> None:
    """``unshare -r`` (a user namespace: uid 0 and every capability inside it, kernel
    attack surface) fails in both sandboxes; without one it works."""
    status, _, err = run(serve(world, backend), "sh", "-c", "unshare -r true")
    assert status != 0
    assert "Operation not permitted" in err
    assert run(serve(world, "none"), "sh", "-c", "unshare -r true")[0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_capability_is_left(world: World, backend: str) -> None:
    """As root: the command's every capability set, the bounding set included, is
    empty (Landlock's launcher used to leave the bounding set full)."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (as CI runs): capabilities are dropped by a root server")
    status, out, err = run(serve(world, backend), "cat", "/proc/self/status")
    assert status == 0, err
    sets = dict(line.split(":\t") for line in out.splitlines() if line.startswith("Cap"))
    assert sets == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), "0000000000000000")


@pytest.mark.parametrize(
    "root", ["/", "/home", "/root", "/tmp", "/var", "/var/tmp", "/run", "/srv", "/mnt", "/media", "/opt"]
)
def test_roots_the_machine_shares_are_refused(root: str) -> None:
    with pytest.raises(ConfigError, match="serve a directory of its own"):
        check_root(root)


@pytest.mark.parametrize("root", ["/run/user/1000", "/run/dbus", "/dev/shm/x"])
def test_roots_inside_the_runtime_directory_are_refused(root: str) -> None:
    """/run holds every daemon's sockets: no root there, however deep."""
    with pytest.raises(ConfigError, match="lies in"):
        check_root(root)


@pytest.mark.parametrize(
    "root", ["/home/alice/project", "/srv/www", "/tmp/build", "/var/lib/app", "/opt/app/data"]
)
def test_a_directory_of_its_own_below_them_is_fine(root: str) -> None:
    check_root(root)
    assert not any(root == shared for shared in SHARED_DIRS)


def test_the_landlock_launcher_closes_what_it_inherits(world: World) -> None:
    """The launcher itself closes every fd above 2, whoever starts it: here a plain
    ``subprocess.run`` that hands it a directory outside the root."""
    sandbox = select_sandbox(SandboxSettings(backend="landlock", hidden=(str(world.state),)), str(world.root))
    tmpdir = private_tmpdir(sandbox)
    directory = os.open(world.outside, os.O_RDONLY | os.O_DIRECTORY)
    try:
        argv = sandbox.wrap("/usr/bin/ls", ("ls", "/proc/self/fd"), str(world.root), tmpdir)
        done = subprocess.run(argv, pass_fds=(directory,), capture_output=True, timeout=TIMEOUT, check=False)
    finally:
        os.close(directory)
        shutil.rmtree(tmpdir)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.decode().split()) == ["0", "1", "2", "3"]


def test_without_a_system_call_table_landlock_is_refused_and_bwrap_runs_unfiltered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine the filter knows nothing about, Landlock (which needs the filter
    for sockets) is refused with the reason, and bwrap runs without it."""
    real = os.uname()
    fake = type(real)((real.sysname, real.nodename, real.release, real.version, "mips"))
    monkeypatch.setattr(os, "uname", lambda: fake)
    with pytest.raises(SandboxUnavailable, match="cannot build for mips"):
        candidates(SandboxSettings(backend="landlock"), str(world.root))
    (bwrap,) = candidates(SandboxSettings(backend="bwrap"), str(world.root))
    assert bwrap.seccomp is None
    assert "--seccomp" not in bwrap.wrap("/usr/bin/true", ("true",), str(world.root))
