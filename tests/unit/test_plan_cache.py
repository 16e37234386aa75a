"""The plan cache: equal configs share one packed plan; anything that changes the plan misses.

Keys are values (``ProcessSpec``, ``Isolation``, ``FdLayout``, ``Host``, ops): never an
object's identity, never a spawn's fd numbers, which each spawn supplies.
"""

from __future__ import annotations

import os

import pytest

from isolate import ConfigError, IdMap
from isolate import _ops as O
from isolate import _plan as P
from isolate import _cache, _plans
from isolate import process as pr
from isolate._planner import FdLayout


def cached(argv: list[str], *, maps: tuple[int, ...] = (), cgroup: tuple[bool, int] | None = None,
           ops: tuple[P.Op, ...] = (), **options: object) -> P.PackedPlan:
    spec, iso, _ = pr.specs(argv, **options)  # type: ignore[arg-type]
    return _plans.packed_process(spec, iso, FdLayout(maps=maps, cgroup=cgroup), ops)[1]


def test_identical_options_reuse_the_packed_plan() -> None:
    a = cached(["/bin/true"], namespaces={"pid", "mnt"}, hostname=None)
    b = cached(["/bin/true"], namespaces={"mnt", "pid"}, hostname=None)
    assert a is b


@pytest.mark.parametrize("change", [
    dict(namespaces={"pid"}), dict(env={"A": "1"}), dict(env={"A": "2"}), dict(umask=0o22),
    dict(rlimits={"nofile": 10}), dict(rlimits={"nofile": 11}),
    dict(namespaces={"user"}, uid_map=[IdMap(inside=0, outside=5)], gid_map=[IdMap(inside=0, outside=5)]),
])
def test_a_different_option_gets_a_different_plan(change: dict) -> None:
    base = cached(["/bin/true"])
    assert cached(["/bin/true"], **change) is not base


def test_path_change_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/one")
    first = cached(["prog"])
    monkeypatch.setenv("PATH", "/two")
    second = cached(["prog"])
    assert first.plan.ops[-1] == O.Exec((b"/one/prog",))
    assert second.plan.ops[-1] == O.Exec((b"/two/prog",))


def test_relative_cwd_follows_the_current_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    pa = cached(["/bin/true"], cwd=".")
    monkeypatch.chdir(tmp_path / "b")
    pb = cached(["/bin/true"], cwd=".")
    assert pa is not pb


def test_true_is_not_confused_with_one() -> None:
    cached(["/bin/true"], user=1)
    with pytest.raises(ConfigError):
        cached(["/bin/true"], user=True)


class Ns:
    def __init__(self, type_: str, fd: int) -> None:
        self.type, self.fd = type_, fd

    def fileno(self) -> int:
        return self.fd


def test_joined_namespaces_are_keyed_by_type_never_by_object_or_fd() -> None:
    a = cached(["/bin/true"], join=[Ns("uts", 0)])
    assert cached(["/bin/true"], join=[Ns("uts", 1)]) is a     # another fd: the same plan
    assert cached(["/bin/true"], join=[Ns("ipc", 0)]) is not a
    (setns,) = [op for op in a.plan.ops if type(op) is O.SetNs]
    assert type(setns.fd) is P.SpawnFd and a.plan.fd_names[setns.fd.index] == "join uts"
    # The spawn's own fd is written into a copy: the packed plan keeps its placeholder.
    one, seven = a.instantiate([1]), a.instantiate([7])
    assert a.plan.bind([7]).ops == seven.plan.ops != one.plan.ops
    assert not any(isinstance(x, Ns) for k in _cache.entries("process") for x in _flatten(k))


def _flatten(x: object) -> list[object]:
    if isinstance(x, (tuple, list, frozenset)):
        return [y for item in x for y in _flatten(item)]
    return [x]


def test_stdio_pipe_numbers_are_supplied_per_spawn() -> None:
    a = cached(["/bin/true"], maps=(1, 2))
    inst = a.instantiate([40, 41])
    (fdmap,) = [op for op in inst.plan.ops if type(op) is O.FdMap]
    assert fdmap.pairs == ((40, 1), (41, 2))
    # The packed bytes are untouched: what C reads for this spawn is a copy with its fds.
    back = P.unpack_ops(bytes(P.ffi.buffer(inst.c.ops, 64 * inst.c.n_ops)),
                        bytes(P.ffi.buffer(inst.c.arena, inst.c.arena_len)))
    assert back == list(inst.plan.ops)
    assert P.unpack_ops(a.ops, a.arena) == list(a.plan.ops)
    assert sorted(inst.c.keep_fds[i] for i in range(inst.c.n_keep_fds)) == [40, 41]


def test_a_cgroup_of_the_same_shape_shares_the_packed_plan_with_its_own_fds() -> None:
    a = cached(["/bin/true"], cgroup=(False, 2))
    assert cached(["/bin/true"], cgroup=(False, 2)) is a
    assert a.plan.ops[0] == O.CgroupJoin()
    first, second = a.instantiate([5, 6]), a.instantiate([7, 8])
    assert [second.c.join_fds[i] for i in range(2)] == [7, 8]
    assert [first.c.join_fds[i] for i in range(2)] == [5, 6]
    assert second.c.ops == first.c.ops       # nothing per spawn in the ops: one array for both
    c = cached(["/bin/true"], cgroup=(True, 2)).instantiate([9, 7, 8])
    assert c.c.cgroup_fd == 9 and first.c.cgroup_fd == -1
    # Another shape (one hierarchy) is another plan.
    d = cached(["/bin/true"], cgroup=(False, 1))
    assert d is not a and d.plan.join_fds != a.plan.join_fds


def test_non_namespace_join_still_raises() -> None:
    with pytest.raises(ConfigError, match="is not a namespace"):
        cached(["/bin/true"], join=[object()])


def test_bad_option_values_raise_before_any_lookup() -> None:
    class Weird:
        __hash__ = None  # type: ignore[assignment]

    with pytest.raises(ConfigError):
        cached(["/bin/true"], hostname=Weird())


def test_cache_is_bounded() -> None:
    for i in range(_cache.SIZE + 10):
        cached(["/bin/true", str(i)])
    assert _cache.size() <= _cache.SIZE


def test_euid_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    a = cached(["/bin/true"], namespaces={"user"})
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    b = cached(["/bin/true"], namespaces={"user"})
    assert a is not b


def test_timed_plans_are_cached_too_and_time_each_spawn_apart() -> None:
    a = cached(["/bin/true"], timings=True)
    assert cached(["/bin/true"], timings=True) is a
    one, two = a.instantiate(), a.instantiate()
    assert one.c.op_times != P.ffi.NULL and one.c.op_times != two.c.op_times
