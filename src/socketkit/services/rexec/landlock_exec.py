"""The Landlock launcher: confine this process, then become the command (``execv``).

The exec server's second sandbox backend (``bwrap`` is the first). The server starts
``python -I -S landlock_exec.py CONFIG PROGRAM ARGV0 ARGS...``; this file restricts
itself and then executes PROGRAM, so the restriction is applied in the child between
fork and exec without a ``preexec_fn`` (unsafe in a threaded server). It imports only
the standard library (``-S``: no site-packages) and is also imported by the server to
ask the kernel which Landlock ABI it has.

In order, each step needing what the previous one still had:

0. close every fd above 2 (the server spawns with ``close_fds``; this makes the launcher
   itself the guarantee);
1. without network (``"net": false``) and as root: ``unshare(CLONE_NEWNET)``, a network
   namespace with no interface up (no TCP, UDP or abstract Unix socket reaches anything);
   as root also a mount namespace (private: nothing propagates to the host) with a
   tmpfs of ``"tmp_size"`` bytes on ``"tmp"``, the command's private ``TMPDIR`` (the
   server's empty directory stays empty on the host; the root is not hidden);
2. open every allowed path (``O_PATH``) while still privileged;
3. when root: empty the capability bounding set (``PR_CAPBSET_DROP``), then drop to the
   run-as user (``setgroups([])``, ``setgid``, ``setuid``) and clear the inheritable
   and ambient sets, so no capability is left anywhere;
4. ``PR_SET_NO_NEW_PRIVS`` (no setuid binary or file capability can raise privileges);
5. one Landlock ruleset: every file-system right the kernel knows is handled, and only
   the listed trees get rights (read-only or read-write); without network on ABI >= 4,
   TCP bind and connect are handled with no port allowed; on ABI >= 6, signals and
   abstract Unix sockets are scoped to the sandbox;
6. the seccomp filter the server built (``"seccomp"``, hex; ``seccomp.build_filter``):
   no Unix sockets (Landlock does not control ``connect`` on socket files), without
   network no sockets at all, no user namespaces, no io_uring;
7. the resource limits (``"rlimits"``: ``{"AS": [soft, hard], ...}``);
8. ``execv``. Any failure exits 126 with one line on stderr: the command never runs
   unconfined.

Direct syscalls through ctypes rather than the PyPI ``landlock`` package: that package
is a development release (1.0.0.dev5), and a boundary should not depend on it; the
three syscalls and two structures are stable kernel ABI.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from typing import Any

__all__ = ["abi_version", "main"]

_SYS_CREATE_RULESET = 444  # the same numbers on every architecture (asm-generic table)
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_CAP_VERSION_3 = 0x20080522
_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 1 << 14, 1 << 18

# File-system rights (include/uapi/linux/landlock.h), by the ABI that added them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_ALL = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights that apply to a file (a rule on a file with directory rights is EINVAL)."""
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

