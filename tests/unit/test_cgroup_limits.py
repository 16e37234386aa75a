"""Limits and rule types: validation (ConfigError names field and value) and unit conversion."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isolate import ConfigError, DeviceRule, HugetlbLimit, IoThrottle, Limits
from isolate.cgroup.limits import (
    controllers_for,
    parse_cpulist,
    shares_to_weight,
    weight_to_blkio,
    weight_to_shares,
)


@pytest.mark.parametrize("field, value", [
    ("memory_max", -1), ("memory_max", "1G"), ("memory_max", 1.5), ("memory_max", True),
    ("memory_high", -5), ("pids_max", -1), ("pids_max", "10"), ("cpu_weight", 0),
    ("cpu_weight", 10001), ("io_weight", 0), ("cpu_period_us", 10), ("cpu_quota_us", -1),
    ("cpus", -0.5), ("cpus", 0), ("cpus", "half"), ("cpus", float("nan")),
    ("cpuset_cpus", "a-b"), ("cpuset_cpus", "3-1"), ("cpuset_cpus", "0-4095"),
    ("cpuset_mems", "0-999"), ("cpuset_cpus", ""),
])
def test_bad_values_name_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        Limits(**{field: value})
    msg = str(e.value)
    assert field in msg
    assert repr(value) in msg or str(value) in msg


def test_memory_combinations() -> None:
    with pytest.raises(ConfigError, match="memory_memsw_max"):
        Limits(memory_max=100, memory_memsw_max=50)
    with pytest.raises(ConfigError, match="needs memory_max"):
        Limits(memory_swap_max=10)
    with pytest.raises(ConfigError, match="not both"):
        Limits(memory_max=100, memory_swap_max=10, memory_memsw_max=200)
    Limits(memory_max=100, memory_memsw_max=100)


def test_cpus_become_quota_over_period() -> None:
    assert Limits(cpus=0.25).cpu_max() == (25_000, 100_000)
    assert Limits(cpus=2, cpu_period_us=50_000).cpu_max() == (100_000, 50_000)
    assert Limits(cpu_quota_us=30_000, cpu_period_us=60_000).cpu_max() == (30_000, 60_000)
    assert Limits(pids_max=3).cpu_max() is None
    with pytest.raises(ConfigError, match="not both"):
        Limits(cpus=1, cpu_quota_us=5000)


def test_cpuset_within_host_is_accepted() -> None:
    Limits(cpuset_cpus="0", cpuset_mems="0")
    assert parse_cpulist("0-2,5") == {0, 1, 2, 5}


def test_limits_are_frozen_and_keyword_only() -> None:
    lim = Limits(pids_max=3)
    with pytest.raises(AttributeError):
        lim.pids_max = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        Limits(3)  # type: ignore[misc]


def test_weight_shares_endpoints_match_crun() -> None:
    assert weight_to_shares(1) == 2
    assert weight_to_shares(10000) == 262144
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1024) == 39     # crun's documented value for the v1 default
    assert weight_to_blkio(1) == 10 and weight_to_blkio(10000) == 1000


@given(st.integers(1, 10000))
def test_weight_to_shares_round_trips_within_one(weight: int) -> None:
    shares = weight_to_shares(weight)
    assert 2 <= shares <= 262144
    assert abs(shares_to_weight(shares) - weight) <= 1


@given(st.integers(1, 9999))
def test_weight_to_shares_is_monotonic(weight: int) -> None:
    assert weight_to_shares(weight) <= weight_to_shares(weight + 1)


def test_io_throttle_devices() -> None:
    assert IoThrottle(device="8:0", read_bps=1).devno == "8:0"
    assert IoThrottle(device=(259, 1), write_iops=5).number == (259, 1)
    for bad in ("sda", "8:x", (1,), (-1, 0)):
        with pytest.raises(ConfigError, match="IoThrottle.device"):
            IoThrottle(device=bad, read_bps=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown device '/dev/definitely-not-here'"):
        IoThrottle(device="/dev/definitely-not-here", read_bps=1)
    with pytest.raises(ConfigError, match="not a block device"):
        IoThrottle(device="/dev/null", read_bps=1)
    with pytest.raises(ConfigError, match="read_bps"):
        IoThrottle(device="8:0", read_bps=0)
    with pytest.raises(ConfigError, match="twice"):
        Limits(io_throttle=(IoThrottle(device="8:0", read_bps=1), IoThrottle(device="8:0", write_bps=1)))


def test_device_rules() -> None:
    assert DeviceRule.parse("c 1:3 rwm").v1_line() == "c 1:3 rwm"
    assert DeviceRule.parse("b *:* m").v1_line() == "b *:* m"
    assert DeviceRule.parse("a").v1_line() == "a"
    null = DeviceRule.for_path("/dev/null")
    assert (null.type, null.major, null.minor) == ("c", 1, 3)
    for bad in ("x 1:3 rwm", "c 1:3 rwx", "c 1 rwm", "c a:3 r", ""):
        with pytest.raises(ConfigError):
            DeviceRule.parse(bad)
    with pytest.raises(ConfigError, match="unknown device"):
        DeviceRule.for_path("/dev/definitely-not-here")
    with pytest.raises(ConfigError, match="access"):
        DeviceRule(allow=True, type="c", access="rr")
    with pytest.raises(ConfigError, match="every device"):
        DeviceRule(allow=True, type="a", major=1)
    with pytest.raises(ConfigError, match="Limits.devices"):
        Limits(devices=["c 1:3 rwm"])  # type: ignore[arg-type]


def test_hugetlb_sizes() -> None:
    sizes = os.listdir("/sys/kernel/mm/hugepages") if os.path.isdir("/sys/kernel/mm/hugepages") else []
    if "hugepages-2048kB" in sizes:
        assert HugetlbLimit(page_size="2MB", max=0).name == "2MB"
        assert HugetlbLimit(page_size=2 << 20, max=4 << 20).name == "2MB"
    with pytest.raises(ConfigError, match="page_size"):
        HugetlbLimit(page_size="3MB", max=0)
    with pytest.raises(ConfigError, match="page_size"):
        HugetlbLimit(page_size="lots", max=0)


def test_controllers_for_limits() -> None:
    assert controllers_for(None) == set()
    assert controllers_for(Limits(memory_max=1, pids_max=1, cpus=1)) == {"memory", "pids", "cpu"}
    assert controllers_for(Limits(devices=())) == {"devices"}
    assert controllers_for(Limits(io_weight=5)) == {"blkio"}
    assert controllers_for(Limits(cpuset_cpus="0")) == {"cpuset"}
