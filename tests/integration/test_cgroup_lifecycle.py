"""Cgroup lifecycle: many cycles leave nothing behind; hybrid hosts; bad input creates nothing."""

from __future__ import annotations

import os
import signal
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


@pytest.mark.cgroup1
@pytest.mark.slow
def test_thousand_create_attach_remove_cycles_leave_nothing(parent: str) -> None:
    limits = Limits(memory_max=64 << 20, pids_max=64, cpus=1.0)
    for i in range(1000):
        with Cgroup.create(f"c{i}", parent=parent, limits=limits) as cg:
            p = isolate.spawn(["/bin/true"], cgroup=cg)
            assert p.wait(timeout=60) == 0
    assert _leftovers(parent) == []


@pytest.mark.cgroup1
def test_parents_it_made_are_removed_but_shared_ones_survive(parent: str) -> None:
    a = Cgroup.create("a", parent=f"{parent}/deep")
    b = Cgroup.create("b", parent=f"{parent}/deep")
    a.close()
    # b still lives under the shared parent: closing a must not break it.
    assert os.path.isdir(b.path)
    p = isolate.spawn(["/bin/true"], cgroup=b)
    assert p.wait(timeout=60) == 0
    b.close()
    assert _leftovers(parent) == []


@pytest.mark.cgroup1
def test_a_new_cgroup_namespace_is_rooted_at_the_group(parent: str) -> None:
    """In its own cgroup namespace a child sees its group as ``/`` in every hierarchy, as in runc;
    from outside, /proc/<pid>/cgroup shows the group's real path."""
    with Cgroup.create("ns", parent=parent, limits=Limits(pids_max=20, memory_max=64 << 20)) as cg:
        p = isolate.spawn(["/bin/sh", "-c", "cat /proc/self/cgroup; echo end; read x; exit 0"], cgroup=cg,
                          namespaces={"cgroup", "pid", "mnt"}, stdin=isolate.PIPE, stdout=isolate.PIPE)
        try:
            inside = [ln.decode().strip() for ln in iter(p.stdout.readline, b"end\n")
                      if b"pids" in ln or b"memory" in ln]
            assert len(inside) == 2 and all(ln.endswith(":/") for ln in inside), inside
            outside = Path(f"/proc/{p.pid}/cgroup").read_text().splitlines()
            for ctl in ("pids", "memory"):
                line = next(ln for ln in outside if ln.split(":")[1] == ctl)
                assert line.endswith(f"/{parent}/ns"), outside
        finally:
            p.stdin.close()
            assert p.wait(timeout=60) == 0
            p.stdout.close()


@pytest.mark.cgroup1
def test_a_failed_join_names_the_step_and_leaves_no_child(parent: str) -> None:
    with Cgroup.create("cs", parent=parent, controllers={"cpuset"}) as cg:
        # A v1 cpuset with no cpus admits no task: the child's join fails.
        (path,) = cg.paths.values()
        Path(path, "cpuset.cpus").write_text("\n")
        with pytest.raises(isolate.CgroupJoinError) as e:
            isolate.spawn(["/bin/true"], cgroup=cg, namespaces={"cgroup"})
        assert isinstance(e.value, isolate.CgroupError) and isinstance(e.value, isolate.SetupError)
        assert e.value.errno == 28 and e.value.step == 0 and "join cgroup" in e.value.op
        assert cg.procs() == []


@pytest.mark.cgroup1
def test_name_clash_is_an_error_and_removes_nothing_of_the_other(parent: str) -> None:
    with Cgroup.create("same", parent=parent) as first:
        with pytest.raises(isolate.CgroupError) as e:
            Cgroup.create("same", parent=parent)
        assert e.value.errno == 17
        assert os.path.isdir(first.path)


