"""Plan packing: what Python packs is exactly what the C child will read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isolate import _ops as O
from isolate import _plan as P
from isolate import errors
from isolate._native import ffi

paths = st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b)
maybe_paths = st.none() | paths
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
fds = st.integers(0, 2**31 - 1)

OPS = st.one_of(
    st.builds(O.SetNs, fd=fds, nstype=st.sampled_from(sorted(P.NSTYPES.values()))),
    st.builds(O.Unshare, flags=u64),
    st.builds(O.Mount, source=maybe_paths, target=paths, fstype=maybe_paths, flags=u64,
              data=maybe_paths),
    st.builds(O.Bind, source=paths, target=paths, recursive=st.booleans(), readonly=st.booleans()),
    st.builds(O.MountSetattr, target=paths, attr_set=u64, attr_clr=u64, propagation=u64,
              recursive=st.booleans()),
    st.builds(O.Mkdir, path_=paths, mode=st.integers(0, 0o7777), exist_ok=st.booleans()),
    st.builds(O.Mknod, path_=paths, mode=u32, dev=u64, exist_ok=st.booleans()),
    st.builds(O.Symlink, target=paths, path_=paths, exist_ok=st.booleans()),
    st.builds(O.WriteFile, path_=paths, data=st.binary(max_size=100), mode=st.integers(0, 0o7777),
              oflags=u32),
    st.builds(O.PivotRoot, new_root=paths, chroot_fallback=st.booleans()),
    st.builds(O.Chroot, value=paths),
    st.builds(O.SetHostname, value=paths),
    st.builds(O.SetDomainname, value=paths),
    st.builds(O.Chdir, path_=paths),
    st.builds(O.Chdir, fd=fds),
    st.builds(O.Umask, mask=st.integers(0, 0o777)),
    st.builds(O.SetRlimit, resource=st.integers(0, 15), soft=u64, hard=u64),
    st.builds(O.SetSid),
    st.builds(O.SetPgid),
    st.builds(O.SetCtty, fd=fds),
    st.builds(O.FdMap, pairs=st.lists(st.tuples(fds, fds), max_size=8).map(tuple)),
    st.builds(O.CloseFds, keep=st.lists(fds, max_size=8, unique=True).map(lambda k: tuple(sorted(k)))),
    st.builds(O.SetGroups, gids=st.lists(u32, max_size=8).map(tuple)),
    st.builds(O.SetResGid, rgid=u32, egid=u32, sgid=u32),
    st.builds(O.SetResUid, ruid=u32, euid=u32, suid=u32),
    st.builds(O.KeepCaps, on=st.integers(0, 1)),
    st.builds(O.CapBound, drop=u64, last_cap=st.integers(0, 63)),
    st.builds(O.CapSet, effective=u64, permitted=u64, inheritable=u64),
    st.builds(O.CapAmbient, raise_=u64, last_cap=st.integers(0, 63)),
    st.builds(O.NoNewPrivs),
    st.builds(O.PdeathSig, signal=st.integers(1, 64)),
    st.builds(O.Seccomp, program=st.binary(min_size=8, max_size=64).filter(lambda b: len(b) % 8 == 0),
              flags=u64),
    st.builds(O.LoopbackUp),
    st.builds(O.NetnsJoin),
    st.builds(O.Exec, candidates=st.lists(paths, min_size=1, max_size=4).map(tuple)),
    st.builds(O.ExecAt, fd=fds, path_=st.just(b"") | paths, flags=u64),
)


def test_every_op_kind_has_a_strategy() -> None:
    # A new op kind in api.h must be added to OP_CLASSES (checked at import) and here.
    assert len(P.OP_CLASSES) == P.lib.ISO_OP_KIND_MAX - 1


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=12))
def test_pack_then_read_back_gives_the_ops(ops: list[P.Op]) -> None:
    plan = P.Plan(ops=ops, argv=[b"x"], envp=None)
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    assert c.n_ops == len(ops)
    # Read what C will read: the op array and the arena, through the cdata pointers.
    ops_bytes = bytes(ffi.buffer(c.ops, 64 * len(ops))) if ops else b""
    arena = bytes(ffi.buffer(c.arena, c.arena_len))
    assert P.unpack_ops(ops_bytes, arena) == ops


@given(st.lists(st.builds(O.Mount, source=maybe_paths, target=paths, fstype=maybe_paths, flags=u64,
                          data=maybe_paths), min_size=1, max_size=6))
def test_arena_strings_are_nul_terminated_and_offset_zero_is_none(ops: list[O.Mount]) -> None:
    plan = P.Plan(ops=list(ops), argv=[b"x"], envp=None)
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    arena = bytes(ffi.buffer(c.arena, c.arena_len))
    raw = bytes(ffi.buffer(c.ops, 64 * len(ops)))
    assert arena[0] == 0
    for i, op in enumerate(ops):
        offsets = P.OP_STRUCT.unpack_from(raw, 64 * i)[4:8]
        for off, value in zip(offsets, (op.source, op.target, op.fstype, op.data)):
            if value is None:
                assert off == 0
            else:
                # What C's plan_str() sees: the bytes up to the first NUL.
                assert arena[off:arena.index(0, off)] == value


def test_int_arrays_are_aligned_for_c() -> None:
    plan = P.Plan(ops=[O.Mkdir(path_=b"/abc"), O.SetGroups(gids=(1, 2, 3)),
                       O.Seccomp(program=b"\0" * 16)], argv=[b"x"], envp=None)
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    ops = P.unpack_ops(bytes(ffi.buffer(c.ops, 64 * 3)), bytes(ffi.buffer(c.arena, c.arena_len)))
    raw = bytes(ffi.buffer(c.ops, 64 * 3))
    for i in (1, 2):
        off = P.OP_STRUCT.unpack_from(raw, 64 * i)[4]
        assert off % 8 == 0
    assert ops[1] == O.SetGroups(gids=(1, 2, 3))


def test_argv_and_envp_are_null_terminated() -> None:
    plan = P.Plan(ops=[O.Exec((b"/bin/true",))], argv=[b"a", b"bc"], envp=[b"K=V"])
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    assert ffi.string(c.argv[0]) == b"a" and ffi.string(c.argv[1]) == b"bc"
    assert c.argv[2] == ffi.NULL
    assert ffi.string(c.envp[0]) == b"K=V" and c.envp[1] == ffi.NULL
    assert P.Plan(ops=[], argv=[b"a"], envp=None).pack().instantiate().c.envp == ffi.NULL


def test_describe_names_the_step() -> None:
    assert O.Mount(b"proc", b"/proc", b"proc").describe() == "mount proc on /proc"
    assert O.Bind(b"/usr", b"/r/usr", readonly=True).describe() == "bind read-only /usr on /r/usr"
    assert O.SetNs(fd=5, nstype=P.NSTYPES["net"]).describe() == "setns net (fd 5)"
    assert O.Exec((b"/bin/true",)).describe() == "execve /bin/true"


@pytest.mark.parametrize("cls", sorted(P.OP_CLASSES.values(), key=lambda c: c.kind),
                         ids=lambda c: c.__name__)
def test_each_op_kind_maps_to_a_setup_error_subclass(cls: type[P.Op]) -> None:
    assert issubclass(cls.error, errors.SetupError)


def test_struct_layout_matches_c() -> None:
    assert ffi.sizeof("struct iso_op") == P.OP_STRUCT.size == 64
    assert ffi.sizeof("struct iso_report") == P.REPORT_STRUCT.size == 32
    assert ffi.offsetof("struct iso_op", "setns") == 16
    assert ffi.offsetof("struct iso_op", "setns", "nstype") == 32
