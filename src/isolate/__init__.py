"""isolate: Linux isolation for Python, from a thin C core.

Namespaces, cgroups, a private root filesystem and dropped privileges, as
objects a program can embed.  The child runs no Python between clone and
execve: Python builds a plan, one C call executes it.
"""

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
from .process import DEVNULL, NAMESPACES, PIPE, STDOUT, CompletedProcess, Process, run, spawn

__version__ = "0.1.0"

__all__ = [
    "spawn",
    "run",
    "Process",
    "CompletedProcess",
    "PIPE",
    "DEVNULL",
    "STDOUT",
    "NAMESPACES",
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
