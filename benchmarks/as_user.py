"""The ``rootless`` section: isolate started by an ordinary user, beside bwrap run by the same user.

As root, the section makes a user for the run (tests/rootless.py: its own
uid, /etc/subuid ranges, a virtual environment of Debian's Python holding
this run's isolate, removed afterwards) and runs one Python as that user,
which times every case interleaved (A B C … A B C …), as the latency table
does: ``subprocess.run``, ``isolate.run`` with pid+mnt+uts+ipc+net (the user
namespace is added by isolate), ``isolate.Container`` on ``RootFS.host()``,
the ``isolate run`` command, the Python start-up that command pays before it
does anything (``python -I -c 'import isolate.cli.run'``), and ``bwrap
--unshare-all`` with the latency table's arguments.  All of them start
/bin/true and wait for it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from . import cases as C
from .stats import summary

PREFIX = "as a user: "
SPAWN = PREFIX + "isolate.run pid+mnt+uts+ipc+net (user ns added)"
CONTAINER = PREFIX + "isolate.Container host rootfs"
CLI = PREFIX + "isolate run -- /bin/true"
CLI_FLOOR = PREFIX + "python -I -c 'import isolate.cli.run' (the command's start-up)"
BWRAP = PREFIX + "bwrap --unshare-all"
BASE = PREFIX + "subprocess.run"
ROWS = (BASE, SPAWN, CONTAINER, CLI, CLI_FLOOR, BWRAP)

#: Run as the user: times the cases and prints {name: [ns, ...]} as JSON.
SCRIPT = r"""
import json, os, subprocess, sys, time
import isolate

rounds, warmup, true, bwrap, names = json.loads(sys.argv[1])
bindir = os.path.dirname(sys.executable)
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
root = isolate.RootFS.host()

def container():
    with isolate.Container(rootfs=root) as c:
        if c.run([true]).returncode != 0:
            raise RuntimeError("Container.run(/bin/true) failed")

fns = [lambda: subprocess.run([true], check=True),
       lambda: isolate.run([true], namespaces={"pid", "mnt", "uts", "ipc", "net"}, check=True),
       container,
       lambda: subprocess.run([os.path.join(bindir, "isolate"), "run", "--", true], **quiet),
       lambda: subprocess.run([sys.executable, "-I", "-c", "import isolate.cli.run"], **quiet),
       lambda: subprocess.run(bwrap, **quiet)]
samples = {n: [] for n in names}
for i in range(warmup + rounds):
    for name, fn in zip(names, fns):
        t0 = time.perf_counter_ns()
        fn()
        t = time.perf_counter_ns() - t0
        if i >= warmup:
            samples[name].append(t)
print(json.dumps(samples))
"""


def _table(samples: dict[str, list[int]], skipped: str | None, rounds: int, warmup: int,
           seconds: float, missing: dict[str, str] | None = None) -> dict[str, Any]:
    rows = []
    for name in ROWS:
        wall = samples.get(name, [])
        rows.append({"name": name, "group": "rootless", "note": "", "wall_ns": wall, "cpu_ns": [],
                     "skipped": (missing or {}).get(name, skipped) if not wall else None,
                     "stats": summary(wall) if wall else None,
                     "cpu_median_ns": None})
    base = next((r["stats"]["median"] for r in rows if r["name"] == BASE and r["stats"]), None)
    for r in rows:
        r["ratio"] = r["stats"]["median"] / base if base and r["stats"] else None
    return {"rounds": rounds, "warmup": warmup, "seconds": seconds, "rows": rows}


def rootless(rounds: int, warmup: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The section's table (the latency table's shape; ratios to the user's ``subprocess.run``)."""
    import time

    if os.geteuid() != 0:
        return _table({}, "making a user for the run needs root", rounds, warmup, 0.0)
    missing: dict[str, str] = {}
    try:
        bwrap = C.bwrap_argv(share_net=False)
    except C.Skip as e:
        bwrap = []
        missing[BWRAP] = str(e)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    try:
        from rootless import rootless_user
    finally:
        sys.path.pop(0)
    t0 = time.monotonic()
    with rootless_user("isob") as user:
        log(f"  {len(ROWS)} cases x {rounds} rounds (+{warmup} warm-up) as {user.name}, interleaved")
        names = list(ROWS) if bwrap else list(ROWS[:-1])
        r = user.run([user.python, "-c", SCRIPT, json.dumps([rounds, warmup, C.TRUE, bwrap, names])],
                     timeout=60 + rounds * 5)
    if r.returncode != 0:
        return _table({}, f"failed as the user: {r.stderr.strip().splitlines()[-1:]}", rounds, warmup,
                      time.monotonic() - t0)
    return _table(json.loads(r.stdout), None, rounds, warmup, time.monotonic() - t0, missing)
