"""Helpers the tests share (not fixtures): cgroup clean-up, OCI bundles, the comparison table.

A plain module, imported as ``support``: ``from conftest import ...`` would name
whichever conftest.py pytest imported last (tests/ and tests/security have one each).
"""

from __future__ import annotations

import contextlib
import copy
import glob
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def _made_by_runtimes() -> list[Path]:
    """Directories isolate makes on first use and keeps, as runc keeps /run/runc and a
    container's parent cgroups: the default cgroup parent ``isolate`` (in each hierarchy,
    and below this process's own cgroup, where relative cgroup paths go), isolate-oci's
    default --root (and runc's and crun's, which the comparisons run), the planners'
    directory and the owner registries."""
    found: list[Path] = [Path("/run/isolate-oci"), Path("/run/runc"), Path("/run/crun"),
                         Path("/run/isolate/owners"),
                         Path("/run/isolate/userns"), Path("/run/isolate/oci-planner"),
                         Path("/run/isolate"),
                         Path(f"/tmp/isolate-{65534}/owners"), Path(f"/tmp/isolate-{65534}")]
    found += [Path(p) for p in glob.glob("/sys/fs/cgroup/*/isolate") + ["/sys/fs/cgroup/isolate"]]
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        own = line.split(":", 2)[2].strip("/")
        if own:
            found += [Path(p) for p in glob.glob(f"/sys/fs/cgroup/*/{own}/isolate")]
    return found


def runtime_dirs() -> set[Path]:
    """Which of ``_made_by_runtimes`` and /run/netns exist now (os.path.exists: False where a
    user may not look, another user's /tmp/isolate-<uid>)."""
    return {p for p in [*_made_by_runtimes(), Path("/run/netns")] if os.path.exists(p)}


def remove_runtime_dirs(before: set[Path]) -> None:
    """Remove what ``runtime_dirs`` names that is not in ``before`` (taken earlier) and is
    empty; /run/netns, which ``ip netns add`` makes a mount of itself, unmounted first.  Only
    rmdir: anything still inside is left, for the leak checks to have reported."""
    for path in _made_by_runtimes():
        if path not in before:
            with contextlib.suppress(OSError):
                path.rmdir()
    netns = Path("/run/netns")
    if netns not in before and netns.is_dir() and not any(netns.iterdir()):
        # (the same file system: is_mount() cannot tell)
        subprocess.run(["umount", str(netns)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            netns.rmdir()


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


def glob_below(top: str) -> list[str]:
    """Directories below the cgroup directory ``top``."""
    return sorted(os.path.join(root, d) for root, dirs, _ in os.walk(top) for d in dirs)


# --- OCI bundles --------------------------------------------------------------
# A busybox root filesystem (Debian's busybox-static, installed by .ci/install-deps)
# with one symlink per applet, so the same bundle runs under isolate-oci, runc,
# podman (`podman import`) and containerd.

BUSYBOX = "/bin/busybox"


def make_busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem at ``dest``: busybox, its applets, /etc/passwd and group."""
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "var", "run", "srv"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for name in applets:
        link = dest / "bin" / name
        if name != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (dest / "etc" / "hostname").write_text("busybox\n")
    return dest


def base_config(args: list[str], cgroups_path: str | None = None) -> dict[str, Any]:
    """``isolate-oci spec``'s config.json, running ``args`` without a terminal.

    ``cgroups_path`` should lie under an ``isolate-test-*`` parent: without one,
    runc would make ``/<container id>`` at the top of every hierarchy.
    """
    from isolate.oci.features import default_spec

    config = copy.deepcopy(default_spec())
    config["process"]["terminal"] = False
    config["process"]["args"] = list(args)
    config["root"] = {"path": "rootfs", "readonly": False}
    if cgroups_path is not None:
        config["linux"]["cgroupsPath"] = cgroups_path
    return config


# --- comparison with other runtimes (tests/security/conftest.py prints the table) ---------


def compare(request: pytest.FixtureRequest, attack: str, tool: str, stopped: bool, detail: str) -> None:
    """Record whether ``tool`` stopped ``attack``: a ``comparison`` user property of the
    test (in the junit report) and a row of the table printed at the end of the run."""
    request.node.user_properties.append(
        ("comparison", {"attack": attack, "tool": tool, "stopped": stopped, "detail": detail}))


def shares_a_master(rootfs: Any, **options: Any) -> bool:
    """Whether a ``Container`` of ``rootfs`` (with ``options``) attaches a clone of a root
    made once in the caller (the shared read-only root of a host root started again)."""
    import isolate
    from isolate import _ops as O

    with isolate.Container(rootfs=rootfs, **options) as c:
        ops, _ = c._root_ops(c.cwd, None)
    return any(isinstance(op, O.RootMount) and op.fd >= 0 for op in ops)


def socket_peer(path: Path) -> int:
    """The pid listening on the SOCK_SEQPACKET socket ``path`` (SO_PEERCRED); OSError if none."""
    import socket
    import struct

    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(str(path))
        pid, _, _ = struct.unpack("=3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return int(pid)


def planner_pids(directory: Path) -> list[int]:
    """The pids of the isolate-oci planners listening in ``directory`` (each socket's peer)."""
    pids = []
    for path in directory.glob("planner-*.sock"):
        try:
            pids.append(socket_peer(path))
        except OSError:
            pass
    return pids


def stop_planners(directory: Path, keep: frozenset[int] = frozenset()) -> None:
    """End the planners of ``directory`` but those in ``keep`` (SIGTERM: each removes its
    socket) and wait for them and for their children (the spare worker dies with its planner)."""
    import select

    for pid in planner_pids(directory):
        if pid in keep:
            continue
        fds = []
        try:
            fds.append(os.pidfd_open(pid))
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (ProcessLookupError, FileNotFoundError):
            children = []
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                fds.append(os.pidfd_open(int(child)))
        try:
            if fds:
                os.kill(pid, signal.SIGTERM)
            for fd in fds:
                select.select([fd], [], [], 10)
        except ProcessLookupError:
            pass
        finally:
            for fd in fds:
                os.close(fd)
