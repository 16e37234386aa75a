"""podman run by an ordinary user with ``--runtime isolate-oci``: run, run -d + exec, logs, stop, rm.

podman rootless runs its OCI runtime as root of a user namespace of its own
(the user's id and /etc/subuid ranges, set up with newuidmap), through
conmon, with ``XDG_RUNTIME_DIR`` and little else in the environment.  There
the runtime may not make device nodes, cannot come back to the host's
network namespace once it entered the container's, and finds no cgroup it
may write on this host (``--cgroup-manager cgroupfs``: no systemd user
session here).  The image is the session's busybox root, imported from a
tar (no registry); podman's storage is in the user's home (vfs) and is
removed with ``podman system reset`` at the end, with podman's pause process.
"""

from __future__ import annotations

import os
import shutil
import signal
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rootless import uid_pids
from support import stop_planners

pytestmark = [pytest.mark.root, pytest.mark.userns]

IMAGE = "localhost/isolate-test-busybox:latest"


class UserPodman:
    """podman as the rootless user, with isolate-oci (the user's copy) as its runtime."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.runtime = str(user.bin / "isolate-oci")
        self.argv = ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                     "--storage-driver", "vfs", "--runtime", self.runtime]

    def __call__(self, *args: str, timeout: float = 60) -> Any:
        return self.user.run([*self.argv, *args], timeout=timeout)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"podman {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
        return str(r.stdout)

    def run(self, *args: str) -> Any:
        return self("run", "--network", "none", *args)

    def wait_for_log(self, name: str, line: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.ok("logs", name).splitlines():
            assert time.monotonic() < deadline, f"{name} never printed {line!r}"
            time.sleep(0.05)

    def state_left(self) -> list[str]:
        """What isolate-oci keeps under the user's runtime directory (nothing once removed)."""
        root = self.user.runtime_dir / "isolate-oci"
        return sorted(os.listdir(root)) if root.exists() else []


def _pause_pid(user: Any) -> int | None:
    """The process podman rootless leaves holding its user namespace (it was started here)."""
    try:
        return int((user.runtime_dir / "libpod" / "tmp" / "pause.pid").read_text())
    except (OSError, ValueError):
        return None


def _stop(user: Any, pid: int | None) -> None:
    if pid is None or pid not in uid_pids(user.uid):
        return
    os.kill(pid, signal.SIGKILL)
    for _ in range(500):
        if pid not in uid_pids(user.uid):
            return
        time.sleep(0.01)


def _cmdlines(pids: list[int]) -> list[str]:
    """What ``pids`` run, but zombies (dead: a planner's worker that died with it waits for
    init to reap it)."""
    out = []
    for pid in pids:
        try:
            if "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
                continue
            out.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return out


@pytest.fixture(scope="module")
def podman(rootless: Any, busybox_rootfs: Path) -> Iterator[UserPodman]:
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.fail("podman and conmon are missing: .ci/install-deps installs them")
    p = UserPodman(rootless)
    where = Path(tempfile.mkdtemp(prefix="isolate-podman-rootless-", dir="/tmp"))
    try:
        where.chmod(0o755)
        tar = where / "busybox.tar"
        with tarfile.open(tar, "w") as t:
            t.add(busybox_rootfs, arcname=".")
        tar.chmod(0o644)
        p.ok("import", "--quiet", str(tar), IMAGE)
        info = p.ok("info", "--format", "{{.Host.OCIRuntime.Path}} {{.Host.Security.Rootless}}").split()
        assert info == [p.runtime, "true"], info
        yield p
    finally:
        shutil.rmtree(where, ignore_errors=True)
        p("rm", "--all", "--force", "--time", "0")
        left = p.state_left()
        pause = _pause_pid(rootless)
        reset = p("system", "reset", "--force")
        _stop(rootless, pause)
        _stop(rootless, _pause_pid(rootless))
        # podman's own calls (start, state, delete: no subreaper) start the user's warm
        # planner, which would serve the next call for a minute: not a container's process.
        stop_planners(rootless.runtime_dir / "isolate" / "oci-planner")
        stragglers = _cmdlines(uid_pids(rootless.uid))
    assert reset.returncode == 0, reset.stderr
    assert not left, f"isolate-oci kept state for {left}"
    assert not stragglers, f"processes of the user left after podman rm: {stragglers}"


