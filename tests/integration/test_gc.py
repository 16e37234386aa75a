"""Everything isolate leaves behind has an owner: pools whose thread cannot start leave
nothing (issue 13)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest
from support import force_remove_cgroup

pytestmark = [pytest.mark.root, pytest.mark.cgroup1]

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
V1 = "/sys/fs/cgroup"


#: Moves itself into a pids cgroup with pids.max at 1 (itself): no thread can start.
#: Then builds the pool named by argv and prints what it raised and its fds before/after.
NO_THREADS = textwrap.dedent(r'''
    import gc, json, os, sys, warnings
    pids_dir, parent, which = sys.argv[1], sys.argv[2], sys.argv[3]
    import isolate, isolate._owner, isolate.cgroup.pool, isolate.netpool
    with open(os.path.join(pids_dir, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    with open(os.path.join(pids_dir, "pids.max"), "w") as f:
        f.write("1")
    def fds():
        # Not the owner registry's two (its directory's lock, the journal): they live as
        # long as the process, whatever it makes.
        reg = isolate._owner.registry_path()
        out = []
        for fd in sorted(os.listdir("/proc/self/fd")):
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if not link.startswith(reg + "/"):
                out.append(f"{fd} {link}")
        return out
    before = fds()
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if which == "cgroup":
                isolate.CgroupPool(parent=parent, limits=isolate.Limits(pids_max=10), size=2)
            else:
                isolate.NetnsPool(size=2)
            out["error"] = None
        except Exception as e:
            out.update(error=type(e).__name__, message=str(e),
                       errno=getattr(e, "errno", None), oserror=isinstance(e, OSError))
        gc.collect()
    out["warnings"] = [str(w.message) for w in caught]
    out["fds"] = [before, fds()]
    print(json.dumps(out), flush=True)
''')


@pytest.mark.parametrize("which", ["cgroup", "netns"])
def test_a_pool_whose_thread_cannot_start_leaves_nothing_and_says_why(
        cgroup_parent: str, which: str) -> None:
    pids_dir = f"{V1}/pids/{cgroup_parent}/caller"
    os.makedirs(pids_dir)
    pool_parent = f"{cgroup_parent}/pool"
    try:
        r = subprocess.run([sys.executable, "-c", NO_THREADS, pids_dir, pool_parent, which],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["error"] == "SpawnError", out
        assert out["oserror"] and out["errno"] == 11
        name = "CgroupPool" if which == "cgroup" else "NetnsPool"
        assert f"{name}: cannot start its background thread" in out["message"]
        assert "pids.max" in out["message"]
        before, after = out["fds"]
        assert after == before                      # the pipe and the groups' fds are closed
        assert out["warnings"] == []
        assert "cannot join thread" not in r.stderr and "Exception ignored" not in r.stderr
        # No group of the pool's, and not its parent either (made for it, removed with it).
        assert [d for d in glob.glob(f"{V1}/*/{pool_parent}")] == []
    finally:
        for c in CONTROLLERS:
            for d in (f"{V1}/{c}/{cgroup_parent}/caller", f"{V1}/{c}/{cgroup_parent}"):
                if os.path.isdir(d):
                    force_remove_cgroup(d)
