"""Types for type checkers only: what ``isolate.run`` passes through to ``spawn``.

Imported by type checkers (``process.py`` under ``TYPE_CHECKING``) and by
tests; never at run time, so ``import isolate`` does not import ``typing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from ._plan import Op
    from .idmap import IdMap
    from .process import CgroupTarget, NamespaceLike, StrPath
    from .seccomp import SeccompProfile

__all__ = ["SpawnOptions"]


class SpawnOptions(TypedDict, total=False):
    """``spawn``'s keyword options besides stdin, stdout and stderr (see ``isolate.spawn``)."""

    pass_fds: Sequence[int] | Mapping[int, int]
    namespaces: Iterable[str]
    join: Iterable[NamespaceLike]
    env: Mapping[str, str] | Mapping[bytes, bytes] | None
    cwd: StrPath | None
    executable: StrPath | None
    close_fds: bool
    uid_map: Sequence[IdMap] | None
    gid_map: Sequence[IdMap] | None
    user: int | str | None
    group: int | str | None
    groups: Sequence[int | str] | None
    hostname: str | None
    domainname: str | None
    cgroup: CgroupTarget | None
    new_session: bool | None
    process_group: bool
    tty: bool
    umask: int | None
    rlimits: Mapping[str | int, int | tuple[int, int]] | None
    capabilities: Iterable[str] | None
    capability_sets: Mapping[str, Iterable[str]] | None
    no_new_privs: bool
    die_with_parent: bool
    seccomp: bytes | SeccompProfile | None
    loopback: bool
    ops: Sequence[Op]
    exec_gate: int | None
    timings: bool
