"""The range compiler of ``SeccompProfile.compile()`` gives libseccomp's verdict everywhere.

Both programs are run through a classic-BPF interpreter (the subset seccomp
allows) for every syscall number of x86-64, the x32 range, other
architectures, and arguments around every value a rule compares with.
"""

from __future__ import annotations

import os
import struct

import pytest

from isolate.seccomp import (OCI_DEFAULT_CAPS, ArgCmp, SeccompProfile, SyscallRule, _Asm,
                             available)

pytestmark = [
    pytest.mark.skipif(not available(), reason="libseccomp.so.2 is not installed"),
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="the range compiler is x86-64 only"),
]

ARCHES = (0xC000003E, 0x40000003, 0xC00000B7)     # x86-64, i386, aarch64


def run_bpf(prog: bytes, arch: int, nr: int, args: tuple[int, ...]) -> int:
    """Evaluate a seccomp program on one ``struct seccomp_data``; returns the action."""
    data = struct.pack("=iIQ6Q", nr - (1 << 32) if nr >= 1 << 31 else nr, arch, 0,
                       *(args + (0,) * (6 - len(args))))
    insns = [struct.unpack_from("=HBBI", prog, i) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    for _ in range(10_000):
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x54:
            acc &= k
        elif code == 0x06:
            return k
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x35, 0x25, 0x45):
            hit = {0x15: acc == k, 0x35: acc >= k, 0x25: acc > k, 0x45: bool(acc & k)}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"unexpected BPF opcode {code:#x} at {pc - 1}")
    raise AssertionError("program did not return")


def arg_values(profile: SeccompProfile) -> list[int]:
    vals = {0, 1, 40, 41, 0xFFFFFFFF, 1 << 32, (1 << 32) | 40, (1 << 64) - 1}
    for r in profile.rules:
        for c in r.args:
            for v in (c.value, c.mask, c.value | c.mask):
                vals |= {v, v ^ 1, v ^ (1 << 32), (v + 1) % (1 << 64), v & 0xFFFFFFFF}
            for bit in range(64):
                if c.mask >> bit & 1:
                    vals.add(1 << bit)
    return sorted(vals)


PROFILES = {
    "docker default, OCI caps": SeccompProfile.default(OCI_DEFAULT_CAPS),
    "docker default, no caps": SeccompProfile.default([]),
    "docker default, SYS_ADMIN": SeccompProfile.default(OCI_DEFAULT_CAPS | {"CAP_SYS_ADMIN"}),
    "docker default, no setid files": SeccompProfile.default(OCI_DEFAULT_CAPS, setid_files=False),
    "errno by default, no rule": SeccompProfile(default_action="errno", default_errno=1, rules=()),
    "allow by default, two denied": SeccompProfile(default_action="allow", rules=(
        SyscallRule(names=("mkdir", "mkdirat"), action="errno", errno=13),
        SyscallRule(names=("ptrace",), action="kill"))),
    "kill by default, conditions": SeccompProfile(default_action="kill_thread", rules=(
        SyscallRule(names=("read", "write", "exit_group")),
        SyscallRule(names=("ioctl",), args=(ArgCmp(index=1, op="eq", value=0x5401),
                                            ArgCmp(index=0, op="ne", value=3))),
        SyscallRule(names=("ioctl",), args=(ArgCmp(index=2, op="masked_eq", mask=0xF0F0_0000_00FF,
                                                   value=0x1000_0000_0012),)))),
}


