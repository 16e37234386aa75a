"""Why a new child joins a cgroup v1 group by writing ``0`` to ``tasks`` itself.

Moves a fresh single-threaded process into a v1 pids cgroup three ways:
the parent writes the child's pid to ``cgroup.procs``, the parent writes it to
``tasks``, and the child writes ``0`` (itself) to ``tasks``, as
``isolate._plan.CgroupJoin`` does.  Each is measured back to back and 50 ms
apart, and prints the median and worst write time.

The first two take the kernel's global threadgroup rwsem for writing, whose
RCU sync waits for a grace period (5-15 ms here) unless some cgroup migration
happened in the last few milliseconds: back-to-back loops hide it, a
container started now and then pays it every time.  A thread moving itself
through ``tasks`` skips that lock.  As root on a v1/hybrid host:

    python benchmarks/v1_attach.py
"""

from __future__ import annotations

import os
import statistics
import time

BASE = f"/sys/fs/cgroup/pids/isolate-test-attach-{os.getpid()}"


def _once(how: str) -> float:
    """Seconds the write of one new process into BASE took."""
    fname = "cgroup.procs" if how == "parent: cgroup.procs" else "tasks"
    fd = os.open(f"{BASE}/{fname}", os.O_WRONLY)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: move itself and report, or wait to be moved and killed
        try:
            if how == "child: 0 to tasks":
                t0 = time.perf_counter()
                os.write(fd, b"0")
                os.write(w, repr(time.perf_counter() - t0).encode())
            else:
                time.sleep(10)
        finally:
            os._exit(0)
    os.close(w)
    try:
        if how == "child: 0 to tasks":
            took = float(os.read(r, 64))
        else:
            t0 = time.perf_counter()
            os.write(fd, str(pid).encode())
            took = time.perf_counter() - t0
            os.kill(pid, 9)
    finally:
        os.close(r)
        os.close(fd)
        os.waitpid(pid, 0)
    return took


def main() -> None:
    os.makedirs(BASE)
    try:
        for gap in (0.0, 0.05):
            for how in ("parent: cgroup.procs", "parent: tasks", "child: 0 to tasks"):
                xs = []
                for _ in range(30):
                    time.sleep(gap)
                    xs.append(_once(how))
                print(f"gap {gap * 1e3:3.0f} ms  {how:21s} median {statistics.median(xs) * 1e6:8.1f} us"
                      f"  max {max(xs) * 1e6:8.1f} us")
    finally:
        os.rmdir(BASE)


if __name__ == "__main__":
    main()
