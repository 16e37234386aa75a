"""CgroupPool: every taken group is fresh and limited, given back groups are removed, nothing is left."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import cgroup_leftovers as _leftovers

import isolate
from isolate import CgroupPool, ConfigError, Limits

LIMITS = Limits(memory_max=64 << 20, pids_max=20)
BOTH = [pytest.param(None, marks=pytest.mark.cgroup1, id="v1"),
        pytest.param(None, marks=pytest.mark.cgroupv2, id="v2")]


def _limit(cg: isolate.Cgroup, *names: str) -> str:
    for path in cg.paths.values():
        for name in names:
            if os.path.exists(os.path.join(path, name)):
                return Path(path, name).read_text().strip()
    raise AssertionError(f"none of {names} in {cg.paths}")


@pytest.mark.parametrize("version", BOTH)
def test_taken_groups_are_fresh_limited_and_removed(cgroup_parent: str, version: None) -> None:
    seen: list[isolate.Cgroup] = []
    with CgroupPool(parent=cgroup_parent, limits=LIMITS, size=2) as pool:
        for _i in range(6):
            with pool.take() as cg:
                seen.append(cg)
                assert _limit(cg, "pids.max") == "20"
                assert _limit(cg, "memory.limit_in_bytes", "memory.max") == str(64 << 20)
                r = isolate.run(["/bin/cat", "/proc/self/cgroup"], cgroup=cg, capture_output=True)
                assert f"/{cgroup_parent}/{cg.name}" in r.stdout.decode()
                assert not any(c.name == cg.name for c in seen[:-1])  # never handed out twice
            assert cg.closed
    # The pool's close() waited for every removal: no group and no parent is left.
    assert _leftovers(cgroup_parent) == []


@pytest.mark.cgroup1
def test_a_group_given_back_with_a_process_inside_is_emptied_and_removed(cgroup_parent: str) -> None:
    with CgroupPool(parent=cgroup_parent, limits=LIMITS, size=1) as pool:
        cg = pool.take()
        p = isolate.spawn(["/bin/sleep", "1000"], cgroup=cg)
        try:
            cg.close()   # queued: the pool's thread kills the sleeper, then removes the group
            assert p.wait(timeout=60) == -9
        finally:
            p.close()
    assert _leftovers(cgroup_parent) == []


@pytest.mark.cgroup1
def test_bad_input_raises_in_the_constructor_and_leaves_nothing(cgroup_parent: str) -> None:
    threads = threading.active_count()
    for kwargs, needle in (({"size": 0}, "size"), ({"size": True}, "size"),
                           ({"limits": {"pids_max": 5}}, "limits"),
                           ({"controllers": {"pids", "nonsense"}}, "nonsense"),
                           ({"parent": "/tmp/not-a-cgroup"}, "not-a-cgroup' is outside")):
        with pytest.raises(ConfigError, match=needle):
            CgroupPool(**{"parent": cgroup_parent, **kwargs})  # type: ignore[arg-type]
    assert threading.active_count() == threads
    assert _leftovers(cgroup_parent) == []


@pytest.mark.cgroup1
def test_a_closed_pool_refuses_take_and_its_taken_groups_still_close(cgroup_parent: str) -> None:
    pool = CgroupPool(parent=cgroup_parent, size=1)
    cg = pool.take()
    pool.close()
    with pytest.raises(ConfigError, match="closed"):
        pool.take()
    assert os.path.isdir(cg.path)
    cg.close()   # the pool is gone: removed inline
    assert _leftovers(cgroup_parent) == []


@pytest.mark.cgroup1
def test_a_container_takes_a_fresh_group_from_a_pool_and_hands_it_back(cgroup_parent: str) -> None:
    with CgroupPool(parent=cgroup_parent, limits=LIMITS, size=2) as pool:
        names = []
        for _i in range(3):
            with isolate.Container(cgroup=pool) as c:
                r = c.run(["/bin/true"])
                assert r.returncode == 0, r
                assert c.cgroup is not None and c.cgroup.limits == LIMITS
                assert c.cgroup.path.endswith(f"/{cgroup_parent}/{c.cgroup.name}")
                names.append(c.cgroup.name)
            assert c.cgroup is None   # handed back on close
        assert len(set(names)) == 3
        # Without a user namespace the pool's limits decide CAP_MKNOD, as Limits would.
        c = isolate.Container(cgroup=pool, namespaces=isolate.DEFAULT_NAMESPACES - {"user"})
        assert c.capabilities is not None and "CAP_MKNOD" not in c.capabilities
        c.close()
    assert _leftovers(cgroup_parent) == []


@pytest.mark.cgroup1
def test_containers_from_a_pool_share_one_root_plan_unless_it_shows_the_group(cgroup_parent: str) -> None:
    # Each container gets a new group; only a cgroupfs mount puts the group's paths in
    # the root's ops, so without one every container reuses the same ops.
    for rootfs, per_group in ((isolate.RootFS.host(), False), (isolate.RootFS.host().cgroupfs(), True)):
        with CgroupPool(parent=cgroup_parent, limits=LIMITS, size=2) as pool:
            seqs = []
            for _i in range(2):
                with isolate.Container(rootfs=rootfs, cgroup=pool) as c:
                    c._ensure_cgroup()
                    assert c.cgroup is not None
                    seqs.append((c._root_ops(c.cwd, None)[0], c.cgroup.name))
                    if per_group:   # and it still shows its own group
                        r = c.run(["/bin/sh", "-c", "cat /sys/fs/cgroup/pids/pids.max"])
                        assert r.stdout == b"20\n", r   # LIMITS.pids_max
            (first, g1), (second, g2) = seqs
            assert g1 != g2
            assert (first is not second and first != second) if per_group else first is second
    assert _leftovers(cgroup_parent) == []


@pytest.mark.cgroup1
def test_a_program_that_dies_with_an_open_pool_leaves_no_group(cgroup_parent: str) -> None:
    """An uncaught exception with a pool open: its groups (made by the pool, never seen by the
    caller) are removed when the interpreter exits."""
    code = ("import isolate\n"
            f"pool = isolate.CgroupPool(parent={cgroup_parent!r}, size=3)\n"
            "with pool.take() as cg:\n"
            "    isolate.spawn(['/bin/true'], cgroup=cg).wait()\n"
            "raise SystemExit('dying with the pool open')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "dying with the pool open" in r.stderr, r.stderr
    assert _leftovers(cgroup_parent) == []
