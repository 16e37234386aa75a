"""The v2 device program: a BPF interpreter for its few opcodes checks it against ``allowed()``."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from isolate import DEFAULT_DEVICES, DeviceRule
from isolate.cgroup import devices as D

_TYPES = {"b": D.DEV_BLOCK, "c": D.DEV_CHAR}


def run_bpf(prog: bytes, kind: str, major: int, minor: int, access: str) -> int:
    """Interpret the program on one request, as the kernel would."""
    ctx = struct.pack("<III", (D.access_mask(access) << 16) | _TYPES[kind], major, minor)
    regs = [0] * 11
    insns = [struct.unpack_from("<BBhi", prog, i) for i in range(0, len(prog), 8)]
    pc = 0
    for _ in range(10_000):
        code, regs_byte, off, imm = insns[pc]
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if code == D.LDX_MEM_W:
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == D.ALU32_AND_K:
            regs[dst] = (regs[dst] & imm) & 0xFFFFFFFF
        elif code == D.ALU32_RSH_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == D.ALU32_MOV_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == D.ALU64_MOV_K:
            regs[dst] = imm
        elif code == D.JMP_JNE_K:
            pc += off if regs[dst] != imm else 0
        elif code == D.JMP_JNE_X:
            pc += off if regs[dst] != regs[src] else 0
        elif code == D.JMP_JEQ_K:
            pc += off if regs[dst] == imm else 0
        elif code == D.JMP_EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("program did not terminate")


rules = st.builds(
    DeviceRule,
    allow=st.booleans(),
    type=st.sampled_from(["b", "c"]),
    major=st.one_of(st.none(), st.integers(0, 3)),
    minor=st.one_of(st.none(), st.integers(0, 3)),
    access=st.sampled_from(["r", "w", "m", "rw", "rm", "wm", "rwm"]),
) | st.just(DeviceRule(allow=True)) | st.just(DeviceRule(allow=False))


@settings(max_examples=300)
@given(st.lists(rules, max_size=6), st.sampled_from(["b", "c"]), st.integers(0, 3),
       st.integers(0, 3), st.sampled_from(["r", "w", "m", "rw", "rwm"]))
def test_program_agrees_with_reference(rs: list[DeviceRule], kind: str, major: int, minor: int,
                                       access: str) -> None:
    prog = D.bpf_program(rs)
    assert run_bpf(prog, kind, major, minor, access) == int(D.allowed(rs, kind, major, minor, access))


def test_default_list_allows_null_denies_disks() -> None:
    prog = D.bpf_program(DEFAULT_DEVICES)
    assert run_bpf(prog, "c", 1, 3, "rw") == 1          # /dev/null
    assert run_bpf(prog, "c", 136, 7, "rw") == 1        # a pty
    assert run_bpf(prog, "b", 8, 0, "r") == 0           # /dev/sda
    assert run_bpf(prog, "b", 8, 0, "m") == 1           # mknod is allowed, opening is not
    assert run_bpf(prog, "c", 10, 200, "rw") == 0       # /dev/net/tun is not in the OCI list


def test_v1_lines_start_with_deny_all() -> None:
    lines = D.v1_lines((DeviceRule(allow=True, type="c", major=1, minor=3, access="rw"),
                        DeviceRule(allow=False, type="b", access="m")))
    assert lines == [("devices.deny", "a"), ("devices.allow", "c 1:3 rw"), ("devices.deny", "b *:* m")]
