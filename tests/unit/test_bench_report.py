"""The benchmark report's arithmetic: percentiles, ratios and target verdicts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import report
from benchmarks.run import targets
from benchmarks.stats import percentile, summary


def test_percentile_interpolates_between_ranks() -> None:
    xs = [10, 20, 30, 40, 50]
    assert percentile(xs, 50) == 30
    assert percentile(xs, 10) == pytest.approx(14.0)
    assert percentile(xs, 90) == pytest.approx(46.0)
    assert percentile([7], 90) == 7


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=200))
def test_summary_orders_p10_median_p90_within_the_samples(xs: list[int]) -> None:
    s = summary(xs)
    assert min(xs) <= s["p10"] <= s["median"] <= s["p90"] <= max(xs)
    assert s["n"] == len(xs)


def _row(name: str, median: float) -> dict[str, Any]:
    return {"name": name, "group": "isolate", "note": "", "skipped": None, "wall_ns": [int(median)],
            "cpu_ns": [1], "stats": summary([median]), "cpu_median_ns": 1.0, "ratio": None}


def test_targets_are_ratios_of_medians_and_say_whether_met() -> None:
    res = {"latency": {"rows": [_row("subprocess.run", 1000), _row("isolate.spawn pid+mnt+uts+ipc", 1300),
                                _row("isolate.spawn pid+mnt+uts+ipc+net+cgroup, net from NetnsPool", 1500)]},
           "threads": {"speedup_2_vs_1": {"isolate.spawn pid+mnt+uts+ipc": 1.9}}}
    by = {t["target"]: t for t in targets(res)}
    core = by["isolate.spawn pid+mnt+uts+ipc ≤ 1.2× subprocess.run"]
    assert core["value"] == pytest.approx(1.3) and core["met"] is False
    pooled = by["full namespaces, pooled net ≤ 1.6× subprocess.run"]
    assert pooled["value"] == pytest.approx(1.5) and pooled["met"] is True
    threads = by["isolate.spawn pid+mnt+uts+ipc, 2 threads ≥ 1.7× 1 thread"]
    assert threads["met"] is True
    # A section that did not run gives no verdict rather than a made-up one.
    rss = next(t for t in by.values() if "RSS" in t["target"])
    assert rss["value"] is None and rss["met"] is None


def test_markdown_lists_skipped_cases_with_their_reason() -> None:
    skipped = _row("crun run", 1) | {"stats": None, "wall_ns": [], "skipped": "crun failed: hybrid"}
    res = {"command": "python -m benchmarks.run", "quick": True, "seconds": 1.0,
           "machine": {"date_utc": "d", "kernel": "6.1", "arch": "x86_64", "cpu": "cpu", "cpus": 2,
                       "cpus_usable": 2, "memory_gib": 1.0, "cgroups": "hybrid", "python": "3.11",
                       "isolate": "0.1", "clone3": True, "euid": 0, "loadavg_start": (0.1, 0, 0),
                       "loadavg_end": (0.2, 0, 0), "tools": {"crun": "crun 1.8"}},
           "latency": {"rounds": 1, "warmup": 0,
                       "rows": [_row("subprocess.run", 1e6) | {"ratio": 1.0}, skipped]}}
    md = report.markdown(res)
    assert "| subprocess.run | 1.000 |" in md
    assert "- crun run: crun failed: hybrid" in md
    assert "| kernel | 6.1 (x86_64) |" in md
