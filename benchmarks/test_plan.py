"""pytest-benchmark: the pure-Python cost of a plan, planned and packed (no cache), by mount count."""

from __future__ import annotations

from typing import Any

import pytest

from isolate import _ops as O
from isolate._planner import FdLayout, Host, plan_process
from isolate.process import specs


def plan_and_pack(namespaces: set[str], ops: list[Any]) -> Any:
    """What a spawn of a new shape costs in Python: plan_process() + Plan.pack(), uncached."""
    spec, iso, _ = specs(["/bin/true"], namespaces=namespaces)
    return plan_process(spec, iso, FdLayout(), Host.of(spec), ops).plan.pack()


@pytest.mark.benchmark(group="plan build + pack")
@pytest.mark.parametrize("mounts", [10, 100, 1000])
def test_plan_pack(benchmark: Any, mounts: int) -> None:
    ops = [O.Mount(b"tmpfs", b"/tmp/isolate-bench/%d" % i, b"tmpfs", 0, b"size=64k")
           for i in range(mounts)]
    packed = benchmark(lambda: plan_and_pack({"mnt"}, ops))
    assert packed is not None
