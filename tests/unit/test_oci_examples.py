"""Example config.json files shared by the OCI tests: runc's defaults and a podman-like one."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=2)
def _runc_spec(rootless: bool) -> str:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["runc", "spec", *(["--rootless"] if rootless else [])], cwd=d, check=True,
                       capture_output=True, timeout=30)
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            return f.read()


def runc_spec(rootless: bool = False) -> dict[str, Any]:
    """What ``runc spec [--rootless]`` writes (runc is a test dependency: .ci/packages.txt)."""
    if shutil.which("runc") is None:
        raise RuntimeError("runc is not installed: apt-get install runc (see .ci/packages.txt)")
    return json.loads(_runc_spec(rootless))


# What podman 4 writes for `podman run --memory 256m --pids-limit 100 --cpu-shares 1024
# --cpus 0.5 -v /data:/data:ro --tmpfs /run ...`, cut down, plus the fields podman
# uses rarely (hooks, seccomp with arguments, blkio throttles) and vendor extensions.
PODMAN: dict[str, Any] = {
    "ociVersion": "1.1.0",
    "process": {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [10, 1000]},
        "args": ["/bin/sh", "-c", "echo hello"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm",
                "container=podman", "HOSTNAME=web", "EMPTY="],
        "cwd": "/srv",
        "capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"],
            "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1024},
                    {"type": "RLIMIT_NPROC", "hard": 4194304, "soft": 4194304}],
        "noNewPrivileges": True,
        "oomScoreAdj": 100,
    },
    "root": {"path": "/var/lib/containers/storage/overlay/abc/merged", "readonly": False},
    "hostname": "web",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro", "rprivate"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["rw", "rprivate", "nosuid", "nodev", "size=1048576", "mode=755"]},
    ],
    "hooks": {"prestart": [{"path": "/usr/bin/true", "args": ["true", "pre"], "env": ["A=1"], "timeout": 5}],
              "poststop": [{"path": "/usr/bin/true"}]},
    "annotations": {"io.container.manager": "libpod", "org.opencontainers.image.stopSignal": "15"},
    "linux": {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "sysctl": {"net.ipv4.ping_group_range": "0 0"},
        "resources": {
            "devices": [{"allow": False, "access": "rwm"},
                        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}],
            "memory": {"limit": 268435456, "swap": 536870912},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
            "pids": {"limit": 100},
            "blockIO": {"weight": 500,
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]},
        },
        "cgroupsPath": "machine.slice:libpod:abc",
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                       {"type": "mount"}, {"type": "user"}, {"type": "cgroup"}],
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            ],
        },
        "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        "mountLabel": "",
        "x-vendor": {"anything": [1, 2.5, None, "x"]},
    },
    "io.example.extension": {"kept": True},
}


def podman() -> dict[str, Any]:
    """A fresh deep copy of ``PODMAN``."""
    return copy.deepcopy(PODMAN)


# --- the examples themselves parse and round-trip ------------------------------

import pytest

from isolate.oci import parse
from isolate.oci.features import default_spec


@pytest.mark.parametrize("rootless", [False, True], ids=["runc-spec", "runc-spec-rootless"])
def test_runc_spec_parses_and_round_trips(rootless: bool) -> None:
    data = runc_spec(rootless)
    spec = parse(json.dumps(data))
    assert spec.to_dict() == data
    assert spec.process is not None and spec.process.args == ("sh",)
    assert spec.process.rlimits is not None and spec.process.rlimits[0].type == "RLIMIT_NOFILE"
    assert spec.root is not None and spec.root.path == "rootfs" and spec.root.readonly is True
    assert spec.linux is not None
    types = [ns.type for ns in spec.linux.namespaces or ()]
    assert ("user" in types) is rootless and ("network" in types) is not rootless
    if rootless:
        assert spec.linux.uid_mappings is not None and spec.linux.uid_mappings[0].size == 1


@pytest.mark.parametrize("rootless", [False, True])
def test_isolate_default_spec_is_runcs_at_spec_1_2(rootless: bool) -> None:
    ours, theirs = default_spec(rootless=rootless), runc_spec(rootless)
    assert ours["ociVersion"] == "1.2.0" and ours["hostname"] == "isolate"
    for d in (ours, theirs):
        d.pop("ociVersion")
        d.pop("hostname")
    if rootless:       # runc maps root to the caller; so do we (the same caller here)
        assert ours["linux"]["uidMappings"] == theirs["linux"]["uidMappings"]
    assert ours == theirs
    assert parse(default_spec(rootless=rootless)).to_dict() == default_spec(rootless=rootless)


def test_podman_like_config_parses_into_typed_fields() -> None:
    spec = parse(podman())
    assert spec.to_dict() == PODMAN
    p = spec.process
    assert p is not None and p.user is not None
    assert (p.user.uid, p.user.gid, p.user.umask, p.user.additional_gids) == (1000, 1000, 0o22, (10, 1000))
    assert p.capabilities is not None and p.capabilities.ambient is None
    assert p.oom_score_adj == 100 and p.cwd == "/srv"
    assert spec.hooks is not None and spec.hooks.prestart is not None
    assert spec.hooks.prestart[0].timeout == 5 and spec.hooks.poststop[0].args is None  # type: ignore[index]
    lx = spec.linux
    assert lx is not None and lx.resources is not None
    assert lx.resources.memory is not None and lx.resources.memory.limit == 256 << 20
    assert lx.resources.cpu is not None and lx.resources.cpu.shares == 1024
    assert lx.resources.block_io is not None
    assert lx.resources.block_io.throttle_read_bps_device[0].rate == 1 << 20  # type: ignore[index]
    assert lx.seccomp is not None and lx.seccomp.syscalls is not None
    assert lx.seccomp.syscalls[2].args[0].value_two == 0  # type: ignore[index]
    assert lx.namespace("network") is not None and lx.namespace("time") is None
    assert lx.extra == {"x-vendor": {"anything": [1, 2.5, None, "x"]}}
    assert spec.extra == {"io.example.extension": {"kept": True}}
