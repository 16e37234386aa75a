"""Everything isolate leaves behind has an owner: a killed caller's cgroups, overlay work
directories and namespace mounts are reclaimed by ``isolate.gc()`` / ``isolate gc``, and by
the next isolate process that makes something beside them; a live owner's and a detached
thing never are.  Pools whose thread cannot start leave nothing (issue 13)."""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import force_remove_cgroup

import isolate
from isolate import Cgroup
from isolate._owner import registry_path

pytestmark = pytest.mark.root

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
V1 = "/sys/fs/cgroup"

#: A caller as a user writes one: in a cgroup of its own (``<parent>/caller-<pid>``, made
#: before isolate is imported, so Container's groups go below it), a CgroupPool under
#: ``<parent>/pool``, and in a loop: a namespace bound on a file, a Container with limits
#: and an overlay kept in ``<base>``, a group from the pool.  Prints "ready" once the pool
#: is up.  With "hold" it stops in the middle of a run instead and answers on stdin: a line
#: "check" runs a process in its pool group and in its container and prints "ok"; EOF
#: closes everything.
CALLER = textwrap.dedent(r'''
    import json, os, sys
    parent, base, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    for c in ("memory", "pids", "cpu", "cpuacct"):
        d = f"/sys/fs/cgroup/{c}/{parent}/caller-{os.getpid()}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
    import isolate
    from isolate import CgroupPool, Container, Limits, Namespace, RootFS
    limits = Limits(memory_max=64 << 20, pids_max=20)
    pool = CgroupPool(parent=f"{parent}/pool", size=2)
    print("ready", flush=True)
    if mode == "hold":
        ns = Namespace.create("net", os.path.join(base, "ns-live"))
        cg = pool.take()
        c = Container(rootfs=RootFS.host().overlay(upper=base), limits=limits, name="live")
        c.start(["/bin/sleep", "1000"])
        print(json.dumps(sorted(cg.paths.values()) + sorted(c.cgroup.paths.values())), flush=True)
        for line in sys.stdin:
            isolate.run(["/bin/true"], cgroup=cg, check=True)
            r = c.exec(["/bin/sh", "-c", "echo ok > /tmp/probe && cat /tmp/probe"])
            print(r.stdout.decode().strip(), flush=True)
        c.close()
        cg.close()
        ns.close()
        pool.close()
        sys.exit(0)
    i = 0
    while True:
        i += 1
        ns = Namespace.create("net", os.path.join(base, f"ns-{i}"))
        with Container(rootfs=RootFS.host().overlay(upper=base), limits=limits,
                       name=f"c{os.getpid()}-{i}") as c:
            c.run(["/bin/sh", "-c", "echo hi > /tmp/x"])
        with pool.take() as cg:
            isolate.run(["/bin/true"], cgroup=cg)
        ns.close()
''')


def _caller(parent: str, base: Path, mode: str) -> subprocess.Popen[str]:
    base.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", CALLER, parent, str(base), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _dirs_below(parent: str) -> set[str]:
    out = set()
    for c in CONTROLLERS:
        top = f"{V1}/{c}/{parent}"
        for root, dirs, _ in os.walk(top):
            out.update(os.path.join(root, d) for d in dirs)
    return out


def _mounts_under(top: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(top) + "/")]


def _owner_dirs(pids: set[int]) -> list[str]:
    reg = registry_path()
    try:
        names = os.listdir(reg)
    except FileNotFoundError:
        return []
    return [n for n in names if n.lstrip(".").split("-")[0] in {str(p) for p in pids}]


@pytest.fixture
def parent(cgroup_parent: str) -> Iterator[str]:
    """``cgroup_parent``, made in every hierarchy the callers use, and removed with what the
    test made in it (the callers' own ``caller-<pid>`` groups) after the test."""
    for c in CONTROLLERS:
        os.makedirs(f"{V1}/{c}/{cgroup_parent}", exist_ok=True)
    yield cgroup_parent
    for c in CONTROLLERS:
        top = f"{V1}/{c}/{cgroup_parent}"
        if os.path.isdir(top):
            force_remove_cgroup(top)


def _remove_callers_groups(parent: str, pids: set[int]) -> None:
    # The callers made caller-<pid> themselves (as a service's own cgroup): not isolate's.
    for c in CONTROLLERS:
        for pid in pids:
            try:
                os.rmdir(f"{V1}/{c}/{parent}/caller-{pid}")
            except FileNotFoundError:
                pass


