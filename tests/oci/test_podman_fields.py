"""podman's --device, --privileged, --oom-score-adj and --sysctl through ``isolate-oci``, as runc gives them.

The fixtures are ``test_podman``'s (one podman per module, everything under a
temporary directory, containers removed after each test);
``ISOLATE_TEST_PODMAN_RUNTIME=runc`` runs the same checks against runc, which
passes them all.  podman sends these as ``linux.devices`` (with a ``fileMode``
carrying the file-type bits, and an allow rule in ``linux.resources.devices``),
``process.oomScoreAdj`` and ``linux.sysctl``: before, isolate-oci dropped each.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_podman import IMAGE, Podman, podman, settled  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.root


def _stat(path: str) -> str:
    st = os.stat(path)
    return f"{oct(st.st_mode)} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def test_device_gives_the_node_and_the_cgroup_lets_it_open(podman: Podman) -> None:
    # /dev/fuse opened read-write: the node exists (10:229, the host's mode) and the device
    # cgroup podman asks for allows it (ENODEV: no FUSE server, which is past both checks).
    script = ('stat -c "%F %t:%T %a %u:%g" /dev/fuse; stat -c "%F %t:%T" /dev/net/tun; '
              'exec 3<>/dev/fuse && echo opened')
    r = podman.run("--rm", "--device", "/dev/fuse", "--device", "/dev/net/tun", IMAGE, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    mode = oct(os.stat("/dev/fuse").st_mode & 0o777)[2:]
    assert r.stdout.splitlines() == [f"character special file a:e5 {mode} 0:0",
                                     "character special file a:c8", "opened"], r.stderr


def test_without_device_there_is_no_node(podman: Podman) -> None:
    r = podman.run("--rm", IMAGE, "sh", "-c", "ls /dev/fuse /dev/net/tun 2>&1 | grep -c 'No such'")
    assert r.stdout.strip() == "2", (r.stdout, r.stderr)


def test_privileged_gets_the_hosts_devices(podman: Podman) -> None:
    # podman --privileged sends every device node of the host's /dev: the container sees
    # them with the host's numbers and types (made in its own /dev tmpfs, never the host's).
    want = {p: _stat(p) for p in ("/dev/fuse", "/dev/net/tun", "/dev/loop-control") if os.path.exists(p)}
    blocks = sorted(p.name for p in Path("/dev").iterdir() if p.is_block_device())[:3]
    want.update({f"/dev/{b}": _stat(f"/dev/{b}") for b in blocks})
    script = "; ".join(f'echo "{p} $(stat -c "%f %t:%T" {p})"' for p in want)
    r = podman.run("--rm", "--privileged", IMAGE, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    got = {}
    for line in r.stdout.splitlines():
        path, raw, numbers = line.split()
        major, minor = (int(n, 16) for n in numbers.split(":"))
        got[path] = f"{oct(int(raw, 16))} {major}:{minor}"
    assert got == want, r.stderr


def test_oom_score_adj_is_the_containers_and_its_execs(podman: Podman) -> None:
    cid = podman.start_detached("--oom-score-adj", "500", IMAGE, "sh", "-c", "echo up; sleep 60")
    podman.wait_for_log(cid, "up")
    pid = int(podman.ok("inspect", "--format", "{{.State.Pid}}", cid))
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "500"
    # runc gives an exec'd process the container's score too.
    assert podman.ok("exec", cid, "cat", "/proc/self/oom_score_adj").strip() == "500"


def test_oom_score_adj_below_the_callers_fails_naming_the_field(podman: Podman) -> None:
    # Here root lacks CAP_SYS_RESOURCE: lowering the score fails with EACCES (runc fails too).
    if Path("/proc/self/oom_score_adj").read_text().strip() != "0":
        pytest.fail("this test expects the test runner's oom_score_adj to be 0")
    r = podman.run("--rm", "--oom-score-adj", "-500", IMAGE, "true")
    assert r.returncode != 0
    if "isolate-oci" in podman.runtime:
        assert "process.oomScoreAdj: cannot set -500" in r.stderr, r.stderr


def test_sysctl_is_set_in_the_containers_namespaces_only(podman: Podman) -> None:
    host = Path("/proc/sys/kernel/msgmax").read_text()
    r = podman.run("--rm", "--sysctl", "kernel.msgmax=4321",
                   "--sysctl", "net.ipv4.ping_group_range=0 42", IMAGE, "sh", "-c",
                   "cat /proc/sys/kernel/msgmax /proc/sys/net/ipv4/ping_group_range")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4321", "0", "42"]
    assert Path("/proc/sys/kernel/msgmax").read_text() == host


def test_sysctl_of_the_host_is_refused(podman: Podman) -> None:
    r = podman.run("--rm", "--sysctl", "vm.swappiness=10", IMAGE, "true")
    assert r.returncode != 0
