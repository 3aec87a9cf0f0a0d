"""Where exec commands run: the sandbox backends and the command lines that confine them.

A command sees the served root read-write, the system directories programs need
read-only, a minimal /dev, /proc, a private /tmp, and nothing else: no home directory,
no /root, no /etc/shadow, no state directory (the token, the audit log), no fd of the
server's but 0-2 (``process.spawn``). It has no network unless the operator allows it,
cannot gain privileges (``no_new_privs``, an empty capability bounding set), cannot make
user namespaces (``seccomp``), runs as an unprivileged user (``run_as``, default
``nobody``) when the server is root, and every process of it has the resource limits of
``CommandLimits`` (util-linux ``prlimit`` for bwrap and none, the launcher for Landlock).

Backends, best first:

- ``bwrap`` (bubblewrap, the sandbox Flatpak uses): a new mount namespace holding only
  the paths above, and new PID, network, IPC and UTS namespaces. The PID namespace ends
  with the command: nothing it started outlives it (``setsid`` or not). As root, bwrap
  runs privileged and ``setpriv`` (util-linux) switches to the run-as user inside, so
  the user needs no access to the root's parent directories; otherwise bwrap uses an
  unprivileged user namespace. The seccomp filter (``seccomp.build_filter``: no user
  namespaces, no io_uring, and without network no socket family a network namespace
  does not isolate) comes on a pipe (``--seccomp FD``).
- ``landlock`` (``landlock_exec``): Landlock file-system rules over the same paths, a
  network namespace when root (else Landlock's TCP rules, ABI >= 4), no_new_privs, and
  the seccomp filter, which also refuses Unix sockets (Landlock does not control
  ``connect`` on a socket file, so a host socket would be reachable) but stream pairs
  (a datagram pair can ``sendto`` any socket file) and, without network, every
  socket. No mount or PID namespace: see docs/security.md for what it does not
  confine. Refused on machines whose system call table ``seccomp`` lacks.
- ``none`` (``--no-sandbox``): only the run-as user, no_new_privs (``setpriv``) and the
  resource limits; the allow-list is then the only rule.

This module decides and builds argv lists; ``process`` starts and probes them.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from dataclasses import dataclass, field
from typing import Final

from socketkit.errors import ConfigError, SandboxUnavailable
from socketkit.services.rexec import landlock_exec, seccomp
from socketkit.services.rexec.policy import DEFAULT_RUN_AS, SAFE_PATH, SANDBOX_TMP_BYTES, CommandLimits

__all__ = [
    "BACKENDS",
    "DEVICES",
    "ETC_ALLOWED",
    "SANDBOX_TMP_BYTES",
    "SHARED_DIRS",
    "SYSTEM_DIRS",
    "Sandbox",
    "SandboxSettings",
    "candidates",
]

BACKENDS: Final = ("auto", "bwrap", "landlock", "none")

SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Read-only: programs and their libraries (symlinks on merged-/usr systems stay links)."""

ETC_ALLOWED: Final = (
    "passwd", "group", "nsswitch.conf",  # user and group names (id, ls -l, whoami)
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d",  # the dynamic linker
    "localtime", "timezone", "locale.alias", "locale.conf", "default/locale",  # time, locale
    "hostname", "hosts", "host.conf", "resolv.conf", "gai.conf", "services", "protocols",
    "networks",  # name resolution, used only with --allow-network
    "alternatives",  # Debian's program links (/usr/bin/awk -> /etc/alternatives/awk)
    "os-release", "lsb-release", "debian_version", "mtab",
    "magic", "magic.mime", "mime.types", "terminfo", "inputrc",
    "ssl/certs", "ssl/openssl.cnf",  # public CA certificates, never ssl/private
)  # fmt: skip
"""The /etc entries a command sees: an allow-list, so secrets (shadow, gshadow, ssh host
keys, ssl/private, sudoers, credentials) and whatever a package adds later stay out."""

DEVICES: Final = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
"""The whole /dev: no tty, no disks, no /dev/shm shared with the host."""

