"""Typed models of the OCI runtime-spec 1.2 ``config.json`` (Linux), with validation.

::

    spec, bundle = load_bundle("/path/to/bundle")
    spec.process.args            # ('sh',)
    spec.linux.resources.memory.limit
    spec.to_dict()               # the input back, unknown fields included

Every model is a frozen dataclass; absent optional fields are ``None``;
arrays are tuples.  ``parse()`` raises ``isolate.ConfigError`` naming the
JSON path and the value of the first problem, e.g.
``linux.resources.memory.limit: expected an integer, got "1g"``.  Keys this
module does not know are kept in each model's ``extra`` and written back
by ``to_dict()``, so configs from newer specs or with vendor extensions
round-trip unchanged (key order aside; a ``null`` known field reads as
absent, as in Go runtimes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .._record import dataclass
from ..errors import ConfigError
from ._schema import (
    ID,
    INT64,
    UINT16,
    UINT32,
    UINT64,
    Bool,
    Int,
    ListOf,
    MapOf,
    Model,
    Node,
    Str,
    extra,
    fail,
    join,
    show,
    spec,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "NAMESPACE_TYPES",
    "RLIMIT_TYPES",
    "SECCOMP_ACTIONS",
    "SECCOMP_OPERATORS",
    "SPEC_VERSION",
    "BlockIO",
    "Capabilities",
    "ConsoleSize",
    "Cpu",
    "DeviceCgroup",
    "Hook",
    "Hooks",
    "HugepageLimit",
    "IdMapping",
    "IntelRdt",
    "Linux",
    "LinuxDevice",
    "LinuxNamespace",
    "Memory",
    "Mount",
    "Network",
    "Personality",
    "Pids",
    "Process",
    "Resources",
    "Rlimit",
    "Root",
    "Seccomp",
    "Spec",
    "SyscallArg",
    "SyscallRule",
    "ThrottleDevice",
    "TimeOffset",
    "User",
    "WeightDevice",
    "load_bundle",
    "parse",
]

#: The runtime-spec version this module models and ``isolate-oci spec`` writes.
SPEC_VERSION = "1.2.0"

#: OCI namespace type -> isolate's name for it.
NAMESPACE_TYPES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
                   "user": "user", "cgroup": "cgroup", "time": "time"}
#: The ``process.rlimits`` types the spec names.
RLIMIT_TYPES = frozenset(f"RLIMIT_{n}" for n in (
    "AS", "CORE", "CPU", "DATA", "FSIZE", "LOCKS", "MEMLOCK", "MSGQUEUE", "NICE", "NOFILE", "NPROC",
    "RSS", "RTPRIO", "RTTIME", "SIGPENDING", "STACK"))
#: The seccomp actions the spec names (``linux.seccomp``).
SECCOMP_ACTIONS = frozenset(f"SCMP_ACT_{n}" for n in (
    "KILL", "KILL_PROCESS", "KILL_THREAD", "TRAP", "ERRNO", "TRACE", "ALLOW", "LOG", "NOTIFY"))
#: The seccomp argument comparisons the spec names.
SECCOMP_OPERATORS = frozenset(f"SCMP_CMP_{n}" for n in ("NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"))
SECCOMP_ARCHS = frozenset(f"SCMP_ARCH_{n}" for n in (
    "X86", "X86_64", "X32", "ARM", "AARCH64", "MIPS", "MIPS64", "MIPS64N32", "MIPSEL", "MIPSEL64",
    "MIPSEL64N32", "PPC", "PPC64", "PPC64LE", "S390", "S390X", "PARISC", "PARISC64", "RISCV64",
    "LOONGARCH64", "M68K", "SH", "SHEB"))
SECCOMP_FLAGS = frozenset({"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                           "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"})
PROPAGATIONS = frozenset({"private", "rprivate", "slave", "rslave", "shared", "rshared",
                          "unbindable", "runbindable"})
# Far beyond any real machine, but small enough that arithmetic on them stays sane.
_MAX_BYTES = (-1, 2**62)


def _absolute(value: str) -> str | None:
    return None if value.startswith("/") else "expected an absolute path"


def _destination(value: str) -> str | None:
    # runtime-spec config.md: on Linux the destination MUST be absolute; '..' would
    # let a mount land outside the root once symlinks and bind sources combine.
    if not value.startswith("/"):
        return "expected an absolute path"
    if ".." in value.split("/"):
        return "must not contain '..'"
    return None


def _env_entry(value: str) -> str | None:
    key, sep, _ = value.partition("=")
    return None if sep and key else "expected KEY=VALUE"


def _capability(value: str) -> str | None:
    from .._plan import CAPABILITIES

    return None if value in CAPABILITIES else "unknown capability"


def _version(value: str) -> str | None:
    major, _, rest = value.partition(".")
    if major != "1" or not rest:
        return "expected a 1.x runtime-spec version"
    return None


PATH = Str(check=_absolute)
ENV = ListOf(Str(check=_env_entry))
STRS = ListOf(Str())
CAPS = ListOf(Str(check=_capability))
BYTES = Int(_MAX_BYTES)


# --- process -------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class User(Node):
    """``process.user``: the ids the process runs as."""

    uid: int = spec("uid", Int(ID), required=True)
    gid: int = spec("gid", Int(ID), required=True)
    umask: int | None = spec("umask", Int((0, 0o7777)))
    additional_gids: tuple[int, ...] | None = spec("additionalGids", ListOf(Int(ID)))
    username: str | None = spec("username", Str())
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities(Node):
    """``process.capabilities``: the five capability sets, by ``CAP_*`` name."""

    bounding: tuple[str, ...] | None = spec("bounding", CAPS)
    effective: tuple[str, ...] | None = spec("effective", CAPS)
    inheritable: tuple[str, ...] | None = spec("inheritable", CAPS)
    permitted: tuple[str, ...] | None = spec("permitted", CAPS)
    ambient: tuple[str, ...] | None = spec("ambient", CAPS)
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rlimit(Node):
    """One ``process.rlimits`` entry."""

    type: str = spec("type", Str(choices=RLIMIT_TYPES), required=True)
    hard: int = spec("hard", Int(UINT64), required=True)
    soft: int = spec("soft", Int(UINT64), required=True)
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        if self.soft > self.hard:
            raise fail(join(path, "soft"), f"above the hard limit {self.hard}, got {self.soft}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSize(Node):
    """``process.consoleSize``."""

    height: int = spec("height", Int(UINT16), required=True)
    width: int = spec("width", Int(UINT16), required=True)
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Process(Node):
    """``process``: what runs in the container."""

    args: tuple[str, ...] | None = spec("args", STRS)
    command_line: str | None = spec("commandLine", Str())
    env: tuple[str, ...] | None = spec("env", ENV)
    cwd: str = spec("cwd", PATH, required=True)
    user: User | None = spec("user", Model(User))
    capabilities: Capabilities | None = spec("capabilities", Model(Capabilities))
    rlimits: tuple[Rlimit, ...] | None = spec("rlimits", ListOf(Model(Rlimit)))
    no_new_privileges: bool | None = spec("noNewPrivileges", Bool())
    oom_score_adj: int | None = spec("oomScoreAdj", Int((-1000, 1000)))
    terminal: bool | None = spec("terminal", Bool())
    console_size: ConsoleSize | None = spec("consoleSize", Model(ConsoleSize))
    apparmor_profile: str | None = spec("apparmorProfile", Str())
    selinux_label: str | None = spec("selinuxLabel", Str())
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        if not self.args:
            raise fail(join(path, "args"), f"must name a program, got {show(list(self.args or []))}")
        seen: set[str] = set()
        for i, r in enumerate(self.rlimits or ()):
            if r.type in seen:
                raise fail(join(join(path, "rlimits"), i), f"duplicate rlimit {show(r.type)}")
            seen.add(r.type)


# --- root, mounts, hooks -------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Root(Node):
    """``root``: the container's root filesystem, relative to the bundle or absolute."""

    path: str = spec("path", Str(check=lambda v: None if v else "must not be empty"), required=True)
    readonly: bool | None = spec("readonly", Bool())
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class IdMapping(Node):
    """A uid or gid mapping: ``size`` ids from ``hostID`` appear as ``containerID``."""

    container_id: int = spec("containerID", Int(UINT32), required=True)
    host_id: int = spec("hostID", Int(UINT32), required=True)
    size: int = spec("size", Int(UINT32), required=True)
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        if self.size < 1:
            raise fail(join(path, "size"), f"expected at least 1, got {self.size}")
        for key, start in (("containerID", self.container_id), ("hostID", self.host_id)):
            if start + self.size > 2**32 - 1:
                raise fail(join(path, key), f"range {start}+{self.size} passes the last id 4294967294")


