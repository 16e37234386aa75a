"""pytest-benchmark: a full sandbox start-to-exit, isolate against bwrap, runc and crun.

Every row has pid, mnt, uts, ipc, net and cgroup namespaces and the host's /usr
read-only; runc and crun run the same bundle (``cases.oci_bundle``).
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import cases as C

FULL = "isolate.spawn " + "+".join(C.FULL)
CONTAINER = [FULL + ", rootfs plan (ro /usr, /proc, /dev, pivot_root)",
             "isolate.Container host rootfs, no user ns",
             FULL + ", rootfs plan, net from NetnsPool",
             "isolate.Container host rootfs", "isolate.Container host rootfs, userns identity",
             "isolate.Container host rootfs + cgroup limits",
             "isolate.Container host rootfs + rw bind, identity maps (plain binds)",
             "isolate.Container host rootfs + rw bind, unprivileged root (idmapped binds)",
             "isolate.Container host rootfs, net from NetnsPool",
             "bwrap --unshare-all", "bwrap --unshare-all --share-net", "runc run", "crun run"]


@pytest.mark.root
@pytest.mark.benchmark(group="container /bin/true")
@pytest.mark.parametrize("case_fn", CONTAINER, indirect=True)
def test_container(benchmark: Any, case_fn: C.Iteration) -> None:
    benchmark(case_fn)
