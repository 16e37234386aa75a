"""isolate: Linux isolation for Python, from a thin C core.

Namespaces, cgroups, a private root filesystem and dropped privileges, as
objects a program can embed.  The child runs no Python between clone and
execve: Python builds a plan, one C call executes it.

Public names load their module on first use (PEP 562), so ``import isolate``
and the command line start fast; ``from isolate import Container`` works as
usual.
"""

from __future__ import annotations

from .errors import (
    CgroupError,
    CgroupJoinError,
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

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(["spawn", "run", "Process", "CompletedProcess", "PIPE", "DEVNULL", "STDOUT",
                     "NAMESPACES"], "process"),
    **dict.fromkeys(["IdMap", "SubIdRange", "parse_subid", "subid_ranges"], "idmap"),
    **dict.fromkeys(["Namespace", "NAMESPACE_TYPES"], "namespace"),
    **dict.fromkeys(["probe", "Probe", "Feature"], "_probe"),
    **dict.fromkeys(["Cgroup", "CgroupStats", "Limits", "DeviceRule", "IoThrottle", "HugetlbLimit",
                     "DEFAULT_DEVICES"], "cgroup"),
    **dict.fromkeys(["Container", "Result", "DEFAULT_NAMESPACES"], "container"),
    **dict.fromkeys(["RootFS", "Changes"], "rootfs"),
    **dict.fromkeys(["SeccompProfile", "SyscallRule", "ArgCmp"], "seccomp"),
    **dict.fromkeys(["NetnsPool", "PooledNetns"], "netpool"),
    "CgroupPool": "cgroup.pool",
    **dict.fromkeys(["gc", "Leftover"], "_owner"),
}

__all__ = [
    *_LAZY,
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
    "CgroupJoinError",
    "ProtocolError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'isolate' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static names for type checkers; at run time __getattr__ loads them
    from ._probe import Feature, Probe, probe  # noqa: F401
    from .cgroup import (DEFAULT_DEVICES, Cgroup, CgroupStats, DeviceRule,  # noqa: F401
                         HugetlbLimit, IoThrottle, Limits)
    from .cgroup.pool import CgroupPool  # noqa: F401
    from ._owner import Leftover, gc  # noqa: F401
    from .container import DEFAULT_NAMESPACES, Container, Result  # noqa: F401
    from .idmap import IdMap, SubIdRange, parse_subid, subid_ranges  # noqa: F401
    from .namespace import NAMESPACE_TYPES, Namespace  # noqa: F401
    from .netpool import NetnsPool, PooledNetns  # noqa: F401
    from .process import (DEVNULL, NAMESPACES, PIPE, STDOUT,  # noqa: F401
                          CompletedProcess, Process, run, spawn)
    from .rootfs import Changes, RootFS  # noqa: F401
    from .seccomp import ArgCmp, SeccompProfile, SyscallRule  # noqa: F401
