"""linux.resources against runc: the host's cgroup files after ``create`` and ``/proc/<pid>/cgroup``.

Each case gives runc and isolate-oci the same bundle (``test_differential``'s
``sides``), runs ``create``, reads what the host shows (the named files of the
container's cgroup in each v1 hierarchy, the process's ``/proc/<pid>/cgroup``)
and deletes the container; the two results must be equal.  A case runc refuses
must be refused too, leaving no cgroup behind (``oci_cgroup_parent`` checks).

This host is hybrid (v1 controllers): the v2 side of the same fields is in
tests/integration/test_cgroup_oci_fields.py (``cgroupv2``) and
tests/unit/test_oci_resources.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_differential import CID, Side, assert_same, sides  # noqa: F401  (sides: the fixture)

pytestmark = [pytest.mark.root, pytest.mark.cgroup1]

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Res:
    """A ``linux.resources`` object (merged over the base config's) and the files to compare."""

    id: str
    resources: dict[str, Any]
    files: tuple[str, ...] = ()        # "<hierarchy>/<file>", e.g. "cpu/cpu.shares"
    created: bool = True               # what runc does with it (checked first)
    edit: Callable[[dict[str, Any]], None] | None = None

    def __str__(self) -> str:
        return self.id


def observe(side: Side, case: Res) -> dict[str, Any]:
    """create, then the host's view of the container's cgroup; delete on every path."""
    def edit(config: dict[str, Any]) -> None:
        config["linux"].setdefault("resources", {}).update(case.resources)
        if case.edit is not None:
            case.edit(config)

    side.make_bundle(["sleep", "100"], edit=edit)
    # The container keeps the runtime's stdio: files, so that no pipe waits for it to exit.
    err = side.host / "create.err"
    with open(side.host / "create.out", "wb") as stdout, open(err, "wb") as stderr:
        p = side("create", "--bundle", str(side.bundle), CID, stdout=stdout, stderr=stderr)
    out: dict[str, Any] = {"create": p.returncode}
    raw = ("", err.read_text(errors="replace"))
    try:
        st = side.state()
        if p.returncode == 0 and st is not None:
            group = side.cgroups_path.lstrip("/")
            for f in case.files:
                hierarchy, name = f.split("/", 1)
                text = (CGROUP / hierarchy / group / name).read_text()
                out[f] = text.splitlines()[0] if name == "memory.oom_control" else text.strip()
            out["cgroup"] = sorted(side.normalize(line) for line in
                                   Path(f"/proc/{st['pid']}/cgroup").read_text().splitlines())
    finally:
        if p.returncode == 0 or side.state() is not None:
            d = side("delete", "--force", CID)
            assert d.returncode == 0, d.stderr
    out["raw"] = raw
    return out


def _cgroupns(config: dict[str, Any]) -> None:
    config["linux"]["namespaces"].append({"type": "cgroup"})


CASES = [
    # Written as given: before, 512 became 500, 1024 998 and a Kubernetes 100m request (102) 80.
    Res("cpu-shares-512", {"cpu": {"shares": 512}}, ("cpu/cpu.shares",)),
    Res("cpu-shares-1024", {"cpu": {"shares": 1024}}, ("cpu/cpu.shares",)),
    Res("cpu-shares-102", {"cpu": {"shares": 102}}, ("cpu/cpu.shares",)),
    Res("cpu-shares-2", {"cpu": {"shares": 2}}, ("cpu/cpu.shares",)),
    Res("cpu-shares-below-the-kernels", {"cpu": {"shares": 1}}, created=False),
    Res("memory-reservation", {"memory": {"reservation": 64 << 20}}, ("memory/memory.soft_limit_in_bytes",)),
    Res("memory-reservation-with-limit", {"memory": {"limit": 256 << 20, "reservation": 64 << 20}},
        ("memory/memory.soft_limit_in_bytes", "memory/memory.limit_in_bytes")),
    Res("memory-swappiness", {"memory": {"swappiness": 30}}, ("memory/memory.swappiness",)),
    Res("memory-swappiness-0", {"memory": {"swappiness": 0}}, ("memory/memory.swappiness",)),
    Res("disable-oom-killer", {"memory": {"disableOOMKiller": True}}, ("memory/memory.oom_control",)),
    Res("oom-killer-kept", {"memory": {"disableOOMKiller": False}}, ("memory/memory.oom_control",)),
    # Deprecated: runc 1.1 ignores both (with a warning); the kernel's defaults stay.
    Res("kernel-memory", {"memory": {"kernel": 64 << 20, "kernelTCP": 32 << 20}},
        ("memory/memory.kmem.limit_in_bytes", "memory/memory.kmem.tcp.limit_in_bytes")),
    Res("realtime-period", {"cpu": {"realtimePeriod": 500000}}, ("cpu/cpu.rt_period_us", "cpu/cpu.rt_runtime_us")),
    # The test parent has no realtime runtime to hand out: the kernel refuses, both fail.
    Res("realtime-runtime", {"cpu": {"realtimePeriod": 500000, "realtimeRuntime": 1000}}, created=False),
    # No net_cls / net_prio hierarchy is mounted here: runc fails, isolate-oci refuses.
    Res("network-classid", {"network": {"classID": 0x100001}}, created=False),
    Res("network-priorities", {"network": {"priorities": [{"name": "eth0", "priority": 5}]}}, created=False),
    Res("unified-on-hybrid", {"unified": {"memory.high": "1000000"}}, created=False),
    Res("rdma", {"rdma": {"mlx5_1": {"hcaHandles": 3}}}, created=False),
    Res("blkio-leaf-weight", {"blockIO": {"leafWeight": 300}}, created=False),
    Res("blkio-weight-device", {"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}},
        created=False),
    # podman run --cgroupns host: no cgroup namespace; the process is in the container's group
    # on every line of /proc/<pid>/cgroup, name=systemd and the unified hierarchy included.
    Res("cgroupns-host", {}),
    Res("cgroupns-private", {}, edit=_cgroupns),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_resources(case: Res, sides: tuple[Side, Side]) -> None:  # noqa: F811
    runc, ours = sides
    want = observe(runc, case)
    assert (want["create"] == 0) == case.created, want
    if case.created:
        group = runc.normalize(runc.cgroups_path)
        assert f"0::{group}" in want["cgroup"] and f"9:name=systemd:{group}" in want["cgroup"], want
    got = observe(ours, case)
    if not case.created:
        # Refused with one line naming the field: the config's (refused before anything
        # is made) or Limits' (the kernel refused the write; the group is removed).
        assert got["create"] != 0 and ("linux.resources." in got["raw"][1] or "(Limits." in got["raw"][1]), got
        assert len(got["raw"][1].strip().splitlines()) == 1, got
        got["raw"], want["raw"] = ("", ""), ("", "")
    assert_same(want, got, case.id)


@pytest.mark.parametrize("resources, file, value", [({"cpu": {"burst": 20000}}, "cpu/cpu.cfs_burst_us", "20000"),
                                                 ({"cpu": {"idle": 1}}, "cpu/cpu.idle", "1")], ids=["burst", "idle"])
def test_idle_and_burst_are_applied(sides: tuple[Side, Side], resources: dict[str, Any], file: str,  # noqa: F811
                                    value: str) -> None:
    """cpu.idle and cpu.burst: runc 1.1 drops both on v1; the spec says a runtime that cannot
    apply a property fails, so isolate-oci writes them where the kernel has the files (crun's
    cpu.cfs_burst_us for burst)."""
    runc, ours = sides
    assert observe(runc, Res("runc", resources, (file,)))[file] == "0"      # runc 1.1.5 drops it
    got = observe(ours, Res("isolate-oci", resources, (file,)))
    assert got["create"] == 0 and got[file] == value, got
