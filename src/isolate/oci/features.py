"""The runtime-spec "features" document (features.md) for isolate, and the default config.

``features()`` says what isolate applies *today*, derived from the tables
the converter uses, so it cannot claim more than ``convert`` does.
``default_spec()`` is the config ``isolate-oci spec`` writes (``runc spec``'s,
at spec version 1.2).
"""

from __future__ import annotations

import os

from .spec import NAMESPACE_TYPES, SECCOMP_ARCHS, SECCOMP_OPERATORS, SPEC_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["default_spec", "features"]

#: Lifecycle hooks the runtime runs (runtime.create, start, delete), as runc lists them.
HOOKS: tuple[str, ...] = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                          "poststop")
#: Mount options the converter applies (bind mounts and tmpfs; tmpfs also takes size= and mode=).
MOUNT_OPTIONS = ("bind", "rbind", "ro", "rw")


def features() -> dict[str, Any]:
    """The features JSON object (runtime-spec features.md) describing isolate here."""
    from .. import __version__
    from .._plan import CAPABILITIES, NSTYPES
    from ..seccomp import architecture_known, available
    from .convert import _NATIVE_ARCH, _SCMP

    ours = {v: k for k, v in NAMESPACE_TYPES.items()}
    native = _NATIVE_ARCH.get(os.uname().machine)
    has_seccomp = available()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": list(MOUNT_OPTIONS),
        "linux": {
            "namespaces": sorted(ours[n] for n in NSTYPES if n in ours),
            "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.__getitem__),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": has_seccomp,
                "actions": sorted(_SCMP) if has_seccomp else [],
                "operators": sorted(SECCOMP_OPERATORS) if has_seccomp else [],
                # Every architecture libseccomp can add to a filter (linux.seccomp.architectures).
                "archs": sorted(a for a in SECCOMP_ARCHS if a == native or architecture_known(a[10:].lower()))
                if has_seccomp else [],
            },
            # Refused (convert): no LSM is applied, and no resctrl.
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"org.isolate.version": __version__},
    }


def default_spec(*, rootless: bool = False) -> dict[str, Any]:
    """The config.json ``runc spec`` writes (``--rootless``: mapped to the caller's ids)."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    nosuid = ["nosuid", "noexec", "nodev"]
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts.append("gid=5")   # the tty group exists only for a mapped gid 5
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*nosuid, "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nosuid},
        # A user namespace may not mount a new sysfs without owning a network namespace.
        {"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", *nosuid, "ro"]}
        if rootless else
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*nosuid, "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*nosuid, "relatime", "ro"]},
    ]
    namespaces = [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                  {"type": "mount"}]
    linux: dict[str, Any] = {}
    if rootless:
        namespaces = [ns for ns in namespaces if ns["type"] != "network"] + [{"type": "user"}]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    linux["namespaces"] = namespaces
    linux["maskedPaths"] = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
    linux["readonlyPaths"] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "isolate",
        "mounts": mounts,
        "linux": linux,
    }
