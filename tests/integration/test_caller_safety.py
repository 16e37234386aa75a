"""A sandbox never harms the program that embeds it (issue 13, first part).

The spawn's clone shares the caller's memory until it execs the child
program; before the child program, a memory cgroup's OOM killer could pick
that clone (scored by the caller's RSS) and kill every process sharing its
memory, the caller included, and a credential change there made the
caller's memory non-dumpable.  Each test runs the caller as a process of its
own and checks that it lives on, unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import isolate
from isolate import _ops as O
from support import cgroup_leftovers

pytestmark = [pytest.mark.root]

VERSIONS = [pytest.param(1, marks=pytest.mark.cgroup1, id="v1"),
            pytest.param(2, marks=pytest.mark.cgroupv2, id="v2")]


def caller(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the caller: a Python process of its own importing this isolate."""
    env = {**os.environ, "PYTHONPATH": str(Path(isolate.__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(params=VERSIONS)
def parent(request: pytest.FixtureRequest, cgroup_parent: str) -> str:
    return cgroup_parent


TINY = textwrap.dedent('''\
    import json, sys, isolate
    from isolate import Cgroup, Limits
    out = []
    with Cgroup.create("tiny", parent=sys.argv[1], limits=Limits(memory_max=64 << 10)) as cg:
        for how in ("spawn", "spawn with a user namespace", "Container"):
            try:
                if how == "Container":
                    with isolate.Container(cgroup=cg) as c:
                        code = c.run(["/bin/true"]).returncode
                else:
                    ns = {"pid", "mnt"} | ({"user"} if "user" in how else set())
                    p = isolate.spawn(["/bin/true"], cgroup=cg, namespaces=ns)
                    code = p.wait()
                out.append([how, "exited", code])
            except isolate.IsolateError as e:
                out.append([how, "refused", str(e)])
        oom = cg.stats().oom_kill
    print(json.dumps({"runs": out, "oom_kill": oom}))
    ''')


def test_a_tiny_memory_limit_never_kills_the_caller(parent: str) -> None:
    """A 64 KiB memory limit: whatever happens to the sandbox (killed, or refused with
    ENOMEM), the caller goes on.  Before the child program, the caller was killed with it."""
    r = caller(TINY, parent)
    assert r.returncode == 0, (r.returncode, r.stderr)
    out = json.loads(r.stdout)
    assert len(out["runs"]) == 3
    for how, what, detail in out["runs"]:
        # The sandbox does not survive 64 KiB: an OOM kill, or a clear refusal (ENOMEM; or
        # E2BIG from execve, which cannot allocate the child program's argument pages).
        assert (what == "exited" and detail == -9) or (what == "refused" and "Errno 12" in detail) \
            or (what == "refused" and "Errno 7" in detail and "memory limit is too small" in detail), \
            (how, what, detail)


def test_isolate_run_with_a_tiny_memory_limit_reports_instead_of_dying(tmp_path: Path) -> None:
    """``isolate run --memory 64k -- true``: the CLI itself lives to report (exit status
    137 is the command's SIGKILL, or 125 with a one-line error), never killed by it."""
    report = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "isolate", "run", "--memory", "64k",
                        "--name", f"isolate-test-tiny-{os.getpid()}", "--json", str(report),
                        "--", "true"], capture_output=True, text=True, timeout=120)
    assert r.returncode in (137, 125), (r.returncode, r.stderr)
    if r.returncode == 137:
        result = json.loads(report.read_text())
        assert result["returncode"] == -9 and result["oom_killed"] is True, result
    else:
        assert r.stderr.count("\n") == 1 and "Cannot allocate memory" in r.stderr, r.stderr


BIG = textwrap.dedent('''\
    import json, os, subprocess, sys, time, isolate
    from isolate import Cgroup, Limits
    big = bytearray(1 << 30)                 # a caller of 1 GiB resident memory
    for i in range(0, len(big), 4096):
        big[i] = 1
    limit = 48 << 20
    hog = r"""
    import os, sys
    usage = sys.argv[1]
    limit = int(sys.argv[2])
    keep = []
    while int(open(usage).read()) < limit - (256 << 10):
        keep.append(bytearray(64 << 10))
    print("full", flush=True)
    sys.stdin.read()
    """
    with Cgroup.create("near", parent=sys.argv[1], limits=Limits(memory_max=limit)) as cg:
        usage = [p for p in (os.path.join(d, f) for d in cg.paths.values()
                             for f in ("memory.current", "memory.usage_in_bytes"))
                 if os.path.exists(p)][0]
        spawned = []
        for round in range(5):
            # Another process holds the group at its limit ...
            h = isolate.spawn(["/usr/bin/python3", "-c", hog, usage, str(limit)], cgroup=cg,
                              stdin=isolate.PIPE, stdout=isolate.PIPE)
            h.stdout.readline()
            # ... and the big caller spawns into it.
            for _ in range(3):
                try:
                    spawned.append(isolate.spawn(["/bin/true"], cgroup=cg, namespaces={"pid", "mnt"}).wait())
                except isolate.IsolateError as e:
                    spawned.append(str(e))
            h.kill()
            h.wait()
            h.close()
        oom = cg.stats().oom_kill
    print(json.dumps({"alive": True, "spawned": spawned, "oom_kill": oom, "rss": len(big)}))
    ''')


@pytest.mark.slow
def test_a_big_caller_spawning_into_a_group_at_its_limit_survives(parent: str) -> None:
    """A 1 GiB caller spawns into a group that another process holds at its memory limit:
    the group's OOM killer must find a victim among sandboxed processes, never the
    caller (the vfork'd clone is never a victim, and the child program's memory is its own)."""
    r = caller(BIG, parent)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    out = json.loads(r.stdout)
    assert out["alive"] and out["rss"] == 1 << 30
    assert len(out["spawned"]) == 15


DUMPABLE = textwrap.dedent('''\
    import ctypes, json, os, sys, isolate
    libc = ctypes.CDLL(None, use_errno=True)
    PR_GET_DUMPABLE = 3
    def state():
        st = os.stat("/proc/self/status")
        return [libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), st.st_uid]
    out = {"before": state(), "runs": []}
    for how in sys.argv[1:]:
        if how == "user":
            r = isolate.run(["true"], user=65534, group=65534, groups=[])
        elif how == "userns":
            r = isolate.run(["true"], namespaces={"user"})
        elif how == "userns-pid":
            r = isolate.run(["true"], namespaces={"user", "pid", "mnt"})
        out["runs"].append([how, r.returncode, state()])
    print(json.dumps(out))
    ''')


def test_the_callers_dumpability_never_changes_as_root() -> None:
    """Root changes a child's ids (and makes user namespaces): the caller stays dumpable,
    its /proc files its own.  Before the child program, the first run made it non-dumpable."""
    r = caller(DUMPABLE, "user", "userns", "userns-pid", "user")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["before"] == [1, 0]
    assert [run[1:] for run in out["runs"]] == [[0, [1, 0]]] * 4, out


@pytest.mark.userns
def test_the_callers_dumpability_never_changes_unprivileged(tmp_path: Path) -> None:
    """An unprivileged caller (nobody, in a mount namespace of the test's own where it can
    read this Python) makes single-id user namespaces again and again: it stays dumpable
    and every spawn works.  Before, the second failed with ``setgroups: [Errno 13]``."""
    from test_userns_unprivileged import NOBODY, _root_subtrees  # the same set-up
    from isolate import _plan as P

    stage = tmp_path / "stage"
    stage.mkdir()
    ops: list[P.Op] = []
    subtrees = sorted(_root_subtrees())
    if subtrees and os.stat("/root").st_mode & 0o001 == 0:
        for i, d in enumerate(subtrees):
            (stage / str(i)).mkdir()
            ops.append(O.Bind(d.encode(), str(stage / str(i)).encode()))
        ops.append(O.Mount(b"tmpfs", b"/root", b"tmpfs", 0, b"mode=755"))
        for i, d in enumerate(subtrees):
            ops.append(O.Mkdir(d.encode()))
            ops.append(O.Bind(str(stage / str(i)).encode(), d.encode()))
    os.chmod(tmp_path, 0o755)
    r = isolate.run([sys.executable, "-c", DUMPABLE, "userns", "userns-pid", "userns", "userns-pid"],
                    namespaces={"mnt"}, ops=ops, cwd="/", user=NOBODY, group=NOBODY, groups=[],
                    capture_output=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                              "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["before"] == [1, NOBODY]
    assert [run[1:] for run in out["runs"]] == [[0, [1, NOBODY]]] * 4, out


def test_the_clone_never_writes_the_callers_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clone runs on the calling thread's TLS until it execs the child program: it
    must not store an errno there.  ``ffi.errno`` is that thread's errno as iso_spawn left
    it; a user-namespace clone probes capabilities past cap_last_cap (EINVAL each time),
    and a close_fds clone marks fds one by one where close_range is missing.  Before the
    clone made raw system calls only, every user-namespace spawn left errno at EINVAL."""
    from isolate import _spawn
    from isolate._native import ffi

    real = _spawn.lib
    seen: list[int] = []

    class Lib:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def iso_spawn(self, plan: object, child: object) -> int:
            ffi.errno = 0
            rc = int(real.iso_spawn(plan, child))
            seen.append(ffi.errno)
            return rc

    monkeypatch.setattr(_spawn, "lib", Lib())
    for ns in ({"user"}, {"user", "pid", "mnt"}, {"pid"}):
        isolate.run(["/bin/true"], namespaces=ns, close_fds=True)
    assert seen == [0, 0, 0]
