"""Device rules for both cgroup versions.

v1 writes ``devices.deny`` / ``devices.allow`` lines.  v2 has no devices
controller: a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the cgroup
decides each open/mknod.  ``bpf_program`` assembles that program here, in
Python (runc's ``devicefilter`` builds the same shape); ``isolate._bpf``
loads and attaches it.

Semantics for both: deny everything, then apply the rules in order; the last
rule that matches a request decides.  An allow rule matches when it grants
every access asked for; a deny rule matches when it forbids any of them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .limits import DeviceRule

__all__ = ["allowed", "bpf_program", "v1_lines"]

# struct bpf_cgroup_dev_ctx (include/uapi/linux/bpf.h): u32 access_type
# ((access << 16) | type), u32 major, u32 minor.
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_TYPE = {"b": DEV_BLOCK, "c": DEV_CHAR}

# eBPF opcodes (include/uapi/linux/bpf_common.h, bpf.h): class | op | source.
LDX_MEM_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W
ALU32_AND_K = 0x54    # BPF_ALU | BPF_AND | BPF_K
ALU32_RSH_K = 0x74    # BPF_ALU | BPF_RSH | BPF_K
ALU32_MOV_X = 0xBC    # BPF_ALU | BPF_MOV | BPF_X
ALU64_MOV_K = 0xB7    # BPF_ALU64 | BPF_MOV | BPF_K
JMP_JNE_K = 0x55      # BPF_JMP | BPF_JNE | BPF_K
JMP_JNE_X = 0x5D      # BPF_JMP | BPF_JNE | BPF_X
JMP_JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
JMP_EXIT = 0x95       # BPF_JMP | BPF_EXIT

_INSN = struct.Struct("<BBhi")


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> tuple[int, int, int, int, int]:
    return (code, dst, src, off, imm)


def access_mask(access: str) -> int:
    """``"rwm"`` -> the BPF_DEVCG_ACC_* bit mask."""
    mask = 0
    for ch in access:
        mask |= _ACCESS[ch]
    return mask


def _rule_block(rule: DeviceRule) -> list[tuple[int, int, int, int, int]]:
    # Each check jumps past the rest of this block ("next rule") when it fails;
    # the offsets are filled in once the block's length is known.
    checks: list[tuple[int, int, int, int, int]] = []
    if rule.type != "a":
        checks.append(_insn(JMP_JNE_K, dst=2, imm=_TYPE[rule.type]))
    mask = access_mask(rule.access)
    if mask != 7:
        checks.append(_insn(ALU32_MOV_X, dst=1, src=3))
        checks.append(_insn(ALU32_AND_K, dst=1, imm=mask))
        if rule.allow:
            checks.append(_insn(JMP_JNE_X, dst=1, src=3))     # asks for more than granted
        else:
            checks.append(_insn(JMP_JEQ_K, dst=1, imm=0))     # asks for none of the denied
    if rule.major is not None:
        checks.append(_insn(JMP_JNE_K, dst=4, imm=rule.major))
    if rule.minor is not None:
        checks.append(_insn(JMP_JNE_K, dst=5, imm=rule.minor))
    tail = [_insn(ALU64_MOV_K, dst=0, imm=1 if rule.allow else 0), _insn(JMP_EXIT)]
    out = []
    for i, (code, dst, src, _, imm) in enumerate(checks):
        if code in (JMP_JNE_K, JMP_JNE_X, JMP_JEQ_K):
            skip = len(checks) - i - 1 + len(tail)
            out.append((code, dst, src, skip, imm))
        else:
            out.append((code, dst, src, 0, imm))
    return out + tail


def program_insns(rules: Sequence[DeviceRule]) -> list[tuple[int, int, int, int, int]]:
    """The program as (code, dst, src, off, imm) tuples (for tests and ``bpf_program``)."""
    prog = [
        _insn(LDX_MEM_W, dst=2, src=1, off=0),
        _insn(ALU32_AND_K, dst=2, imm=0xFFFF),     # r2 = type
        _insn(LDX_MEM_W, dst=3, src=1, off=0),
        _insn(ALU32_RSH_K, dst=3, imm=16),         # r3 = access
        _insn(LDX_MEM_W, dst=4, src=1, off=4),     # r4 = major
        _insn(LDX_MEM_W, dst=5, src=1, off=8),     # r5 = minor
    ]
    # The last matching rule wins, so test the rules from last to first.
    for rule in reversed(rules):
        prog.extend(_rule_block(rule))
        if rule.allow and rule.type == "a" and rule.access == "rwm":
            break   # matches everything: nothing before it can be reached
    prog.extend([_insn(ALU64_MOV_K, dst=0, imm=0), _insn(JMP_EXIT)])
    return prog


def bpf_program(rules: Sequence[DeviceRule]) -> bytes:
    """The ``BPF_PROG_TYPE_CGROUP_DEVICE`` program for ``rules``, as ``struct bpf_insn`` bytes."""
    return b"".join(_INSN.pack(code, (src << 4) | dst, off, imm & 0xFFFFFFFF if imm < 0 else imm)
                    for code, dst, src, off, imm in program_insns(rules))


def allowed(rules: Sequence[DeviceRule], kind: str, major: int, minor: int, access: str) -> bool:
    """The reference semantics: may a process do ``access`` on device ``kind major:minor``?"""
    want = access_mask(access)
    verdict = False
    for rule in rules:
        if rule.type != "a" and rule.type != kind:
            continue
        if rule.major is not None and rule.major != major:
            continue
        if rule.minor is not None and rule.minor != minor:
            continue
        have = access_mask(rule.access)
        if rule.allow and want & have == want:
            verdict = True
        elif not rule.allow and want & have:
            verdict = False
    return verdict


def v1_lines(rules: Sequence[DeviceRule]) -> list[tuple[str, str]]:
    """(file, line) pairs for the v1 controller: deny all, then each rule in order."""
    out = [("devices.deny", "a")]
    for rule in rules:
        out.append(("devices.allow" if rule.allow else "devices.deny", rule.v1_line()))
    return out
