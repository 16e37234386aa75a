"""podman's resource options through isolate-oci give what they give through runc.

Two podman setups (``test_podman.Podman``, each with its own storage and the
session's busybox image), one running runc and one isolate-oci, under one
``isolate-test-podman-*`` cgroup parent.  Each option runs a container
detached in both, and what the host shows is compared: the files of the
container's cgroup (``<parent>/libpod-<id>``) and its ``/proc/<pid>/cgroup``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import force_remove_cgroup, glob_below
from test_podman import IMAGE, Podman, cgroup_mounts, find_runtime, import_image

pytestmark = [pytest.mark.root, pytest.mark.cgroup1]

CGROUP = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[tuple[Podman, Podman]]:
    """(podman with runc, podman with isolate-oci); every container and cgroup removed at the end."""
    for tool in ("podman", "conmon"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: .ci/install-deps installs podman and conmon")
    parent = f"isolate-test-podman-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    made = []
    for mnt in cgroup_mounts():
        os.mkdir(os.path.join(mnt, parent))
        made.append(os.path.join(mnt, parent))
    sides = []
    try:
        for runtime in ("runc", "isolate-oci"):
            base = tmp_path_factory.mktemp(runtime[:4])      # podman: runroot under 50 characters
            p = Podman(base, find_runtime(runtime), parent)
            sides.append(p)
            import_image(p, busybox_rootfs)
        yield sides[0], sides[1]
    finally:
        stragglers = [pid for p in sides for pid in p.settle()]
        for p in sides:
            try:
                p("rmi", "--all", "--force")
            except pytest.fail.Exception:
                pass
            shutil.rmtree(p.base, ignore_errors=True)
        below = [d for top in made for d in glob_below(top) if os.path.basename(d) != "conmon"]
        for top in made:
            force_remove_cgroup(top)
    assert not stragglers, f"processes left after podman rm: {stragglers}"
    assert not below, f"container cgroups left behind: {below}"


def observe(podman: Podman, options: tuple[str, ...], files: tuple[str, ...]) -> dict[str, object]:
    """Run ``sleep`` with ``options``; the container's cgroup files and /proc/<pid>/cgroup, then remove it."""
    r = podman.run("-d", *options, IMAGE, "sleep", "600")
    assert r.returncode == 0, f"{podman.runtime}: podman run {' '.join(options)}: {r.stderr}"
    cid = r.stdout.strip()
    try:
        pid = podman.ok("inspect", "--format", "{{.State.Pid}}", cid).strip()
        group = f"{podman.cgroup_parent}/libpod-{cid}"
        out: dict[str, object] = {}
        for f in files:
            hierarchy, name = f.split("/", 1)
            text = (CGROUP / hierarchy / group / name).read_text()
            out[f] = text.splitlines()[0] if name == "memory.oom_control" else text.strip()
        out["cgroup"] = sorted(Path(f"/proc/{pid}/cgroup").read_text().replace(cid, "<id>").splitlines())
        return out
    finally:
        podman("rm", "--force", "--time", "0", cid)


@pytest.mark.parametrize("options, files", [
    (("--cpu-shares", "512"), ("cpu/cpu.shares",)),
    (("--cpu-shares", "102"), ("cpu/cpu.shares",)),
    (("--memory-reservation", "64m"), ("memory/memory.soft_limit_in_bytes",)),
    (("--memory-swappiness", "30"), ("memory/memory.swappiness",)),
    (("--oom-kill-disable",), ("memory/memory.oom_control",)),
    (("--cgroupns", "host"), ()),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) and v and v[0].startswith("--") else None)
def test_same_as_runc(pair: tuple[Podman, Podman], options: tuple[str, ...], files: tuple[str, ...]) -> None:
    runc, ours = pair
    want = observe(runc, options, files)
    # The oracle: the container is in its own group on every line, name=systemd and 0:: included.
    group = f"/{runc.cgroup_parent}/libpod-<id>"
    assert all(line.endswith(group) for line in want["cgroup"]), want    # type: ignore[union-attr]
    got = observe(ours, options, files)
    assert got == want
