"""The ops a plan is made of: one declaration each, with the slots its fields take.

The child program (``csrc/child.c``) runs them in order between clone and
execve; ``_plan.py`` packs and unpacks them from their ``layout``.  The ops
that build a new root live in ``_ops_root.py`` and are re-exported here, so
that ``from isolate import _ops as O`` names every op.
"""

from __future__ import annotations

import resource as _resource

from . import errors
from ._ops_root import (RootBind, RootBinds, RootChdir, RootMask, RootMasks, RootMkdir,  # noqa: F401
                        RootMkdirs, RootMount, RootStage, SetDumpable)
from ._plan import (AT_EMPTY_PATH, F_CHROOT_FALLBACK, F_EXIST_OK, F_READONLY, F_RECURSIVE,
                    MS_BIND, MS_REMOUNT, NSNAMES, NSTYPES, O_CREAT, O_TRUNC, OP_CLASSES, K, Op,
                    flag_names, register, text)
from ._slots import ARG, VAL, Bool, Data, Fd, Flag, Ints, Num, Str, Strs
from ._record import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import ClassVar

    from ._slots import Slot

__all__ = ["SetNs", "Unshare", "Mount", "Bind", "MountSetattr", "Mkdir", "Mknod", "Symlink",
           "WriteFile", "PivotRoot", "Chroot", "SetHostname", "SetDomainname", "Chdir", "Umask",
           "SetRlimit", "SetSid", "SetPgid", "SetCtty", "FdMap", "CloseFds", "SetGroups",
           "SetResGid", "SetResUid", "KeepCaps", "CapBound", "CapSet", "CapAmbient", "NoNewPrivs",
           "PdeathSig", "Seccomp", "LoopbackUp", "Exec", "ExecAt", "ExecGate", "Console",
           "CgroupJoin", "Fork", "NetnsJoin", "RootStage", "RootMkdir", "RootMkdirs", "RootBind",
           "RootBinds", "RootMount", "RootMask", "RootMasks", "RootChdir", "SetDumpable"]

_RLIMIT_NAMES = {getattr(_resource, n): n for n in dir(_resource) if n.startswith("RLIMIT_")}
_ONE_STRING: Mapping[str, Slot] = {"value": Str(ARG(0), length=ARG(1))}


# --- namespaces ----------------------------------------------------------------------

@register
@dataclass(frozen=True, slots=True)
class SetNs(Op):
    """setns(2) into the namespace ``fd`` of type ``nstype`` (a CLONE_NEW* bit)."""

    kind: ClassVar[int] = K.SETNS
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    layout: ClassVar[Mapping[str, Slot]] = {"fd": Fd(), "nstype": Num(VAL(0))}
    fd: int
    nstype: int

    def describe(self) -> str:
        return f"setns {NSNAMES.get(self.nstype, hex(self.nstype))} (fd {self.fd})"


@register
@dataclass(frozen=True, slots=True)
class Unshare(Op):
    """unshare(2) with ``flags`` (CLONE_NEW* bits)."""

    kind: ClassVar[int] = K.UNSHARE
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    layout: ClassVar[Mapping[str, Slot]] = {"flags": Num(VAL(0))}
    flags: int

    def describe(self) -> str:
        return f"unshare {flag_names(self.flags, NSTYPES)}"


@register
@dataclass(frozen=True, slots=True)
class SetHostname(Op):
    """sethostname(2) (needs a uts namespace)."""

    kind: ClassVar[int] = K.SETHOSTNAME
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    layout: ClassVar[Mapping[str, Slot]] = _ONE_STRING
    value: bytes

    def describe(self) -> str:
        return f"sethostname {text(self.value)}"


@register
@dataclass(frozen=True, slots=True)
class SetDomainname(Op):
    """setdomainname(2) (needs a uts namespace)."""

    kind: ClassVar[int] = K.SETDOMAINNAME
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    layout: ClassVar[Mapping[str, Slot]] = _ONE_STRING
    value: bytes

    def describe(self) -> str:
        return f"setdomainname {text(self.value)}"


@register
@dataclass(frozen=True, slots=True)
class LoopbackUp(Op):
    """Bring up ``lo`` in the child's network namespace."""

    kind: ClassVar[int] = K.LOOPBACK_UP
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError

    def describe(self) -> str:
        return "bring up lo"