def _check_mappings(maps: tuple[IdMapping, ...] | None, path: str) -> None:
    for i, a in enumerate(maps or ()):
        for b in (maps or ())[:i]:
            if (a.container_id < b.container_id + b.size and b.container_id < a.container_id + a.size) or \
                    (a.host_id < b.host_id + b.size and b.host_id < a.host_id + a.size):
                raise fail(join(path, i), f"overlaps an earlier mapping: {show(a.to_dict())}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount(Node):
    """One ``mounts`` entry."""

    destination: str = spec("destination", Str(check=_destination), required=True)
    source: str | None = spec("source", Str())
    type: str | None = spec("type", Str())
    options: tuple[str, ...] | None = spec("options", STRS)
    uid_mappings: tuple[IdMapping, ...] | None = spec("uidMappings", ListOf(Model(IdMapping)))
    gid_mappings: tuple[IdMapping, ...] | None = spec("gidMappings", ListOf(Model(IdMapping)))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Hook(Node):
    """A hook: ``path`` run with ``args``/``env``, killed after ``timeout`` seconds."""

    path: str = spec("path", PATH, required=True)
    args: tuple[str, ...] | None = spec("args", STRS)
    env: tuple[str, ...] | None = spec("env", ENV)
    timeout: int | None = spec("timeout", Int((1, 2**31 - 1)))
    extra: Mapping[str, Any] = extra()


HOOK_LIST = ListOf(Model(Hook))


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks(Node):
    """``hooks``, by the lifecycle point at which they run."""

    prestart: tuple[Hook, ...] | None = spec("prestart", HOOK_LIST)
    create_runtime: tuple[Hook, ...] | None = spec("createRuntime", HOOK_LIST)
    create_container: tuple[Hook, ...] | None = spec("createContainer", HOOK_LIST)
    start_container: tuple[Hook, ...] | None = spec("startContainer", HOOK_LIST)
    poststart: tuple[Hook, ...] | None = spec("poststart", HOOK_LIST)
    poststop: tuple[Hook, ...] | None = spec("poststop", HOOK_LIST)
    extra: Mapping[str, Any] = extra()


# --- linux: resources ----------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Memory(Node):
    """``linux.resources.memory``: bytes; -1 means unlimited; ``swap`` is memory plus swap."""

    limit: int | None = spec("limit", BYTES)
    reservation: int | None = spec("reservation", BYTES)
    swap: int | None = spec("swap", BYTES)
    kernel: int | None = spec("kernel", BYTES)
    kernel_tcp: int | None = spec("kernelTCP", BYTES)
    swappiness: int | None = spec("swappiness", Int((0, 100)))
    disable_oom_killer: bool | None = spec("disableOOMKiller", Bool())
    use_hierarchy: bool | None = spec("useHierarchy", Bool())
    check_before_update: bool | None = spec("checkBeforeUpdate", Bool())
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        if self.limit is not None and self.swap is not None and self.limit > 0 and 0 < self.swap < self.limit:
            raise fail(join(path, "swap"), f"memory+swap is below the memory limit {self.limit}, got {self.swap}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Cpu(Node):
    """``linux.resources.cpu``: shares, CFS quota/period (µs), realtime, cpuset lists."""

    shares: int | None = spec("shares", Int((0, 2**18)))
    quota: int | None = spec("quota", Int((-1, 2**50)))
    burst: int | None = spec("burst", Int((0, 2**50)))
    period: int | None = spec("period", Int((0, 2**50)))
    realtime_runtime: int | None = spec("realtimeRuntime", Int((-1, 2**50)))
    realtime_period: int | None = spec("realtimePeriod", Int((0, 2**50)))
    cpus: str | None = spec("cpus", Str())
    mems: str | None = spec("mems", Str())
    idle: int | None = spec("idle", Int((0, 1)))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Pids(Node):
    """``linux.resources.pids``: ``limit`` <= 0 means unlimited."""

    limit: int | None = spec("limit", Int((-1, 2**31 - 1)))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightDevice(Node):
    """A per-device blkio weight."""

    major: int = spec("major", Int(UINT32), required=True)
    minor: int = spec("minor", Int(UINT32), required=True)
    weight: int | None = spec("weight", Int((0, 1000)))
    leaf_weight: int | None = spec("leafWeight", Int((0, 1000)))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleDevice(Node):
    """A per-device rate: bytes or operations per second."""

    major: int = spec("major", Int(UINT32), required=True)
    minor: int = spec("minor", Int(UINT32), required=True)
    rate: int = spec("rate", Int(UINT64), required=True)
    extra: Mapping[str, Any] = extra()


THROTTLES = ListOf(Model(ThrottleDevice))


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockIO(Node):
    """``linux.resources.blockIO``: weights (10-1000) and throttles."""

    weight: int | None = spec("weight", Int((0, 1000)))
    leaf_weight: int | None = spec("leafWeight", Int((0, 1000)))
    weight_device: tuple[WeightDevice, ...] | None = spec("weightDevice", ListOf(Model(WeightDevice)))
    throttle_read_bps_device: tuple[ThrottleDevice, ...] | None = spec("throttleReadBpsDevice", THROTTLES)
    throttle_write_bps_device: tuple[ThrottleDevice, ...] | None = spec("throttleWriteBpsDevice", THROTTLES)
    throttle_read_iops_device: tuple[ThrottleDevice, ...] | None = spec("throttleReadIOPSDevice", THROTTLES)
    throttle_write_iops_device: tuple[ThrottleDevice, ...] | None = spec("throttleWriteIOPSDevice", THROTTLES)
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        for key, v in (("weight", self.weight), ("leafWeight", self.leaf_weight)):
            if v is not None and v != 0 and v < 10:
                raise fail(join(path, key), f"expected 10 to 1000 (or 0), got {v}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HugepageLimit(Node):
    """A limit on huge pages of ``pageSize`` (``"2MB"``)."""

    page_size: str = spec("pageSize", Str(), required=True)
    limit: int = spec("limit", Int(UINT64), required=True)
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceCgroup(Node):
    """A ``linux.resources.devices`` rule; a missing type/major/minor matches any (-1 too)."""

    allow: bool = spec("allow", Bool(), required=True)
    type: str | None = spec("type", Str(choices=frozenset({"a", "b", "c"})))
    major: int | None = spec("major", Int((-1, 2**32 - 1)))
    minor: int | None = spec("minor", Int((-1, 2**32 - 1)))
    access: str | None = spec("access", Str(check=lambda v: None if set(v) <= set("rwm") else
                                            "expected letters from 'rwm'"))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class NetPriority(Node):
    """A per-interface network priority."""

    name: str = spec("name", Str(), required=True)
    priority: int = spec("priority", Int(UINT32), required=True)
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Network(Node):
    """``linux.resources.network`` (net_cls / net_prio)."""

    class_id: int | None = spec("classID", Int(UINT32))
    priorities: tuple[NetPriority, ...] | None = spec("priorities", ListOf(Model(NetPriority)))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rdma(Node):
    """A ``linux.resources.rdma`` entry."""

    hca_handles: int | None = spec("hcaHandles", Int(UINT32))
    hca_objects: int | None = spec("hcaObjects", Int(UINT32))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources(Node):
    """``linux.resources``: the cgroup settings."""

    memory: Memory | None = spec("memory", Model(Memory))
    cpu: Cpu | None = spec("cpu", Model(Cpu))
    pids: Pids | None = spec("pids", Model(Pids))
    block_io: BlockIO | None = spec("blockIO", Model(BlockIO))
    hugepage_limits: tuple[HugepageLimit, ...] | None = spec("hugepageLimits", ListOf(Model(HugepageLimit)))
    devices: tuple[DeviceCgroup, ...] | None = spec("devices", ListOf(Model(DeviceCgroup)))
    network: Network | None = spec("network", Model(Network))
    rdma: dict[str, Rdma] | None = spec("rdma", MapOf(Model(Rdma)))
    unified: dict[str, str] | None = spec("unified", MapOf(Str()))
    extra: Mapping[str, Any] = extra()


# --- linux: the rest -------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class LinuxNamespace(Node):
    """A namespace to create (no ``path``) or to join (``path``)."""

    type: str = spec("type", Str(choices=frozenset(NAMESPACE_TYPES)), required=True)
    path: str | None = spec("path", PATH)
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class LinuxDevice(Node):
    """A device node to create in the container."""

    path: str = spec("path", Str(check=_destination), required=True)
    type: str = spec("type", Str(choices=frozenset({"c", "b", "u", "p"})), required=True)
    major: int | None = spec("major", Int(UINT32))
    minor: int | None = spec("minor", Int(UINT32))
    # podman sends the file-type bits too (8630 = 0o20666): convert checks them against type.
    file_mode: int | None = spec("fileMode", Int((0, 0o177777)))
    uid: int | None = spec("uid", Int(ID))
    gid: int | None = spec("gid", Int(ID))
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        if self.type != "p" and (self.major is None or self.minor is None):
            raise fail(path, f"a {show(self.type)} device needs major and minor, got {show(self.to_dict())}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SyscallArg(Node):
    """A condition on a syscall argument (``SCMP_CMP_MASKED_EQ``: ``value`` is the mask)."""

    index: int = spec("index", Int((0, 5)), required=True)
    value: int = spec("value", Int(UINT64), required=True)
    value_two: int | None = spec("valueTwo", Int(UINT64))
    op: str = spec("op", Str(choices=SECCOMP_OPERATORS), required=True)
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyscallRule(Node):
    """A seccomp rule: ``action`` for ``names`` when all ``args`` hold."""

    names: tuple[str, ...] = spec("names", STRS, required=True)
    action: str = spec("action", Str(choices=SECCOMP_ACTIONS), required=True)
    errno_ret: int | None = spec("errnoRet", Int((0, 4095)))
    args: tuple[SyscallArg, ...] | None = spec("args", ListOf(Model(SyscallArg)))
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        if not self.names:
            raise fail(join(path, "names"), "must name at least one syscall, got []")
        for i, n in enumerate(self.names):
            if not n or not n.replace("_", "").isalnum():
                raise fail(join(join(path, "names"), i), f"not a syscall name: {show(n)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Seccomp(Node):
    """``linux.seccomp``."""

    default_action: str = spec("defaultAction", Str(choices=SECCOMP_ACTIONS), required=True)
    default_errno_ret: int | None = spec("defaultErrnoRet", Int((0, 4095)))
    architectures: tuple[str, ...] | None = spec("architectures", ListOf(Str(choices=SECCOMP_ARCHS)))
    flags: tuple[str, ...] | None = spec("flags", ListOf(Str(choices=SECCOMP_FLAGS)))
    listener_path: str | None = spec("listenerPath", PATH)
    listener_metadata: str | None = spec("listenerMetadata", Str())
    syscalls: tuple[SyscallRule, ...] | None = spec("syscalls", ListOf(Model(SyscallRule)))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Personality(Node):
    """``linux.personality``."""

    domain: str = spec("domain", Str(choices=frozenset({"LINUX", "LINUX32"})), required=True)
    flags: tuple[str, ...] | None = spec("flags", STRS)
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeOffset(Node):
    """A clock offset for the time namespace."""

    secs: int | None = spec("secs", Int(INT64))
    nanosecs: int | None = spec("nanosecs", Int((0, 999_999_999)))
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class IntelRdt(Node):
    """``linux.intelRdt`` (resctrl)."""

    clos_id: str | None = spec("closID", Str())
    l3_cache_schema: str | None = spec("l3CacheSchema", Str())
    mem_bw_schema: str | None = spec("memBwSchema", Str())
    enable_cmt: bool | None = spec("enableCMT", Bool())
    enable_mbm: bool | None = spec("enableMBM", Bool())
    extra: Mapping[str, Any] = extra()


@dataclass(frozen=True, slots=True, kw_only=True)
class Linux(Node):
    """``linux``: namespaces, id maps, cgroup, seccomp and the Linux-only rest."""

    namespaces: tuple[LinuxNamespace, ...] | None = spec("namespaces", ListOf(Model(LinuxNamespace)))
    uid_mappings: tuple[IdMapping, ...] | None = spec("uidMappings", ListOf(Model(IdMapping)))
    gid_mappings: tuple[IdMapping, ...] | None = spec("gidMappings", ListOf(Model(IdMapping)))
    devices: tuple[LinuxDevice, ...] | None = spec("devices", ListOf(Model(LinuxDevice)))
    cgroups_path: str | None = spec("cgroupsPath", Str())
    resources: Resources | None = spec("resources", Model(Resources))
    sysctl: dict[str, str] | None = spec("sysctl", MapOf(Str()))
    seccomp: Seccomp | None = spec("seccomp", Model(Seccomp))
    masked_paths: tuple[str, ...] | None = spec("maskedPaths", ListOf(PATH))
    readonly_paths: tuple[str, ...] | None = spec("readonlyPaths", ListOf(PATH))
    rootfs_propagation: str | None = spec("rootfsPropagation", Str(choices=PROPAGATIONS | {""}))
    mount_label: str | None = spec("mountLabel", Str())
    personality: Personality | None = spec("personality", Model(Personality))
    time_offsets: dict[str, TimeOffset] | None = spec(
        "timeOffsets", MapOf(Model(TimeOffset)))
    intel_rdt: IntelRdt | None = spec("intelRdt", Model(IntelRdt))
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        seen: set[str] = set()
        for i, ns in enumerate(self.namespaces or ()):
            if ns.type in seen:
                raise fail(join(join(path, "namespaces"), i), f"duplicate namespace type {show(ns.type)}")
            seen.add(ns.type)
        for key in ("uidMappings", "gidMappings"):
            maps = self.uid_mappings if key == "uidMappings" else self.gid_mappings
            _check_mappings(maps, join(path, key))
            if maps and "user" not in seen:
                raise fail(join(path, key), "needs a user namespace in linux.namespaces")
        for clock in self.time_offsets or {}:
            if clock not in ("monotonic", "boottime"):
                raise fail(join(join(path, "timeOffsets"), clock),
                           "unknown clock (expected monotonic or boottime)")

    def namespace(self, type: str) -> LinuxNamespace | None:
        """The entry for OCI namespace ``type`` (``"network"``, ``"mount"``...), or None."""
        for ns in self.namespaces or ():
            if ns.type == type:
                return ns
        return None


# --- the whole config ----------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Spec(Node):
    """A whole ``config.json``."""

    oci_version: str = spec("ociVersion", Str(check=_version), required=True)
    process: Process | None = spec("process", Model(Process))
    root: Root | None = spec("root", Model(Root))
    hostname: str | None = spec("hostname", Str())
    domainname: str | None = spec("domainname", Str())
    mounts: tuple[Mount, ...] | None = spec("mounts", ListOf(Model(Mount)))
    hooks: Hooks | None = spec("hooks", Model(Hooks))
    annotations: dict[str, str] | None = spec("annotations", MapOf(Str()))
    linux: Linux | None = spec("linux", Model(Linux))
    extra: Mapping[str, Any] = extra()

    def _check(self, path: str) -> None:
        if self.root is None:
            # runtime-spec config.md: root is REQUIRED on Linux.
            raise fail("root", "is required (root.path names the root filesystem)")
        user_ns = self.linux is not None and self.linux.namespace("user")
        if user_ns and user_ns.path is None:
            for key, maps in (("uidMappings", self.linux.uid_mappings),    # type: ignore[union-attr]
                              ("gidMappings", self.linux.gid_mappings)):   # type: ignore[union-attr]
                if not maps:
                    raise fail(f"linux.{key}", "a new user namespace needs mappings, got none")
        # runc and crun set the names in a uts namespace joined by path as well as in a new
        # one; without a uts entry they would be the host's, which a container never renames.
        uts = self.linux is not None and self.linux.namespace("uts")
        for key in ("hostname", "domainname"):
            value = getattr(self, key)
            if value and not uts:
                raise fail(key, f"setting it needs a uts namespace in linux.namespaces, got {show(value)}")

    def root_path(self, bundle: str | os.PathLike[str]) -> Path:
        """The root filesystem's absolute path (``root.path`` is relative to the bundle)."""
        assert self.root is not None
        return Path(bundle, self.root.path)

    def to_json(self, *, indent: int | None = 2) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


def _no_constant(name: str) -> Any:
    raise ConfigError(f"config.json: {name} is not valid JSON")


def parse(data: Mapping[str, Any] | str | bytes) -> Spec:
    """A ``Spec`` from a config.json's text or its decoded object.

    Raises ``ConfigError`` naming the JSON path and value of the first problem.
    """
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"config.json: not valid JSON: {e}") from None
    elif isinstance(data, Mapping) and not isinstance(data, dict):
        data = dict(data)
    try:
        return Spec.from_json(data)
    except RecursionError:
        raise ConfigError("config.json: nested too deeply") from None


#: Larger than any real config.json (podman's are a few KiB; seccomp profiles ~40 KiB).
MAX_CONFIG_BYTES = 16 << 20


def load_bundle(path: str | os.PathLike[str]) -> tuple[Spec, Path]:
    """Read ``<bundle>/config.json``; returns the ``Spec`` and the bundle's absolute path.

    Raises ``ConfigError`` if the bundle or its config.json cannot be read or is invalid.
    """
    bundle = Path(os.path.abspath(os.fspath(path)))
    config = bundle / "config.json"
    try:
        with open(config, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"bundle {str(bundle)!r}: cannot read config.json: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"bundle {str(bundle)!r}: config.json is larger than {MAX_CONFIG_BYTES} bytes")
    return parse(data), bundle
