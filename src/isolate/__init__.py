"""isolate: Linux isolation for Python, from a thin C core.

Namespaces, cgroups, a private root filesystem and dropped privileges, as
objects a program can embed.  The child runs no Python between clone and
execve: Python builds a plan, one C call executes it.
"""

from .cgroup import (
    DEFAULT_DEVICES,
    Cgroup,
    CgroupStats,
    DeviceRule,
    HugetlbLimit,
    IoThrottle,
    Limits,
)
from .errors import (
    CgroupError,
    ConfigError,
    ExecError,
    IdentityError,
    IsolateError,
    MountError,
    NamespaceError,
    ProtocolError,
    SetupError,
    SpawnError,
    UnsupportedError,
)
from .idmap import IdMap, SubIdRange, parse_subid, subid_ranges
from .namespace import NAMESPACE_TYPES, Namespace
from ._probe import Feature, Probe, probe
from .netpool import NetnsPool, PooledNetns
from .process import DEVNULL, NAMESPACES, PIPE, STDOUT, CompletedProcess, Process, run, spawn
from .container import DEFAULT_NAMESPACES, Container, Result
from .rootfs import Changes, RootFS
from .seccomp import ArgCmp, SeccompProfile, SyscallRule

__version__ = "0.1.0"

__all__ = [
    "Namespace",
    "NAMESPACE_TYPES",
    "probe",
    "Probe",
    "Feature",
    "Cgroup",
    "CgroupStats",
    "Limits",
    "DeviceRule",
    "IoThrottle",
    "HugetlbLimit",
    "DEFAULT_DEVICES",
    "spawn",
    "run",
    "Process",
    "CompletedProcess",
    "PIPE",
    "DEVNULL",
    "STDOUT",
    "NAMESPACES",
    "Container",
    "Result",
    "DEFAULT_NAMESPACES",
    "RootFS",
    "Changes",
    "SeccompProfile",
    "SyscallRule",
    "ArgCmp",
    "NetnsPool",
    "PooledNetns",
    "IdMap",
    "SubIdRange",
    "parse_subid",
    "subid_ranges",
    "IsolateError",
    "ConfigError",
    "UnsupportedError",
    "SpawnError",
    "SetupError",
    "NamespaceError",
    "MountError",
    "IdentityError",
    "ExecError",
    "CgroupError",
    "ProtocolError",
]
