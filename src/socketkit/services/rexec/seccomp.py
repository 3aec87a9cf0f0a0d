"""The seccomp filter exec commands run under (pure: it builds bytes, installs nothing).

A classic-BPF program, the form both ``bwrap --seccomp FD`` and
``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` (the Landlock launcher) take. It closes
what namespaces and Landlock leave open, and nothing more:

- **no new user namespaces** (``unshare``/``clone`` with ``CLONE_NEWUSER`` fail with
  EPERM; ``clone3``, whose flags a filter cannot read, fails with ENOSYS, so libc falls
  back to ``clone``): a root server's privileged bwrap cannot use ``--disable-userns``,
  and a user namespace is kernel attack surface a command does not need;
- **socket families**: only those in ``families`` can be created (EACCES otherwise);
  this is how the Landlock backend keeps commands off the host's Unix sockets (Landlock
  does not control ``connect`` on a socket file) and, without root, off UDP; and how
  bwrap keeps them off families a network namespace does not isolate (``AF_VSOCK``
  reaches the hypervisor);
- **socket pairs**, when ``families`` leaves ``AF_UNIX`` out: only ``AF_UNIX`` +
  ``SOCK_STREAM`` pairs (with ``SOCK_CLOEXEC``/``SOCK_NONBLOCK``), EACCES otherwise. A
  stream pair is connected to itself for good (``connect`` gets EISCONN, and a stream
  socket's ``sendto`` ignores the address), but a ``SOCK_DGRAM`` pair is an ordinary
  datagram socket that can ``sendto`` or ``connect`` any socket file of the host
  (``/dev/log``, the journal, ``/run/systemd/notify``); a ``SOCK_SEQPACKET`` pair is
  refused too, as nothing a command runs needs one. The addresses of ``connect`` and
  ``sendto`` are behind pointers a filter cannot read, so the rule is on what creates
  the socket;
- **no io_uring** (ENOSYS): its operations (``IORING_OP_SOCKET``...) are not seen by
  seccomp, so it would walk around the socket rule;
- a system call of another ABI (32-bit ``int 0x80``, x32) kills the process: the rules
  above are written for the native table only.

Only architectures whose system call table is written here get a filter
(``supported``); the sandbox decides what to do without one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AF_NETLINK",
    "AF_UNIX",
    "build_filter",
    "supported",
]

AF_UNIX: Final = 1
AF_INET: Final = 2
AF_INET6: Final = 10
AF_NETLINK: Final = 16

_CLONE_NEWUSER = 0x10000000
_SOCK_STREAM = 1
_SOCK_FLAGS = 0o2000000 | 0o4000  # SOCK_CLOEXEC | SOCK_NONBLOCK (O_CLOEXEC, O_NONBLOCK on both machines)
_EPERM, _EACCES, _ENOSYS = 1, 13, 38

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

# Classic BPF opcodes (linux/bpf_common.h).
_LD_ABS_W = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_AND = 0x54  # BPF_ALU | BPF_AND | BPF_K: A &= k
_RET = 0x06

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24  # the low 32 bits of args[0], args[1] (little-endian)


@dataclass(frozen=True, slots=True)
class _Table:
    audit_arch: int
    socket: int
    socketpair: int
    clone: int
    unshare: int
    x32_bit: bool = False  # x86-64 also accepts x32 calls (nr | 0x40000000)


_CLONE3 = 435  # the same number everywhere (added after the tables were unified)
_IO_URING_SETUP = 425

_TABLES: Final = {
    "x86_64": _Table(0xC000003E, socket=41, socketpair=53, clone=56, unshare=272, x32_bit=True),
    "aarch64": _Table(0xC00000B7, socket=198, socketpair=199, clone=220, unshare=97),
}
"""System call numbers (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/
unistd.h) and AUDIT_ARCH values; both machines are little-endian and take clone's flags
as the first argument."""


def supported(machine: str) -> bool:
    """Whether a filter can be built for ``machine`` (``os.uname().machine``)."""
    return machine in _TABLES


class _Program:
    """Instructions with symbolic jump targets, resolved by ``assemble``."""

    def __init__(self) -> None:
        self.code: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def load(self, offset: int) -> None:
        self.code.append((_LD_ABS_W, 0, 0, offset))

    def jump(self, op: int, k: int, true: str | int = 0, false: str | int = 0) -> None:
        self.code.append((op, true, false, k))

    def and_(self, k: int) -> None:
        self.code.append((_AND, 0, 0, k))

    def ret(self, value: int) -> None:
        self.code.append((_RET, 0, 0, value))

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (op, true, false, k) in enumerate(self.code):
            jt, jf = (self._offset(pc, target) for target in (true, false))
            out += struct.pack("=HBBI", op, jt, jf, k)
        return bytes(out)

    def _offset(self, pc: int, target: str | int) -> int:
        if isinstance(target, int):
            return target  # relative already (0: the next instruction)
        offset = self.labels[target] - pc - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"seccomp: jump to {target} out of range")
        return offset


def build_filter(machine: str, *, families: frozenset[int] | None) -> bytes:
    """The filter for commands on ``machine``.

    Args:
        machine: ``os.uname().machine``; must be ``supported``.
        families: the socket address families a command may create (``None``: all);
            without ``AF_UNIX``, ``socketpair`` makes ``AF_UNIX`` stream pairs only.

    Raises:
        ValueError: no system call table for ``machine``.
    """
    table = _TABLES.get(machine)
    if table is None:
        raise ValueError(f"seccomp: no system call table for {machine}")
    p = _Program()
    p.load(_ARCH)
    p.jump(_JEQ, table.audit_arch, 0, "kill")
    p.load(_NR)
    if table.x32_bit:
        p.jump(_JGE, 0x40000000, "kill", 0)
    p.jump(_JEQ, table.unshare, "flags", 0)
    p.jump(_JEQ, table.clone, "flags", 0)
    p.jump(_JEQ, _CLONE3, "enosys", 0)
    p.jump(_JEQ, _IO_URING_SETUP, "enosys", 0)
    stream_pairs_only = families is not None and AF_UNIX not in families
    if families is not None:
        p.jump(_JEQ, table.socket, "socket", 0)
    if stream_pairs_only:
        p.jump(_JEQ, table.socketpair, "socketpair", 0)
    p.ret(_RET_ALLOW)
    p.label("flags")
    p.load(_ARG0)
    p.jump(_JSET, _CLONE_NEWUSER, "eperm", 0)
    p.ret(_RET_ALLOW)
    if families is not None:
        p.label("socket")
        p.load(_ARG0)
        for family in sorted(families):
            p.jump(_JEQ, family, "allow", 0)
        p.ret(_RET_ERRNO | _EACCES)
    if stream_pairs_only:
        p.label("socketpair")
        p.load(_ARG0)
        p.jump(_JEQ, AF_UNIX, 0, "eacces")
        p.load(_ARG1)
        p.and_(~_SOCK_FLAGS & 0xFFFFFFFF)
        p.jump(_JEQ, _SOCK_STREAM, "allow", "eacces")
    p.label("allow")
    p.ret(_RET_ALLOW)
    if stream_pairs_only:
        p.label("eacces")
        p.ret(_RET_ERRNO | _EACCES)
    p.label("eperm")
    p.ret(_RET_ERRNO | _EPERM)
    p.label("enosys")
    p.ret(_RET_ERRNO | _ENOSYS)
    p.label("kill")
    p.ret(_RET_KILL_PROCESS)
    return p.assemble()