@register
@dataclass(frozen=True, slots=True)
class Fork(Op):
    """Fork the process that runs the rest of the plan (and that ``spawn`` returns).

    The child program forks it with ``clone_flags``' new namespaces, in the
    plan's cgroup, after entering the pid namespace ``fd`` when it is >= 0.
    Used for a joined pid namespace: what runs there sees a process that
    enters at once, and it must already run the child program, whose cmdline
    and /proc/<pid>/exe show nothing of the caller's.  Needs ``PLAN_FORK``.
    """

    kind: ClassVar[int] = K.FORK
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    layout: ClassVar[Mapping[str, Slot]] = {"fd": Fd(), "clone_flags": Num(VAL(0))}
    fd: int = -1
    clone_flags: int = 0

    def describe(self) -> str:
        where = f" into pid namespace (fd {self.fd})" if self.fd >= 0 else ""
        extra = f" with new {flag_names(self.clone_flags, NSTYPES)}" if self.clone_flags else ""
        return f"fork{where}{extra}"


@register
@dataclass(frozen=True, slots=True)
class NetnsJoin(Op):
    """Enter the network namespace a thread of the parent made meanwhile
    (``PLAN_NETNS_LATE``): the child builds its root while the kernel sets the
    namespace up on another CPU.  Every op before it must not depend on the
    network namespace (see ``_planner.late_netns``)."""

    kind: ClassVar[int] = K.NETNS_JOIN
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError

    def describe(self) -> str:
        return "enter the new network namespace"


@register
@dataclass(frozen=True, slots=True)
class CgroupJoin(Op):
    """Move the child into its cgroup: write ``0`` (itself) to each of the plan's
    ``join_fds``, the ``tasks`` file of every v1 hierarchy.  It runs before any
    other op, so no step runs outside the group's limits; the kernel moves a
    thread that moves itself without the global lock a parent writing its pid
    would take."""

    kind: ClassVar[int] = K.CGROUP_JOIN
    error: ClassVar[type[errors.SetupError]] = errors.CgroupJoinError

    def describe(self) -> str:
        return "join cgroup"


# --- mounts and files -----------------------------------------------------------------

@register
@dataclass(frozen=True, slots=True)
class Mount(Op):
    """mount(2), paths as they are (no resolution inside a root)."""

    kind: ClassVar[int] = K.MOUNT
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "source": Str(ARG(0)), "target": Str(ARG(1)), "fstype": Str(ARG(2)), "data": Str(ARG(3)),
        "flags": Num(VAL(0))}
    source: bytes | None
    target: bytes
    fstype: bytes | None = None
    flags: int = 0
    data: bytes | None = None

    def describe(self) -> str:
        if self.flags & MS_REMOUNT:
            return f"remount {text(self.target)}"
        if self.flags & MS_BIND:
            return f"bind {text(self.source)} on {text(self.target)}"
        if self.source is None and self.fstype is None:
            return f"set propagation of {text(self.target)}"
        return f"mount {text(self.source or self.fstype)} on {text(self.target)}"

    def path(self) -> str | None:
        return text(self.target)


@register
@dataclass(frozen=True, slots=True)
class Bind(Op):
    """A bind mount through open_tree + move_mount (read-only applied recursively)."""

    kind: ClassVar[int] = K.BIND
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "source": Str(ARG(0)), "target": Str(ARG(1)), "recursive": Flag(F_RECURSIVE),
        "readonly": Flag(F_READONLY)}
    source: bytes
    target: bytes
    recursive: bool = True
    readonly: bool = False

    def describe(self) -> str:
        ro = " read-only" if self.readonly else ""
        return f"bind{ro} {text(self.source)} on {text(self.target)}"

    def path(self) -> str | None:
        return text(self.target)


@register
@dataclass(frozen=True, slots=True)
class MountSetattr(Op):
    """mount_setattr(2) on ``target``."""

    kind: ClassVar[int] = K.MOUNT_SETATTR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "target": Str(ARG(1)), "attr_set": Num(VAL(0)), "attr_clr": Num(VAL(1)),
        "propagation": Num(VAL(2)), "recursive": Flag(F_RECURSIVE)}
    target: bytes
    attr_set: int = 0
    attr_clr: int = 0
    propagation: int = 0
    recursive: bool = True

    def describe(self) -> str:
        return f"mount_setattr {text(self.target)}"

    def path(self) -> str | None:
        return text(self.target)


@register
@dataclass(frozen=True, slots=True)
class Mkdir(Op):
    """mkdir(2) of ``path_``."""

    kind: ClassVar[int] = K.MKDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "path_": Str(ARG(0)), "mode": Num(VAL(0)), "exist_ok": Flag(F_EXIST_OK)}
    path_: bytes
    mode: int = 0o755
    exist_ok: bool = False

    def describe(self) -> str:
        return f"mkdir {text(self.path_)}"

    def path(self) -> str | None:
        return text(self.path_)