@pytest.fixture(autouse=True)
def removed(podman: UserPodman) -> Iterator[None]:
    """Each test ends with its containers removed, and isolate-oci's state with them."""
    yield
    podman.ok("rm", "--all", "--force", "--time", "0")
    assert podman.state_left() == []


def test_run_as_root_of_the_users_namespace(podman: UserPodman) -> None:
    r = podman.run("--rm", IMAGE, "sh", "-c", "echo hello; id -u; head -n1 /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hello", "0", "0", str(podman.user.uid), "1"]
    assert podman.run("--rm", IMAGE, "sh", "-c", "exit 3").returncode == 3


def test_device_nodes_are_there_and_usable(podman: UserPodman) -> None:
    r = podman.run("--rm", IMAGE, "sh", "-c",
                   "for n in null zero full random urandom tty; do stat -c '%n %t:%T' /dev/$n; done; "
                   "echo x > /dev/null && head -c 3 /dev/zero | wc -c")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n") == ["/dev/null 1:3", "/dev/zero 1:5", "/dev/full 1:7", "/dev/random 1:8",
                                    "/dev/urandom 1:9", "/dev/tty 5:0", "3", ""]


def test_run_detached_exec_logs_stop_rm(podman: UserPodman) -> None:
    name = "isolate-rootless-c1"
    podman.ok("run", "-d", "--network", "none", "--name", name, IMAGE, "sh", "-c",
              "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done")
    podman.wait_for_log(name, "started")
    r = podman("exec", name, "sh", "-c", "echo in-exec; tr '\\0' ' ' < /proc/1/cmdline; echo; exit 5")
    assert r.returncode == 5, r.stderr
    assert r.stdout.splitlines()[0] == "in-exec" and r.stdout.splitlines()[1].startswith("sh -c echo started")
    assert podman.ok("inspect", "--format", "{{.State.Status}}", name).strip() == "running"
    assert podman.state_left() != []
    r = podman("stop", "--time", "10", name)
    assert (r.returncode, r.stdout.strip()) == (0, name), r.stderr
    assert podman.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).split() == [
        "exited", "0"]
    assert podman.ok("logs", name).splitlines() == ["started", "bye"]
    r = podman("rm", name)
    assert (r.returncode, r.stdout.strip()) == (0, name), r.stderr
    assert podman.ok("ps", "--all", "--quiet") == ""
    assert podman.state_left() == []


def test_keep_id_and_uidmap_give_multi_range_maps_as_with_runc(podman: UserPodman) -> None:
    uid = podman.user.uid
    show = "id -u; cat /proc/self/uid_map /proc/self/gid_map; echo x > /dev/null"
    mine = podman.run("--rm", "--userns", "keep-id", IMAGE, "sh", "-c", show)
    theirs = podman("--runtime", "runc", "run", "--rm", "--network", "none", "--userns", "keep-id",
                    IMAGE, "sh", "-c", show)
    assert (mine.returncode, theirs.returncode) == (0, 0), (mine.stderr, theirs.stderr)
    assert mine.stdout == theirs.stdout
    lines = [line.split() for line in mine.stdout.splitlines()]
    # The user is itself inside: podman's namespace maps it to root, whose id the
    # container's map gives back; the ids around it come from /etc/subuid.
    assert lines[0] == [str(uid)] and lines[2] == [str(uid), "0", "1"] and len(lines) == 7
    r = podman.run("--rm", "--uidmap", "0:1:1000", "--gidmap", "0:1:1000", IMAGE, "sh", "-c",
                   "id -u; cat /proc/self/uid_map")
    assert (r.returncode, r.stdout.split()) == (0, ["0", "0", "1", "1000"]), r.stderr


def test_sysctl_in_the_containers_network_namespace(podman: UserPodman) -> None:
    r = podman.run("--rm", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80", IMAGE,
                   "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert (r.returncode, r.stdout) == (0, "80\n"), r.stderr
