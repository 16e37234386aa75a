"""Why a new child is attached through cgroup v1's ``tasks`` file, not ``cgroup.procs``.

Moves a fresh single-threaded process into a v1 pids cgroup through each file,
back to back and 10 ms apart, and prints the median and worst write time.  A
``cgroup.procs`` write takes the threadgroup rwsem, whose RCU sync can stall
for milliseconds when nothing changed cgroups recently; a ``tasks`` write of a
single thread does not.  As root on a v1/hybrid host:

    python benchmarks/v1_attach.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

BASE = f"/sys/fs/cgroup/pids/isolate-test-attach-{os.getpid()}"


def measure(fname: str, n: int = 60, gap: float = 0.0) -> tuple[float, float]:
    """(median, max) µs of writing a new process's pid to ``fname``."""
    xs = []
    for _ in range(n):
        p = subprocess.Popen(["sleep", "10"])
        time.sleep(gap)
        fd = os.open(f"{BASE}/{fname}", os.O_WRONLY)
        t0 = time.perf_counter()
        os.write(fd, str(p.pid).encode())
        xs.append(time.perf_counter() - t0)
        os.close(fd)
        p.kill()
        p.wait()
    return statistics.median(xs) * 1e6, max(xs) * 1e6


def main() -> None:
    os.makedirs(BASE)
    try:
        for gap in (0.0, 0.01):
            for fname in ("cgroup.procs", "tasks"):
                med, worst = measure(fname, gap=gap)
                print(f"gap {gap * 1e3:4.0f} ms  {fname:13s} median {med:7.1f} us  max {worst:8.1f} us")
    finally:
        os.rmdir(BASE)


if __name__ == "__main__":
    main()
