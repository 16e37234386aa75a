"""The short cuts of the create-spawn-remove cycle keep their promises.

``Cgroup.create`` remembers how a set of arguments resolves against a layout,
skips rewriting a v1 ``cpu.cfs_period_us`` that a new group already holds, and
``close()`` tries ``rmdir`` before reading the pid list.  These tests check
what each short cut could break: validation still runs every time, limits
still land (also when a later ``apply()`` changes the period), and a group
that still holds processes is still emptied and removed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import isolate
from support import cgroup_leftovers as _leftovers
from isolate import Cgroup, ConfigError, Limits
from isolate.cgroup import detect


@pytest.fixture
def parent(cgroup_parent: str) -> str:
    """A fresh ``isolate-test-*`` parent name, checked for leftovers (tests/conftest.py)."""
    return cgroup_parent


def _cpu(cg: Cgroup, name: str) -> str:
    for path in cg.paths.values():
        if os.path.exists(os.path.join(path, name)):
            return Path(path, name).read_text().strip()
    raise AssertionError(f"{name} not found in {cg.paths}")


@pytest.mark.cgroup1
def test_v1_cpu_quota_and_period_hold_on_create_and_on_later_apply(parent: str) -> None:
    with Cgroup.create("dflt", parent=parent, limits=Limits(cpus=0.5)) as cg:
        assert (_cpu(cg, "cpu.cfs_quota_us"), _cpu(cg, "cpu.cfs_period_us")) == ("50000", "100000")
    with Cgroup.create("short", parent=parent, limits=Limits(cpus=0.5, cpu_period_us=20000)) as cg:
        assert (_cpu(cg, "cpu.cfs_quota_us"), _cpu(cg, "cpu.cfs_period_us")) == ("10000", "20000")
        # No longer a new group: going back to the default period must be written.
        cg.apply(Limits(cpus=0.25))
        assert (_cpu(cg, "cpu.cfs_quota_us"), _cpu(cg, "cpu.cfs_period_us")) == ("25000", "100000")
    # Limits applied after an empty create: the group is no longer new either.
    with Cgroup.create("later", parent=parent, controllers={"cpu"}) as cg:
        cg.apply(Limits(cpu_period_us=50000))
        cg.apply(Limits(cpus=2.0))
        assert (_cpu(cg, "cpu.cfs_quota_us"), _cpu(cg, "cpu.cfs_period_us")) == ("200000", "100000")


@pytest.mark.cgroup1
def test_the_same_arguments_are_validated_on_every_create(parent: str) -> None:
    for _ in range(2):
        with pytest.raises(ConfigError, match="nonsense"):
            Cgroup.create("x", parent=parent, controllers={"pids", "nonsense"})
        with pytest.raises(ConfigError, match="pids_max"):
            Cgroup.create("x", parent=parent, limits=Limits(pids_max=-1))
    assert _leftovers(parent) == []
    # Two shapes in a row, then the first again: each joins its own hierarchies.
    for ctl, want in (({"pids"}, {"pids"}), ({"memory", "pids"}, {"memory", "pids"}),
                      ({"pids"}, {"pids"})):
        with Cgroup.create("shape", parent=parent, controllers=ctl) as cg:
            got = {os.path.basename(m) for m in cg.paths}
            assert got == want, cg.paths
    # An equal but distinct Layout object resolves the same way.
    with Cgroup.create("fresh-layout", parent=parent, controllers={"pids"}, layout=detect()) as cg:
        assert {os.path.basename(m) for m in cg.paths} == {"pids"}


@pytest.mark.cgroup1
@pytest.mark.parametrize("controllers", [None, {"memory", "pids", "cpu"}], ids=["default", "three"])
def test_close_empties_and_removes_a_group_that_still_runs_processes(
        parent: str, controllers: set[str] | None) -> None:
    # The first rmdir fails (EBUSY) here, so close() must fall back to killing.
    cg = Cgroup.create("busy", parent=parent, limits=Limits(pids_max=20, cpus=1.0),
                       controllers=controllers)
    dirs = list(cg.paths.values())
    p = isolate.spawn(["/bin/sh", "-c", "sleep 1000 & exec sleep 1000"], cgroup=cg)
    deadline = time.monotonic() + 60
    while len(cg.procs()) < 2:
        assert time.monotonic() < deadline, "the two sleeps never showed up in the group"
        time.sleep(0.02)
    cg.close()
    assert p.wait(timeout=60) == -signal.SIGKILL
    assert [d for d in dirs if os.path.exists(d)] == []
    assert _leftovers(parent) == []


@pytest.mark.cgroup1
def test_close_after_the_child_exited_removes_every_hierarchy(parent: str) -> None:
    # The fast path: the first rmdir succeeds, the others must still be removed.
    cg = Cgroup.create("done", parent=parent, limits=Limits(memory_max=64 << 20, pids_max=20, cpus=0.5))
    dirs = list(cg.paths.values())
    assert len(dirs) >= 3
    assert isolate.spawn(["/bin/true"], cgroup=cg).wait(timeout=60) == 0
    cg.close()
    assert [d for d in dirs if os.path.exists(d)] == []
    assert cg.closed
