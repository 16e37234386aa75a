"""The plan cache: identical spawns reuse one packed plan; anything that changes the plan misses."""

from __future__ import annotations

import os

import pytest

from isolate import ConfigError, IdMap
from isolate import _plan as P
from isolate import process as pr


def cached(argv: list[str], **options: object) -> P.Plan:
    return pr._cached_plan(argv, [], [0, 1, 2], dict(options))


def test_identical_options_reuse_the_packed_plan() -> None:
    a = cached(["/bin/true"], namespaces={"pid", "mnt"}, hostname=None)
    b = cached(["/bin/true"], namespaces={"mnt", "pid"}, hostname=None)
    assert a is b and a._packed is not None


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
    assert first.ops[-1] == P.Exec((b"/one/prog",))
    assert second.ops[-1] == P.Exec((b"/two/prog",))


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


def test_joined_namespaces_are_keyed_by_type_and_fd_number() -> None:
    class Ns:
        def __init__(self, type_: str, fd: int) -> None:
            self.type, self.fd = type_, fd

        def fileno(self) -> int:
            return self.fd

    a = cached(["/bin/true"], join=[Ns("uts", 0)])
    assert cached(["/bin/true"], join=[Ns("uts", 0)]) is a   # same fd, same plan
    assert cached(["/bin/true"], join=[Ns("uts", 1)]) is not a
    assert cached(["/bin/true"], join=[Ns("ipc", 0)]) is not a
    assert not any(isinstance(x, Ns) for k in pr._PLAN_CACHE for x in _flatten(k))


def _flatten(x: object) -> list[object]:
    if isinstance(x, (tuple, list, frozenset)):
        return [y for item in x for y in _flatten(item)]
    return [x]


def test_a_cgroup_of_the_same_shape_reuses_the_packed_plan_with_its_own_fds() -> None:
    class Cg:
        def __init__(self, v2: int, fds: tuple[int, ...]) -> None:
            self.v2, self.fds = v2, fds

        def _spawn_target(self) -> tuple[int, tuple[int, ...]]:
            return self.v2, self.fds

    a = cached(["/bin/true"], cgroup=Cg(-1, (5, 6)))
    assert cached(["/bin/true"], cgroup=Cg(-1, (5, 6))) is a
    assert a.ops[0] == P.CgroupJoin() and a.join_fds == (5, 6)
    # Another group of the same shape: the same ops and arena, its own fds in the struct.
    b = cached(["/bin/true"], cgroup=Cg(-1, (7, 8)))
    assert b is not a and b.ops is a.ops and b._packed[2] is a._packed[2]
    assert (b.join_fds, b._packed[0].n_join_fds) == ((7, 8), 2)
    assert [b._packed[0].join_fds[i] for i in range(2)] == [7, 8]
    assert [a._packed[0].join_fds[i] for i in range(2)] == [5, 6]   # the cached one is untouched
    c = cached(["/bin/true"], cgroup=Cg(9, (7, 8)))
    assert c._packed[0].cgroup_fd == 9 and a._packed[0].cgroup_fd == -1
    # Another shape (one hierarchy) is another plan.
    d = cached(["/bin/true"], cgroup=Cg(-1, (7,)))
    assert d.ops is not a.ops and d.join_fds == (7,)


def test_non_namespace_join_still_raises() -> None:
    with pytest.raises(ConfigError, match="is not a namespace"):
        cached(["/bin/true"], join=[object()])


def test_unhashable_option_values_fall_back_to_building() -> None:
    class Weird:
        __hash__ = None  # type: ignore[assignment]

    with pytest.raises(ConfigError):
        cached(["/bin/true"], hostname=Weird())


def test_cache_is_bounded() -> None:
    for i in range(pr._PLAN_CACHE_SIZE + 10):
        cached(["/bin/true", str(i)])
    assert len(pr._PLAN_CACHE) <= pr._PLAN_CACHE_SIZE


def test_euid_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    a = cached(["/bin/true"], namespaces={"user"})
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    b = cached(["/bin/true"], namespaces={"user"})
    assert a is not b