@pytest.mark.parametrize("name", list(PROFILES))
def test_range_program_matches_libseccomp(name: str) -> None:
    profile = PROFILES[name]
    ours = profile._compile_ranges()
    assert ours is not None
    ref = profile._compile_libseccomp()
    nrs = list(range(0, 600)) + [0x3FFFFFFF, 0x40000000, 0x40000001, 0x40000101, 0x7FFFFFFF,
                                 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
    # Arguments matter only where a rule has conditions (and, as a check, a few other numbers).
    special = {nr for nr, rules in profile._by_nr().items() if any(args for _, args in rules)}
    special |= {0, 1, 59}
    vals = arg_values(profile)
    for arch in ARCHES:
        for nr in nrs:
            argsets = [()]
            if arch == ARCHES[0] and nr in special:
                argsets += [(v, v, v) for v in vals] + [(3, 0x5401, 0), (4, 0x5401, 0)]
            for args in argsets:
                got, want = run_bpf(ours, arch, nr, args), run_bpf(ref, arch, nr, args)
                assert got == want, (name, hex(arch), nr, args, hex(got), hex(want))


def test_docker_default_program_is_shallow() -> None:
    # The point of the range compiler: the kernel walks the filter once per
    # syscall number when loading it, so the path length is the load cost.
    prog = SeccompProfile.default(OCI_DEFAULT_CAPS).compile()
    ref = SeccompProfile.default(OCI_DEFAULT_CAPS)._compile_libseccomp()

    def steps(p: bytes) -> int:
        total = 0
        insns = [struct.unpack_from("=HBBI", p, i) for i in range(0, len(p), 8)]
        for nr in range(460):
            pc, acc, n = 0, 0, 0
            while True:
                code, jt, jf, k = insns[pc]
                pc += 1
                n += 1
                if code == 0x20:
                    acc = {0: nr, 4: 0xC000003E}.get(k, 0)
                elif code == 0x06 or (code == 0x20 and k >= 16):
                    break
                elif code == 0x05:
                    pc += k
                elif code == 0x54:
                    acc &= k
                else:
                    hit = {0x15: acc == k, 0x35: acc >= k, 0x25: acc > k, 0x45: bool(acc & k)}[code]
                    pc += jt if hit else jf
            total += n
        return total

    assert len(prog) * 2 < len(ref)
    assert steps(prog) * 4 < steps(ref) * 3


def test_profiles_outside_the_range_compiler_use_libseccomp() -> None:
    # "lt" is not an operator the range compiler takes: libseccomp compiles it.
    p = SeccompProfile(rules=(SyscallRule(names=("read",), args=(ArgCmp(index=0, op="lt", value=3),)),))
    assert p._compile_ranges() is None
    assert p.compile() == p._compile_libseccomp()
    # Two actions for one syscall: libseccomp's precedence decides.
    q = SeccompProfile(rules=(SyscallRule(names=("read",)),
                              SyscallRule(names=("read",), action="errno", errno=5,
                                          args=(ArgCmp(index=0, op="eq", value=3),))))
    assert q._compile_ranges() is None


def test_assembler_refuses_a_jump_beyond_classic_bpf() -> None:
    a = _Asm()
    a.op(0x15, 1, "far", 0)
    for _ in range(300):
        a.op(0x06, 0)
    a.label("far")
    a.op(0x06, 0x7FFF0000)
    with pytest.raises(OverflowError):
        a.bytes()


def test_the_setid_guard_refuses_setuid_and_setgid_modes_only() -> None:
    """``setid_files=False``: the mode-giving calls fail with EPERM when the mode carries
    S_ISUID or S_ISGID, open/openat only when they create; openat2 fails with ENOSYS."""
    prog = SeccompProfile.default(OCI_DEFAULT_CAPS, setid_files=False).compile()
    plain = SeccompProfile.default(OCI_DEFAULT_CAPS).compile()
    x86 = ARCHES[0]
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    creat_flags, at = os.O_WRONLY | os.O_CREAT, 0xFFFFFF9C        # AT_FDCWD
    tmpfile = os.O_RDWR | 0o20200000                                  # O_TMPFILE
    cases = [  # (nr, args, verdict with the guard)
        (90, (0, 0o4755), eperm), (90, (0, 0o2755), eperm), (90, (0, 0o1777), allow),   # chmod
        (91, (3, 0o6755), eperm), (91, (3, 0o755), allow),                              # fchmod
        (268, (at, 0, 0o4700), eperm), (268, (at, 0, 0o700), allow),                    # fchmodat
        (452, (at, 0, 0o2700, 0), eperm), (452, (at, 0, 0o644, 0), allow),              # fchmodat2
        (133, (0, 0o100000 | 0o4755, 0), eperm), (133, (0, 0o100644, 0), allow),        # mknod
        (259, (at, 0, 0o100000 | 0o2755, 0), eperm),                                    # mknodat
        (85, (0, 0o4755), eperm), (85, (0, 0o755), allow),                              # creat
        (2, (0, creat_flags, 0o4755), eperm), (2, (0, creat_flags, 0o755), allow),      # open
        (2, (0, os.O_RDONLY, 0o4755), allow),           # creates nothing: the mode is not read
        (257, (at, 0, creat_flags, 0o4755), eperm), (257, (at, 0, tmpfile, 0o2755), eperm),
        (257, (at, 0, os.O_RDONLY, 0o6000), allow), (257, (at, 0, creat_flags, 0o644), allow),
        (437, (at, 0, 0, 24), enosys),                                                  # openat2
        (83, (0, 0o6755), allow),                          # mkdir: the kernel drops the bits
    ]
    for nr, args, want in cases:
        assert run_bpf(prog, x86, nr, args) == want, (nr, tuple(oct(a) for a in args))
        # Docker's profile allows every one of them.
        assert run_bpf(plain, x86, nr, args) == allow, (nr, args)