@register
@dataclass(frozen=True, slots=True)
class Mknod(Op):
    """mknod(2) of ``path_``."""

    kind: ClassVar[int] = K.MKNOD
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "path_": Str(ARG(0)), "mode": Num(VAL(0)), "dev": Num(VAL(1)), "exist_ok": Flag(F_EXIST_OK)}
    path_: bytes
    mode: int
    dev: int = 0
    exist_ok: bool = False

    def describe(self) -> str:
        return f"mknod {text(self.path_)}"

    def path(self) -> str | None:
        return text(self.path_)


@register
@dataclass(frozen=True, slots=True)
class Symlink(Op):
    """symlink(2): ``path_`` pointing to ``target``."""

    kind: ClassVar[int] = K.SYMLINK
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "target": Str(ARG(0)), "path_": Str(ARG(1)), "exist_ok": Flag(F_EXIST_OK)}
    target: bytes
    path_: bytes
    exist_ok: bool = False

    def describe(self) -> str:
        return f"symlink {text(self.path_)} -> {text(self.target)}"

    def path(self) -> str | None:
        return text(self.path_)


@register
@dataclass(frozen=True, slots=True)
class WriteFile(Op):
    """Write ``data`` to ``path_`` (opened with ``oflags``, created with ``mode``)."""

    kind: ClassVar[int] = K.WRITE_FILE
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "path_": Str(ARG(0)), "data": Data(ARG(1), length=ARG(2)), "mode": Num(VAL(0)),
        "oflags": Num(VAL(1))}
    path_: bytes
    data: bytes
    mode: int = 0o644
    oflags: int = O_CREAT | O_TRUNC

    def describe(self) -> str:
        return f"write {text(self.path_)}"

    def path(self) -> str | None:
        return text(self.path_)


@register
@dataclass(frozen=True, slots=True)
class PivotRoot(Op):
    """pivot_root(2) into ``new_root`` (the old root detached), or chroot where it cannot."""

    kind: ClassVar[int] = K.PIVOT_ROOT
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "new_root": Str(ARG(0)), "chroot_fallback": Flag(F_CHROOT_FALLBACK)}
    new_root: bytes
    chroot_fallback: bool = False

    def describe(self) -> str:
        return f"pivot_root to {text(self.new_root)}"

    def path(self) -> str | None:
        return text(self.new_root)


@register
@dataclass(frozen=True, slots=True)
class Chroot(Op):
    """chroot(2) to ``value``."""

    kind: ClassVar[int] = K.CHROOT
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = _ONE_STRING
    value: bytes

    def describe(self) -> str:
        return f"chroot {text(self.value)}"

    def path(self) -> str | None:
        return text(self.value)


@register
@dataclass(frozen=True, slots=True)
class Chdir(Op):
    """chdir(2) to ``path_``, or fchdir(2) to ``fd``."""

    kind: ClassVar[int] = K.CHDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {"path_": Str(ARG(0)), "fd": Fd()}
    path_: bytes | None = None
    fd: int = -1

    def describe(self) -> str:
        return f"chdir {text(self.path_)}" if self.path_ is not None else f"fchdir {self.fd}"

    def path(self) -> str | None:
        return None if self.path_ is None else text(self.path_)


# --- the process: session, fds, limits ------------------------------------------------

@register
@dataclass(frozen=True, slots=True)
class Umask(Op):
    """umask(2)."""

    kind: ClassVar[int] = K.UMASK
    layout: ClassVar[Mapping[str, Slot]] = {"mask": Num(VAL(0))}
    mask: int

    def describe(self) -> str:
        return f"umask {self.mask:03o}"


@register
@dataclass(frozen=True, slots=True)
class SetRlimit(Op):
    """setrlimit(2) of ``resource`` (an RLIMIT_* number); limits as unsigned 64-bit values."""

    kind: ClassVar[int] = K.SETRLIMIT
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {
        "resource": Num(VAL(0)), "soft": Num(VAL(1)), "hard": Num(VAL(2))}
    resource: int
    soft: int
    hard: int

    def describe(self) -> str:
        return f"setrlimit {_RLIMIT_NAMES.get(self.resource, self.resource)}"


@register
@dataclass(frozen=True, slots=True)
class SetSid(Op):
    """setsid(2): a session (and process group) of its own, no controlling terminal."""

    kind: ClassVar[int] = K.SETSID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError

    def describe(self) -> str:
        return "setsid"