_PROTECTED: Final = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/proc", "/dev", "/sys", "/boot")
_NO_ROOT_UNDER: Final = ("/proc", "/sys", "/dev", "/etc", "/boot", "/run")
"""No root inside these: the kernel's and the system's own trees, and /run (every
daemon's sockets: the commands would get them read-write)."""

SHARED_DIRS: Final = ("/home", "/root", "/tmp", "/var", "/var/tmp", "/run", "/srv", "/mnt", "/media", "/opt")
"""Directories the whole machine shares (every home, temporary files and the sockets
left in them, runtime state, mounts): a root that is one of them or contains one is
refused, since commands would read and write everyone's files and reach the Unix
sockets there (X11, ssh-agent, D-Bus...). A directory of its own below them
(``/home/alice/project``, ``/srv/www``, ``/tmp/build``) is what --root is for."""


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """How exec commands are confined (``ExecSettings.sandbox``).

    Attributes:
        backend: ``auto`` (bwrap, else Landlock, else refuse), ``bwrap``, ``landlock``,
            or ``none`` (no sandbox: the operator's explicit choice).
        bwrap: the bubblewrap program (a name looked up on the safe PATH, or a path).
        landlock: whether ``auto`` may fall back to Landlock.
        allow_network: give commands the host's network.
        run_as: the user commands run as when the server runs as root.
        hidden: paths commands must never see (the state directory, key files); masked
            by bwrap when inside the root, refused for Landlock (it cannot subtract).
        tmp_size: bytes of the private /tmp (bwrap; Landlock as root).
        limits: the resource limits of every process of a command.
    """

    backend: str = "auto"
    bwrap: str = "bwrap"
    landlock: bool = True
    allow_network: bool = False
    run_as: str = DEFAULT_RUN_AS
    hidden: tuple[str, ...] = ()
    tmp_size: int = SANDBOX_TMP_BYTES
    limits: CommandLimits = field(default_factory=CommandLimits)


