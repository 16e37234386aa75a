"""Differential tests against runc (see test_differential.py): the order of the mounts, typeless
binds, linux.rootfsPropagation, the root with no mount namespace or a joined one, and
hostname/domainname in a joined uts namespace.

A namespace joined by path is held by an ``unshare ... sleep`` of this test's own, one per
runtime (runc's pivot_root replaces the root of a joined mount namespace), killed by pid
at teardown whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_differential import (MOUNTS, NS, Case, Side, _edits, _ns, _set, check, run_case,  # noqa: F401
                               sides)

pytestmark = [pytest.mark.root]

# The mount points in the order the process's mountinfo lists them (the order they were made).
ORDER = """cut -d" " -f5 /proc/self/mountinfo | sed "s/^/order /\""""
# The propagation of the root as the container sees it ("shared", "unbindable", or nothing for
# private), peer group numbers left out (they differ per run).
ROOT_PROPAGATION = ("""awk '$5 == "/" { p = ""; for (i = 7; $i != "-"; i++) { sub(/:[0-9]+/, "", $i); """
                    """p = p " " $i }; print "root propagation" p }' /proc/self/mountinfo""")


def _mounts(*entries: dict[str, Any]) -> Callable[[dict[str, Any], Path], None]:
    def edit(config: dict[str, Any], host: Path) -> None:
        config["mounts"] = [{k: (v(host) if callable(v) else v) for k, v in e.items()} for e in entries]
    return edit


def _share(host: Path) -> None:
    (host / "share").mkdir()
    (host / "share" / "file").write_text("from the host\n")


