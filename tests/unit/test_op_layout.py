"""Each op kind's slots have names in api.h (``struct iso_op_<kind>``, a member
of ``struct iso_op``'s union): what Python packs must land in the slot C reads
under that name.  Packed ops are read back through cffi by those names."""

from __future__ import annotations

from typing import Any

import pytest

from isolate import _ops as O
from isolate import _plan as P
from isolate import _ops_root as R
from isolate._native import ffi

S = bytes  # an expected string slot: an arena offset whose string is this

CASES: list[tuple[P.Op, str, dict[str, Any]]] = [
    (O.SetNs(fd=5, nstype=P.NSTYPES["uts"]), "setns", {"nstype": P.NSTYPES["uts"]}),
    (O.Mount(b"proc", b"/proc", b"proc", 6, b"hidepid=2"), "mount",
     {"source": S(b"proc"), "target": S(b"/proc"), "fstype": S(b"proc"), "flags": 6,
      "data": S(b"hidepid=2")}),
    (O.MountSetattr(b"/mnt", attr_set=1, attr_clr=2, propagation=P.lib.MS_PRIVATE),
     "mount_setattr", {"target": S(b"/mnt"), "attr_set": 1, "attr_clr": 2,
                       "propagation": P.lib.MS_PRIVATE}),
    (O.Mknod(b"/dev/x", 0o20666, 0x103), "mknod", {"path": S(b"/dev/x"), "mode": 0o20666,
                                                   "dev": 0x103}),
    (O.WriteFile(b"/etc/x", b"data", 0o600, P.lib.O_CREAT), "write_file",
     {"path": S(b"/etc/x"), "len": 4, "mode": 0o600, "oflags": P.lib.O_CREAT}),
    (O.SetRlimit(7, 10, 20), "setrlimit", {"resource": 7, "soft": 10, "hard": 20}),
    (O.SetResUid(1, 2, 3), "setresuid", {"real": 1, "effective": 2, "saved": 3}),
    (O.SetResGid(4, 5, 6), "setresgid", {"real": 4, "effective": 5, "saved": 6}),
    (O.CapBound(drop=0b101, last_cap=40), "cap_bound", {"mask": 0b101, "last_cap": 40}),
    (O.CapSet(1, 3, 7), "capset", {"effective": 1, "permitted": 3, "inheritable": 7}),
    (O.Seccomp(program=b"\0" * 16, flags=1), "seccomp", {"len": 2, "flags": 1}),
    (O.Exec((b"/bin/a", b"/usr/bin/a")), "execve", {"paths": S(b"/bin/a"), "n_paths": 2}),
    (O.Console(fd=4, rows=24, cols=80, bind_console=True), "console",
     {"rows": 24, "cols": 80, "bind_console": 1}),
    (O.Fork(fd=-1, clone_flags=P.NSTYPES["user"]), "fork", {"clone_flags": P.NSTYPES["user"]}),
    (O.RootMkdir(b"/newroot", b"etc", b"mtab", 0o777, R.ENTRY_SYMLINK, b"../proc/mounts"),
     "root_mkdir", {"root": S(b"/newroot"), "dir": S(b"etc"), "name": S(b"mtab"),
                    "link": S(b"../proc/mounts"), "mode": 0o777, "type": R.ENTRY_SYMLINK}),
    (R.RootMkdirs(b"/newroot", b"dev", ((b"pts", R.ENTRY_DIR, 0o755, None),
                                        (b"null", R.ENTRY_FILE, 0o666, None))),
     "root_mkdirs", {"root": S(b"/newroot"), "dir": S(b"dev"), "count": 2}),
    (O.RootBind(b"/oldroot", b"etc", b"/newroot", b"etc", attr_set=2, attr_clr=4),
     "root_bind", {"src_root": S(b"/oldroot"), "source": S(b"etc"), "root": S(b"/newroot"),
                   "target": S(b"etc"), "attr_set": 2, "attr_clr": 4}),
    (R.RootBinds(b"/oldroot", b"/newroot", ((b"dev/null", b"dev/null"), (b"a", b"b")),
                 attr_set=8), "root_binds",
     {"src_root": S(b"/oldroot"), "pairs": S(b"dev/null"), "root": S(b"/newroot"), "count": 2,
      "attr_set": 8}),
    (O.RootMount(b"tmpfs", b"/newroot", b"tmp", source=b"tmpfs", attrs=2,
                 options=(("size", "1m"), ("noswap", None))), "root_mount",
     {"fstype": S(b"tmpfs"), "source": S(b"tmpfs"), "root": S(b"/newroot"), "target": S(b"tmp"),
      "attrs": 2, "n_options": 2}),
    (O.RootMask(b"/newroot", b"proc/kcore", b"dev/null", b"/oldroot"), "root_mask",
     {"root": S(b"/newroot"), "path": S(b"proc/kcore"), "null": S(b"dev/null"),
      "null_root": S(b"/oldroot")}),
    (R.RootMasks(b"/newroot", (b"proc/kcore", b"proc/keys"), b"dev/null"), "root_masks",
     {"root": S(b"/newroot"), "paths": S(b"proc/kcore"), "null": S(b"dev/null"), "count": 2}),
    (O.RootChdir(b"/", b"home"), "root_chdir", {"root": S(b"/"), "path": S(b"home")}),
]


@pytest.mark.parametrize("op,member,expected", CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_python_packs_each_slot_where_c_reads_it_by_name(op: P.Op, member: str,
                                                          expected: dict[str, Any]) -> None:
    plan = P.Plan(ops=[op, O.Exec((b"/x",))], argv=[b"x"], envp=[])
    inst = plan.pack().instantiate()
    c = inst.c   # its memory lives as long as inst
    slots = getattr(c.ops[0], member)
    for name, want in expected.items():
        got = getattr(slots, name)
        if isinstance(want, bytes):
            assert got != 0 and ffi.string(c.arena + got) == want, name
        else:
            assert got == want, name
    # Slots the layout does not name (_a*, _v*) stay zero.
    for name, field in ffi.typeof(slots).fields:
        if name.startswith("_"):
            value = getattr(slots, name)
            values = list(value) if field.type.kind == "array" else [value]
            assert values == [0] * len(values), name


def test_every_layout_is_four_offsets_and_four_numbers() -> None:
    members = dict(ffi.typeof("struct iso_op").fields)
    assert ffi.offsetof("struct iso_op", "setns") == 16
    for name, field in members.items():
        if field.offset < 16:
            continue
        assert field.offset == 16 and ffi.sizeof(field.type) == 48, name
        for fname, f in field.type.fields:
            kind = f.type.item.cname if f.type.kind == "array" else f.type.cname
            assert kind == ("uint32_t" if f.offset < 16 else "uint64_t"), (name, fname)


def test_batched_kinds_have_their_own_kind() -> None:
    kinds = {cls: cls.kind for cls in (O.RootMkdir, R.RootMkdirs, O.RootBind, R.RootBinds,
                                        O.RootMask, R.RootMasks)}
    assert len(set(kinds.values())) == 6
    assert P.OP_CLASSES[P.lib.ISO_OP_ROOT_MKDIRS] is R.RootMkdirs
    assert P.OP_CLASSES[P.lib.ISO_OP_ROOT_BINDS] is R.RootBinds
    assert P.OP_CLASSES[P.lib.ISO_OP_ROOT_MASKS] is R.RootMasks
