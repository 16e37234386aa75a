"""pytest-benchmark: what a cgroup adds to a spawn (group "cgroup").

    python -m pytest benchmarks/test_cgroup.py --benchmark-group-by=group

Cases, each ending with /bin/true reaped:
- plain ``isolate.spawn``;
- ``Cgroup.create`` with memory+pids+cpu limits, spawn into it, ``close()``,
  with the default controllers (memory, pids, cpu, and cpuacct for usage stats);
- the same with only the three controllers the limits need (``controllers=``);
- the same syscalls made by hand (mkdir, limit writes, procs fds, rmdir) with
  ``isolate.spawn``: the floor the library's Python adds to.

The target (issue 3) is at most 0.3 ms added over plain spawn on a v1 host.
The parent ``isolate-test-bench-*`` is made once per run, as a service's
parent cgroup would be.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

import isolate
from isolate import Cgroup, Limits
from isolate.cgroup import detect

LIMITS = Limits(memory_max=256 << 20, pids_max=100, cpus=0.5)
_counter = itertools.count()


@pytest.fixture(scope="module")
def parent() -> Iterator[str]:
    layout = detect()
    name = f"isolate-test-bench-{os.getpid()}"
    made = []
    for h in layout.hierarchies():
        if h.version == 2 and layout.kind == "hybrid":
            continue
        path = os.path.join(h.mount, name)
        if not os.path.isdir(path):
            os.mkdir(path)
            made.append(path)
        if h.version == 2:
            with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
                f.write("+memory +pids +cpu")
    yield name
    for path in made:
        os.rmdir(path)


def _true() -> None:
    p = isolate.spawn(["/bin/true"])
    p.wait()


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup")
def test_spawn_plain(benchmark: Any) -> None:
    benchmark(_true)


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup")
@pytest.mark.parametrize("controllers", [None, {"memory", "pids", "cpu"}],
                         ids=["default-controllers", "memory+pids+cpu-only"])
def test_spawn_in_new_cgroup(benchmark: Any, parent: str, controllers: set[str] | None) -> None:
    def cycle() -> None:
        with Cgroup.create(f"b{next(_counter)}", parent=parent, limits=LIMITS,
                           controllers=controllers) as cg:
            p = isolate.spawn(["/bin/true"], cgroup=cg)
            p.wait()

    benchmark(cycle)


class _Raw:
    """The v1 cycle by hand: the syscalls Cgroup makes, without its Python."""

    def __init__(self, parent: str) -> None:
        layout = detect()
        if layout.kind == "v2":
            pytest.skip("the hand-written reference is the v1 cycle")
        self.mounts = {c: layout.v1[c].mount for c in ("memory", "pids", "cpu")}
        self.parent = parent

    def __call__(self) -> None:
        name = f"r{next(_counter)}"
        dirs = {c: os.path.join(m, self.parent, name) for c, m in self.mounts.items()}
        for d in dirs.values():
            os.mkdir(d)
        for c, fname, value in (("memory", "memory.limit_in_bytes", b"268435456"),
                                ("pids", "pids.max", b"100"), ("cpu", "cpu.cfs_quota_us", b"50000")):
            fd = os.open(os.path.join(dirs[c], fname), os.O_WRONLY)
            os.write(fd, value)
            os.close(fd)
        fds = tuple(os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY) for d in dirs.values())

        class Target:
            def _spawn_target(self) -> tuple[int, tuple[int, ...]]:
                return -1, fds

        isolate.spawn(["/bin/true"], cgroup=Target()).wait()
        for fd in fds:
            os.close(fd)
        for d in dirs.values():
            os.rmdir(d)


@pytest.mark.root
@pytest.mark.benchmark(group="cgroup")
def test_spawn_in_cgroup_by_hand(benchmark: Any, parent: str) -> None:
    benchmark(_Raw(parent))
