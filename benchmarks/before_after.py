"""What a change to isolate costs: the spawn and Container rows of two installs, side by side.

    python -m benchmarks.before_after --baseline-rev cc59c7f [--rounds 200] [--out DIR]

``--baseline-rev`` builds that revision of this repository into a virtual
environment of its own (under ``--work``, reused when it is there);
``--baseline PYTHON`` takes an interpreter that already imports the other
install.  Each install runs in a worker process of its own, which times one
iteration of a case when asked; the driver asks them in turn, case after
case, round after round, so both see the same machine at the same moment.
``--rss MIB`` makes both callers hold that much touched memory first (the
clone shares it: a spawn must cost the same from a large caller).  Writes
DIR/before-after.md and .json (``-rssMIB`` in the names with ``--rss``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .stats import summary

ROOT = Path(__file__).resolve().parent.parent

#: The cases: the same code runs under either install (only API both have).
CASES: dict[str, str] = {
    "isolate.run /bin/true (no namespace)":
        "isolate.run(['/bin/true'], stdin=isolate.DEVNULL)",
    "isolate.run pid+mnt+uts+ipc":
        "isolate.run(['/bin/true'], namespaces={'pid', 'mnt', 'uts', 'ipc'}, stdin=isolate.DEVNULL)",
    "isolate.run user+pid+mnt":
        "isolate.run(['/bin/true'], namespaces={'user', 'pid', 'mnt'}, stdin=isolate.DEVNULL)",
    "isolate.run user=65534 (no namespace)":
        "isolate.run(['/bin/true'], user=65534, group=65534, groups=[], stdin=isolate.DEVNULL)",
    "isolate.run pid+mnt into a 256 MiB memory cgroup":
        "isolate.run(['/bin/true'], namespaces={'pid', 'mnt'}, cgroup=LIMITED, stdin=isolate.DEVNULL)",
    "Container().run (the default sandbox)":
        "CONTAINER_RUN(isolate.Container())",
    "Container, no user namespace":
        "CONTAINER_RUN(isolate.Container(namespaces=isolate.DEFAULT_NAMESPACES - {'user'}))",
    "Container.exec into a running container":
        "RUNNING.exec(['/bin/true'])",
    # The pair issue 14 asks for: a fresh RootFS.host() per Container against one reused.
    "Container, one RootFS.host() reused":
        "CONTAINER_RUN(isolate.Container(rootfs=REUSED))",
    "Container, a fresh RootFS.host() each":
        "CONTAINER_RUN(isolate.Container(rootfs=isolate.RootFS.host()))",
    "Container no user ns, one RootFS.host() reused":
        "CONTAINER_RUN(isolate.Container(rootfs=REUSED, namespaces=NO_USERNS))",
    "Container no user ns, a fresh RootFS.host() each":
        "CONTAINER_RUN(isolate.Container(rootfs=isolate.RootFS.host(), namespaces=NO_USERNS))",
}

WORKER = r'''
import os, sys, time
import isolate

BALLAST = bytearray(RSS_MIB << 20)         # the caller's resident memory, touched
for i in range(0, len(BALLAST), 4096):
    BALLAST[i] = 1

def CONTAINER_RUN(c):
    with c:
        r = c.run(["/bin/true"])
    assert r.returncode == 0, r

REUSED = isolate.RootFS.host()
NO_USERNS = isolate.DEFAULT_NAMESPACES - {"user"}
RUNNING = isolate.Container()
RUNNING.start(["sleep", "100000"], stdin=isolate.DEVNULL)
LIMITED = isolate.Cgroup.create(f"bench-{os.getpid()}", limits=isolate.Limits(memory_max=256 << 20))
cases = {name: compile(code, name, "exec") for name, code in CASES.items()}
print("ready", flush=True)
for line in sys.stdin:
    name = line.rstrip("\n")
    t = time.perf_counter_ns()
    exec(cases[name])
    print(time.perf_counter_ns() - t, flush=True)
RUNNING.close()
LIMITED.close()
'''


def baseline_python(rev: str, work: Path) -> str:
    """An interpreter of a virtual environment with revision ``rev`` installed (built once)."""
    tree = work / f"isolate-{rev}"
    python = tree / ".venv" / "bin" / "python"
    if python.exists():
        return str(python)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(tree)], check=True)
    return str(python)


class Worker:
    """One install, timing cases on request."""

    def __init__(self, label: str, python: str, rss_mib: int) -> None:
        self.label = label
        code = f"CASES = {CASES!r}\nRSS_MIB = {rss_mib}\n" + WORKER
        # Not from this tree: the worker imports the install its interpreter has.
        self.proc = subprocess.Popen([python, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd="/")
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        if ready != "ready\n":
            raise RuntimeError(f"the {label} worker did not start: {ready!r}")

    def time(self, case: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(case + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def run(python_before: str, rounds: int, warmup: int, rss_mib: int = 0) -> dict[str, Any]:
    workers = [Worker("before", python_before, rss_mib), Worker("after", sys.executable, rss_mib)]
    samples: dict[str, dict[str, list[int]]] = {c: {w.label: [] for w in workers} for c in CASES}
    try:
        for r in range(warmup + rounds):
            for case in CASES:
                for w in (workers if r % 2 == 0 else workers[::-1]):
                    ns = w.time(case)
                    if r >= warmup:
                        samples[case][w.label].append(ns)
                time.sleep(0.002)
    finally:
        for w in workers:
            w.close()
    return {"rounds": rounds, "kernel": os.uname().release, "cpus": os.cpu_count(), "rss_mib": rss_mib,
            "cases": {c: {k: {"stats": summary([v / 1e6 for v in xs]), "ms": [v / 1e6 for v in xs]}
                          for k, xs in s.items()} for c, s in samples.items()}}


def markdown(res: dict[str, Any], label: str) -> str:
    lines = [f"# Before and after: {label}", "",
             f"Kernel {res['kernel']}, {res['cpus']} CPUs, {res['rounds']} interleaved rounds, "
             f"each caller holding {res['rss_mib']} MiB of touched memory besides its own; "
             "medians in ms (p10-p90), and after/before.", "",
             "| case | before | after | after/before |", "|---|---:|---:|---:|"]
    for case, by in res["cases"].items():
        b, a = by["before"]["stats"], by["after"]["stats"]
        lines.append(f"| {case} | {b['median']:.3f} ({b['p10']:.3f}-{b['p90']:.3f}) | "
                     f"{a['median']:.3f} ({a['p10']:.3f}-{a['p90']:.3f}) | {a['median'] / b['median']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--baseline-rev", help="a revision of this repository to compare with")
    src.add_argument("--baseline", help="an interpreter that imports the other install")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/isolate-bench"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--label", default=None)
    ap.add_argument("--rss", type=int, default=0, metavar="MIB",
                    help="each worker first grows by this much touched memory (spawn cost against RSS)")
    args = ap.parse_args()
    python = args.baseline or baseline_python(args.baseline_rev, args.work)
    label = args.label or f"{args.baseline_rev or args.baseline} against this install"
    res = run(python, args.rounds, args.warmup, args.rss)
    text = markdown(res, label)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "before-after" + (f"-rss{args.rss}" if args.rss else "")
        (args.out / f"{name}.md").write_text(text)
        (args.out / f"{name}.json").write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
