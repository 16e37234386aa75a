"""Shared test set-up: one probe per capability per run, markers, and leak checks.

Markers say what a test needs; a test is skipped only when the host truly
lacks it, with the reason.  Every test under ``integration/``,
``security/`` and ``oci/`` runs under ``no_leaks``: mounts, fds, children, zombies and
``isolate-test-*`` cgroups are snapshotted before and compared after.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (BUSYBOX, base_config, remove_runtime_dirs, runtime_dirs, cgroup_leftovers, force_remove_cgroup, glob_below,
                     make_busybox_rootfs, planner_pids, stop_planners)

CGROUP_ROOT = Path("/sys/fs/cgroup")


@functools.lru_cache(maxsize=None)
def is_root() -> bool:
    return os.geteuid() == 0


@functools.lru_cache(maxsize=None)
def userns_reason() -> str | None:
    """None if a user namespace can be created here, else why not."""
    try:
        import isolate

        isolate.run(["/bin/true"], namespaces={"user"}, check=True)
        return None
    except Exception as e:  # the probe: any failure is the reason to skip
        return f"user namespaces unavailable: {e}"


@functools.lru_cache(maxsize=None)
def cgroup1_reason() -> str | None:
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    v1 = [m for m in mounts if m.split()[2:3] == ["cgroup"]]
    if not v1:
        return "no cgroup v1 hierarchy mounted (pure v2 host)"
    if not is_root():
        return "cgroup v1 tests need root"
    return None


@functools.lru_cache(maxsize=None)
def cgroupv2_reason() -> str | None:
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    v2 = [m.split()[1] for m in mounts if m.split()[2:3] == ["cgroup2"]]
    if not v2:
        return "no cgroup2 mounted"
    for mnt in v2:
        ctrl = Path(mnt, "cgroup.controllers")
        if ctrl.exists() and {"memory", "pids", "cpu"} <= set(ctrl.read_text().split()):
            return None
    return ("the cgroup2 hierarchy here has no memory/pids/cpu controllers (hybrid host); "
            ".ci/run runs these tests in ../shared/vmtest/vm-run")


REASONS = {
    "root": lambda: None if is_root() else "needs root",
    "userns": userns_reason,
    "cgroup1": cgroup1_reason,
    "cgroupv2": cgroupv2_reason,
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name, reason in REASONS.items():
        if item.get_closest_marker(name) is not None:
            why = reason()
            if why is not None:
                pytest.skip(why)


# --- leak checks -----------------------------------------------------------


#: Where a test of this suite makes mounts in the host's namespace: this run's
#: temporary directories (pytest's, and the one ``_our_tempdir`` gives ``tempfile``)
#: and places named after isolate outside the shared temporary directories.
#: Another program's mounts (another test run's temporary directories, say) are
#: not this run's to check.
_OUR_DIRS: list[str] = []
_SHARED_TMP = ("/tmp/", "/var/tmp/")


@pytest.fixture(scope="session", autouse=True)
def _our_tempdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _OUR_DIRS.append(str(tmp_path_factory.getbasetemp()) + "/")
    # tempfile's directories of this run, in one directory of its own.  Not under
    # pytest's, which is private (0700): a user namespace's root must reach bundles.
    run = tempfile.mkdtemp(prefix=f"isolate-tests-{os.getpid()}-")
    os.chmod(run, 0o755)
    _OUR_DIRS.append(run + "/")
    saved, tempfile.tempdir = tempfile.tempdir, run
    yield
    tempfile.tempdir = saved
    shutil.rmtree(run, ignore_errors=True)


def _ours(point: str) -> bool:
    if point.startswith(tuple(_OUR_DIRS)):
        return True
    return "isolate" in point and not point.startswith(_SHARED_TMP)


def _mounts() -> list[str]:
    # Mount ids and options change for unrelated reasons; the set of mount points is what leaks.
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return sorted(p for p in points if _ours(p))


def _fds() -> set[int]:
    # This process's own directory in the owner registry (isolate/_owner.py) keeps fds
    # for the life of the process; a test that resets the registry's state makes the
    # next one open them again, under other numbers: not a leak of that test.
    # An fd gone by the time it is read (the listing's own) is none of a test's either.
    mine = f"/owners/{os.getpid()}-"
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        target = _fd_target(int(fd))
        if target != "?" and mine not in target:
            out.add(int(fd))
    return out


def _children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if fields[1] == me:
            out.add(int(stat.split("/")[2]))
    return out


def _test_cgroups() -> set[str]:
    # Only this run's: every test cgroup name carries the pid of the pytest that made it,
    # so another run on the machine at the same time is not taken for a leak.
    pid = re.compile(rf"-{os.getpid()}(-|$)")
    return {p for p in glob.glob(str(CGROUP_ROOT / "**" / "isolate-test-*"), recursive=True)
            if pid.search(os.path.basename(p))}


def _id_blocks() -> set[str]:
    # Blocks of host ids (isolate._idalloc) that this process holds for a container.
    me = f" {os.getpid()}-"
    out = set()
    for path in glob.glob("/run/isolate/userns/[0-9]*"):
        with contextlib.suppress(OSError):
            if me in " " + Path(path).read_text().split()[-1]:
                out.add(path)
    return out


def snapshot() -> dict[str, object]:
    return {"mounts": _mounts(), "fds": _fds(), "children": _children(), "cgroups": _test_cgroups(),
            "id blocks": _id_blocks()}


def leaks(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    out = {}
    for key in before:
        b, a = before[key], after[key]
        if key == "mounts":
            extra = sorted(set(a) - set(b)) if a != b else []  # type: ignore[arg-type]
        else:
            extra = sorted(set(a) - set(b))  # type: ignore[arg-type]
        if extra and key == "fds":
            # What each is, so that a leak says where it comes from.
            extra = [f"{fd} -> {_fd_target(fd)}" for fd in extra]  # type: ignore[union-attr]
        if extra:
            out[key] = extra
    return out


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def _check_leaks():
    before = snapshot()
    yield
    # Children reaped by the code under test may take a moment to vanish from /proc.
    found: dict[str, object] = {}
    for _ in range(50):
        found = leaks(before, snapshot())
        if not found:
            return
        time.sleep(0.02)
    pytest.fail(f"left behind: {found}")


@pytest.fixture(scope="session", autouse=True)
def _child_program_loaded() -> None:
    """The sealed memfd holding the child program lives as long as the process
    (csrc/spawn.c): load it before any test, so it is no test's leak."""
    from isolate._spawn import _load_child

    _load_child()


