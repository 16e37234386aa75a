"""pytest-benchmark: start /bin/true and wait, isolate against subprocess and unshare(1).

Run with ``python -m pytest benchmarks/test_spawn.py`` (never part of the unit suite:
``testpaths = ["tests"]``).  Compare ratios within a group, not absolute times.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import cases as C

SPAWN = ["subprocess.run", "os.posix_spawn + waitpid", "isolate.spawn (no namespace)",
         "isolate.spawn pid+mnt+uts+ipc", "isolate.spawn pid+mnt+uts+ipc+net+user",
         "unshare --pid --mount --uts --ipc --fork"]
NAMESPACES = ["isolate.spawn " + ns for ns in ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup", "time")]
NETNS = ["isolate.spawn " + "+".join(C.FULL), "isolate.spawn " + "+".join(C.FULL) + ", net from NetnsPool"]


@pytest.mark.root
@pytest.mark.benchmark(group="spawn /bin/true")
@pytest.mark.parametrize("case_fn", SPAWN, indirect=True)
def test_spawn(benchmark: Any, case_fn: C.Iteration) -> None:
    benchmark(case_fn)


@pytest.mark.root
@pytest.mark.benchmark(group="one namespace")
@pytest.mark.parametrize("case_fn", ["isolate.spawn (no namespace)"] + NAMESPACES, indirect=True)
def test_one_namespace(benchmark: Any, case_fn: C.Iteration) -> None:
    benchmark(case_fn)


@pytest.mark.root
@pytest.mark.benchmark(group="network namespace: fresh or pooled")
@pytest.mark.parametrize("case_fn", NETNS, indirect=True)
def test_network_namespace(benchmark: Any, case_fn: C.Iteration) -> None:
    benchmark(case_fn)