@register
@dataclass(frozen=True, slots=True)
class SetPgid(Op):
    """setpgid(0, 0): a process group of its own."""

    kind: ClassVar[int] = K.SETPGID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError

    def describe(self) -> str:
        return "setpgid"


@register
@dataclass(frozen=True, slots=True)
class SetCtty(Op):
    """TIOCSCTTY on ``fd``: the terminal, already made stdio, becomes the controlling one."""

    kind: ClassVar[int] = K.SETCTTY
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"fd": Fd()}
    fd: int = 0

    def describe(self) -> str:
        return f"set controlling terminal (fd {self.fd})"


@register
@dataclass(frozen=True, slots=True)
class FdMap(Op):
    """dup every (src, dst) pair; overlapping pairs are handled."""

    kind: ClassVar[int] = K.FDMAP
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {
        "pairs": Ints(ARG(0), count=ARG(1), pairs=True, fds=True)}
    pairs: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        return "map fds " + ", ".join(f"{s}->{d}" for s, d in self.pairs)


@register
@dataclass(frozen=True, slots=True)
class CloseFds(Op):
    """Mark every fd not in ``keep`` close-on-exec (``keep`` is kept sorted, as C reads it)."""

    kind: ClassVar[int] = K.CLOSE_FDS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"keep": Ints(ARG(0), count=ARG(1))}
    keep: tuple[int, ...]

    def __post_init__(self) -> None:
        keep = tuple(sorted(set(self.keep)))
        if keep != self.keep:
            object.__setattr__(self, "keep", keep)

    def describe(self) -> str:
        return "close fds"


@register
@dataclass(frozen=True, slots=True)
class Console(Op):
    """A pty from the container's own /dev/ptmx: the master goes to the unix socket ``fd``
    (SCM_RIGHTS, as runc's --console-socket), the slave becomes stdio and the
    controlling terminal of a new session; ``bind_console`` binds it on /dev/console."""

    kind: ClassVar[int] = K.CONSOLE
    error: ClassVar[type[errors.SetupError]] = errors.SetupError
    layout: ClassVar[Mapping[str, Slot]] = {
        "fd": Fd(), "rows": Num(VAL(0)), "cols": Num(VAL(1)), "bind_console": Bool(VAL(2))}
    fd: int
    rows: int = 0
    cols: int = 0
    bind_console: bool = False

    def describe(self) -> str:
        return "open a terminal on /dev/ptmx and send it to the console socket"


@register
@dataclass(frozen=True, slots=True)
class PdeathSig(Op):
    """prctl(PR_SET_PDEATHSIG): ``signal`` when the spawning *thread* exits."""

    kind: ClassVar[int] = K.PDEATHSIG
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"signal": Num(VAL(0))}
    signal: int

    def describe(self) -> str:
        return f"prctl PR_SET_PDEATHSIG {self.signal}"


# --- credentials and capabilities ----------------------------------------------------

@register
@dataclass(frozen=True, slots=True)
class SetGroups(Op):
    """setgroups(2)."""

    kind: ClassVar[int] = K.SETGROUPS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"gids": Ints(ARG(0), count=ARG(1), fmt="I")}
    gids: tuple[int, ...]

    def describe(self) -> str:
        return "setgroups " + ",".join(map(str, self.gids))


@register
@dataclass(frozen=True, slots=True)
class SetResGid(Op):
    """setresgid(2)."""

    kind: ClassVar[int] = K.SETRESGID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"rgid": Num(VAL(0)), "egid": Num(VAL(1)), "sgid": Num(VAL(2))}
    rgid: int
    egid: int
    sgid: int

    def describe(self) -> str:
        return f"setresgid {self.rgid}"


@register
@dataclass(frozen=True, slots=True)
class SetResUid(Op):
    """setresuid(2)."""

    kind: ClassVar[int] = K.SETRESUID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"ruid": Num(VAL(0)), "euid": Num(VAL(1)), "suid": Num(VAL(2))}
    ruid: int
    euid: int
    suid: int

    def describe(self) -> str:
        return f"setresuid {self.ruid}"


@register
@dataclass(frozen=True, slots=True)
class KeepCaps(Op):
    """prctl(PR_SET_KEEPCAPS): keep permitted capabilities across the uid change."""

    kind: ClassVar[int] = K.KEEPCAPS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"on": Num(VAL(0))}
    on: int = 1

    def describe(self) -> str:
        return f"prctl PR_SET_KEEPCAPS {self.on}"