_BWRAP_FAMILIES: Final = frozenset({seccomp.AF_UNIX, seccomp.AF_INET, seccomp.AF_INET6, seccomp.AF_NETLINK})
_LANDLOCK_NET_FAMILIES: Final = frozenset({seccomp.AF_INET, seccomp.AF_INET6, seccomp.AF_NETLINK})


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _find(program: str) -> str | None:
    if "/" in program:
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    return shutil.which(program, path=SAFE_PATH)


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A chosen backend with everything it needs to wrap a command."""

    name: str
    root: str
    allow_network: bool = False
    uid: int | None = None  # the run-as user when the server is root; None: the server's
    gid: int | None = None
    program: str | None = None  # bwrap's path
    setpriv: str | None = None
    masked: tuple[str, ...] = ()  # hidden paths inside the root (bwrap masks them)
    tmp_size: int = SANDBOX_TMP_BYTES
    limits: CommandLimits = field(default_factory=CommandLimits)
    prlimit: str | None = None  # util-linux prlimit (bwrap, none); Landlock sets them itself
    seccomp: bytes | None = None  # the filter program (bwrap, Landlock); None: none known here

    @property
    def leader_is_monitor(self) -> bool:
        """bwrap's first process supervises the sandbox: signals for the command go to the
        rest of its process group (killing bwrap would SIGKILL everything at once)."""
        return self.name == "bwrap"

    @property
    def needs_tmpdir(self) -> bool:
        """Landlock has no private /tmp: each command gets a directory of its own, on
        which a root launcher mounts a tmpfs of ``tmp_size``."""
        return self.name == "landlock"

    def wrap(
        self,
        path: str,
        argv: tuple[str, ...],
        cwd: str,
        tmpdir: str | None = None,
        *,
        filter_fd: int | None = None,
    ) -> list[str]:
        """The argv that runs ``path`` (with ``argv``) confined, in ``cwd``; bwrap reads
        the seccomp program from ``filter_fd`` (``process.spawn`` makes it)."""
        if self.name == "bwrap":
            confine = [*self._bwrap_prefix(cwd, filter_fd), *self._setpriv_prefix()]
            return [*confine, *self._limits_prefix(), path, *argv[1:]]
        if self.name == "landlock":
            config = {
                "ro": [*SYSTEM_DIRS, *(f"/etc/{name}" for name in ETC_ALLOWED)],
                "proc": ["/proc"],
                "dev": list(DEVICES),
                "rw": [self.root, *([tmpdir] if tmpdir else [])],
                "tmp": tmpdir,
                "tmp_size": self.tmp_size,
                "uid": self.uid,
                "gid": self.gid,
                "net": self.allow_network,
                "rlimits": self.limits.rlimits(),
                "seccomp": (self.seccomp or b"").hex(),
            }
            launcher = landlock_exec.__file__
            return [sys.executable, "-I", "-S", launcher, json.dumps(config), path, *argv]
        return [*self._setpriv_prefix(), *self._limits_prefix(), path, *argv[1:]]

    def _limits_prefix(self) -> list[str]:
        # Last before the command (inside bwrap's user namespace, when it makes one, so
        # that RLIMIT_NPROC counts that namespace's processes only).
        assert self.prlimit is not None
        return [self.prlimit, *self.limits.prlimit_args(), "--"]

    def _setpriv_prefix(self) -> list[str]:
        if self.uid is None or self.setpriv is None:
            return []
        return [
            self.setpriv,
            "--no-new-privs",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]

    def _bwrap_prefix(self, cwd: str, filter_fd: int | None) -> list[str]:
        assert self.program is not None
        args = [self.program, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args.append("--unshare-cgroup-try")
        if filter_fd is not None:
            args += ["--seccomp", str(filter_fd)]
        if not self.allow_network:
            args.append("--unshare-net")
        if self.uid is not None:
            # Privileged bwrap (we are root): setpriv needs these two to become the run-as
            # user; it drops them (and every other capability) before the command runs.
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--disable-userns"]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--perms", "0755", "--dir", "/etc"]
        for name in ETC_ALLOWED:
            path = f"/etc/{name}"
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--perms", "0755", "--tmpfs", "/dev"]
        for device in DEVICES:
            if os.path.exists(device):
                args += ["--dev-bind", device, device]
        for number, name in enumerate(("stdin", "stdout", "stderr")):
            args += ["--symlink", f"/proc/self/fd/{number}", f"/dev/{name}"]
        args += ["--symlink", "/proc/self/fd", "/dev/fd"]
        args += ["--perms", "1777", "--size", str(self.tmp_size), "--tmpfs", "/tmp"]
        # The root's parents exist inside only as empty directories anyone may cross.
        parent = os.path.dirname(self.root)
        parents = []
        while parent not in ("/", ""):
            parents.append(parent)
            parent = os.path.dirname(parent)
        for path in reversed(parents):
            args += ["--perms", "0755", "--dir", path]
        args += ["--bind", self.root, self.root]
        for path in self.masked:
            if os.path.isdir(path):
                args += ["--perms", "0000", "--tmpfs", path, "--remount-ro", path]
            else:
                args += ["--ro-bind", "/dev/null", path]
        return [*args, "--chdir", cwd, "--"]


def check_root(root: str) -> None:
    """Refuse a root that would expose or shadow the system (``/``, ``/usr``, ``/etc``...)
    or hand commands what the machine shares (``/home``, ``/tmp``, ``/run``: see
    ``SHARED_DIRS``).

    Raises:
        ConfigError: the root is, contains or lies in a system directory, or is or
            contains a shared one.
    """
    for system in _PROTECTED:
        if _inside(system, root):
            raise ConfigError(f"exec: --root {root} contains {system}: serve a directory of its own")
    for system in _NO_ROOT_UNDER:
        if _inside(root, system):
            raise ConfigError(f"exec: --root {root} lies in {system}: serve a directory of its own")
    for shared in SHARED_DIRS:
        if _inside(shared, root):
            raise ConfigError(
                f"exec: --root {root} {'is' if shared == root else 'contains'} {shared}, which the "
                "whole machine shares (homes, temporary files, sockets): serve a directory of its own"
            )


def _run_as(settings: SandboxSettings) -> tuple[int | None, int | None]:
    if os.geteuid() != 0:
        return None, None  # commands run as the server's own user
    try:
        entry = pwd.getpwnam(settings.run_as)
    except KeyError:
        raise ConfigError(f"exec: --run-as {settings.run_as}: no such user") from None
    if entry.pw_uid == 0:
        raise ConfigError(f"exec: --run-as {settings.run_as} is root: name an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def candidates(settings: SandboxSettings, root: str) -> list[Sandbox]:
    """The sandboxes to try, best first (each still to be probed by ``process``).

    Raises:
        ConfigError: a bad setting (backend name, run-as user, root).
        SandboxUnavailable: no backend the settings allow exists on this machine.
    """
    if settings.backend not in BACKENDS:
        raise ConfigError(f"exec: unknown sandbox {settings.backend!r} (one of {', '.join(BACKENDS)})")
    uid, gid = _run_as(settings)
    setpriv = _find("setpriv") if uid is not None else None
    if uid is not None and setpriv is None:
        raise ConfigError("exec: setpriv (util-linux) is missing: a root server cannot switch to --run-as")
    prlimit = _find("prlimit")
    limits = settings.limits
    if settings.backend == "none":
        if prlimit is None:
            raise ConfigError("exec: prlimit (util-linux) is missing: it sets the commands' resource limits")
        return [Sandbox("none", root, True, uid, gid, None, setpriv, limits=limits, prlimit=prlimit)]
    check_root(root)
    machine = os.uname().machine
    known = seccomp.supported(machine)
    hidden = [os.path.realpath(p) for p in settings.hidden]
    for path in hidden:
        if path == root:
            raise ConfigError(f"exec: --root {root} is {path}, which commands must not see")
    # A root inside the state directory is fine (only the root is visible); a state
    # directory inside the root must be masked.
    masked = tuple(p for p in hidden if _inside(p, root))
    found: list[Sandbox] = []
    reasons: list[str] = []
    if settings.backend in ("auto", "bwrap"):
        program = _find(settings.bwrap)
        if program is None:
            reasons.append(f"bubblewrap ({settings.bwrap}) is not installed")
        elif prlimit is None:
            reasons.append("prlimit (util-linux) is missing: it sets the commands' resource limits")
        else:
            # Without network, the families a network namespace isolates (and Unix sockets,
            # which only see the sandbox's own files); with it, all of them.
            families = None if settings.allow_network else _BWRAP_FAMILIES
            bpf = seccomp.build_filter(machine, families=families) if known else None
            common = (root, settings.allow_network, uid, gid)
            found.append(
                Sandbox("bwrap", *common, program, setpriv, masked, settings.tmp_size, limits, prlimit, bpf)
            )
    if settings.backend == "landlock" or (settings.backend == "auto" and settings.landlock):
        abi = landlock_exec.abi_version()
        if abi < 1:
            reasons.append("the kernel has no Landlock")
        elif masked:
            reasons.append(f"Landlock cannot hide {masked[0]} inside the root (move --state-dir out of it)")
        elif not settings.allow_network and uid is None and abi < 4:
            reasons.append(f"Landlock ABI {abi} cannot deny the network to a non-root server")
        elif not known:
            reasons.append(f"Landlock needs a seccomp filter, which socketkit cannot build for {machine}")
        else:
            # Landlock does not control connect() on a socket file: no Unix sockets at
            # all (socketpair: stream pairs only, as a datagram pair can sendto any
            # socket file), and without network no socket either (UDP escapes its TCP rules).
            families = _LANDLOCK_NET_FAMILIES if settings.allow_network else frozenset()
            bpf = seccomp.build_filter(machine, families=families)
            found.append(
                Sandbox(
                    "landlock",
                    root,
                    settings.allow_network,
                    uid,
                    gid,
                    tmp_size=settings.tmp_size,
                    limits=limits,
                    seccomp=bpf,
                )
            )
    if not found:
        raise SandboxUnavailable(
            f"exec: no sandbox for commands ({'; '.join(reasons)}): install bubblewrap, "
            "or pass --no-sandbox to run commands unconfined at your own risk"
        )
    return found
