"""``PackedPlan.wire``: a spawn's plan as bytes for the ``isolate-oci`` front end.

Every fd of the plan, its own and the spawn's, travels as a hole the
receiver fills with the numbers the fds have there: read back with the
receiver's numbers, the plan is the one ``instantiate`` gives with them.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isolate import _ops as O
from isolate import _plan as P
from isolate import errors
from isolate._native import ffi

small_fds = st.integers(3, 40)
# A per-spawn fd (the index into fd_names) or a fixed one of the plan's own.
fd_ref = st.one_of(st.integers(0, 3).map(P.SpawnFd), small_fds)
paths = st.binary(min_size=1, max_size=20).filter(lambda b: b"\0" not in b)

FD_OPS = st.one_of(
    st.builds(O.SetNs, fd=fd_ref, nstype=st.sampled_from(sorted(P.NSTYPES.values()))),
    st.builds(O.Chdir, fd=fd_ref),
    st.builds(O.SetCtty, fd=fd_ref),
    st.builds(O.FdMap, pairs=st.lists(st.tuples(fd_ref, st.integers(0, 9)), max_size=4).map(tuple)),
    st.builds(O.Mkdir, path_=paths, mode=st.integers(0, 0o777), exist_ok=st.booleans()),
    st.builds(O.ExecAt, fd=fd_ref, path_=st.just(b""), flags=st.just(P.AT_EMPTY_PATH)),
)


def _plan(ops: list[P.Op], join: list[int], netns: int, cgroup: int, envp: list[bytes] | None,
          uid_map: bytes | None) -> P.Plan:
    return P.Plan(ops=[*ops, O.Exec(candidates=(b"/bin/true",))], argv=[b"true", b"a b"], envp=envp,
                  join_fds=tuple(join), netns_fd=netns, cgroup_fd=cgroup, uid_map=uid_map,
                  gid_map=b"0 0 1\n" if uid_map else None, fd_names=("a", "b", "c", "d"),
                  clone_flags=P.NSTYPES["pid"], flags=P.PLAN_CLOSE_FDS | P.PLAN_TIMING)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(FD_OPS, max_size=8), join=st.lists(fd_ref, max_size=3),
       netns=st.one_of(st.just(-1), fd_ref), cgroup=st.one_of(st.just(-1), fd_ref),
       envp=st.none() | st.lists(paths, max_size=3), uid_map=st.none() | st.just(b"0 1000 1\n"),
       spawn=st.lists(st.one_of(st.just(-1), st.integers(50, 60)), min_size=4, max_size=4),
       hold=st.booleans())
def test_wire_then_unwire_is_instantiate_with_the_receivers_fds(
        ops: list[P.Op], join: list[int], netns: int, cgroup: int, envp: list[bytes] | None,
        uid_map: bytes | None, spawn: list[int], hold: bool) -> None:
    packed = _plan(ops, join, netns, cgroup, envp, uid_map).pack()
    data, sent = packed.wire(spawn, hold=hold)
    assert len(sent) == len(set(sent)) and all(fd >= 0 for fd in sent)
    # The sender's own numbers: exactly what instantiate gives.
    same = P.unwire(data, sent)
    inst = packed.instantiate(spawn, hold=hold)
    c = inst.c
    assert same.ops == bytes(ffi.buffer(c.ops, 64 * c.n_ops))
    assert same.arena == bytes(ffi.buffer(c.arena, c.arena_len))
    assert same.flags == (c.flags & ~P.PLAN_TIMING) and bool(same.flags & P.PLAN_HOLD) == hold
    assert same.clone_flags == c.clone_flags
    assert same.join_fds == tuple(c.join_fds[i] for i in range(c.n_join_fds))
    assert (same.netns_fd, same.cgroup_fd) == (c.netns_fd, c.cgroup_fd)
    # What the child program inherits: the fds the plan names (instantiate also keeps a
    # spawn's fd that no op names).
    assert set(same.keep_fds) <= {c.keep_fds[i] for i in range(c.n_keep_fds)}
    assert set(same.keep_fds) == ({f for op in inst.plan.ops for f in op.spawn_fds() if f >= 0}
                                  | {f for f in (*same.join_fds, same.netns_fd, same.cgroup_fd) if f >= 0})
    assert same.argv == (b"true", b"a b") and same.envp == (tuple(envp) if envp is not None else None)
    assert same.uid_map == uid_map
    # The receiver's numbers (each fd moved by 1000): every fd the plan names moves, nothing else.
    moved = P.unwire(data, [fd + 1000 for fd in sent])
    want = packed.plan.bind(spawn)
    got = P.unpack_ops(moved.ops, moved.arena)
    assert len(got) == len(want.ops)
    for g, w in zip(got, want.ops):
        assert list(g.spawn_fds()) == [f + 1000 if f >= 0 else f for f in w.spawn_fds()]
    assert moved.join_fds == tuple(f + 1000 if f >= 0 else f for f in want.join_fds)
    assert moved.netns_fd == (want.netns_fd + 1000 if want.netns_fd >= 0 else -1)
    assert moved.cgroup_fd == (want.cgroup_fd + 1000 if want.cgroup_fd >= 0 else -1)


def test_every_fd_of_the_plan_is_sent_once_and_no_other() -> None:
    plan = P.Plan(ops=[O.SetNs(fd=7, nstype=P.NSTYPES["uts"]), O.SetNs(fd=P.SpawnFd(0), nstype=P.NSTYPES["ipc"]),
                       O.FdMap(pairs=((7, 0), (P.SpawnFd(1), 1))), O.Exec(candidates=(b"/bin/true",))],
                  argv=[b"true"], envp=None, cgroup_fd=9, join_fds=(P.SpawnFd(0),), fd_names=("x", "y"))
    data, sent = plan.pack().wire([12, 13])
    assert sent == [7, 12, 13, 9]
    head = P.WIRE_HEADER.unpack_from(data)
    assert head[0] == P.WIRE_MAGIC and head[11] == 4 and head[14] == 4  # n_fds, n_holes


def test_unwire_refuses_what_is_not_a_whole_plan() -> None:
    plan = P.Plan(ops=[O.SetNs(fd=P.SpawnFd(0), nstype=P.NSTYPES["uts"]), O.Exec(candidates=(b"/x",))],
                  argv=[b"x"], envp=None, fd_names=("x",))
    data, sent = plan.pack().wire([5])
    with pytest.raises(errors.ProtocolError):
        P.unwire(data[:-8], sent)
    with pytest.raises(errors.ProtocolError):
        P.unwire(data, [])
    bad = bytearray(data)
    struct.pack_into("=Ii", bad, len(bad) - 8, 10_000, 0)    # a hole past the ops and arena
    with pytest.raises(errors.ProtocolError):
        P.unwire(bytes(bad), sent)
    with pytest.raises(ValueError):
        plan.pack().wire([])
