"""pytest-benchmark: the pure-Python cost of a plan, build_plan() + Plan.pack(), by mount count."""

from __future__ import annotations

from typing import Any

import pytest

from isolate import _plan as P
from isolate.process import build_plan


@pytest.mark.benchmark(group="plan build + pack")
@pytest.mark.parametrize("mounts", [10, 100, 1000])
def test_plan_pack(benchmark: Any, mounts: int) -> None:
    ops = [P.Mount(b"tmpfs", b"/tmp/isolate-bench/%d" % i, b"tmpfs", 0, b"size=64k")
           for i in range(mounts)]
    packed = benchmark(lambda: build_plan(["/bin/true"], namespaces={"mnt"}, ops=ops).pack())
    assert packed is not None
