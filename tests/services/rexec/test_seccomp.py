"""The seccomp program, run by a small classic-BPF interpreter on made-up system calls
(pure: nothing is installed): under Landlock a socket pair is an ``AF_UNIX`` stream
pair or nothing (a datagram pair can ``sendto`` any socket file of the host), whatever
flags come with the type; bwrap, whose commands see none of the host's socket files,
keeps every pair; the other rules stay as they were."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketkit.services.rexec import seccomp
from socketkit.services.rexec.sandbox import _BWRAP_FAMILIES, _LANDLOCK_NET_FAMILIES

ALLOW, EACCES, EPERM, ENOSYS, KILL = 0x7FFF0000, 0x0005000D, 0x00050001, 0x00050026, 0x80000000
MACHINES = {  # audit arch, socket, socketpair, clone (the kernel's own tables)
    "x86_64": (0xC000003E, 41, 53, 56),
    "aarch64": (0xC00000B7, 198, 199, 220),
}
AF_UNIX, AF_INET = 1, 2
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
FLAGS = [0, SOCK_NONBLOCK, SOCK_CLOEXEC, SOCK_NONBLOCK | SOCK_CLOEXEC]


def run(program: bytes, arch: int, nr: int, *args: int) -> int:
    """What the kernel would do: ``struct seccomp_data`` (little-endian) through the
    program; only the instructions ``seccomp`` emits are known here."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    code = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    a, pc = 0, 0
    for _ in range(len(code)):  # no loops in classic BPF: each step moves forward
        op, jt, jf, k = code[pc]
        pc += 1
        if op == 0x20:  # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif op == 0x54:  # and #k
            a &= k
        elif op in (0x15, 0x35, 0x45):  # jeq, jge, jset #k
            taken = a == k if op == 0x15 else a >= k if op == 0x35 else bool(a & k)
            pc += jt if taken else jf
        elif op == 0x06:  # ret #k
            return k
        else:
            pytest.fail(f"unknown instruction {op:#x}")
    pytest.fail("the program ran off its end")


@pytest.mark.parametrize("machine", sorted(MACHINES))
@pytest.mark.parametrize("families", [frozenset(), _LANDLOCK_NET_FAMILIES], ids=["landlock", "landlock-net"])
def test_landlock_commands_get_stream_pairs_only(machine: str, families: frozenset[int]) -> None:
    arch, _, socketpair, _ = MACHINES[machine]
    program = seccomp.build_filter(machine, families=families)
    for flags in FLAGS:
        assert run(program, arch, socketpair, AF_UNIX, SOCK_STREAM | flags) == ALLOW
        for kind in (SOCK_DGRAM, SOCK_SEQPACKET, 3, 4, 10):  # dgram, seqpacket, raw, rdm, packet
            assert run(program, arch, socketpair, AF_UNIX, kind | flags) == EACCES, (kind, flags)
        assert run(program, arch, socketpair, AF_INET, SOCK_STREAM | flags) == EACCES


@pytest.mark.parametrize("machine", sorted(MACHINES))
@given(kind=st.integers(min_value=0, max_value=2**32 - 1))
def test_a_pair_is_allowed_only_when_its_type_is_stream_once_the_flags_are_off(
    machine: str, kind: int
) -> None:
    arch, _, socketpair, _ = MACHINES[machine]
    program = seccomp.build_filter(machine, families=frozenset())
    expected = ALLOW if kind & ~(SOCK_NONBLOCK | SOCK_CLOEXEC) == SOCK_STREAM else EACCES
    assert run(program, arch, socketpair, AF_UNIX, kind) == expected


@pytest.mark.parametrize("machine", sorted(MACHINES))
@pytest.mark.parametrize("families", [_BWRAP_FAMILIES, None], ids=["bwrap", "bwrap-net"])
def test_bwrap_commands_keep_every_pair(machine: str, families: frozenset[int] | None) -> None:
    """bwrap mounts none of the host's socket files: a datagram pair reaches only the
    sandbox's own (and with ``--allow-network`` nothing is filtered by family)."""
    arch, _, socketpair, _ = MACHINES[machine]
    program = seccomp.build_filter(machine, families=families)
    for kind in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET | SOCK_CLOEXEC):
        assert run(program, arch, socketpair, AF_UNIX, kind) == ALLOW


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_the_other_rules_hold(machine: str) -> None:
    arch, socket, _, clone = MACHINES[machine]
    landlock = seccomp.build_filter(machine, families=frozenset())
    assert run(landlock, arch, socket, AF_UNIX, SOCK_STREAM) == EACCES
    assert run(landlock, arch, clone, 0x10000000) == EPERM  # CLONE_NEWUSER
    assert run(landlock, arch, clone, 0x11) == ALLOW
    assert run(landlock, arch, 435) == ENOSYS  # clone3
    assert run(landlock, arch, 425) == ENOSYS  # io_uring_setup
    assert run(landlock, 0x40000003, socket) == KILL  # another ABI (i386)
    net = seccomp.build_filter(machine, families=_LANDLOCK_NET_FAMILIES)
    assert run(net, arch, socket, AF_INET, SOCK_STREAM) == ALLOW
    assert run(net, arch, socket, AF_UNIX, SOCK_DGRAM) == EACCES