#: Which of the directories runtimes make and keep (``support.runtime_dirs``) were there when
#: the session started (before any fixture, some of which make an owner registry entry).
_RUNTIME_DIRS_BEFORE: set[Path] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    _RUNTIME_DIRS_BEFORE.update(runtime_dirs())


@pytest.fixture(scope="session", autouse=True)
def _runtime_dirs_removed() -> Iterator[None]:
    """What the run's containers made isolate, runc, crun and ``ip netns`` create and keep is
    removed at the end if it was not there before and is empty (``support.remove_runtime_dirs``):
    the host as it was found."""
    yield
    from isolate import _owner

    _owner.leave()          # this process's own registry directory (else only at exit)
    remove_runtime_dirs(_RUNTIME_DIRS_BEFORE)


@pytest.fixture(scope="session", autouse=True)
def planner_dir() -> Iterator[Path]:
    """ISOLATE_OCI_PLANNER_DIR for the session: ``isolate-oci`` starts a warm planner
    (``isolate.oci.warm``) on its first call; the session's live in a directory of its own,
    ended and removed at its end.  Planners that callers which do not pass the variable on
    started in the default directory (/run/isolate/oci-planner) are ended too, those that
    were there before the session kept."""
    from isolate.oci.warm import socket_dir

    default = Path(socket_dir({}) or "/nonexistent")
    before = frozenset(planner_pids(default)) if default.is_dir() else frozenset()
    directory = Path(tempfile.mkdtemp(prefix="isolate-test-planners-"))
    old = os.environ.get("ISOLATE_OCI_PLANNER_DIR")
    os.environ["ISOLATE_OCI_PLANNER_DIR"] = str(directory)
    try:
        yield directory
    finally:
        if old is None:
            del os.environ["ISOLATE_OCI_PLANNER_DIR"]
        else:
            os.environ["ISOLATE_OCI_PLANNER_DIR"] = old
        stop_planners(directory)
        if default.is_dir():
            stop_planners(default, keep=before)
        for _ in range(100):
            if not directory.exists() or not any(directory.iterdir()):
                break
            time.sleep(0.05)
        if directory.exists():
            # A planner killed by a test leaves its socket and its warm bundle.
            shutil.rmtree(directory)