PROC = {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}
DEV = {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
       "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
PTS = {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
       "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}
SHM = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
       "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}
MQUEUE = {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}
SYS = {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
SCRATCH = {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
SHARE = {"destination": "/mnt/share", "type": "bind", "source": lambda h: str(h / "share"), "options": ["rbind"]}

ORDER_CASES = [
    # runc's own spec (proc, dev, devpts, shm, mqueue, sysfs, cgroup), the masks and read-only paths.
    Case("default", ORDER, want=("order /proc", "order /sys", "order /proc/keys")),
    # podman's: sysfs between /dev and /dev/pts; a bind and a tmpfs between the others.
    Case("podman-like", ORDER, _mounts(PROC, DEV, SYS, PTS, SHM, SHARE, MQUEUE, SCRATCH), prepare=_share,
         want=("order /mnt/share",)),
    # /sys last and /proc after a tmpfs: the config's order, not the runtime's.
    Case("sys-last", ORDER, _mounts(SCRATCH, PROC, DEV, PTS, SHM, MQUEUE, SYS), want=("order /scratch",)),
    # A tmpfs below /sys listed before it: hidden by sysfs in runc, hidden alike here.
    Case("below-sys-first", f"{ORDER}; ls /sys/fs | grep -c . | sed 's/^/sys entries /'",
         _mounts({**SCRATCH, "destination": "/sys/fs/x"}, PROC, DEV, PTS, SHM, SYS), want=("order /sys/fs/x",)),
]


@pytest.mark.parametrize("case", ORDER_CASES, ids=str)
def test_mount_order(case: Case, sides: tuple[Side, Side]) -> None:
    check(case, sides)


def test_tmpfs_source(sides: tuple[Side, Side]) -> None:
    # runtime-tools' runtimetest matches each mount's destination, type and source in mountinfo.
    probe = """awk '$5 == "/scratch" { for (i = 7; $i != "-"; i++); print "scratch", $(i + 1), $(i + 2) }' \
               /proc/self/mountinfo"""
    edit = _mounts(PROC, DEV, PTS, SHM, {**SCRATCH, "source": "scratchfs"})
    check(Case("tmpfs-source", probe, edit, want=("scratch tmpfs scratchfs",)), sides)


def _typeless(options: list[str]) -> Callable[[dict[str, Any], Path], None]:
    def edit(config: dict[str, Any], host: Path) -> None:
        config["mounts"].append({"destination": "/mnt/share", "source": str(host / "share"), "options": options})
    return edit


BIND_CASES = [
    Case("typeless-rbind-ro", f"{MOUNTS}; cat /mnt/share/file; (touch /mnt/share/x) 2>/dev/null || echo denied",
         _typeless(["rbind", "ro"]), prepare=_share, mounts=("/mnt",), want=("from the host", "denied")),
    Case("typeless-bind", f"{MOUNTS}; cat /mnt/share/file", _typeless(["bind", "nosuid"]), prepare=_share,
         mounts=("/mnt",), want=("from the host",)),
]


@pytest.mark.parametrize("case", BIND_CASES, ids=str)
def test_typeless_bind(case: Case, sides: tuple[Side, Side]) -> None:
    check(case, sides)


@pytest.mark.parametrize("prop", ["private", "rprivate", "slave", "rslave"])
def test_rootfs_propagation_private_or_slave(prop: str, sides: tuple[Side, Side]) -> None:
    # The host's / is private: a slave root has no master, and is private too.
    check(Case(prop, ROOT_PROPAGATION, _set("linux.rootfsPropagation", prop), want=("root propagation",)), sides)


@pytest.mark.parametrize("prop, want", [("shared", "shared"), ("rshared", "shared"), ("unbindable", "unbindable"),
                                        ("runbindable", "unbindable")])
def test_rootfs_propagation_shared_or_unbindable(prop: str, want: str, sides: tuple[Side, Side]) -> None:
    # Where runc and the spec part: runc 1.1.5 applies rootfsPropagation to / before it binds
    # the root and pivots, so the container's / ends private (and runbindable makes that bind
    # fail).  The spec: rootfsPropagation "sets the rootfs's mount propagation", and
    # runtime-tools' runtimetest checks it on / (a bind of / sees later mounts when shared;
    # binding / fails with EINVAL when unbindable).  isolate-oci follows the spec: set on /
    # after pivot_root, as crun does.
    runc, ours = sides
    case = Case(prop, ROOT_PROPAGATION, _set("linux.rootfsPropagation", prop))
    theirs = run_case(runc, case)
    assert theirs["stdout"] == ([] if prop == "runbindable" else ["root propagation"]), theirs
    got = run_case(ours, case)
    assert got["status"] == 0 and got["stdout"] == [f"root propagation {want}"], got


# --- namespaces joined by path, and no mount namespace -------------------------------------------


class Holders:
    """``unshare`` processes holding namespaces to join; each killed (by pid) at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def make(self, *flags: str) -> int:
        p = subprocess.Popen(["unshare", *flags, "sleep", "120"], start_new_session=True)
        self.procs.append(p)
        # unshare execs sleep once the namespaces exist: wait until the pid runs sleep.
        for _ in range(200):
            try:
                if Path(f"/proc/{p.pid}/comm").read_text().strip() == "sleep":
                    return p.pid
            except OSError:
                pass
            time.sleep(0.01)
        raise AssertionError(f"unshare {flags} did not start")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()


@pytest.fixture
def holders(sides: tuple[Side, Side]) -> Iterator[Holders]:
    h = Holders()
    try:
        yield h
    finally:
        h.close()      # before ``sides`` unmounts the bundles


def _join_in_bundle(holders: Holders, flags: tuple[str, ...], ns_type: str,
                    extra: Callable[[dict[str, Any]], None] | None = None) -> Callable[[Path], None]:
    """A ``populate`` step: once the bundle is mounted (a mount namespace copies it), hold a
    namespace with ``unshare flags`` and have the config join it by path."""
    def populate(rootfs: Path) -> None:
        pid = holders.make(*flags)
        (rootfs.parent.parent / "host" / "holder").write_text(str(pid))
        config_path = rootfs.parent / "config.json"
        config = json.loads(config_path.read_text())
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != ns_type] + [
            {"type": ns_type, "path": f"/proc/{pid}/ns/{'mnt' if ns_type == 'mount' else ns_type}"}]
        if extra is not None:
            extra(config)
        config_path.write_text(json.dumps(config))
    return populate


def _holder_ns(host: Path) -> list[str]:
    pid = (host / "holder").read_text()
    return [f"container in the holder's mnt namespace: "
            f"{os.readlink(f'/proc/{pid}/ns/mnt') == os.readlink(f'/proc/{pid}/root/proc/self/ns/mnt')}"]


def test_root_in_a_joined_mount_namespace(sides: tuple[Side, Side], holders: Holders) -> None:
    # runc builds the whole root in the joined namespace and pivots into it there.
    probe = f'{NS}; {MOUNTS}; {ORDER}; echo "root $(ls / | tr "\\n" " ")"'
    case = Case("joined-mnt", probe, mounts=("*",),
                populate=_join_in_bundle(holders, ("--mount", "--propagation", "private"), "mount"),
                want=("mount / rw,relatime overlay", "order /proc", "ns mnt new"))
    check(case, sides)
    for side in sides:
        pid = (side.host / "holder").read_text()
        # The holder's root is now the container's: pivot_root moved every process there.
        assert sorted(os.listdir(f"/proc/{pid}/root")) == sorted(os.listdir(side.base / "bundle" / "rootfs")), \
            side.name


def test_root_without_a_mount_namespace(sides: tuple[Side, Side], holders: Holders) -> None:
    # runc chroots into root.path; the probe needs a /proc there, bound from the host by the
    # test (no mount of the config's would be made: they are left out).
    bound: list[Path] = []

    def edit(config: dict[str, Any], host: Path) -> None:
        config["linux"]["namespaces"] = _ns("pid", "network", "ipc", "uts")
        config["mounts"] = []
        for key in ("maskedPaths", "readonlyPaths"):
            config["linux"].pop(key, None)

    def populate(rootfs: Path) -> None:
        subprocess.run(["mount", "--bind", "/proc", str(rootfs / "proc")], check=True)
        bound.append(rootfs)

    probe = f'{NS}; echo "root $(ls / | tr "\\n" " ")"; cat /etc/hostname 2>&1; pwd; echo x > /made-here'
    case = Case("no-mnt", probe, edit, populate=populate, want=("ns mnt host", "root bin dev etc home proc "
                                                                "root run sbin srv sys tmp var", "/"))
    try:
        check(case, sides)
        for side in sides:
            # The file the process made is in the bundle's root filesystem.
            assert (side.base / "bundle" / "rootfs" / "made-here").read_text() == "x\n", side.name
    finally:
        for rootfs in bound:
            _unmount_above_overlay(rootfs)


def _unmount_above_overlay(rootfs: Path) -> None:
    """Leave only the test's overlay at ``rootfs``: runc binds the root onto itself in its own
    (here the host's) mount namespace when the config has none, and never unmounts it."""
    def stacked() -> int:
        return sum(1 for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if line.split()[4] == str(rootfs))
    while stacked() > 1:
        subprocess.run(["umount", "--lazy", str(rootfs)], check=True)
    subprocess.run(["umount", str(rootfs / "proc")], check=True)


def test_hostname_in_a_joined_uts_namespace(sides: tuple[Side, Side], holders: Holders) -> None:
    def names(host: Path) -> list[str]:
        pid = (host / "holder").read_text()
        out = subprocess.run(["nsenter", "-t", pid, "-u", "hostname"], capture_output=True, text=True, check=True)
        return [f"holder hostname {out.stdout.strip()}"]

    case = Case("joined-uts", 'echo "hostname $(hostname)"', _set("hostname", "joined"),
                populate=_join_in_bundle(holders, ("--uts",), "uts"), after=names,
                want=("hostname joined",))
    check(case, sides)
    for side in sides:
        assert names(side.host) == ["holder hostname joined"], side.name


@pytest.mark.parametrize("joined", [False, True], ids=["new-uts", "joined-uts"])
def test_domainname_is_set(sides: tuple[Side, Side], holders: Holders, joined: bool) -> None:
    # The spec: domainname "specifies the container's domainname as seen by processes running
    # inside the container".  runc 1.1.5 predates the field and ignores it; crun sets it, and so
    # does isolate-oci.  Only our side is checked.
    _, ours = sides
    populate = _join_in_bundle(holders, ("--uts",), "uts") if joined else None
    case = Case("domainname", "cat /proc/sys/kernel/domainname", _set("domainname", "example.test"),
                populate=populate)
    got = run_case(ours, case)
    assert got["status"] == 0 and got["stdout"] == ["example.test"], got
    if joined:
        pid = (ours.host / "holder").read_text()
        out = subprocess.run(["nsenter", "-t", pid, "-u", "cat", "/proc/sys/kernel/domainname"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "example.test"
