"""Differential tests, runc against isolate-oci, for fields isolate-oci used to drop with a warning.

``linux.devices`` (node types, numbers, modes and owners in /dev), ``linux.sysctl``
(values read inside, the host's untouched), ``process.oomScoreAdj`` (inside and from
the host's /proc/<pid>), ``linux.seccomp.architectures`` (a syscall made through the
i386 entry), the LSM labels (refused by both here: no AppArmor, no SELinux) and
``features``.  The harness is ``test_differential``'s: one bundle per runtime, the
oracle's result checked first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_differential import (CANDIDATE, CID, DEFAULT_NS, MAPPING, RUNC, Case, Side, _edits, _ns,  # noqa: F401
                               _set, check, sides)

pytestmark = [pytest.mark.root]

# ls -ln: type and permission bits, owner, group, major, minor and name (no dates).
LS_DEV = ('for p in /dev/fuse /dev/blk0 /dev/fifo /dev/sub/dir/null2; do '
          'if [ -e $p ]; then ls -ln $p | awk \'{print $1, $3, $4, $5, $6, $NF}\'; else echo "$p absent"; fi; '
          'done; ls -ld /dev/sub /dev/sub/dir | awk \'{print $1, $NF}\'')

DEVICES = [
    # podman's form: fileMode with the file-type bits (8630 = 0o20666).
    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 8630, "uid": 0, "gid": 0},
    {"path": "/dev/blk0", "type": "b", "major": 7, "minor": 200, "fileMode": 0o640, "uid": 5, "gid": 6},
    {"path": "/dev/fifo", "type": "p"},
    # parents made 0755; an owner and a mode of its own.
    {"path": "/dev/sub/dir/null2", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000,
     "gid": 1000},
]

DEVICE_CASES = [
    Case("devices", LS_DEV, edit=_set("linux.devices", DEVICES),
         want=("crw-rw-rw- 0 0 10, 229 /dev/fuse", "brw-r----- 5 6 7, 200 /dev/blk0",
               "crw------- 1000 1000 1, 3 /dev/sub/dir/null2", "drwxr-xr-x /dev/sub")),
    Case("devices-absent", LS_DEV, want=("/dev/fuse absent",)),
    # A user namespace may not mknod: the host's nodes are bound (runc), with their own
    # mode and owner (root, unmapped: 65534), and a mount of their own.
    Case("devices-userns", 'ls -ln /dev/fuse /dev/net/tun | awk \'{print $1, $3, $4, $5, $6, $NF}\'; '
         'ls -ld /dev/net | awk \'{print $1, $NF}\'; '
         'grep -E " /dev/(fuse|net/tun) " /proc/self/mountinfo | cut -d" " -f4-6',
         edit=_edits(_set("linux.namespaces", _ns(*DEFAULT_NS, "user")), _set("linux.uidMappings", MAPPING),
                     _set("linux.gidMappings", MAPPING),
                     _set("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                             "fileMode": 8630},
                                            {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200}])),
         want=("/fuse /dev/fuse rw,relatime", "/net/tun /dev/net/tun rw,relatime", "drwxr-xr-x /dev/net")),
]


@pytest.mark.parametrize("case", DEVICE_CASES, ids=str)
def test_devices(case: Case, sides: tuple[Side, Side]) -> None:
    check(case, sides)


SYSCTL = ("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax /proc/sys/fs/mqueue/msg_max "
          "/proc/sys/kernel/domainname")


def _host_sysctls(host: Path) -> list[str]:
    return [Path(f"/proc/sys/{p}").read_text().strip() for p in
            ("net/ipv4/ip_forward", "kernel/shmmax", "fs/mqueue/msg_max", "kernel/domainname")]


SYSCTL_CASES = [
    Case("sysctl", SYSCTL, want=("1", "1234567", "20", "dom.example"), after=_host_sysctls,
         edit=_set("linux.sysctl", {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1234567",
                                    "fs.mqueue.msg_max": "20", "kernel.domainname": "dom.example"})),
    # runc's rule: only a sysctl of a namespace the container has of its own.
    Case("sysctl-host-only", "true", error=True, status=1, after=_host_sysctls,
         edit=_set("linux.sysctl", {"vm.swappiness": "10"})),
    Case("sysctl-net-without-netns", "true", error=True, status=1, after=_host_sysctls,
         edit=_edits(_set("linux.sysctl", {"net.ipv4.ip_forward": "1"}),
                     lambda c, h: c["linux"].__setitem__(
                         "namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "network"]))),
    Case("sysctl-unknown", "true", error=True, status=1, edit=_set("linux.sysctl", {"net.ipv4.nonesuch": "1"})),
]


@pytest.mark.parametrize("case", SYSCTL_CASES, ids=str)
def test_sysctl(case: Case, sides: tuple[Side, Side]) -> None:
    check(case, sides)


OOM_CASES = [
    Case("oom-raise", "cat /proc/self/oom_score_adj", edit=_set("process.oomScoreAdj", 500), want=("500",)),
    # Root here lacks CAP_SYS_RESOURCE: lowering fails (EACCES) in both.
    Case("oom-lower", "true", edit=_set("process.oomScoreAdj", -500), error=True, status=1),
]


@pytest.mark.parametrize("case", OOM_CASES, ids=str)
def test_oom_score_adj(case: Case, sides: tuple[Side, Side]) -> None:
    check(case, sides)


def test_oom_score_adj_seen_from_the_host_and_in_exec(sides: tuple[Side, Side]) -> None:
    seen = []
    for side in sides:
        bundle = side.make_bundle(["sleep", "60"], edit=lambda c: c["process"].__setitem__("oomScoreAdj", 300))
        try:
            # The container's stdio: not our pipes, which runc's would hold open.
            p = side("create", "--bundle", str(bundle), CID, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
            assert p.returncode == 0
            state = side.state()
            assert state is not None
            host = Path(f"/proc/{state['pid']}/oom_score_adj").read_text().strip()
            e = side("exec", CID, "cat", "/proc/self/oom_score_adj")
            seen.append((side.name, host, e.stdout.decode().strip(), e.returncode))
        finally:
            side("delete", "--force", CID)
    assert [s[1:] for s in seen] == [("300", "300", 0)] * 2, seen
    # The runtime's own score is put back once the container is started.
    assert Path("/proc/self/oom_score_adj").read_text().strip() == "0"


def test_personality_linux32_is_the_containers_and_its_execs(sides: tuple[Side, Side]) -> None:
    # Not compared with runc 1.1, which ignores linux.personality: the spec says the
    # domain is set, and runc 1.2 and crun call personality(2) (PER_LINUX32: uname says i686).
    ours = sides[1]
    bundle = ours.make_bundle(["sleep", "60"], edit=lambda c: c["linux"].__setitem__(
        "personality", {"domain": "LINUX32"}))
    try:
        p = ours("create", "--bundle", str(bundle), CID, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert p.returncode == 0
        state = ours.state()
        assert state is not None
        assert Path(f"/proc/{state['pid']}/personality").read_text().strip() == "00000008"
        e = ours("exec", CID, "uname", "-m")
        assert (e.returncode, e.stdout.decode().strip()) == (0, "i686"), e.stderr
    finally:
        ours("delete", "--force", CID)
    assert Path("/proc/self/personality").read_text().strip() == "00000000"


LSM_CASES = [
    # No AppArmor and no SELinux here: runc fails on each (it cannot write the profile to
    # /proc/self/attr/exec, it refuses a label with SELinux disabled, the kernel refuses a
    # context= mount option); isolate-oci refuses each naming the field.
    Case("apparmor", "true", edit=_set("process.apparmorProfile", "unconfined-x"), error=True, status=1),
    Case("selinux-label", "true", edit=_set("process.selinuxLabel", "system_u:system_r:container_t:s0"),
         error=True, status=1),
    Case("mount-label", "true", edit=_set("linux.mountLabel", "system_u:object_r:container_file_t:s0"),
         error=True, status=1),
]


@pytest.mark.parametrize("case", LSM_CASES, ids=str)
def test_security_labels(case: Case, sides: tuple[Side, Side]) -> None:
    check(case, sides)


# getpid (20) through the i386 entry (int $0x80): seccomp sees AUDIT_ARCH_I386.
I386_GETPID = r"""
#include <stdio.h>
int main(void) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    printf("i386 getpid: %ld\n", ret > 0 ? 1L : ret);
    return 0;
}
"""


@pytest.fixture(scope="module")
def i386_getpid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is missing: it builds the i386-entry probe")
    d = tmp_path_factory.mktemp("i386")
    (d / "probe.c").write_text(I386_GETPID)
    subprocess.run([gcc, "-static", "-O2", "-o", str(d / "probe"), str(d / "probe.c")], check=True)
    return d / "probe"


def _seccomp(archs: list[str]) -> Any:
    return _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": archs,
                                  "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
                                                "errnoRet": 38}]})


@pytest.mark.parametrize("archs,status,want", [
    # x86 in the filter: the rule applies to the i386 getpid too (runc, through libseccomp).
    (["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], 0, ("i386 getpid: -38",)),
    # Only the native one: a syscall of another architecture kills the process (SIGSYS).
    (["SCMP_ARCH_X86_64"], 128 + 31, ()),
], ids=["x86-filtered", "native-only"])
def test_seccomp_architectures(archs: list[str], status: int, want: tuple[str, ...], i386_getpid: Path,
                               sides: tuple[Side, Side]) -> None:
    def populate(rootfs: Path) -> None:
        shutil.copy(i386_getpid, rootfs / "probe")

    check(Case("seccomp-archs", "", args=("/probe",), edit=_seccomp(archs), status=status, want=want,
               populate=populate), sides)


def test_features_lists_what_runc_lists_for_hooks_and_architectures() -> None:
    runc = json.loads(subprocess.run([RUNC, "features"], capture_output=True, check=True).stdout)
    ours = json.loads(subprocess.run([CANDIDATE, "features"], capture_output=True, check=True).stdout)
    assert ours["hooks"] == runc["hooks"]
    assert set(runc["linux"]["seccomp"]["archs"]) <= set(ours["linux"]["seccomp"]["archs"])
    # isolate applies no LSM: it says so (runc, built with both, says enabled).
    assert ours["linux"]["apparmor"] == {"enabled": False} and ours["linux"]["selinux"] == {"enabled": False}



def test_a_bound_device_must_be_the_one_the_entry_names(sides: tuple[Side, Side]) -> None:
    # runc binds whatever the host has at the path; isolate-oci refuses a host node that is
    # not the device asked for (10:228 is not the host's /dev/fuse), naming the entry.
    ours = sides[1]
    bundle = ours.make_bundle(["true"], edit=lambda c: _edits(
        _set("linux.namespaces", _ns(*DEFAULT_NS, "user")), _set("linux.uidMappings", MAPPING),
        _set("linux.gidMappings", MAPPING),
        _set("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 228}]))(c, ours.host))
    p = ours("run", "--bundle", str(bundle), CID)
    assert p.returncode == 1
    assert b"linux.devices[0] (/dev/fuse): the host's /dev/fuse is not the device the entry names" in p.stderr
    assert ours.state() is None
