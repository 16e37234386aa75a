"""pytest-benchmark: what a cgroup adds to a spawn (group "cgroup"), in wall time and in CPU time.

    python -m pytest -p no:cacheprovider benchmarks/test_cgroup.py --benchmark-columns=median,rounds

Cases, each ending with /bin/true reaped:
- plain ``isolate.spawn``;
- ``Cgroup.create`` with memory+pids+cpu limits, spawn into it, ``close()``,
  with the default controllers (memory, pids, cpu, and cpuacct for usage
  stats: four v1 hierarchies on a host that mounts cpu and cpuacct apart);
- the same with only the three controllers the limits need (``controllers=``);
- the same syscalls made by hand (mkdir, limit writes, ``tasks`` fds, rmdir)
  with ``isolate.spawn``: the floor the library's Python adds to;
- that by-hand cycle with its mkdirs and rmdirs outside the timed region
  (renaming a spare directory into place instead): the best a pool of
  pre-made directories with deferred removal could reach;
- ``isolate.CgroupPool``, that pool: groups made ahead and removed behind by
  a background thread (CPU time still counts the thread's work);
- plain, ``Cgroup.create`` and the pool again, paced 5 ms apart: back to back
  the pool's thread competes with the next spawn for the CPU (and the
  kernel's cgroup lock); paced, it works between spawns.

The target (issue 3) is at most 0.3 ms added over plain spawn on a v1 host.
The two by-hand cases show the kernel's share: on the 2-core hybrid VM this was
written on (kernel 6.18), the by-hand cycle over three hierarchies added about
0.6-0.7 ms, and even with its mkdirs and rmdirs untimed about 0.45 ms.
Sequential pytest-benchmark rounds on a shared machine drift by several
hundred microseconds, so compare cases from one run only.
After the table, a summary prints each case's median wall time and mean CPU
time (this process and its reaped children, ``getrusage``) per call, and what
each adds to plain spawn: a pool or a background thread can hide latency,
never CPU.  The parent ``isolate-test-bench-*`` is made once per run, as a
service's parent cgroup would be.
"""

from __future__ import annotations

import itertools
import os
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import isolate
from isolate import Cgroup, Limits
from isolate.cgroup import detect

from benchmarks.cases import cgroup_parent

LIMITS = Limits(memory_max=256 << 20, pids_max=100, cpus=0.5)
_counter = itertools.count()
#: case name -> (median wall us, mean cpu us), filled as the cases run.
_RESULTS: dict[str, tuple[float, float]] = {}
_V1_WRITES = {"memory": ("memory.limit_in_bytes", b"268435456"), "pids": ("pids.max", b"100"),
              "cpu": ("cpu.cfs_quota_us", b"50000")}


def _cpu_us() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * 1e6


