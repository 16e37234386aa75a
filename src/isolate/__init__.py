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
    CgroupDelegationError,
    CgroupError,
    CgroupJoinError,
    ConfigError,
    DigestError,
    ExecError,
    IdentityError,
    ImageError,
    IsolateError,
    MountError,
    NamespaceError,
    ProtocolError,
    SetupError,
    SpawnError,
    UnsupportedError,
)

__version__ = "0.1.0"

from ._lazy import lazy_names

TYPE_CHECKING = False

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(["spawn", "run", "Process", "CompletedProcess", "PIPE", "DEVNULL", "STDOUT",
                     "NAMESPACES"], "process"),
    **dict.fromkeys(["IdMap", "SubIdRange", "parse_subid", "subid_ranges", "subid_maps"], "idmap"),
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
    "CgroupDelegationError",
    "ImageError",
    "DigestError",
    "ProtocolError",
]


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)


if TYPE_CHECKING:  # static names for type checkers (``X as X``: re-exported); at run time
    # __getattr__ loads them
    from ._probe import (Feature as Feature, Probe as Probe, probe as probe)
    from .cgroup import (DEFAULT_DEVICES as DEFAULT_DEVICES, Cgroup as Cgroup,
                         CgroupStats as CgroupStats, DeviceRule as DeviceRule,
                         HugetlbLimit as HugetlbLimit, IoThrottle as IoThrottle, Limits as Limits)
    from .cgroup.pool import (CgroupPool as CgroupPool)
    from ._owner import (Leftover as Leftover, gc as gc)
    from .container import (DEFAULT_NAMESPACES as DEFAULT_NAMESPACES, Container as Container,
                            Result as Result)
    from .idmap import (IdMap as IdMap, SubIdRange as SubIdRange, parse_subid as parse_subid,
                        subid_maps as subid_maps, subid_ranges as subid_ranges)
    from .namespace import (NAMESPACE_TYPES as NAMESPACE_TYPES, Namespace as Namespace)
    from .netpool import (NetnsPool as NetnsPool, PooledNetns as PooledNetns)
    from .process import (DEVNULL as DEVNULL, NAMESPACES as NAMESPACES, PIPE as PIPE,
                          STDOUT as STDOUT, CompletedProcess as CompletedProcess,
                          Process as Process, run as run, spawn as spawn)
    from .rootfs import (Changes as Changes, RootFS as RootFS)
    from .seccomp import (ArgCmp as ArgCmp, SeccompProfile as SeccompProfile,
                          SyscallRule as SyscallRule)
