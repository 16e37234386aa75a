"""The Limits fields OCI's linux.resources needs: the files each writes, per cgroup version.

``cgroup1`` cases run on this hybrid host (v1 controllers), ``cgroupv2`` ones in
../shared/vmtest/vm-run.  A field a version cannot apply raises
``UnsupportedError`` from ``Cgroup.create`` before any directory is made.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support import cgroup_leftovers

from isolate import Cgroup, Limits, UnsupportedError
from isolate.cgroup import detect


def _name() -> str:
    return f"isolate-test-{uuid.uuid4().hex[:8]}"


def _read(cg: Cgroup, controller: str, file: str) -> str:
    for mount, path in cg.paths.items():
        if Path(path, file).exists() and (controller in mount or cg.layout.kind == "v2"):
            return Path(path, file).read_text().strip()
    raise AssertionError(f"{file} not found in {cg.paths}")


@pytest.mark.cgroup1
def test_v1_files_are_written_as_given(cgroup_parent: str) -> None:
    limits = Limits(cpu_shares=512, memory_low=64 << 20, memory_swappiness=30, memory_oom_kill_disable=True,
                    cpu_burst_us=1000, cpu_rt_period_us=500000, cpu_rt_runtime_us=0)
    with Cgroup.create("fields", parent=cgroup_parent, limits=limits) as cg:
        assert _read(cg, "cpu", "cpu.shares") == "512"          # not 500 (a round trip through a weight)
        assert _read(cg, "memory", "memory.soft_limit_in_bytes") == str(64 << 20)
        assert _read(cg, "memory", "memory.swappiness") == "30"
        assert "oom_kill_disable 1" in _read(cg, "memory", "memory.oom_control")
        assert _read(cg, "cpu", "cpu.cfs_burst_us") == "1000"
        assert _read(cg, "cpu", "cpu.rt_period_us") == "500000"
    with Cgroup.create("weight", parent=cgroup_parent, limits=Limits(cpu_weight=39)) as cg:
        assert _read(cg, "cpu", "cpu.shares") == "998"          # cpu_weight still converts (crun's formula)
    # An idle group runs at the lowest weight (the kernel then reads cpu.shares as 3).
    with Cgroup.create("idle", parent=cgroup_parent, limits=Limits(cpu_idle=True)) as cg:
        assert _read(cg, "cpu", "cpu.idle") == "1"


@pytest.mark.cgroup1
def test_v1_refusals_make_nothing(cgroup_parent: str) -> None:
    for limits, field in ((Limits(net_cls_classid=1), "net_cls_classid"),
                          (Limits(memory_low=1 << 20, memory_high=2 << 20), "memory_low")):
        if field == "net_cls_classid" and "net_cls" in detect().v1:
            continue        # mounted: applied, not refused
        with pytest.raises(UnsupportedError, match=f"^Limits.{field}: "):
            Cgroup.create("refused", parent=cgroup_parent, limits=limits)
        assert cgroup_leftovers(cgroup_parent) == []


@pytest.mark.cgroupv2
def test_v2_files(cgroup_parent: str) -> None:
    limits = Limits(cpu_shares=512, memory_low=64 << 20, cpu_burst_us=1000,
                    unified=(("memory.high", "104857600"), ("pids.max", "10")))
    with Cgroup.create("fields", parent=cgroup_parent, limits=limits) as cg:
        assert _read(cg, "cpu", "cpu.weight") == "20"           # runc's and crun's conversion of 512
        assert _read(cg, "memory", "memory.low") == str(64 << 20)
        assert _read(cg, "cpu", "cpu.max.burst") == "1000"
        assert _read(cg, "memory", "memory.high") == "104857600"
        assert _read(cg, "pids", "pids.max") == "10"
    with Cgroup.create("idle", parent=cgroup_parent, limits=Limits(cpu_idle=True)) as cg:
        assert _read(cg, "cpu", "cpu.idle") == "1"


@pytest.mark.cgroupv2
@pytest.mark.parametrize("field, value", [("memory_swappiness", 30), ("memory_oom_kill_disable", True),
                                          ("cpu_rt_period_us", 500000), ("net_cls_classid", 1)])
def test_v2_refuses_v1_only_fields(cgroup_parent: str, field: str, value: object) -> None:
    with pytest.raises(UnsupportedError, match=f"^Limits.{field}: "):
        Cgroup.create("refused", parent=cgroup_parent, limits=Limits(**{field: value}))
    assert cgroup_leftovers(cgroup_parent) == []
