"""linux.resources -> Limits: each field applied as runc applies it, or refused naming the field.

The host's cgroup layout decides what can be applied (realtime CPU, swappiness,
the OOM-killer switch and the network controllers exist on v1 only; ``unified``
on a v2 host only), so each case runs against a layout built from mountinfo
text: a hybrid host (this one's shape) and a pure v2 host.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_oci_examples import runc_spec

import isolate.cgroup
from isolate import ConfigError, Limits, UnsupportedError
from isolate.cgroup.layout import build_layout
from isolate.cgroup.limits import controllers_for, host_refusals, shares_to_weight
from isolate.oci import parse, spec_to_config

HYBRID = build_layout("""\
31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
36 30 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
""", "0::/\n", read_controllers=False)
WITH_NET = build_layout("""\
31 30 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
""", "0::/\n", read_controllers=False)
V2 = isolate.cgroup.Layout("v2", isolate.cgroup.layout.Hierarchy(
    2, "/sys/fs/cgroup", "/", frozenset({"cpu", "memory", "pids", "io", "cpuset"}), "/"))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


@pytest.fixture(params=["hybrid", "v2"])
def host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The conversion sees a hybrid or a pure v2 host."""
    monkeypatch.setattr(isolate.cgroup, "_layout_cache", HYBRID if request.param == "hybrid" else V2)
    yield request.param


def convert(bundle: Path, **resources: Any) -> Limits | None:
    d = runc_spec()
    d["root"]["path"] = str(bundle / "rootfs")
    d["linux"]["resources"] = resources
    with spec_to_config(parse(d), bundle) as conv:
        assert not [u for u in conv.unsupported if u.startswith("linux.resources")]
        return conv.config.limits


# --- cpu.shares: as given on v1, converted on v2 only ------------------------------------


@pytest.mark.parametrize("shares", [2, 102, 512, 1024, 262144])
def test_cpu_shares_are_kept_as_given(bundle: Path, host: str, shares: int) -> None:
    # Before: 512 -> weight 20 -> 500 on v1; a Kubernetes 100m request (102) became 80.
    lim = convert(bundle, cpu={"shares": shares})
    assert lim is not None and lim.cpu_shares == shares and lim.cpu_weight is None
    assert controllers_for(lim) == {"cpu"}


def test_shares_to_weight_is_runcs_formula() -> None:
    # runc's ConvertCPUSharesToCgroupV2Value and crun's: 1 + ((shares - 2) * 9999) / 262142.
    assert [shares_to_weight(s) for s in (2, 102, 512, 1024, 262144)] == [1, 4, 20, 39, 10000]


@pytest.mark.parametrize("shares", [1, 262145])
def test_cpu_shares_outside_the_kernels_range_are_refused(bundle: Path, shares: int) -> None:
    d = runc_spec()
    d["linux"]["resources"] = {"cpu": {"shares": shares}}
    # 262145 is outside the spec schema's own range; 1 is outside the kernel's (runc refuses both).
    with pytest.raises(ConfigError, match=f"linux.resources.cpu.shares.*{shares}"):
        with spec_to_config(parse(d), bundle):
            pass


# --- memory ---------------------------------------------------------------------------------


def test_memory_fields(bundle: Path, host: str) -> None:
    lim = convert(bundle, memory={"reservation": 64 << 20})
    assert lim is not None and lim.memory_low == 64 << 20 and lim.memory_high is None
    assert convert(bundle, memory={"reservation": -1}) is None      # unlimited: the default
    if host == "hybrid":
        lim = convert(bundle, memory={"swappiness": 0, "disableOOMKiller": True})
        assert lim is not None and lim.memory_swappiness == 0 and lim.memory_oom_kill_disable is True
    assert convert(bundle, memory={"disableOOMKiller": False}) is None


@pytest.mark.parametrize("field, value, why", [
    ("swappiness", 30, "has no per-cgroup swappiness"),
    ("disableOOMKiller", True, "cannot disable the OOM killer"),
])
def test_v1_only_memory_fields_are_refused_on_v2(bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                                 field: str, value: Any, why: str) -> None:
    monkeypatch.setattr(isolate.cgroup, "_layout_cache", V2)
    with pytest.raises(UnsupportedError, match=f"^linux.resources.memory.{field}: cgroup v2 {why}"):
        convert(bundle, memory={field: value})


def test_kernel_memory_is_ignored_with_a_warning_as_runc_does(bundle: Path, host: str) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lim = convert(bundle, memory={"kernel": 64 << 20, "kernelTCP": 32 << 20, "limit": 128 << 20})
    assert lim is not None and lim.memory_max == 128 << 20
    text = " ".join(str(w.message) for w in seen)
    assert "linux.resources.memory.kernel: kernel memory settings are ignored" in text
    assert "linux.resources.memory.kernelTCP:" in text


# --- cpu: realtime, idle, burst ------------------------------------------------------------


def test_cpu_fields_on_v1(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolate.cgroup, "_layout_cache", HYBRID)
    if not Path("/sys/fs/cgroup/cpu/cpu.rt_period_us").exists():
        pytest.fail("this host's v1 cpu controller has no realtime files (CONFIG_RT_GROUP_SCHED)")
    lim = convert(bundle, cpu={"realtimePeriod": 500000, "realtimeRuntime": 1000, "idle": 1, "burst": 1000})
    assert lim is not None
    assert (lim.cpu_rt_period_us, lim.cpu_rt_runtime_us, lim.cpu_idle, lim.cpu_burst_us) == (500000, 1000, True,
                                                                                              1000)


