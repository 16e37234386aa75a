"""Limits for an ordinary user: a delegated cgroup is found or named, and one is needed.

The user is tests/rootless.py's, made for the run.  On this hybrid host the
limits come from cgroup v1: with nothing delegated, ``isolate run --memory``
fails with one error that names the directory it needed, the hierarchy and
how to get one, and makes nothing; with directories an administrator (the
test, as root) made in the memory and pids hierarchies and chowned to the
user, the limits hold, through ``--cgroup-parent``/``parent=`` and by default
once the user's process lives in them.  The ``cgroupv2`` tests do the same on
a pure v2 host (vm-run), where the user's own delegated cgroup holds the
user's process: isolate moves it into a leaf ``init`` first (no internal
processes).  As root, a memory limit never fails on the cpu hierarchy's path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from isolate.cgroup import detect

pytestmark = [pytest.mark.root, pytest.mark.userns]

#: A memory hog: 512 MiB written, so every page is charged.
HOG = ["/usr/bin/python3", "-c", "b = b'x' * (512 << 20); print('survived')"]
#: A fork loop: 40 sleepers, then a line that a pids limit never lets it print.
FORK = ["sh", "-c", "i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done; echo forked-all"]


@dataclass
class Delegated:
    """A subtree an administrator handed to the user: its name and its directories."""

    name: str
    dirs: dict[str, Path]          # hierarchy (a v1 controller, or "unified") -> directory


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for root, _, files in os.walk(top):
        os.chown(root, uid, gid)
        for f in files:
            os.chown(os.path.join(root, f), uid, gid)


def _dirs_below(top: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, d), top) for r, ds, _ in os.walk(top) for d in ds)


def _remove(top: Path) -> None:
    for root, _, _ in sorted(os.walk(top), key=lambda t: -len(t[0])):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(root)


def _owned_by(uid: int) -> list[str]:
    """Every directory under /sys/fs/cgroup that ``uid`` owns."""
    out = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(os.path.join(root, d)).st_uid == uid:
                    out.append(os.path.join(root, d))
    return out


@pytest.fixture
def delegated_v1(rootless: Any, cgroup_parent: str) -> Iterator[Delegated]:
    """``cgroup_parent`` made in the memory and pids hierarchies and chowned to the user,
    with a child ``u`` (also the user's) that the user's process can be moved into."""
    lay = detect()
    dirs = {}
    try:
        for ctl in ("memory", "pids"):
            top = Path(lay.v1[ctl].mount, cgroup_parent)
            (top / "u").mkdir(parents=True)
            _chown_tree(top, rootless.uid, rootless.gid)
            dirs[ctl] = top
        yield Delegated(cgroup_parent, dirs)
    finally:
        for top in dirs.values():
            _remove(top)


def _run(rootless: Any, argv: list[str], *, cgroups: list[Path] = ()) -> subprocess.CompletedProcess[str]:
    return rootless.run(["isolate", "run", *argv], cgroups=[str(c) for c in cgroups], timeout=300)


def _result(stderr: str) -> dict[str, Any]:
    """The ``--json`` result (the last line of stderr)."""
    return json.loads(stderr.strip().splitlines()[-1])


def _assert_limits_hold(rootless: Any, extra: list[str], cgroups: list[Path] = ()) -> None:
    name = f"isolate-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    r = _run(rootless, [*extra, "--name", name, "--memory", "64m", "--json", "--", *HOG], cgroups=cgroups)
    assert r.returncode == 137, (r.returncode, r.stdout, r.stderr)
    assert "survived" not in r.stdout
    assert _result(r.stderr)["oom_killed"] is True
    r = _run(rootless, [*extra, "--pids", "8", "--", *FORK], cgroups=cgroups)
    assert r.returncode != 0 and "forked-all" not in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert "fork" in r.stderr.lower(), r.stderr
    # And without the limits the same commands get through: the limits did it.
    r = _run(rootless, [*extra, "--", *FORK], cgroups=cgroups)
    assert r.returncode == 0 and "forked-all" in r.stdout, (r.returncode, r.stdout, r.stderr)


# --- cgroup v1 (this hybrid host) ---------------------------------------------------------


@pytest.mark.cgroup1
def test_without_delegation_one_error_names_path_hierarchy_and_how(rootless: Any) -> None:
    lay = detect()
    mem = lay.v1["memory"]
    own = mem.fs_path(mem.own)     # the user's process starts in this test's cgroups
    name = f"isolate-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    before = _owned_by(rootless.uid)
    r = _run(rootless, ["--name", name, "--memory", "100m", "--", "true"])
    assert r.returncode == 125, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "a memory limit needs a cgroup delegated to this user" in err
    assert f"below {own}/isolate (this process's own cgroup" in err
    # The directory it could not write: the user's cgroup, or 'isolate' in it if root made that.
    assert re.search(rf"{re.escape(own)}(/isolate)? is not writable by uid {rootless.uid}", err), err
    assert f"cgroup v1 memory hierarchy at {mem.mount}" in err
    assert "--cgroup-parent" in err and f"chown -R {rootless.name}" in err
    # The memory limit names only the memory hierarchy: never cpu's path.
    assert lay.v1["cpu"].mount not in err
    # The same from Python, as the CgroupDelegationError a caller can catch.
    code = ("import isolate\n"
            "try:\n"
            f"    isolate.Cgroup.create({name!r}, limits=isolate.Limits(pids_max=10))\n"
            "except isolate.CgroupDelegationError as e:\n"
            "    print(e.errno, e.filename, isinstance(e, isolate.CgroupError))\n")
    r = rootless.python_run(code)
    pids = lay.v1["pids"]
    errno, filename, is_cgroup_error = r.stdout.split()
    assert (errno, is_cgroup_error) == ("13", "True"), (r.stdout, r.stderr)
    assert filename in (pids.fs_path(pids.own), os.path.join(pids.fs_path(pids.own), "isolate"))
    # Nothing was made: no directory of the user's, none of the container's name.
    assert _owned_by(rootless.uid) == before == []
    assert not [d for d in Path("/sys/fs/cgroup").rglob(name)]


@pytest.mark.cgroup1
def test_delegated_v1_subtree_through_cgroup_parent(rootless: Any, delegated_v1: Delegated) -> None:
    _assert_limits_hold(rootless, ["--cgroup-parent", delegated_v1.name])
    for top in delegated_v1.dirs.values():
        assert _dirs_below(top) == ["u"], top          # the containers' cgroups are gone
    # parent= from Python: only the hierarchies delegated are joined, and the limit holds.
    code = ("import isolate, json\n"
            f"cg = isolate.Cgroup.create('py', parent={delegated_v1.name!r}, "
            "limits=isolate.Limits(memory_max=64 << 20))\n"
            "with cg:\n"
            f"    r = isolate.run({HOG!r}, namespaces={{'user', 'pid'}}, cgroup=cg, capture_output=True)\n"
            "    print(json.dumps([sorted(cg.paths.values()), r.returncode, cg.stats().oom_kill]))\n")
    r = rootless.python_run(code)
    assert r.returncode == 0, r.stderr
    paths, rc, kills = json.loads(r.stdout)
    assert paths == sorted(str(top / "py") for top in delegated_v1.dirs.values())
    assert rc == -9 and kills >= 1
    for top in delegated_v1.dirs.values():
        assert _dirs_below(top) == ["u"], top


@pytest.mark.cgroup1
def test_a_default_controller_of_an_undelegated_unified_hierarchy_is_left_out(
        rootless: Any, delegated_v1: Delegated) -> None:
    """A hybrid host whose pids controller lives only in cgroup2 (a layout that says so):
    a memory limit needs no v2 group, and the user gets its group in the memory hierarchy."""
    code = ("import isolate\n"
            "from isolate.cgroup import Layout, detect\n"
            "from isolate.cgroup.layout import Hierarchy\n"
            "lay = detect()\n"
            "v2 = Hierarchy(2, lay.v2.mount, lay.v2.root, frozenset({'pids'}), lay.v2.own)\n"
            "fake = Layout('hybrid', v2, {c: h for c, h in lay.v1.items() if c != 'pids'})\n"
            f"with isolate.Cgroup.create('g', parent={delegated_v1.name!r}, layout=fake,\n"
            "                          limits=isolate.Limits(memory_max=64 << 20)) as cg:\n"
            "    print(' '.join(sorted(cg.paths.values())), ' '.join(sorted(cg.controllers)))\n")
    r = rootless.python_run(code)
    assert r.returncode == 0, r.stderr
    paths, controllers = r.stdout.strip().split(" ", 1)[0], r.stdout.split()[1:]
    assert paths == str(delegated_v1.dirs["memory"] / "g")
    assert controllers == ["memory"]
    assert _dirs_below(delegated_v1.dirs["memory"]) == ["u"]


@pytest.mark.cgroup1
def test_delegated_v1_subtree_found_by_default(rootless: Any, delegated_v1: Delegated) -> None:
    inside = [top / "u" for top in delegated_v1.dirs.values()]
    _assert_limits_hold(rootless, [], cgroups=inside)
    code = ("import isolate\n"
            "with isolate.Container(limits=isolate.Limits(memory_max=64 << 20)) as c:\n"
            f"    r = c.run({HOG!r})\n"
            "    print(c.cgroup.path, r.returncode, r.oom_killed)\n"
            "    c.start(['sleep', '60'])\n"
            "    try:\n"
            "        c.pause()\n"
            "    except isolate.UnsupportedError as e:\n"
            "        print(e)\n")
    r = rootless.python_run(code, cgroups=[str(d) for d in inside])
    assert r.returncode == 0, r.stderr
    first, why = r.stdout.splitlines()
    path, rc, oom = first.split()
    assert path.startswith(str(delegated_v1.dirs["memory"] / "u" / "isolate") + "/")
    assert (rc, oom) == ("-9", "True")
    # The freezer hierarchy is not delegated: pause() says so (and close() kills without it).
    assert f"the cgroup v1 freezer hierarchy at {detect().v1['freezer'].mount} has no place" in why
    assert f"is not writable by uid {rootless.uid}" in why
    for d in inside:
        assert _dirs_below(d) == [], d                  # the group and its parent 'isolate' are gone


@pytest.mark.cgroup1
def test_root_of_a_user_namespace_is_an_ordinary_user(rootless: Any, delegated_v1: Delegated) -> None:
    """``unshare -r``: euid 0, but not the host's root (as in a rootless container's runtime)."""
    name = f"isolate-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    r = rootless.run(["unshare", "-r", "isolate", "run", "--name", name, "--memory", "64m", "--",
                      "true"], timeout=300)
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert "a memory limit needs a cgroup delegated to this user" in r.stderr
    assert f"uid 0 (uid {rootless.uid} outside its user namespace)" in r.stderr
    assert f"chown -R {rootless.name} " in r.stderr
    assert not [d for d in Path("/sys/fs/cgroup").rglob(name)]
    # With the subtree delegated (to the user, root inside): found by default, as for the user.
    inside = [top / "u" for top in delegated_v1.dirs.values()]
    code = ("import isolate\n"
            "with isolate.Cgroup.create('g', limits=isolate.Limits(memory_max=64 << 20)) as cg:\n"
            "    print(' '.join(sorted(cg.paths.values())))\n")
    r = rootless.run(["unshare", "-r", rootless.python, "-c", code], cgroups=[str(d) for d in inside])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(str(d / "isolate" / "g") for d in inside)
    for d in inside:
        assert _dirs_below(d) == [], d


@pytest.mark.cgroup1
def test_a_killed_run_leaves_nothing_once_the_user_runs_again(rootless: Any,
                                                              delegated_v1: Delegated) -> None:
    """SIGKILL to the user's isolate while its container runs: the group stays, named in
    the user's owner registry, and the user's next run in that subtree removes it."""
    argv = ["isolate", "run", "--cgroup-parent", delegated_v1.name, "--memory", "64m", "--",
            "sleep", "300"]
    p = subprocess.Popen(rootless.command(argv), env=rootless.env(), cwd=rootless.home,
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mem = delegated_v1.dirs["memory"]
        for _ in range(3000):           # until the container's group holds its process
            groups = [d for d in _dirs_below(mem) if d != "u"]
            if groups and (mem / groups[0] / "cgroup.procs").read_text().strip():
                break
            assert p.poll() is None, p.returncode
            time.sleep(0.01)
        else:
            raise AssertionError("the container never started")
    finally:
        p.kill()                        # setpriv exec'd isolate: this is the isolate process
        p.wait()
    assert [d for d in _dirs_below(mem) if d != "u"], "the killed run's group should be left"
    r = _run(rootless, ["--cgroup-parent", delegated_v1.name, "--pids", "8", "--", "true"])
    assert r.returncode == 0, r.stderr
    for top in delegated_v1.dirs.values():
        assert _dirs_below(top) == ["u"], top


@pytest.mark.cgroup1
def test_root_memory_limit_never_touches_a_read_only_cpu_hierarchy() -> None:
    """As root, in a mount namespace of its own where the cpu hierarchy is read-only."""
    cpu = detect().v1["cpu"].mount
    isolate_bin = Path(sys.executable).parent / "isolate"
    script = f'mount -o remount,bind,ro {cpu} && exec {isolate_bin} run --memory 64m --json -- "$@"'
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                        *HOG], capture_output=True, text=True, timeout=120)
    assert r.returncode == 137, (r.stdout, r.stderr)
    assert _result(r.stderr)["oom_killed"] is True


# --- cgroup v2 (pure v2: the VM) ----------------------------------------------------------


@pytest.fixture
def delegated_v2(rootless: Any, cgroup_parent: str) -> Iterator[Delegated]:
    """``/sys/fs/cgroup/<cgroup_parent>`` (root's, memory/pids/cpu enabled for its children)
    with two children delegated to the user as systemd delegates: ``u`` (for the user's
    process) and ``v`` (for --cgroup-parent)."""
    lay = detect()
    assert lay.v2 is not None
    top = Path(lay.v2.mount, cgroup_parent)
    top.mkdir()
    try:
        (top / "cgroup.subtree_control").write_text("+memory +pids +cpu")
        for sub in ("u", "v"):
            (top / sub).mkdir()
            for f in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                os.chown(top / sub / f if f else top / sub, rootless.uid, rootless.gid)
        yield Delegated(cgroup_parent, {"unified": top})
    finally:
        _remove(top)


@pytest.mark.cgroupv2
def test_v2_without_delegation_the_error(rootless: Any) -> None:
    name = f"isolate-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    r = _run(rootless, ["--name", name, "--memory", "100m", "--", "true"])
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert "a memory limit needs a cgroup delegated to this user" in r.stderr
    assert "cgroup v2 hierarchy at /sys/fs/cgroup" in r.stderr
    assert "systemd-run --user --scope -p Delegate=yes" in r.stderr
    assert not [d for d in Path("/sys/fs/cgroup").rglob(name)]


@pytest.mark.cgroupv2
def test_v2_delegated_cgroup_by_default_and_through_cgroup_parent(rootless: Any,
                                                                  delegated_v2: Delegated) -> None:
    top = delegated_v2.dirs["unified"]
    # The user's process lives in its delegated cgroup 'u', as in a systemd scope: the first
    # limit moves it (every process there) into the leaf 'init', as podman does.
    r = _run(rootless, ["--memory", "64m", "--", "true"], cgroups=[top / "u"])
    assert r.returncode == 0, r.stderr
    assert _dirs_below(top / "u") == ["init"]
    # From then on the user's processes start in 'init', and 'u' is still the one used.
    _assert_limits_hold(rootless, [], cgroups=[top / "u" / "init"])
    assert _dirs_below(top / "u") == ["init"]
    assert (top / "u" / "init" / "cgroup.procs").read_text() == ""
    assert {"memory", "pids"} <= set((top / "u" / "cgroup.subtree_control").read_text().split())
    # From Python, by default: the limit, and pause()/resume() through cgroup.freeze.
    code = ("import isolate\n"
            "with isolate.Container(limits=isolate.Limits(pids_max=8)) as c:\n"
            f"    print(c.run({FORK!r}).returncode)\n"
            "    c.start(['sleep', '60'])\n"
            "    c.pause()\n"
            "    frozen = open(c.cgroup.path + '/cgroup.events').read().split()\n"
            "    c.resume()\n"
            "    print(c.cgroup.path, frozen[frozen.index('frozen') + 1])\n")
    r = rootless.python_run(code, cgroups=[str(top / "u" / "init")])
    assert r.returncode == 0, r.stderr
    rc, where = r.stdout.splitlines()
    assert rc != "0"
    path, frozen = where.split()
    assert path.startswith(f"{top}/u/isolate/") and frozen == "1"
    assert _dirs_below(top / "u") == ["init"]
    # A cgroup of the delegated subtree named with --cgroup-parent (made, and removed after).
    _assert_limits_hold(rootless, ["--cgroup-parent", f"{delegated_v2.name}/u/jobs"],
                        cgroups=[top / "u" / "init"])
    assert _dirs_below(top / "u") == ["init"]
    # One delegated to the user but outside the subtree its process lives in: the kernel would
    # refuse the move (delegation containment), and the error says so before anything is made.
    r = _run(rootless, ["--cgroup-parent", f"{delegated_v2.name}/v", "--pids", "8", "--", "true"],
             cgroups=[top / "u" / "init"])
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert "a pids limit needs a cgroup delegated to this user" in r.stderr
    assert f"{top}/cgroup.procs is not writable" in r.stderr and "start isolate from inside" in r.stderr
    assert _dirs_below(top / "v") == []