@pytest.fixture(scope="session", autouse=True)
def _owner_home_made() -> None:
    """Likewise this process's directory in the owner registry (src/isolate/_owner.py): its
    lock and journal fds live as long as the process, made by whichever test first makes a
    cgroup, an overlay or a namespace file."""
    from isolate import _owner

    _owner.record("session").clear()


@pytest.fixture(autouse=True)
def _plan_cache_dropped(_leak_guard):
    """The plan cache (isolate._cache) keeps what its plans name for the life of the
    process (a shared root's detached tmpfs, an fd): emptied after each test, before the
    leak check, so that it is no test's leak."""
    yield
    from isolate import _cache

    _cache.clear()


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves a mount, fd, child, zombie or test cgroup behind."""
    yield from _check_leaks()


@pytest.fixture(autouse=True)
def _leak_guard(request: pytest.FixtureRequest):
    """Every test under integration/, security/ and oci/ runs under the leak check."""
    parts = Path(str(request.node.fspath)).parts
    if {"integration", "security", "oci"} & set(parts) and "no_leaks" not in request.fixturenames:
        yield from _check_leaks()
    else:
        yield


# --- cgroup test parents ------------------------------------------------------
# Helpers shared with the tests live in tests/support.py: ``from conftest import``
# would name whichever conftest pytest imported last (tests/security has its own).


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    """A fresh ``isolate-test-*`` parent name; fails the test if anything is left under it."""
    name = f"isolate-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    left = cgroup_leftovers(name)
    for path in left:
        force_remove_cgroup(path)
    assert not left, f"cgroup directories left behind: {left}"


# --- OCI bundles --------------------------------------------------------------
# A busybox root filesystem (Debian's busybox-static, installed by .ci/install-deps)
# with one symlink per applet, so the same bundle runs under isolate-oci, runc,
# podman (`podman import`) and containerd.

@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention busybox root filesystem shared by the session (copy it to write)."""
    if not os.path.exists(BUSYBOX):
        pytest.fail(f"{BUSYBOX} is missing: .ci/install-deps installs busybox-static")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def oci_cgroup_parent() -> Iterator[str]:
    """An ``isolate-test-*`` cgroup parent for ``linux.cgroupsPath``.

    Runtimes make the parent but remove only the container's own cgroup:
    the empty parent is removed here; anything below it is a leak and fails the test.
    """
    name = f"isolate-test-oci-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    left = cgroup_leftovers(name)
    below = [p for top in left for p in glob_below(top)]
    for path in left:
        force_remove_cgroup(path)
    assert not below, f"container cgroups left behind: {below}"


@pytest.fixture
def make_bundle(tmp_path: Path, busybox_rootfs: Path, oci_cgroup_parent: str) -> Callable[..., Path]:
    """``make_bundle(args, edit=None, name="bundle")``: a bundle directory with its own rootfs copy.

    Its ``linux.cgroupsPath`` is ``/<oci_cgroup_parent>/<name>``.  ``edit(config)``
    may change the config before it is written.
    """
    def make(args: list[str], edit: Callable[[dict[str, Any]], None] | None = None,
             name: str = "bundle") -> Path:
        bundle = tmp_path / name
        bundle.mkdir()
        shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
        config = base_config(args, cgroups_path=f"/{oci_cgroup_parent}/{name}")
        if edit is not None:
            edit(config)
        (bundle / "config.json").write_text(json.dumps(config, indent=2))
        return bundle

    return make


@pytest.fixture(scope="session")
def rootless() -> Iterator[Any]:
    """An ordinary user with /etc/subuid ranges, for the whole run (see tests/rootless.py)."""
    if not is_root():
        pytest.skip("making a user for the rootless tests needs root")
    from rootless import rootless_user

    with rootless_user() as user:
        yield user