@pytest.mark.slow
@pytest.mark.cgroup1
def test_twenty_killed_callers_leave_nothing_after_gc_and_a_live_one_is_untouched(
        parent: str, tmp_path: Path) -> None:
    rnd = random.Random(1313)
    live = _caller(parent, tmp_path / "live", "hold")
    try:
        assert live.stdout is not None and live.stdin is not None
        assert live.stdout.readline() == "ready\n"
        live_paths = json.loads(live.stdout.readline())
        live_ids = {p: os.stat(p).st_ino for p in live_paths}
        killed: set[int] = set()
        for n in range(20):
            # Half the callers share one overlay layer: the next one's first run reclaims
            # what the killed one left there; the others' are only gc's to find.
            base = tmp_path / ("shared" if n % 2 else f"own-{n}")
            p = _caller(parent, base, "loop")
            if rnd.random() < 0.75:
                assert p.stdout is not None
                assert p.stdout.readline() == "ready\n"   # killed in the loop, else during start-up
            time.sleep(rnd.uniform(0.0, 0.5))
            p.send_signal(signal.SIGKILL)
            p.wait()
            killed.add(p.pid)
            if n == 9:
                # Half way: the command line (dry run first: it lists, removes nothing).
                # A killed caller's containers die after it (their parent-death signal):
                # until they have, its block of ids is in use, and the dry run and the
                # real one could see it differently.
                _wait_for_dead_owners_blocks()
                before = _dirs_below(parent)
                dry = subprocess.run([sys.executable, "-m", "isolate", "gc", "--dry-run"],
                                     capture_output=True, text=True, check=True)
                assert _dirs_below(parent) == before
                real = subprocess.run([sys.executable, "-m", "isolate", "gc"],
                                      capture_output=True, text=True, check=True)
                assert real.returncode == 0
                assert sorted(dry.stdout.replace("would remove ", "removed ").splitlines()) \
                    == sorted(real.stdout.splitlines())
                assert all(line.startswith("removed ") for line in real.stdout.splitlines())
                _check_nothing_left(parent, tmp_path, killed, live.pid, live_ids)
            live.stdin.write("check\n")
            live.stdin.flush()
            assert live.stdout.readline() == "ok\n"
        found = isolate.gc()
        assert all(isinstance(f, isolate.Leftover) for f in found)
        assert {f.pid for f in found} <= killed
        _check_nothing_left(parent, tmp_path, killed, live.pid, live_ids)
        live.stdin.write("check\n")
        live.stdin.flush()
        assert live.stdout.readline() == "ok\n"
        live.stdin.close()
        assert live.wait(timeout=60) == 0
        # The live caller closed its own things: nothing of it is left either.
        assert _dirs_below(parent) == {f"{V1}/{c}/{parent}/caller-{pid}"
                                       for c in CONTROLLERS for pid in killed | {live.pid}}
        _remove_callers_groups(parent, killed | {live.pid})
    finally:
        if live.returncode is None:
            live.kill()
            live.wait()
        isolate.gc()