@register
@dataclass(frozen=True, slots=True)
class CapBound(Op):
    """Drop the capabilities of the mask ``drop`` from the bounding set."""

    kind: ClassVar[int] = K.CAP_BOUND
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"drop": Num(VAL(0)), "last_cap": Num(VAL(1))}
    drop: int
    last_cap: int

    def describe(self) -> str:
        return "drop capabilities from the bounding set"


@register
@dataclass(frozen=True, slots=True)
class CapSet(Op):
    """capset(2): the effective, permitted and inheritable sets as masks."""

    kind: ClassVar[int] = K.CAPSET
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {
        "effective": Num(VAL(0)), "permitted": Num(VAL(1)), "inheritable": Num(VAL(2))}
    effective: int
    permitted: int
    inheritable: int

    def describe(self) -> str:
        return "capset"


@register
@dataclass(frozen=True, slots=True)
class CapAmbient(Op):
    """Raise the ambient capabilities of the mask ``raise_``."""

    kind: ClassVar[int] = K.CAP_AMBIENT
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"raise_": Num(VAL(0)), "last_cap": Num(VAL(1))}
    raise_: int
    last_cap: int

    def describe(self) -> str:
        return "set ambient capabilities"


@register
@dataclass(frozen=True, slots=True)
class NoNewPrivs(Op):
    """prctl(PR_SET_NO_NEW_PRIVS)."""

    kind: ClassVar[int] = K.NO_NEW_PRIVS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError

    def describe(self) -> str:
        return "prctl PR_SET_NO_NEW_PRIVS"


@register
@dataclass(frozen=True, slots=True)
class Seccomp(Op):
    """Load a classic-BPF seccomp program (``struct sock_filter`` array as bytes)."""

    kind: ClassVar[int] = K.SECCOMP
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {
        "program": Data(ARG(0), length=ARG(1), align=8, unit=8), "flags": Num(VAL(0))}
    program: bytes
    flags: int = 0

    def describe(self) -> str:
        return f"load seccomp filter ({len(self.program) // 8} instructions)"


# --- exec ------------------------------------------------------------------------------

def _exec_name(candidates: tuple[bytes, ...]) -> str:
    if len(candidates) == 1:
        return text(candidates[0])
    return f"{text(candidates[0].rsplit(b'/', 1)[-1])} (searched PATH)"


@register
@dataclass(frozen=True, slots=True)
class Exec(Op):
    """execve the first candidate path that exists (like CPython's exec_array)."""

    kind: ClassVar[int] = K.EXECVE
    error: ClassVar[type[errors.SetupError]] = errors.ExecError
    layout: ClassVar[Mapping[str, Slot]] = {"candidates": Strs(ARG(0), count=ARG(1))}
    candidates: tuple[bytes, ...]

    def describe(self) -> str:
        return f"execve {_exec_name(self.candidates)}"

    def path(self) -> str | None:
        return text(self.candidates[0]) if len(self.candidates) == 1 else None


@register
@dataclass(frozen=True, slots=True)
class ExecAt(Op):
    """execveat(2) of ``fd`` (an O_PATH fd of the program, with the default flags)."""

    kind: ClassVar[int] = K.EXECVEAT
    error: ClassVar[type[errors.SetupError]] = errors.ExecError
    layout: ClassVar[Mapping[str, Slot]] = {
        "fd": Fd(), "path_": Str(ARG(0), empty=b""), "flags": Num(VAL(0))}
    fd: int
    path_: bytes = b""
    flags: int = AT_EMPTY_PATH

    def describe(self) -> str:
        return f"execveat fd {self.fd}"


@register
@dataclass(frozen=True, slots=True)
class ExecGate(Op):
    """Check the program, report "ready", then wait for a byte on ``fd`` (OCI create/start).

    ``candidates`` are the ``Exec`` op's paths: a missing or non-executable
    program fails here, at create time, as runc's does.  The child then
    reports no more (it exits 127 if execve fails after the go-ahead).
    """

    kind: ClassVar[int] = K.EXEC_GATE
    error: ClassVar[type[errors.SetupError]] = errors.ExecError
    layout: ClassVar[Mapping[str, Slot]] = {"fd": Fd(), "candidates": Strs(ARG(0), count=ARG(1))}
    fd: int
    candidates: tuple[bytes, ...] = ()

    def describe(self) -> str:
        return f"find {_exec_name(self.candidates)}" if self.candidates else "wait for start"

    def path(self) -> str | None:
        return text(self.candidates[0]) if len(self.candidates) == 1 else None


assert len(OP_CLASSES) == K.MAX - 1, sorted(set(range(1, K.MAX)) - set(OP_CLASSES))
