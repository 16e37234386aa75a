"""Cgroup acceptance tests: limits hold for processes spawned into the group.

Each test runs once per cgroup version: ``cgroup1`` on v1/hybrid hosts,
``cgroupv2`` on pure v2 (``.ci/run`` runs those inside ../shared/vmtest/vm-run).
Every process is started with ``isolate.spawn(..., cgroup=cg)``, so the real
attach path (v1 cgroup.procs writes by the C parent, v2 CLONE_INTO_CGROUP) is
what is tested.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import isolate
from support import cgroup_leftovers as _leftovers
from isolate import Cgroup, DeviceRule, IoThrottle, Limits
from isolate.cgroup import DEFAULT_DEVICES

VERSIONS = [pytest.param(1, marks=pytest.mark.cgroup1, id="v1"),
            pytest.param(2, marks=pytest.mark.cgroupv2, id="v2")]

BUSY = ["/bin/sh", "-c", "while :; do :; done"]


@pytest.fixture(params=VERSIONS)
def parent(request: pytest.FixtureRequest, cgroup_parent: str) -> str:
    """``cgroup_parent`` (tests/conftest.py), once per cgroup version."""
    return cgroup_parent


def _wait_for(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_child_is_born_in_the_cgroup(parent: str) -> None:
    with Cgroup.create("born", parent=parent, limits=Limits(memory_max=64 << 20, pids_max=50)) as cg:
        p = isolate.spawn(["/bin/cat", "/proc/self/cgroup"], cgroup=cg, stdout=isolate.PIPE)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        lines = out.decode().splitlines()
        want = f"/{parent}/born"
        if cg.layout.kind == "v2":
            assert f"0::{want}" in lines
        else:
            by_ctl = {ctl: path for _, ctls, path in (ln.split(":", 2) for ln in lines)
                      for ctl in ctls.split(",")}
            for ctl in ("memory", "pids"):
                assert by_ctl[ctl] == want, lines


def test_oom_kill_is_reported(parent: str) -> None:
    limits = Limits(memory_max=32 << 20, memory_swap_max=0)
    with Cgroup.create("oom", parent=parent, limits=limits) as cg:
        hog = [sys.executable, "-c", "b = b'x' * (256 << 20)"]
        p = isolate.spawn(hog, cgroup=cg, stderr=isolate.DEVNULL)
        assert p.wait(timeout=120) == -signal.SIGKILL
        st = cg.stats()
        assert st.oom_kill == 1
        assert st.oom >= 1
        assert st.memory_peak is not None and st.memory_peak <= 32 << 20


def test_fork_bomb_is_held_at_pids_max_and_killed(parent: str) -> None:
    bomb = ["bash", "-c", "f() { while :; do f & done; }; f"]
    with Cgroup.create("bomb", parent=parent, limits=Limits(pids_max=16)) as cg:
        p = isolate.spawn(bomb, cgroup=cg, stderr=isolate.DEVNULL)
        try:
            _wait_for(lambda: cg.stats().pids_current == 16, what="pids.current to reach pids.max")
            for _ in range(10):
                assert cg.stats().pids_current <= 16
                assert len(cg.procs()) <= 16
                time.sleep(0.01)
            cg.kill()
            assert cg.procs() == []
            assert p.wait(timeout=60) == -signal.SIGKILL
            # Zombies hold their pid until reaped (ours above; the rest by init).
            _wait_for(lambda: cg.stats().pids_current == 0, what="every pid to be released")
        finally:
            p.kill()
            p.wait(timeout=60)


@pytest.mark.slow
def test_cpu_quota_holds_busy_loop_to_quarter_cpu(parent: str) -> None:
    with Cgroup.create("cpu", parent=parent, limits=Limits(cpus=0.25)) as cg:
        p = isolate.spawn(BUSY, cgroup=cg)
        try:
            _wait_for(lambda: (cg.stats().nr_periods or 0) >= 2, what="the first cpu periods")
            a = cg.stats()
            # 20 enforcement periods of 100 ms: 2 s of the kernel's own accounting.
            _wait_for(lambda: cg.stats().nr_periods >= a.nr_periods + 20, what="20 periods")
            b = cg.stats()
            share = (b.cpu_usage_usec - a.cpu_usage_usec) / ((b.nr_periods - a.nr_periods) * 100_000)
            assert 0.18 <= share <= 0.32, share
            assert b.nr_throttled > a.nr_throttled
        finally:
            cg.kill()
            p.wait(timeout=60)


def test_freeze_stops_cpu_usage(parent: str) -> None:
    with Cgroup.create("freeze", parent=parent) as cg:
        p = isolate.spawn(BUSY, cgroup=cg)
        try:
            _wait_for(lambda: (cg.stats().cpu_usage_usec or 0) > 0, what="cpu usage")
            cg.freeze()
            frozen = cg.stats().cpu_usage_usec
            time.sleep(0.3)
            # A running busy loop would add about 300 ms here.  In the emulated v2 VM
            # a few ms charged before the freeze can still show up in a later read.
            assert cg.stats().cpu_usage_usec - frozen < 30_000
            cg.thaw()
            _wait_for(lambda: cg.stats().cpu_usage_usec > frozen, what="usage after thaw")
        finally:
            cg.kill()
            p.wait(timeout=60)


def _open_device(cg: Cgroup | None, node: str) -> str:
    """stderr of opening ``node`` for reading from a process in ``cg``."""
    r = isolate.run(["dd", f"if={node}", "count=1"], cgroup=cg,
                    capture_output=True, timeout=60)
    return r.stderr.decode()


def test_devices_deny_by_default_allows_dev_null(parent: str, tmp_path: Path) -> None:
    node = str(tmp_path / "sda")
    os.mknod(node, 0o600 | 0o060000, os.makedev(8, 0))
    # Without rules the open reaches the driver (ENXIO, or a real disk): not a cgroup refusal.
    assert "Operation not permitted" not in _open_device(None, node)
    with Cgroup.create("dev", parent=parent, limits=Limits(devices=DEFAULT_DEVICES)) as cg:
        assert "Operation not permitted" in _open_device(cg, node)
        r = isolate.run(["/bin/sh", "-c", "echo hi > /dev/null && head -c 4 /dev/zero | wc -c"],
                        cgroup=cg, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == b"4"
        # A later deny rule wins over the default allow of /dev/null.
        cg.apply(Limits(devices=DEFAULT_DEVICES + (DeviceRule(allow=False, type="c", major=1,
                                                              minor=3, access="rw"),)))
        assert "Operation not permitted" in _open_device(cg, "/dev/null")
        assert "Operation not permitted" not in _open_device(cg, "/dev/zero")


def test_close_kills_what_is_inside_and_removes_everything(parent: str) -> None:
    cg = Cgroup.create("job", parent=parent, limits=Limits(pids_max=20))
    dirs = list(cg.paths.values())
    p = isolate.spawn(["/bin/sh", "-c", "sleep 1000 & sleep 1000"], cgroup=cg)
    _wait_for(lambda: len(cg.procs()) == 3, what="three processes")
    cg.close()
    assert p.wait(timeout=60) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in dirs)
    assert _leftovers(parent) == []
    cg.close()   # idempotent


def test_attach_moves_a_running_process(parent: str) -> None:
    with Cgroup.create("attach", parent=parent) as cg:
        p = isolate.spawn(["sleep", "1000"])
        try:
            cg.attach(p.pid)
            assert cg.procs() == [p.pid]
            assert f"/{parent}/attach" in Path(f"/proc/{p.pid}/cgroup").read_text()
        finally:
            p.kill()
            p.wait(timeout=60)


def test_stats_report_cpu_memory_and_pids(parent: str) -> None:
    with Cgroup.create("stats", parent=parent) as cg:
        r = isolate.run(["/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"],
                        cgroup=cg, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        st = cg.stats()
        assert st.cpu_usage_usec and st.cpu_usage_usec > 0
        assert st.cpu_user_usec is not None and st.cpu_system_usec is not None
        assert st.memory_peak and st.memory_peak > 0
        assert st.memory_stat
        assert st.pids_current == 0
        if cg.layout.kind == "v2":
            assert st.psi is not None and set(st.psi) >= {"cpu", "memory", "io"}
            assert st.psi["cpu"]["some"]["total"] >= 0


def _losetup(path: Path) -> str:
    if shutil.which("losetup") is None:
        pytest.skip("losetup (util-linux) is not installed")
    r = subprocess.run(["losetup", "--find", "--show", str(path)], capture_output=True, text=True)
    if r.returncode != 0 and not os.path.exists("/dev/loop-control"):
        # The loop driver is a module that may not be loaded yet; vm-run's guest
        # kernel keeps its modules under /var/cache/vm-run/kernel.
        for extra in ([], ["-d", "/var/cache/vm-run/kernel"]):
            if subprocess.run(["modprobe", *extra, "loop"], capture_output=True).returncode == 0:
                break
        r = subprocess.run(["losetup", "--find", "--show", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device available: {r.stderr.strip()}")
    return r.stdout.strip()


@pytest.mark.slow
def test_io_throttle_holds_direct_io_to_its_limit(parent: str, tmp_path: Path) -> None:
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(8 << 20)
    loop = _losetup(backing)
    try:
        limit = 1 << 20
        limits = Limits(io_throttle=(IoThrottle(device=loop, write_bps=limit),))
        with Cgroup.create("io", parent=parent, limits=limits) as cg:
            r = isolate.run(["dd", "if=/dev/zero", f"of={loop}", "bs=64k", "count=32", "oflag=direct"],
                            cgroup=cg, capture_output=True, timeout=120)
            assert r.returncode == 0, r.stderr
            # dd's own report: "2097152 bytes (2.1 MB, 2.0 MiB) copied, 2.00095 s, 1.0 MB/s"
            m = re.search(rb"(\d+) bytes .* copied, ([0-9.]+) s", r.stderr)
            assert m, r.stderr
            rate = int(m.group(1)) / float(m.group(2))
            assert limit * 0.85 <= rate <= limit * 1.15, rate
            assert (cg.stats().io_write_bytes or 0) >= 2 << 20
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def _read(cg: Cgroup, name: str) -> str:
    for path in cg.paths.values():
        if os.path.exists(os.path.join(path, name)):
            return Path(path, name).read_text().strip()
    raise AssertionError(f"{name} not found in {cg.paths}")


def test_limits_are_written_in_each_versions_units(parent: str) -> None:
    from isolate.cgroup import weight_to_shares

    limits = Limits(memory_max=64 << 20, memory_high=48 << 20, cpu_weight=200, cpus=1.5,
                    cpuset_cpus="0", cpuset_mems="0", pids_max=33)
    with Cgroup.create("units", parent=parent, limits=limits) as cg:
        assert _read(cg, "pids.max") == "33"
        if cg.layout.kind == "v2":
            assert _read(cg, "memory.max") == str(64 << 20)
            assert _read(cg, "memory.high") == str(48 << 20)
            assert _read(cg, "cpu.weight") == "200"
            assert _read(cg, "cpu.max") == "150000 100000"
            assert _read(cg, "cpuset.cpus") == "0"
        else:
            assert _read(cg, "memory.limit_in_bytes") == str(64 << 20)
            assert _read(cg, "memory.soft_limit_in_bytes") == str(48 << 20)
            assert _read(cg, "cpu.shares") == str(weight_to_shares(200))
            assert _read(cg, "cpu.cfs_quota_us") == "150000"
            assert _read(cg, "cpuset.cpus") == "0"
        # A process spawned into the group sees the cpuset.
        r = isolate.run(["grep", "Cpus_allowed_list", "/proc/self/status"], cgroup=cg,
                        capture_output=True, timeout=60)
        assert r.stdout.split() == [b"Cpus_allowed_list:", b"0"]


@pytest.mark.cgroupv2
def test_hugetlb_limit_on_v2(tmp_path: Path) -> None:
    from isolate import HugetlbLimit

    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("the kernel has no 2 MiB huge pages")
    name = f"isolate-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    limits = Limits(hugetlb=(HugetlbLimit(page_size="2MB", max=4 << 20),))
    with Cgroup.create("huge", parent=name, limits=limits) as cg:
        assert Path(cg.path, "hugetlb.2MB.max").read_text().strip() == str(4 << 20)
    assert _leftovers(name) == []