@pytest.mark.parametrize("field", ["realtimePeriod", "realtimeRuntime"])
def test_realtime_is_refused_on_v2(bundle: Path, monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    monkeypatch.setattr(isolate.cgroup, "_layout_cache", V2)
    with pytest.raises(UnsupportedError, match=f"^linux.resources.cpu.{field}: cgroup v2 has no realtime"):
        convert(bundle, cpu={field: 1000})


def test_idle_and_burst_on_v2(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolate.cgroup, "_layout_cache", V2)
    lim = convert(bundle, cpu={"idle": 1, "burst": 5000})
    assert lim is not None and (lim.cpu_idle, lim.cpu_burst_us) == (True, 5000)


# --- network, blockIO, rdma, unified --------------------------------------------------------


def test_network_needs_its_v1_hierarchies(bundle: Path, host: str) -> None:
    for key, value in (("classID", 0x100001), ("priorities", [{"name": "eth0", "priority": 5}])):
        with pytest.raises(UnsupportedError, match=f"^linux.resources.network.{key}: no cgroup v1 net_"):
            convert(bundle, network={key: value})


def test_network_where_mounted(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolate.cgroup, "_layout_cache", WITH_NET)
    lim = convert(bundle, network={"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5},
                                                                       {"name": "lo", "priority": 2}]})
    assert lim is not None
    assert (lim.net_cls_classid, lim.net_prio_ifpriomap) == (0x100001, (("eth0", 5), ("lo", 2)))
    assert controllers_for(lim) == {"net_cls", "net_prio"}


@pytest.mark.parametrize("resources, message", [
    ({"blockIO": {"leafWeight": 300}}, "linux.resources.blockIO.leafWeight: cannot be applied"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}},
     "linux.resources.blockIO.weightDevice: per-device weights are not supported"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "linux.resources.rdma: the rdma controller is not supported"),
])
def test_refused_fields(bundle: Path, host: str, resources: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedError, match=f"^{message}"):
        convert(bundle, **resources)


def test_unified(bundle: Path, host: str) -> None:
    if host == "hybrid":
        # runc: "cannot use unified on cgroup v1" (a hybrid host included).
        with pytest.raises(UnsupportedError, match="^linux.resources.unified: needs a cgroup v2 host"):
            convert(bundle, unified={"memory.high": "1000000"})
        return
    lim = convert(bundle, unified={"memory.high": "1000000", "pids.max": "10"})
    assert lim is not None and lim.unified == (("memory.high", "1000000"), ("pids.max", "10"))
    assert controllers_for(lim) == {"memory", "pids"}
    with pytest.raises(UnsupportedError, match="^linux.resources.unified: 'rdma.max': the rdma controller"):
        convert(bundle, unified={"rdma.max": "mlx5_1 hca_handle=3"})
    for key in ("../memory.high", "memoryhigh", "cgroup.procs"):
        with pytest.raises(ConfigError, match=f"^linux.resources.unified: Limits.unified: '{key}'"):
            convert(bundle, unified={key: "1"})


# --- Limits: the public record --------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("cpu_shares", 1), ("cpu_shares", 262145), ("cpu_shares", "512"), ("cpu_idle", 1),
    ("cpu_burst_us", -1), ("cpu_rt_period_us", 0), ("cpu_rt_runtime_us", -2), ("memory_low", -1),
    ("memory_swappiness", 101), ("memory_oom_kill_disable", None), ("net_cls_classid", -1),
    ("net_prio_ifpriomap", (("eth0", -1),)), ("net_prio_ifpriomap", (("a/b", 1),)),
    ("net_prio_ifpriomap", [("eth0", 1)]), ("unified", (("memory.high", 5),)),
    ("unified", (("memory.high", "1\n2"),)),
])
def test_new_fields_name_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        Limits(**{field: value})
    assert field in str(e.value)


def test_shares_and_weight_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="cpu_shares or cpu_weight, not both"):
        Limits(cpu_shares=512, cpu_weight=20)
    with pytest.raises(ConfigError, match="cpu_rt_runtime_us=2000 is above cpu_rt_period_us=1000"):
        Limits(cpu_rt_period_us=1000, cpu_rt_runtime_us=2000)


def test_host_refusals() -> None:
    v1_only = Limits(memory_swappiness=10, memory_oom_kill_disable=True, cpu_rt_period_us=1000,
                     net_cls_classid=1, net_prio_ifpriomap=(("lo", 1),))
    assert [f for f, _ in host_refusals(v1_only, V2)] == [
        "cpu_rt_period_us", "memory_swappiness", "memory_oom_kill_disable", "net_cls_classid",
        "net_prio_ifpriomap"]
    assert [f for f, _ in host_refusals(v1_only, WITH_NET)] == []
    assert [f for f, _ in host_refusals(Limits(memory_low=1, memory_high=2), HYBRID)] == ["memory_low"]
    assert host_refusals(Limits(memory_low=1, memory_high=2), V2) == []
    assert [f for f, _ in host_refusals(Limits(unified=(("memory.high", "1"),)), HYBRID)] == ["unified"]
    assert host_refusals(Limits(unified=(("memory.high", "1"),)), V2) == []