EXIT_SANDBOX_FAILED = 126
"""What the launcher exits with when it cannot confine or execute (as ``env`` does)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    try:
        libc = _libc()
        version = libc.syscall(
            _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
        )
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def _handled_fs(abi: int) -> int:
    rights = _ABI1_ALL
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _fail(message: str) -> None:
    sys.stderr.write(f"socketkit sandbox (landlock): {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_SANDBOX_FAILED)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        _fail(f"{what}: {os.strerror(err)}")
    return result


def _confine(config: dict[str, Any]) -> None:
    libc = _libc()
    abi = abi_version()
    if abi < 1:
        _fail("the kernel has no Landlock")
    net = bool(config.get("net"))
    privileged = os.geteuid() == 0
    if not net and privileged:
        _check(libc.unshare(ctypes.c_int(_CLONE_NEWNET)), "unshare(CLONE_NEWNET)")
    if privileged and config.get("tmp"):
        owner = (config.get("uid"), config.get("gid"))
        _mount_private_tmp(libc, str(config["tmp"]), int(config["tmp_size"]), *owner)
    handled = _handled_fs(abi)
    rules: list[tuple[int, int]] = []  # (fd, rights) opened while still privileged
    for key, rights in (
        ("ro", EXECUTE | READ_FILE | READ_DIR),
        ("proc", READ_FILE | READ_DIR),
        ("dev", READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV),
        ("rw", handled),
    ):
        for path in config.get(key, ()):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                if key == "rw":
                    _fail(f"cannot open {path}: it does not exist")
                continue  # an optional system path this machine lacks (/lib32...)
            except OSError as exc:
                _fail(f"cannot open {path}: {exc.strerror}")
            allowed = rights & handled
            if not os.path.isdir(f"/proc/self/fd/{fd}"):
                allowed &= _FILE_RIGHTS
            rules.append((fd, allowed))
    if privileged and config.get("uid") is not None:
        _drop_bounding_set(libc)
        os.setgroups([])
        os.setgid(int(config["gid"]))
        os.setuid(int(config["uid"]))
        _clear_capabilities(libc)
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4:
        size = 16
        if not net:
            attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP  # and no port rule
    elif not net and not privileged:
        _fail("no network namespace (not root) and Landlock ABI < 4 cannot deny TCP")
    if abi >= 6:
        size = 24
        attr.scoped = _SCOPE_SIGNAL | (0 if net else _SCOPE_ABSTRACT_UNIX)
    ruleset = _check(
        libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
        "landlock_create_ruleset",
    )
    for fd, allowed in rules:
        rule = _PathBeneathAttr(allowed, fd)
        _check(
            libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)),
            "landlock_add_rule",
        )
        os.close(fd)
    _check(libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    os.close(ruleset)
    _install_filter(libc, bytes.fromhex(str(config.get("seccomp", ""))))
    for name, (soft, hard) in dict(config.get("rlimits", {})).items():
        try:
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (int(soft), int(hard)))
        except (AttributeError, ValueError, OSError) as exc:
            _fail(f"cannot set RLIMIT_{name}: {exc}")


def _mount_private_tmp(libc: Any, path: str, size: int, uid: Any, gid: Any) -> None:
    """A mount namespace of our own, private (the host sees none of its mounts), with a
    tmpfs of ``size`` bytes on ``path``, the run-as user's: gone with the namespace."""
    _check(libc.unshare(ctypes.c_int(_CLONE_NEWNS)), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None), "mount(/, private)")
    owner = f",uid={int(uid)},gid={int(gid)}" if uid is not None and gid is not None else ""
    options = f"size={size},mode=0700{owner}".encode()
    flags = ctypes.c_ulong(_MS_NOSUID | _MS_NODEV)
    _check(libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options), f"mount(tmpfs, {path})")


def _drop_bounding_set(libc: Any) -> None:
    """Empty the capability bounding set (needs CAP_SETPCAP: done while still root)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the last capability: {exc}")
    for cap in range(last + 1):
        _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")


def _clear_capabilities(libc: Any) -> None:
    """After setuid (which emptied the permitted and effective sets): the inheritable and
    ambient sets too."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), data), "capset")
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT)")


def _install_filter(libc: Any, program: bytes) -> None:
    if not program:
        _fail("no seccomp filter: the server builds one for every Landlock command")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def main(argv: list[str]) -> None:
    """``landlock_exec.py CONFIG PROGRAM ARGV0 ARGS...``: confine, then execute PROGRAM."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 1 << 20)
    if len(argv) < 3:
        _fail("usage: landlock_exec.py CONFIG PROGRAM ARGV0 [ARGS...]")
    try:
        config = json.loads(argv[0])
    except ValueError as exc:
        _fail(f"bad configuration: {exc}")
    _confine(config)
    try:
        os.execv(argv[1], argv[2:])
    except OSError as exc:
        _fail(f"{argv[1]}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
