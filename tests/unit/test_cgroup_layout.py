"""Layout detection from mountinfo / /proc/self/cgroup text, parent paths, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from isolate import Cgroup, ConfigError, Limits, UnsupportedError
from isolate.cgroup.layout import Layout, build_layout, check_name, split_parent

HYBRID_MOUNTS = """\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
36 30 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
"""
HYBRID_PROC = "4:pids:/\n3:memory:/user/job\n2:cpuacct:/\n1:cpu:/\n0::/\n"

V1_COMOUNT = """\
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"""

V2_MOUNTS = "29 25 0:26 / /sys/fs/cgroup rw,nsdelegate - cgroup2 cgroup2 rw,nsdelegate\n"
CONTAINER_V2 = "29 25 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"


def test_hybrid() -> None:
    lay = build_layout(HYBRID_MOUNTS, HYBRID_PROC, read_controllers=False)
    assert lay.kind == "hybrid"
    # systemd's named hierarchy by its name: runc puts containers in it too.
    assert set(lay.v1) == {"cpu", "cpuacct", "memory", "pids", "name=systemd"}
    assert lay.v1["name=systemd"].mount == "/sys/fs/cgroup/systemd"
    assert lay.v1["memory"].own == "/user/job"
    assert lay.v1["memory"].fs_path("/user/job") == "/sys/fs/cgroup/memory/user/job"
    assert lay.v2 is not None and lay.v2.mount == "/sys/fs/cgroup/unified"
    assert lay.where("memory") == "v1"
    assert lay.where("freezer") == "v2"      # cgroup.freeze is core in the unified hierarchy
    assert not lay.container


def test_missing_controller_names_controller_and_hierarchy() -> None:
    lay = build_layout(HYBRID_MOUNTS, HYBRID_PROC, read_controllers=False)
    with pytest.raises(UnsupportedError) as e:
        lay.where("hugetlb")
    assert "'hugetlb'" in str(e.value) and "/sys/fs/cgroup/unified" in str(e.value)


def test_pure_v1_with_comounted_cpu_cpuacct() -> None:
    lay = build_layout(V1_COMOUNT, "2:cpu,cpuacct:/a\n1:memory:/a\n", read_controllers=False)
    assert lay.kind == "v1"
    assert lay.v1["cpu"] is lay.v1["cpuacct"]
    assert len(lay.hierarchies()) == 2
    with pytest.raises(UnsupportedError, match="'pids'"):
        lay.where("pids")


def test_pure_v2_and_container_subtree() -> None:
    lay = build_layout(V2_MOUNTS, "0::/user.slice/x\n", read_controllers=False)
    assert lay.kind == "v2" and lay.v2 is not None
    assert lay.v2.fs_path("/user.slice/x") == "/sys/fs/cgroup/user.slice/x"
    nested = build_layout(CONTAINER_V2, "0::/docker/abc\n", read_controllers=False, cgroupns=False)
    assert nested.container
    assert nested.v2 is not None and nested.v2.fs_path("/docker/abc/sub") == "/sys/fs/cgroup/sub"
    # Inside a cgroup namespace a path can lie above the namespace root.
    ns = build_layout(V2_MOUNTS, "0::/../../x\n", read_controllers=False, cgroupns=True)
    assert ns.cgroupns and ns.v2 is not None and ns.v2.fs_path(ns.v2.own) == "/sys/fs/cgroup"


def test_no_cgroup_fs() -> None:
    with pytest.raises(UnsupportedError, match="no cgroup filesystem"):
        build_layout("", "")


def test_parent_paths() -> None:
    lay = build_layout(HYBRID_MOUNTS, HYBRID_PROC, read_controllers=False)
    assert split_parent("isolate-test-a/b", lay) == "isolate-test-a/b"
    assert split_parent("/sys/fs/cgroup/memory/isolate-test-a", lay) == "isolate-test-a"
    assert split_parent("/sys/fs/cgroup/unified/x/", lay) == "x"
    for bad in ("a/../b", "../x", "/tmp/x", "/sys/fs/cgroup/memory/../../etc", "", 5):
        with pytest.raises(ConfigError) as e:
            split_parent(bad, lay)  # type: ignore[arg-type]
        assert repr(bad) in str(e.value) or str(bad) in str(e.value)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "cgroup.procs", 7, "x\0"])
def test_bad_names(name: object) -> None:
    with pytest.raises(ConfigError):
        check_name(name)


def _fake_layout(tmp_path: Path) -> Layout:
    mounts = "".join(
        f"{i} 1 0:{i} / {tmp_path / c} rw - cgroup cgroup rw,{c}\n"
        for i, c in enumerate(("memory", "pids", "cpu"), start=40))
    for c in ("memory", "pids", "cpu"):
        (tmp_path / c).mkdir()
    return build_layout(mounts, "", read_controllers=False)


@pytest.mark.parametrize("kwargs, field", [
    ({"parent": "a/../b"}, "'..'"),
    ({"parent": "/etc"}, "outside the cgroup filesystem"),
    ({"limits": Limits(pids_max=5), "controllers": {"memory", "bogus"}}, "bogus"),
    ({"controllers": "memory"}, "collection"),
    ({"limits": {"pids_max": 5}}, "Limits"),
])
def test_create_rejects_bad_input_before_touching_anything(tmp_path: Path, kwargs: dict, field: str) -> None:
    lay = _fake_layout(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError, match=field):
        Cgroup.create("job", layout=lay, **kwargs)
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_create_needing_a_missing_controller_is_unsupported_before_mkdir(tmp_path: Path) -> None:
    lay = _fake_layout(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(UnsupportedError, match="'blkio'"):
        Cgroup.create("job", parent="p", layout=lay, limits=Limits(io_weight=100))
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_cgroup_has_no_public_constructor() -> None:
    with pytest.raises(TypeError):
        Cgroup()