def _wait_for_dead_owners_blocks(timeout: float = 10.0) -> None:
    """Until no process runs with ids of a block whose owner is gone (``isolate._idalloc``)."""
    from isolate import _idalloc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.isdir(_idalloc.STATE_DIR):
            return
        blocks = []
        dir_fd = os.open(_idalloc.STATE_DIR, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in os.listdir(dir_fd):
                got = _idalloc._read(dir_fd, name) if name.isdigit() else None
                if got is not None and _idalloc._dead(got[0]):
                    blocks.append((got[1], got[2]))
        finally:
            os.close(dir_fd)
        if not _idalloc._used(blocks, _idalloc.ids_in_use()):
            return
        time.sleep(0.05)


def _check_nothing_left(parent: str, tmp_path: Path, killed: set[int], live: int,
                        live_ids: dict[str, int]) -> None:
    """Of the killed callers: no cgroup but their own caller-<pid>, no overlay work directory,
    no mount, no owner record.  Of the live one: every group as it was."""
    left = _dirs_below(parent)
    live_dirs = {d for d in left if f"/pool-{live}-" in d or f"/caller-{live}" in d}
    assert {p: os.stat(p).st_ino for p in live_ids} == live_ids
    pool = {f"{V1}/{c}/{parent}/pool" for c in CONTROLLERS}      # holds the live pool's
    assert left - live_dirs == {f"{V1}/{c}/{parent}/caller-{pid}"
                                for c in CONTROLLERS for pid in killed} | pool
    work = sorted(str(p) for p in tmp_path.glob("*/work") if p.parent.name != "live")
    assert work == []
    assert [m for m in _mounts_under(tmp_path) if not m.endswith("/live/ns-live")] == []
    assert _owner_dirs(killed) == []
    assert (tmp_path / "live" / "work").is_dir()
    assert os.path.ismount(tmp_path / "live" / "ns-live")


#: A group of its own with a process in it, and a CgroupPool's group with one too; prints
#: their directories, then waits to be killed.
GROUPS = textwrap.dedent(r"""
    import json, sys
    import isolate
    from isolate import Cgroup, CgroupPool, Limits
    parent = sys.argv[1]
    cg = Cgroup.create("g", parent=f"{parent}/direct", limits=Limits(pids_max=10))
    a = isolate.spawn(["/bin/sleep", "1000"], cgroup=cg)
    pool = CgroupPool(parent=f"{parent}/pool", size=2)
    taken = pool.take()
    b = isolate.spawn(["/bin/sleep", "1000"], cgroup=taken)
    print(json.dumps({"dirs": sorted(cg.paths.values()) + sorted(taken.paths.values()),
                      "pids": [a.pid, b.pid]}), flush=True)
    sys.stdin.read()
""")


@pytest.mark.parametrize("version", [pytest.param(None, marks=pytest.mark.cgroup1, id="v1"),
                                     pytest.param(None, marks=pytest.mark.cgroupv2, id="v2")])
def test_a_killed_callers_groups_and_what_runs_in_them_are_reclaimed(
        cgroup_parent: str, version: None) -> None:
    p = subprocess.Popen([sys.executable, "-c", GROUPS, cgroup_parent],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        made = json.loads(p.stdout.readline())
    finally:
        p.kill()
        p.wait()
    assert all(os.path.isdir(d) for d in made["dirs"])
    assert all(isolate._owner.proc_start_time(pid) is not None for pid in made["pids"])
    ready = {d for d in _all_dirs(cgroup_parent) if "/pool/pool-" in d} - set(made["dirs"])
    found = [f for f in isolate.gc() if f.pid == p.pid]
    assert {f.path for f in found if f.kind == "cgroup"} == set(made["dirs"]) | ready
    # Every directory it made, its parents and the pool's ready groups with them; the
    # sleepers were killed first (reaped by init: no longer running).
    assert _all_dirs(cgroup_parent) == []
    for pid in made["pids"]:
        assert isolate._owner.proc_start_time(pid) is None


def _all_dirs(name: str) -> list[str]:
    return sorted(d for top in glob.glob(f"/sys/fs/cgroup/**/{name}", recursive=True)
                  + glob.glob(f"/sys/fs/cgroup/{name}")
                  for d in [top, *(os.path.join(r, x) for r, ds, _ in os.walk(top) for x in ds)])


#: Joins the cgroup named by argv (a dead owner's), then runs gc: it must not kill itself.
SELF_IN_GROUP = textwrap.dedent(r"""
    import json, os, sys, warnings
    import isolate
    for d in json.loads(sys.argv[1]):
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = isolate.gc()
    print(json.dumps({"found": [f.path for f in found],
                      "warnings": [str(w.message) for w in caught]}), flush=True)
""")


@pytest.mark.cgroup1
def test_gc_never_kills_the_process_running_it(cgroup_parent: str) -> None:
    # A dead owner's group that the process running gc has joined: left, with a warning.
    p = subprocess.Popen([sys.executable, "-c", GROUPS, cgroup_parent],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        made = json.loads(p.stdout.readline())
    finally:
        p.kill()
        p.wait()
    direct = [d for d in made["dirs"] if "/direct/" in d]
    try:
        r = subprocess.run([sys.executable, "-c", SELF_IN_GROUP, json.dumps(direct)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert not set(direct) & set(out["found"])
        assert any("not emptying a cgroup this process is in" in w for w in out["warnings"]), out
    finally:
        assert {f.path for f in isolate.gc() if f.kind == "cgroup"} >= set(direct)


#: Makes a cgroup in ``<parent>/a`` and one in ``<parent>/b`` (with a process in it), runs a
#: container on an overlay kept in ``<base>`` (held at /bin/sleep), binds a namespace in
#: ``<base>`` and one in a directory of its own under /run, prints what it made, then waits
#: to be killed.
MAKER = textwrap.dedent(r"""
    import json, os, sys
    import isolate
    from isolate import Cgroup, Container, Limits, Namespace, RootFS
    parent, base = sys.argv[1], sys.argv[2]
    a = Cgroup.create("ga", parent=f"{parent}/a", limits=Limits(pids_max=5))
    b = Cgroup.create("gb", parent=f"{parent}/b")
    isolate.spawn(["/bin/sleep", "1000"], cgroup=b)       # reclaiming kills it
    c = Container(rootfs=RootFS.host().overlay(upper=base), die_with_parent=True)
    proc = c.start(["/bin/sleep", "1000"])
    ns = Namespace.create("net", os.path.join(base, "ns"))
    tmp = Namespace.create("uts")
    print(json.dumps({"a": sorted(a.paths.values()), "b": sorted(b.paths.values()),
                      "ns": ns.path, "tmp": tmp.path, "container": proc.pid}), flush=True)
    sys.stdin.read()
""")

#: A new isolate process: makes one thing of each kind beside what MAKER left, and says
#: after each which of MAKER's things are still there.
CHECKER = textwrap.dedent(r"""
    import json, os, sys
    import isolate
    from isolate import Cgroup, Container, Namespace, RootFS
    parent, base, made = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    seen = {}
    exists = lambda paths: [os.path.lexists(p) for p in paths]
    with Cgroup.create("mine", parent=f"{parent}/a"):
        seen["cgroup"] = {"a": exists(made["a"]), "b": exists(made["b"])}
    with Container(rootfs=RootFS.host().overlay(upper=base)) as c:
        c.start(["/bin/sh", "-c", "echo new > /tmp/f"])
        seen["stale work"] = os.path.exists(os.path.join(base, "work", "stale"))
        seen["run"] = c.wait().returncode
    seen["work"] = os.path.exists(os.path.join(base, "work"))
    seen["upper"] = os.path.isdir(os.path.join(base, "upper"))
    with Namespace.create("net", os.path.join(base, "ns2")):
        seen["ns"] = os.path.lexists(made["ns"])
    with Namespace.create("uts"):
        seen["tmp"] = os.path.lexists(os.path.dirname(made["tmp"]))
    print(json.dumps(seen), flush=True)
""")


@pytest.mark.cgroup1
def test_the_first_create_under_a_parent_reclaims_what_a_dead_owner_left_there(
        cgroup_parent: str, tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", MAKER, cgroup_parent, str(tmp_path)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        made = json.loads(p.stdout.readline())
    finally:
        p.kill()
        p.wait()
    try:
        assert all(os.path.isdir(d) for d in made["a"] + made["b"])
        assert os.path.ismount(made["ns"]) and os.path.ismount(made["tmp"])
        assert (tmp_path / "work").is_dir()
        # The container's process dies with its caller (die_with_parent); until it is gone
        # its overlay is in use, and its work directory is rightly kept.
        deadline = time.monotonic() + 30
        while isolate._owner.proc_start_time(made["container"]) is not None:
            assert time.monotonic() < deadline, "the container outlived its caller"
            time.sleep(0.01)
        (tmp_path / "work" / "stale").write_text("the dead run's scratch")
        r = subprocess.run([sys.executable, "-c", CHECKER, cgroup_parent, str(tmp_path),
                            json.dumps(made)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout)
        # A cgroup in <parent>/a: the dead owner's group there went first; the one in
        # <parent>/b (another parent) stays for gc.
        assert seen["cgroup"] == {"a": [False] * len(made["a"]), "b": [True] * len(made["b"])}
        # The first run on the overlay layer: the dead run's work directory went first
        # (the new run's own is removed after it); the layer itself is the caller's data.
        assert seen["stale work"] is False
        assert seen["run"] == 0 and seen["work"] is False and seen["upper"] is True
        # A namespace file beside the dead one's: its mount and file went first; so did the
        # directory of one made with path=None, when the next one is made under /run.
        assert seen["ns"] is False and seen["tmp"] is False
        assert _mounts_under(tmp_path) == [] and not os.path.ismount(made["tmp"])
        found = [f for f in isolate.gc() if f.pid == p.pid]
        assert sorted(f.path for f in found if f.kind == "cgroup") == made["b"]
        assert not any(os.path.exists(d) for d in made["b"])
    finally:
        for path in (made["ns"], made["tmp"]):
            if os.path.ismount(path):
                subprocess.run(["umount", "-l", path], check=False)
        isolate.gc()


DETACHER = textwrap.dedent(r'''
    import json, os, sys
    parent, base = sys.argv[1], sys.argv[2]
    for c in ("memory", "pids", "cpu", "cpuacct"):
        d = f"/sys/fs/cgroup/{c}/{parent}/caller"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
    from isolate import Cgroup, Container, Limits, Namespace
    cg = Cgroup.create("kept", parent=parent, limits=Limits(pids_max=5))
    cg.detach()
    disowned = Cgroup.create("disowned", parent=parent)
    disowned.disown()                        # still usable, no longer reclaimed
    ns = Namespace.create("net", os.path.join(base, "ns"))
    ns.detach()
    c = Container(limits=Limits(pids_max=5), name="handed-over", die_with_parent=False)
    proc = c.start(["/bin/sleep", "1000"])
    group = sorted(c.cgroup.paths.values())
    c.detach()
    print(json.dumps({"cgroups": sorted(Cgroup.open("kept", parent=parent).paths.values())
                      + sorted(disowned.paths.values()) + group,
                      "ns": os.path.join(base, "ns"), "pid": proc.pid}), flush=True)
    sys.stdin.read()
''')


@pytest.mark.cgroup1
def test_things_handed_over_with_detach_are_never_reclaimed(cgroup_parent: str,
                                                            tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", DETACHER, cgroup_parent, str(tmp_path)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        made = json.loads(p.stdout.readline())
    finally:
        p.kill()
        p.wait()
    try:
        found = isolate.gc()
        assert not any(f.path in made["cgroups"] or f.path == made["ns"] for f in found)
        assert all(os.path.isdir(d) for d in made["cgroups"])
        assert os.path.ismount(made["ns"])
        assert Path(f"/proc/{made['pid']}/stat").exists()    # the detached container runs
        # The next create beside them does not take them either.
        with Cgroup.create("next", parent=cgroup_parent):
            assert all(os.path.isdir(d) for d in made["cgroups"])
    finally:
        try:
            os.kill(made["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        subprocess.run(["umount", made["ns"]], check=False)
        os.unlink(made["ns"])
        for d in glob.glob(f"{V1}/*/{cgroup_parent}"):
            force_remove_cgroup(d)        # the groups handed over, and the caller's own
        isolate.gc()


def test_a_created_pid_namespace_cannot_be_handed_over() -> None:
    # It ends with its init, which lives only as long as this process.
    with isolate.Namespace.create("pid") as ns:
        with pytest.raises(isolate.ConfigError, match="pid namespace cannot be detached"):
            ns.detach()
        assert not ns.closed


#: Runs a container on an overlay kept in ``<base>`` that outlives its caller
#: (die_with_parent=False), prints its pid, then waits to be killed.
OUTLIVER = textwrap.dedent(r"""
    import sys
    from isolate import Container, RootFS
    c = Container(rootfs=RootFS.host().overlay(upper=sys.argv[1]), die_with_parent=False)
    print(c.start(["/bin/sleep", "1000"]).pid, flush=True)
    sys.stdin.read()
""")


def test_an_overlay_a_container_still_runs_on_is_kept_until_it_ends(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", OUTLIVER, str(tmp_path)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
    finally:
        p.kill()
        p.wait()
    try:
        assert isolate._owner.proc_start_time(pid) is not None      # the container runs on
        assert not any(f.path == str(tmp_path / "work") for f in isolate.gc())
        assert (tmp_path / "work").is_dir()
    finally:
        os.kill(pid, signal.SIGKILL)      # its pid namespace's init: the container ends
    deadline = time.monotonic() + 30
    while isolate._owner.proc_start_time(pid) is not None:
        assert time.monotonic() < deadline, "the container did not end"
        time.sleep(0.01)
    # Its overlay's work directory, and the block of host ids its root ran as (userns auto).
    assert sorted(f.kind for f in isolate.gc() if f.pid == p.pid) == ["overlay-work", "userns-range"]
    assert not (tmp_path / "work").exists()


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
@pytest.mark.cgroup1
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


KILLED_IN_WORK = textwrap.dedent(r'''
    import os, pathlib, signal, sys
    from isolate import Container, RootFS
    real = pathlib.Path.mkdir
    def mkdir(self, *a, **k):
        real(self, *a, **k)
        if self.parent.name == "work":     # the first directory made inside the work directory
            os.kill(os.getpid(), signal.SIGKILL)
    pathlib.Path.mkdir = mkdir
    Container(rootfs=RootFS.host().overlay(upper=sys.argv[1])).run(["/bin/true"])
    ''')


def test_a_caller_killed_while_it_fills_a_new_work_directory_leaves_it_to_gc(tmp_path: Path) -> None:
    """Killed right after making a directory inside a new overlay work directory (before its
    buffered records reach the journal): gc still removes the work directory, whose inode
    the journal had from the start.  (Left pending, a non-empty one stayed for ever.)"""
    base = tmp_path / "layer"
    base.mkdir()
    p = subprocess.run([sys.executable, "-c", KILLED_IN_WORK, str(base)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert os.listdir(base / "work"), "the caller was killed before it made anything there"
    found = isolate.gc()
    assert [f.path for f in found if f.kind == "overlay-work"] == [str(base / "work")], found
    assert not (base / "work").exists()
