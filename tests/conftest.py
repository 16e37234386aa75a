"""Shared test set-up: one probe per capability per run, markers, and leak checks.

Markers say what a test needs; a test is skipped only when the host truly
lacks it, with the reason.  Every test under ``integration/`` and
``security/`` runs under ``no_leaks``: mounts, fds, children, zombies and
``isolate-test-*`` cgroups are snapshotted before and compared after.
"""

from __future__ import annotations

import functools
import glob
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def _mounts() -> list[str]:
    # Mount ids and options change for unrelated reasons; the set of mount points is what leaks.
    return sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


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
    return set(glob.glob(str(CGROUP_ROOT / "**" / "isolate-test-*"), recursive=True))


def snapshot() -> dict[str, object]:
    return {"mounts": _mounts(), "fds": _fds(), "children": _children(), "cgroups": _test_cgroups()}


def leaks(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    out = {}
    for key in before:
        b, a = before[key], after[key]
        if key == "mounts":
            extra = sorted(set(a) - set(b)) if a != b else []  # type: ignore[arg-type]
        else:
            extra = sorted(set(a) - set(b))  # type: ignore[arg-type]
        if extra:
            out[key] = extra
    return out


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


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves a mount, fd, child, zombie or test cgroup behind."""
    yield from _check_leaks()


@pytest.fixture(autouse=True)
def _leak_guard(request: pytest.FixtureRequest):
    """Every test under integration/ and security/ runs under the leak check."""
    parts = Path(str(request.node.fspath)).parts
    if ("integration" in parts or "security" in parts) and "no_leaks" not in request.fixturenames:
        yield from _check_leaks()
    else:
        yield


# --- cgroup test parents ------------------------------------------------------


def cgroup_leftovers(name: str) -> list[str]:
    """Every directory called ``name`` anywhere under /sys/fs/cgroup."""
    return sorted(glob.glob(f"/sys/fs/cgroup/**/{name}", recursive=True)
                  + glob.glob(f"/sys/fs/cgroup/{name}"))


def force_remove_cgroup(path: str) -> None:
    """Thaw, kill and remove a cgroup tree.  A safety net only: a test that needs it has failed."""
    for root, _, _ in sorted(os.walk(path, topdown=False), key=lambda t: -len(t[0])):
        for freeze, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            if Path(root, freeze).exists():
                Path(root, freeze).write_text(thawed)
        procs = Path(root, "cgroup.procs")
        if procs.exists():
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _ in range(100):
            try:
                os.rmdir(root)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    """A fresh ``isolate-test-*`` parent name; fails the test if anything is left under it."""
    name = f"isolate-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    left = cgroup_leftovers(name)
    for path in left:
        force_remove_cgroup(path)
    assert not left, f"cgroup directories left behind: {left}"