@pytest.mark.cgroup1
def test_hybrid_unified_group_gets_clone_into_cgroup_and_v1(parent: str) -> None:
    layout = detect()
    if layout.kind != "hybrid":
        pytest.skip(f"host layout is {layout.kind}, not hybrid")
    with Cgroup.create("hy", parent=parent, controllers={"memory", "pids", "unified"},
                       limits=Limits(pids_max=10)) as cg:
        v2_fd, fds = cg._spawn_target()
        assert v2_fd >= 0 and len(fds) == 2
        p = isolate.spawn(["/bin/sh", "-c", "cat /proc/self/cgroup; sleep 1000"], cgroup=cg,
                          stdout=isolate.PIPE)
        try:
            want = f"/{parent}/hy"
            lines: list[str] = []
            while not (f"0::{want}" in lines and any(ln.endswith(f":pids:{want}") for ln in lines)):
                line = p.stdout.readline().decode()
                assert line, lines
                lines.append(line.strip())
            # freeze/kill go through the unified hierarchy's cgroup.freeze / cgroup.kill.
            cg.freeze()
            assert Path(cg.path, "cgroup.events").read_text().count("frozen 1") == 1
            cg.thaw()
            assert cg.stats().psi is not None
            cg.kill()
            assert p.wait(timeout=60) == -signal.SIGKILL
        finally:
            p.kill()
            p.wait(timeout=60)
            p.stdout.close()


@pytest.mark.cgroup1
def test_bad_input_creates_nothing(parent: str) -> None:
    for kwargs in ({"parent": f"{parent}/../escape"}, {"parent": "/tmp/not-a-cgroup"},
                   {"parent": parent, "controllers": {"memory", "nonsense"}}):
        with pytest.raises(ConfigError):
            Cgroup.create("x", **kwargs)
    with pytest.raises(ConfigError, match="pids_max"):
        Cgroup.create("x", parent=parent, limits=Limits(pids_max=-1))
    with pytest.raises(ConfigError, match="cpuset_cpus"):
        Cgroup.create("x", parent=parent, limits=Limits(cpuset_cpus="0-4095"))
    assert _leftovers(parent) == []


def test_detect_agrees_with_mounts() -> None:
    layout = detect()
    mounts = [ln.split() for ln in Path("/proc/self/mounts").read_text().splitlines()]
    v1 = {m[1]: set(m[3].split(",")) for m in mounts if m[2] == "cgroup"}
    v2 = [m[1] for m in mounts if m[2] == "cgroup2"]
    for h in layout.v1.values():
        assert h.mount in v1 and h.controllers <= v1[h.mount]
    assert (layout.v2 is not None) == bool(v2)
    assert layout.kind == ("hybrid" if layout.v1 and v2 else "v1" if layout.v1 else "v2")
    own = Path("/proc/self/cgroup").read_text()
    if layout.v2 is not None:
        assert f"0::{layout.v2.own}" in own.splitlines()


@pytest.mark.cgroup1
def test_opening_a_partly_missing_group_touches_nothing_of_it(parent: str) -> None:
    """``Cgroup.open`` of a group one of whose v1 directories is gone (someone removed it)
    fails naming it, and leaves the rest of the group and its processes as they were:
    a failed open used to kill them and remove the directories it had opened."""
    with Cgroup.create("partly", parent=parent, limits=Limits(pids_max=10)) as cg:
        p = isolate.spawn(["sleep", "60"], cgroup=cg)
        try:
            paths = sorted(cg.paths.values())
            gone = next(path for path in paths if "/pids/" in path)
            # Move the process out of that one hierarchy, then remove its directory.
            Path("/sys/fs/cgroup/pids/cgroup.procs").write_text(str(p.pid))
            os.rmdir(gone)
            with pytest.raises(isolate.CgroupError) as info:
                Cgroup.open("partly", parent=parent)
            assert info.value.filename == gone or gone in str(info.value)
            assert all(os.path.isdir(path) for path in paths if path != gone)
            assert p.poll() is None
        finally:
            p.kill()
            p.wait()