class _Measured:
    """Wraps a cycle to add up its CPU time (self + reaped children) per call."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cpu = 0.0
        self.calls = 0

    def __call__(self) -> None:
        c0 = _cpu_us()
        self.fn()
        self.cpu += _cpu_us() - c0
        self.calls += 1


def _record(name: str, benchmark: Any, m: _Measured) -> None:
    if benchmark.stats is None or not m.calls:   # --benchmark-disable
        return
    cpu = m.cpu / m.calls
    benchmark.extra_info["cpu_us_mean"] = round(cpu, 1)
    _RESULTS[name] = (benchmark.stats.stats.median * 1e6, cpu)


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "plain" not in _RESULTS:
        return
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    base = {"": _RESULTS["plain"], "paced": _RESULTS.get("paced: plain", _RESULTS["plain"])}
    lines = ["", "cgroup cycle vs plain spawn (us; wall = median, cpu = mean per call):",
             f"{'case':48s} {'wall':>7s} {'cpu':>7s} {'+wall':>7s} {'+cpu':>7s}"]
    for name, (wall, cpu) in _RESULTS.items():
        base_wall, base_cpu = base["paced" if name.startswith("paced") else ""]
        lines.append(f"{name:48s} {wall:7.0f} {cpu:7.0f} {wall - base_wall:7.0f} {cpu - base_cpu:7.0f}")
    out = "\n".join(lines) + "\n"
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:
        print(out)
        return
    # Module teardown runs under output capture: write past it to the terminal.
    with capman.global_and_fixture_disabled():
        tr.write(out)


@pytest.fixture(scope="module")
def parent() -> Iterator[str]:
    with cgroup_parent(f"isolate-test-bench-{os.getpid()}") as name:
        yield name


def _true() -> None:
    p = isolate.spawn(["/bin/true"])
    p.wait()


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup", min_rounds=300)
def test_spawn_plain(benchmark: Any) -> None:
    m = _Measured(_true)
    benchmark(m)
    _record("plain", benchmark, m)


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup", min_rounds=300)
@pytest.mark.parametrize("controllers", [None, {"memory", "pids", "cpu"}],
                         ids=["default-controllers", "memory+pids+cpu-only"])
def test_spawn_in_new_cgroup(benchmark: Any, parent: str, controllers: set[str] | None) -> None:
    def cycle() -> None:
        with Cgroup.create(f"b{next(_counter)}", parent=parent, limits=LIMITS,
                           controllers=controllers) as cg:
            p = isolate.spawn(["/bin/true"], cgroup=cg)
            p.wait()

    m = _Measured(cycle)
    benchmark(m)
    _record("Cgroup " + ("default controllers" if controllers is None else "memory+pids+cpu"),
            benchmark, m)


class _Target:
    def __init__(self, fds: tuple[int, ...]) -> None:
        self.fds = fds

    def _spawn_target(self) -> tuple[int, tuple[int, ...]]:
        return -1, self.fds


class _Raw:
    """The v1 cycle by hand: the syscalls Cgroup makes, without its Python."""

    def __init__(self, parent: str) -> None:
        layout = detect()
        if layout.kind == "v2":
            pytest.skip("the hand-written reference is the v1 cycle")
        self.mounts = {c: layout.v1[c].mount for c in ("memory", "pids", "cpu")}
        self.parent = parent

    def _dirs(self, name: str) -> dict[str, str]:
        return {c: os.path.join(m, self.parent, name) for c, m in self.mounts.items()}

    def limits_and_spawn(self, dirs: dict[str, str]) -> None:
        for c, (fname, value) in _V1_WRITES.items():
            fd = os.open(os.path.join(dirs[c], fname), os.O_WRONLY)
            os.write(fd, value)
            os.close(fd)
        fds = tuple(os.open(os.path.join(d, "tasks"), os.O_WRONLY) for d in dirs.values())
        isolate.spawn(["/bin/true"], cgroup=_Target(fds)).wait()
        for fd in fds:
            os.close(fd)

    def __call__(self) -> None:
        dirs = self._dirs(f"r{next(_counter)}")
        for d in dirs.values():
            os.mkdir(d)
        self.limits_and_spawn(dirs)
        for d in dirs.values():
            os.rmdir(d)


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup", min_rounds=300)
def test_spawn_in_cgroup_by_hand(benchmark: Any, parent: str) -> None:
    m = _Measured(_Raw(parent))
    benchmark(m)
    _record("by hand (same syscalls, no library Python)", benchmark, m)


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup", min_rounds=300)
def test_spawn_in_cgroup_by_hand_mkdir_rmdir_untimed(benchmark: Any, parent: str) -> None:
    """Renames a spare made in the (untimed) setup; the previous round's rmdirs run there too."""
    raw = _Raw(parent)
    done: list[dict[str, str]] = []
    spare: list[dict[str, str]] = []

    def setup() -> None:
        for dirs in done:
            for d in dirs.values():
                os.rmdir(d)
        done.clear()
        s = raw._dirs(f"s{next(_counter)}")
        for d in s.values():
            os.mkdir(d)
        spare.append(s)

    def cycle() -> None:
        s = spare.pop()
        dirs = raw._dirs(f"r{next(_counter)}")
        for c, d in dirs.items():
            os.rename(s[c], d)
        raw.limits_and_spawn(dirs)
        done.append(dirs)

    m = _Measured(cycle)
    try:
        benchmark.pedantic(m, setup=setup, rounds=300, warmup_rounds=20)
    finally:
        for dirs in done + spare:
            for d in dirs.values():
                os.rmdir(d)
    _record("by hand, mkdir+rmdir untimed (pool best case)", benchmark, m)


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup", min_rounds=300)
def test_spawn_in_cgroup_from_pool(benchmark: Any, parent: str) -> None:
    """``CgroupPool``: the same groups (memory+pids+cpu, same limits) made ahead and removed behind
    by the pool's thread; timed: ``take()``, the spawn, ``close()`` (a hand-back)."""
    with isolate.CgroupPool(parent=parent, limits=LIMITS, controllers={"memory", "pids", "cpu"},
                            size=4) as pool:
        def cycle() -> None:
            with pool.take() as cg:
                p = isolate.spawn(["/bin/true"], cgroup=cg)
                p.wait()

        m = _Measured(cycle)
        benchmark(m)
    _record("CgroupPool memory+pids+cpu (take, spawn, close)", benchmark, m)


PACE = 0.005


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup-paced")
@pytest.mark.parametrize("how", ["plain", "Cgroup memory+pids+cpu", "CgroupPool memory+pids+cpu"])
def test_spawn_paced(benchmark: Any, parent: str, how: str) -> None:
    """One cycle every ``PACE`` s (an untimed sleep between rounds), as a service that runs
    its sandboxes for a while rather than /bin/true back to back: a pool's thread gets to
    make and remove groups between spawns instead of competing with them for the CPU."""
    pool = (isolate.CgroupPool(parent=parent, limits=LIMITS, controllers={"memory", "pids", "cpu"})
            if how.startswith("CgroupPool") else None)

    def cycle() -> None:
        if how == "plain":
            isolate.spawn(["/bin/true"]).wait()
            return
        cg = pool.take() if pool is not None else Cgroup.create(
            f"p{next(_counter)}", parent=parent, limits=LIMITS, controllers={"memory", "pids", "cpu"})
        with cg:
            isolate.spawn(["/bin/true"], cgroup=cg).wait()

    m = _Measured(cycle)
    c0 = _cpu_us()
    try:
        benchmark.pedantic(m, setup=lambda: time.sleep(PACE), rounds=200, warmup_rounds=10)
        # CPU over the whole run, sleeps included: the pool's thread works while we sleep.
        m.cpu = _cpu_us() - c0
    finally:
        if pool is not None:
            pool.close()
    _record(f"paced: {how}", benchmark, m)
