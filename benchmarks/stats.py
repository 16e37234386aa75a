"""Small statistics and /proc readers shared by the runner and the report."""

from __future__ import annotations

import glob
import os
import resource
import time
from collections.abc import Sequence
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``xs``, interpolated linearly between ranks."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(xs: Sequence[float]) -> dict[str, float]:
    """median, p10, p90 and n of ``xs``."""
    return {"median": percentile(xs, 50), "p10": percentile(xs, 10), "p90": percentile(xs, 90),
            "n": len(xs)}


def sample_rows(samples: dict[str, list[int]], base: str | None, skipped: dict[str, str],
                group: str) -> list[dict[str, Any]]:
    """Table rows (the latency table's shape) of wall times in ns per case: each with its
    summary and ``ratio`` to the median of ``base``; a case without samples says why
    (``skipped``, else "not run")."""
    rows: list[dict[str, Any]] = [
        {"name": name, "group": group, "note": "", "wall_ns": wall, "cpu_ns": [],
         "skipped": None if wall else skipped.get(name, "not run"),
         "stats": summary(wall) if wall else None, "cpu_median_ns": None}
        for name, wall in samples.items()]
    ref = next((r["stats"]["median"] for r in rows if r["name"] == base and r["stats"]), None)
    for r in rows:
        r["ratio"] = r["stats"]["median"] / ref if ref and r["stats"] else None
    return rows


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_ns() -> int:
    """CPU time of this thread plus every reaped child, in ns (user + system)."""
    t = resource.getrusage(resource.RUSAGE_THREAD)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((t.ru_utime + t.ru_stime + c.ru_utime + c.ru_stime) * 1e9)


def process_cpu_ns() -> int:
    """CPU time of every thread of this process plus every reaped child, in ns."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime) * 1e9)


def kworker_cpu_ns() -> int:
    """CPU time of every kernel worker thread on the host, in ns (clock-tick resolution).

    A network namespace is torn down by a kworker (``cleanup_net``), after
    the last process in it is gone: this is where that cost shows up.
    """
    total = 0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
        except OSError:
            continue
        head, _, tail = text.rpartition(")")
        if "(kworker" not in head:
            continue
        fields = tail.split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * 1_000_000_000 // CLK_TCK


def settle_kworkers(max_wait: float = 5.0) -> None:
    """Wait until kernel workers stop accumulating CPU (deferred teardown finished)."""
    deadline = time.monotonic() + max_wait
    last = kworker_cpu_ns()
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        time.sleep(0.1)
        now = kworker_cpu_ns()
        quiet = quiet + 1 if now - last <= 1_000_000_000 // CLK_TCK else 0
        last = now


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, rest = line.split(":", 1)
            parts = rest.split()
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out
