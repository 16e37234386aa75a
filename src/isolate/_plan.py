"""Plan ops and their packing into the C ``struct iso_plan``.

Python decides, C executes: every op here is plain, validated data.
``Plan.pack()`` does every allocation the child will need, so that the child
(see ``csrc/child.c``) allocates nothing between clone and execve.

Each op packs into one 64-byte ``struct iso_op``: ``kind, flags, fd,
reserved`` (4 x 32 bits), ``arg0..arg3`` (arena offsets or small counts) and
``val0..val3`` (64-bit numbers).  Strings and arrays live in one arena whose
first byte is NUL, so offset 0 means "none".
"""

from __future__ import annotations

import struct

from . import errors
from ._record import dataclass, field, fields
from ._native import ffi as ffi
from ._native import lib as lib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, ClassVar

OP_STRUCT = struct.Struct("=IIii4I4Q")
#: ``struct iso_report`` (api.h): step, kind, err, pid, entry, substep, 2 reserved.
REPORT_STRUCT = struct.Struct("=8i")
MAX_FD_PAIRS = 1024
assert OP_STRUCT.size == ffi.sizeof("struct iso_op") == 64
assert REPORT_STRUCT.size == ffi.sizeof("struct iso_report")

F_RECURSIVE = lib.ISO_F_RECURSIVE
F_EXIST_OK = lib.ISO_F_EXIST_OK
F_CHROOT_FALLBACK = lib.ISO_F_CHROOT_FALLBACK
F_READONLY = lib.ISO_F_READONLY

NSTYPES: dict[str, int] = {
    "mnt": lib.CLONE_NEWNS,
    "uts": lib.CLONE_NEWUTS,
    "ipc": lib.CLONE_NEWIPC,
    "user": lib.CLONE_NEWUSER,
    "pid": lib.CLONE_NEWPID,
    "net": lib.CLONE_NEWNET,
    "cgroup": lib.CLONE_NEWCGROUP,
    "time": lib.CLONE_NEWTIME,
}
NSNAMES = {v: k for k, v in NSTYPES.items()}

#: Capability names (``CAP_SYS_ADMIN``) to numbers, from the kernel headers at build time.
CAPABILITIES: dict[str, int] = {
    name: getattr(lib, name) for name in dir(lib) if name.startswith("CAP_")
}


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def _flag_names(value: int, table: dict[str, int]) -> str:
    names = [n for n, bit in table.items() if value & bit]
    return "|".join(names) if names else "0"


class _Arena:
    """The plan's string and array area.  Offset 0 is a NUL byte meaning "none"."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray(b"\0" * 8)

    def align(self, n: int) -> None:
        pad = -len(self.buf) % n
        if pad:
            self.buf += b"\0" * pad

    def str(self, s: bytes | None) -> int:
        if s is None:
            return 0
        off = len(self.buf)
        self.buf += s
        self.buf += b"\0"
        return off

    def data(self, b: bytes, align: int = 8) -> int:
        self.align(align)
        off = len(self.buf)
        self.buf += b
        self.buf += b"\0"
        return off

    def read_str(self, off: int) -> bytes | None:
        if off == 0:
            return None
        end = self.buf.index(0, off)
        return bytes(self.buf[off:end])


def _s(buf: _Arena, off: int) -> bytes | None:
    return buf.read_str(off)


@dataclass(frozen=True, slots=True)
class Op:
    """One step the child runs between clone and execve."""

    kind: ClassVar[int]
    error: ClassVar[type[errors.SetupError]] = errors.SetupError

    def describe(self) -> str:
        """A short text for error messages, e.g. ``mount proc on /proc``."""
        return type(self).__name__.lower()

    def path(self) -> str | None:
        """The file name an error should carry, if any."""
        return None

    def encode(self, arena: _Arena) -> tuple[int, int, tuple[int, int, int, int], tuple[int, int, int, int]]:
        """Returns (flags, fd, (arg0..arg3), (val0..val3))."""
        return 0, -1, (0, 0, 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: tuple[int, ...], vals: tuple[int, ...], arena: _Arena) -> Op:
        """The inverse of ``encode`` (used by tests and debugging tools)."""
        return cls()


class OpSeq(tuple[Op, ...]):
    """An immutable run of ops that hashes once.

    The spawn plan cache keys on every op; a container's root alone is some
    sixty, so ``Container`` hands over the ops it reuses run after run as one
    ``OpSeq`` and the key costs a dict lookup instead of sixty hashes.
    """

    def __hash__(self) -> int:
        h: int | None = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = tuple.__hash__(self)
        return h


def _d(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class SetNs(Op):
    kind: ClassVar[int] = lib.ISO_OP_SETNS
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    fd: int
    nstype: int

    def describe(self) -> str:
        return f"setns {NSNAMES.get(self.nstype, hex(self.nstype))} (fd {self.fd})"

    def encode(self, arena: _Arena) -> Any:
        return 0, self.fd, (0, 0, 0, 0), (self.nstype, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(fd=fd, nstype=vals[0])


@dataclass(frozen=True, slots=True)
class Unshare(Op):
    kind: ClassVar[int] = lib.ISO_OP_UNSHARE
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    flags: int

    def describe(self) -> str:
        return f"unshare {_flag_names(self.flags, NSTYPES)}"

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (0, 0, 0, 0), (self.flags, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(flags=vals[0])


@dataclass(frozen=True, slots=True)
class Mount(Op):
    kind: ClassVar[int] = lib.ISO_OP_MOUNT
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    source: bytes | None
    target: bytes
    fstype: bytes | None = None
    flags: int = 0
    data: bytes | None = None

    def describe(self) -> str:
        if self.flags & lib.MS_REMOUNT:
            return f"remount {_d(self.target)}"
        if self.flags & lib.MS_BIND:
            return f"bind {_d(self.source)} on {_d(self.target)}"
        if self.source is None and self.fstype is None:
            return f"set propagation of {_d(self.target)}"
        return f"mount {_d(self.source or self.fstype)} on {_d(self.target)}"

    def path(self) -> str | None:
        return _d(self.target)

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.str(self.source), arena.str(self.target), arena.str(self.fstype),
                       arena.str(self.data)), (self.flags, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        target = _s(arena, args[1])
        assert target is not None
        return cls(source=_s(arena, args[0]), target=target, fstype=_s(arena, args[2]),
                   flags=vals[0], data=_s(arena, args[3]))


@dataclass(frozen=True, slots=True)
class Bind(Op):
    """A bind mount through open_tree + move_mount (read-only applied recursively)."""

    kind: ClassVar[int] = lib.ISO_OP_BIND
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    source: bytes
    target: bytes
    recursive: bool = True
    readonly: bool = False

    def describe(self) -> str:
        ro = " read-only" if self.readonly else ""
        return f"bind{ro} {_d(self.source)} on {_d(self.target)}"

    def path(self) -> str | None:
        return _d(self.target)

    def encode(self, arena: _Arena) -> Any:
        flags = (F_RECURSIVE if self.recursive else 0) | (F_READONLY if self.readonly else 0)
        return flags, -1, (arena.str(self.source), arena.str(self.target), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        s, t = _s(arena, args[0]), _s(arena, args[1])
        assert s is not None and t is not None
        return cls(source=s, target=t, recursive=bool(flags & F_RECURSIVE),
                   readonly=bool(flags & F_READONLY))


@dataclass(frozen=True, slots=True)
class MountSetattr(Op):
    kind: ClassVar[int] = lib.ISO_OP_MOUNT_SETATTR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    target: bytes
    attr_set: int = 0
    attr_clr: int = 0
    propagation: int = 0
    recursive: bool = True

    def describe(self) -> str:
        return f"mount_setattr {_d(self.target)}"

    def path(self) -> str | None:
        return _d(self.target)

    def encode(self, arena: _Arena) -> Any:
        return (F_RECURSIVE if self.recursive else 0), -1, (0, arena.str(self.target), 0, 0), (
            self.attr_set, self.attr_clr, self.propagation, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        t = _s(arena, args[1])
        assert t is not None
        return cls(target=t, attr_set=vals[0], attr_clr=vals[1], propagation=vals[2],
                   recursive=bool(flags & F_RECURSIVE))


@dataclass(frozen=True, slots=True)
class _PathMode(Op):
    path_: bytes
    mode: int = 0o755
    exist_ok: bool = False

    def path(self) -> str | None:
        return _d(self.path_)

    def encode(self, arena: _Arena) -> Any:
        return (F_EXIST_OK if self.exist_ok else 0), -1, (arena.str(self.path_), 0, 0, 0), (
            self.mode, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        p = _s(arena, args[0])
        assert p is not None
        return cls(path_=p, mode=vals[0], exist_ok=bool(flags & F_EXIST_OK))


@dataclass(frozen=True, slots=True)
class Mkdir(_PathMode):
    kind: ClassVar[int] = lib.ISO_OP_MKDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError

    def describe(self) -> str:
        return f"mkdir {_d(self.path_)}"


@dataclass(frozen=True, slots=True)
class Mknod(Op):
    kind: ClassVar[int] = lib.ISO_OP_MKNOD
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    path_: bytes
    mode: int
    dev: int = 0
    exist_ok: bool = False

    def describe(self) -> str:
        return f"mknod {_d(self.path_)}"

    def path(self) -> str | None:
        return _d(self.path_)

    def encode(self, arena: _Arena) -> Any:
        return (F_EXIST_OK if self.exist_ok else 0), -1, (arena.str(self.path_), 0, 0, 0), (
            self.mode, self.dev, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        p = _s(arena, args[0])
        assert p is not None
        return cls(path_=p, mode=vals[0], dev=vals[1], exist_ok=bool(flags & F_EXIST_OK))


@dataclass(frozen=True, slots=True)
class Symlink(Op):
    kind: ClassVar[int] = lib.ISO_OP_SYMLINK
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    target: bytes
    path_: bytes
    exist_ok: bool = False

    def describe(self) -> str:
        return f"symlink {_d(self.path_)} -> {_d(self.target)}"

    def path(self) -> str | None:
        return _d(self.path_)

    def encode(self, arena: _Arena) -> Any:
        return (F_EXIST_OK if self.exist_ok else 0), -1, (
            arena.str(self.target), arena.str(self.path_), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        t, p = _s(arena, args[0]), _s(arena, args[1])
        assert t is not None and p is not None
        return cls(target=t, path_=p, exist_ok=bool(flags & F_EXIST_OK))


@dataclass(frozen=True, slots=True)
class WriteFile(Op):
    kind: ClassVar[int] = lib.ISO_OP_WRITE_FILE
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    path_: bytes
    data: bytes
    mode: int = 0o644
    oflags: int = lib.O_CREAT | lib.O_TRUNC

    def describe(self) -> str:
        return f"write {_d(self.path_)}"

    def path(self) -> str | None:
        return _d(self.path_)

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.str(self.path_), arena.data(self.data, 1), len(self.data), 0), (
            self.mode, self.oflags, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        p = _s(arena, args[0])
        assert p is not None
        return cls(path_=p, data=bytes(arena.buf[args[1]:args[1] + args[2]]), mode=vals[0],
                   oflags=vals[1])


@dataclass(frozen=True, slots=True)
class PivotRoot(Op):
    kind: ClassVar[int] = lib.ISO_OP_PIVOT_ROOT
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    new_root: bytes
    chroot_fallback: bool = False

    def describe(self) -> str:
        return f"pivot_root to {_d(self.new_root)}"

    def path(self) -> str | None:
        return _d(self.new_root)

    def encode(self, arena: _Arena) -> Any:
        return (F_CHROOT_FALLBACK if self.chroot_fallback else 0), -1, (
            arena.str(self.new_root), 0, 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        r = _s(arena, args[0])
        assert r is not None
        return cls(new_root=r, chroot_fallback=bool(flags & F_CHROOT_FALLBACK))


@dataclass(frozen=True, slots=True)
class _OneString(Op):
    value: bytes

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.str(self.value), len(self.value), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        v = _s(arena, args[0])
        assert v is not None
        return cls(value=v)


@dataclass(frozen=True, slots=True)
class Chroot(_OneString):
    kind: ClassVar[int] = lib.ISO_OP_CHROOT
    error: ClassVar[type[errors.SetupError]] = errors.MountError

    def describe(self) -> str:
        return f"chroot {_d(self.value)}"

    def path(self) -> str | None:
        return _d(self.value)


@dataclass(frozen=True, slots=True)
class SetHostname(_OneString):
    kind: ClassVar[int] = lib.ISO_OP_SETHOSTNAME
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError

    def describe(self) -> str:
        return f"sethostname {_d(self.value)}"


@dataclass(frozen=True, slots=True)
class SetDomainname(_OneString):
    kind: ClassVar[int] = lib.ISO_OP_SETDOMAINNAME
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError

    def describe(self) -> str:
        return f"setdomainname {_d(self.value)}"


@dataclass(frozen=True, slots=True)
class Chdir(Op):
    kind: ClassVar[int] = lib.ISO_OP_CHDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    path_: bytes | None = None
    fd: int = -1

    def describe(self) -> str:
        return f"chdir {_d(self.path_)}" if self.path_ is not None else f"fchdir {self.fd}"

    def path(self) -> str | None:
        return None if self.path_ is None else _d(self.path_)

    def encode(self, arena: _Arena) -> Any:
        return 0, self.fd, (arena.str(self.path_), 0, 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(path_=_s(arena, args[0]), fd=fd)


@dataclass(frozen=True, slots=True)
class _Vals(Op):
    """An op whose arguments are only numbers (val0..val3), in field order."""

    def encode(self, arena: _Arena) -> Any:
        vals = [getattr(self, f.name) for f in fields(self)]
        vals += [0] * (4 - len(vals))
        return 0, -1, (0, 0, 0, 0), tuple(int(v) for v in vals)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        names = [f.name for f in fields(cls)]
        return cls(**dict(zip(names, vals)))


@dataclass(frozen=True, slots=True)
class Umask(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_UMASK
    mask: int

    def describe(self) -> str:
        return f"umask {self.mask:03o}"


@dataclass(frozen=True, slots=True)
class SetRlimit(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_SETRLIMIT
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    resource: int
    soft: int
    hard: int

    def describe(self) -> str:
        import resource as _r

        names = {getattr(_r, n): n for n in dir(_r) if n.startswith("RLIMIT_")}
        return f"setrlimit {names.get(self.resource, self.resource)}"


@dataclass(frozen=True, slots=True)
class SetSid(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_SETSID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError

    def describe(self) -> str:
        return "setsid"


@dataclass(frozen=True, slots=True)
class SetPgid(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_SETPGID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError

    def describe(self) -> str:
        return "setpgid"


@dataclass(frozen=True, slots=True)
class SetCtty(Op):
    kind: ClassVar[int] = lib.ISO_OP_SETCTTY
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    fd: int = 0

    def describe(self) -> str:
        return f"set controlling terminal (fd {self.fd})"

    def encode(self, arena: _Arena) -> Any:
        return 0, self.fd, (0, 0, 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(fd=fd)


def _int_array(arena: _Arena, values: Iterable[int], fmt: str) -> int:
    vals = list(values)
    arena.align(8)
    off = len(arena.buf)
    arena.buf += struct.pack(f"={len(vals)}{fmt}", *vals)
    return off


def _read_ints(arena: _Arena, off: int, n: int, fmt: str) -> tuple[int, ...]:
    return struct.unpack_from(f"={n}{fmt}", arena.buf, off) if n else ()


@dataclass(frozen=True, slots=True)
class FdMap(Op):
    """dup every (src, dst) pair; overlapping pairs are handled."""

    kind: ClassVar[int] = lib.ISO_OP_FDMAP
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    pairs: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        return "map fds " + ", ".join(f"{s}->{d}" for s, d in self.pairs)

    def encode(self, arena: _Arena) -> Any:
        flat = [x for pair in self.pairs for x in pair]
        return 0, -1, (_int_array(arena, flat, "i"), len(self.pairs), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        flat = _read_ints(arena, args[0], 2 * args[1], "i")
        return cls(pairs=tuple(zip(flat[::2], flat[1::2])))


@dataclass(frozen=True, slots=True)
class CloseFds(Op):
    """Mark every fd not in ``keep`` close-on-exec."""

    kind: ClassVar[int] = lib.ISO_OP_CLOSE_FDS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    keep: tuple[int, ...]

    def describe(self) -> str:
        return "close fds"

    def encode(self, arena: _Arena) -> Any:
        keep = sorted(set(self.keep))
        return 0, -1, (_int_array(arena, keep, "i"), len(keep), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(keep=_read_ints(arena, args[0], args[1], "i"))


@dataclass(frozen=True, slots=True)
class SetGroups(Op):
    kind: ClassVar[int] = lib.ISO_OP_SETGROUPS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    gids: tuple[int, ...]

    def describe(self) -> str:
        return "setgroups " + ",".join(map(str, self.gids))

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (_int_array(arena, self.gids, "I"), len(self.gids), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(gids=_read_ints(arena, args[0], args[1], "I"))


@dataclass(frozen=True, slots=True)
class SetResGid(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_SETRESGID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    rgid: int
    egid: int
    sgid: int

    def describe(self) -> str:
        return f"setresgid {self.rgid}"


@dataclass(frozen=True, slots=True)
class SetResUid(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_SETRESUID
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    ruid: int
    euid: int
    suid: int

    def describe(self) -> str:
        return f"setresuid {self.ruid}"


@dataclass(frozen=True, slots=True)
class KeepCaps(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_KEEPCAPS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    on: int = 1

    def describe(self) -> str:
        return f"prctl PR_SET_KEEPCAPS {self.on}"


@dataclass(frozen=True, slots=True)
class CapBound(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_CAP_BOUND
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    drop: int
    last_cap: int

    def describe(self) -> str:
        return "drop capabilities from the bounding set"


@dataclass(frozen=True, slots=True)
class CapSet(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_CAPSET
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    effective: int
    permitted: int
    inheritable: int

    def describe(self) -> str:
        return "capset"


@dataclass(frozen=True, slots=True)
class CapAmbient(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_CAP_AMBIENT
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    raise_: int
    last_cap: int

    def describe(self) -> str:
        return "set ambient capabilities"


@dataclass(frozen=True, slots=True)
class NoNewPrivs(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_NO_NEW_PRIVS
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError

    def describe(self) -> str:
        return "prctl PR_SET_NO_NEW_PRIVS"


@dataclass(frozen=True, slots=True)
class PdeathSig(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_PDEATHSIG
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    signal: int

    def describe(self) -> str:
        return f"prctl PR_SET_PDEATHSIG {self.signal}"


@dataclass(frozen=True, slots=True)
class Seccomp(Op):
    """Load a classic-BPF seccomp program (``struct sock_filter`` array as bytes)."""

    kind: ClassVar[int] = lib.ISO_OP_SECCOMP
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    program: bytes
    flags: int = 0

    def describe(self) -> str:
        return f"load seccomp filter ({len(self.program) // 8} instructions)"

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.data(self.program, 8), len(self.program) // 8, 0, 0), (
            self.flags, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(program=bytes(arena.buf[args[0]:args[0] + 8 * args[1]]), flags=vals[0])


@dataclass(frozen=True, slots=True)
class LoopbackUp(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_LOOPBACK_UP
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError

    def describe(self) -> str:
        return "bring up lo"


@dataclass(frozen=True, slots=True)
class Exec(Op):
    """execve the first candidate path that exists (like CPython's exec_array)."""

    kind: ClassVar[int] = lib.ISO_OP_EXECVE
    error: ClassVar[type[errors.SetupError]] = errors.ExecError
    candidates: tuple[bytes, ...]

    def describe(self) -> str:
        if len(self.candidates) == 1:
            return f"execve {_d(self.candidates[0])}"
        return f"execve {_d(self.candidates[0].rsplit(b'/', 1)[-1])} (searched PATH)"

    def path(self) -> str | None:
        return _d(self.candidates[0]) if len(self.candidates) == 1 else None

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.str(b"\0".join(self.candidates)), len(self.candidates), 0, 0), (
            0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        out, off = [], args[0]
        for _ in range(args[1]):
            s = _s(arena, off)
            assert s is not None
            out.append(s)
            off += len(s) + 1
        return cls(candidates=tuple(out))


@dataclass(frozen=True, slots=True)
class ExecAt(Op):
    kind: ClassVar[int] = lib.ISO_OP_EXECVEAT
    error: ClassVar[type[errors.SetupError]] = errors.ExecError
    fd: int
    path_: bytes = b""
    flags: int = lib.AT_EMPTY_PATH

    def describe(self) -> str:
        return f"execveat fd {self.fd}"

    def encode(self, arena: _Arena) -> Any:
        return 0, self.fd, (arena.str(self.path_), 0, 0, 0), (self.flags, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(fd=fd, path_=_s(arena, args[0]) or b"", flags=vals[0])


@dataclass(frozen=True, slots=True)
class ExecGate(Op):
    """Check the program, report "ready", then wait for a byte on ``fd`` (OCI create/start).

    ``candidates`` are the ``Exec`` op's paths: a missing or non-executable
    program fails here, at create time, as runc's does.  The child then
    reports no more (it exits 127 if execve fails after the go-ahead).
    """

    kind: ClassVar[int] = lib.ISO_OP_EXEC_GATE
    error: ClassVar[type[errors.SetupError]] = errors.ExecError
    fd: int
    candidates: tuple[bytes, ...] = ()

    def describe(self) -> str:
        if len(self.candidates) == 1:
            return f"find {_d(self.candidates[0])}"
        if self.candidates:
            return f"find {_d(self.candidates[0].rsplit(b'/', 1)[-1])} (searched PATH)"
        return "wait for start"

    def path(self) -> str | None:
        return _d(self.candidates[0]) if len(self.candidates) == 1 else None

    def encode(self, arena: _Arena) -> Any:
        off = arena.str(b"\0".join(self.candidates)) if self.candidates else 0
        return 0, self.fd, (off, len(self.candidates), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        exe = Exec.decode(flags, fd, args, vals, arena) if args[1] else None
        return cls(fd=fd, candidates=exe.candidates if isinstance(exe, Exec) else ())


@dataclass(frozen=True, slots=True)
class Console(Op):
    """A pty from the container's own /dev/ptmx: the master goes to the unix socket ``fd``
    (SCM_RIGHTS, as runc's --console-socket), the slave becomes stdio and the
    controlling terminal of a new session; ``bind_console`` binds it on /dev/console."""

    kind: ClassVar[int] = lib.ISO_OP_CONSOLE
    error: ClassVar[type[errors.SetupError]] = errors.SetupError
    fd: int
    rows: int = 0
    cols: int = 0
    bind_console: bool = False

    def describe(self) -> str:
        return "open a terminal on /dev/ptmx and send it to the console socket"

    def encode(self, arena: _Arena) -> Any:
        return 0, self.fd, (0, 0, 0, 0), (self.rows, self.cols, int(self.bind_console), 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(fd=fd, rows=vals[0], cols=vals[1], bind_console=bool(vals[2]))


@dataclass(frozen=True, slots=True)
class CgroupJoin(Op):
    """Move the child into its cgroup: write ``0`` (itself) to each of the plan's
    ``join_fds``, the ``tasks`` file of every v1 hierarchy.  It runs before any
    other op, so no step runs outside the group's limits; the kernel moves a
    thread that moves itself without the global lock a parent writing its pid
    would take."""

    kind: ClassVar[int] = lib.ISO_OP_CGROUP_JOIN
    error: ClassVar[type[errors.SetupError]] = errors.CgroupJoinError

    def describe(self) -> str:
        return "join cgroup"


@dataclass(frozen=True, slots=True)
class Fork(Op):
    """Fork the process that runs the rest of the plan (and that ``spawn`` returns).

    The child program forks it with ``clone_flags``' new namespaces, in the
    plan's cgroup, after entering the pid namespace ``fd`` when it is >= 0.
    Used for a new user namespace (the child program's own execve there,
    before the id maps exist, would drop every capability; a forked process
    keeps them) and for a joined pid namespace (what runs there sees a process
    that enters at once: it must already run the child program, whose cmdline
    and /proc/<pid>/exe show nothing of the caller's).  Needs ``PLAN_FORK``.
    """

    kind: ClassVar[int] = lib.ISO_OP_FORK
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError
    fd: int = -1
    clone_flags: int = 0

    def describe(self) -> str:
        where = f" into pid namespace (fd {self.fd})" if self.fd >= 0 else ""
        extra = f" with new {_flag_names(self.clone_flags, NSTYPES)}" if self.clone_flags else ""
        return f"fork{where}{extra}"

    def encode(self, arena: _Arena) -> Any:
        return 0, self.fd, (0, 0, 0, 0), (self.clone_flags, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        return cls(fd=fd, clone_flags=vals[0])


@dataclass(frozen=True, slots=True)
class NetnsJoin(Op):
    """Enter the network namespace a thread of the parent made meanwhile
    (``PLAN_NETNS_LATE``): the child builds its root while the kernel sets the
    namespace up on another CPU.  Every op before it must not depend on the
    network namespace (see ``process._late_netns``)."""

    kind: ClassVar[int] = lib.ISO_OP_NETNS_JOIN
    error: ClassVar[type[errors.SetupError]] = errors.NamespaceError

    def describe(self) -> str:
        return "enter the new network namespace"


# The ops that build a new root inside the child live in _plan_root.py; they
# need the base classes above, hence the import here.
from ._plan_root import RootBind as RootBind  # noqa: E402
from ._plan_root import RootBinds as RootBinds  # noqa: E402
from ._plan_root import RootChdir as RootChdir  # noqa: E402
from ._plan_root import RootMask as RootMask  # noqa: E402
from ._plan_root import RootMasks as RootMasks  # noqa: E402
from ._plan_root import RootMkdir as RootMkdir  # noqa: E402
from ._plan_root import RootMkdirs as RootMkdirs  # noqa: E402
from ._plan_root import RootMount as RootMount  # noqa: E402
from ._plan_root import RootStage as RootStage  # noqa: E402
from ._plan_root import SetDumpable as SetDumpable  # noqa: E402

OP_CLASSES: dict[int, type[Op]] = {
    cls.kind: cls
    for cls in (SetNs, Unshare, Mount, Bind, MountSetattr, Mkdir, Mknod, Symlink, WriteFile,
                PivotRoot, Chroot, SetHostname, SetDomainname, Chdir, Umask, SetRlimit, SetSid,
                SetPgid, SetCtty, FdMap, CloseFds, SetGroups, SetResGid, SetResUid, KeepCaps,
                CapBound, CapSet, CapAmbient, NoNewPrivs, PdeathSig, Seccomp, LoopbackUp, Exec,
                ExecAt, RootStage, RootMkdir, RootBind, RootMount, RootMask, RootChdir,
                SetDumpable, ExecGate, Console, CgroupJoin, NetnsJoin, Fork, RootMkdirs, RootBinds,
                RootMasks)
}
assert len(OP_CLASSES) == lib.ISO_OP_KIND_MAX - 1

STAGES = {
    lib.ISO_STAGE_PIPE: "pipe2",
    lib.ISO_STAGE_STACK: "child stack",
    lib.ISO_STAGE_CLONE: "clone3",
    lib.ISO_STAGE_UID_MAP: "uid_map",
    lib.ISO_STAGE_GID_MAP: "gid_map",
    lib.ISO_STAGE_SETGROUPS: "setgroups",
    lib.ISO_STAGE_RELEASE: "release child",
    lib.ISO_STAGE_REPORT: "read report",
    lib.ISO_STAGE_PIDNS: "enter pid namespace",
    lib.ISO_STAGE_NETNS: "enter network namespace",
    lib.ISO_STAGE_PLAN: "write the plan for the child program",
    lib.ISO_STAGE_CHILD: "start the child program",
    lib.ISO_STAGE_FORK: "fork into the pid namespace",
}

#: The part of an op a child report names (``enum iso_substep``, api.h).
SUBSTEPS = {
    lib.ISO_SUB_OPEN_ROOT: "open root",
    lib.ISO_SUB_OPEN_SOURCE: "open source",
    lib.ISO_SUB_CLONE: "clone",
    lib.ISO_SUB_SETATTR: "setattr",
    lib.ISO_SUB_OPEN_TARGET: "open target",
    lib.ISO_SUB_MOVE: "move",
    lib.ISO_SUB_OPEN_DIR: "open directory",
    lib.ISO_SUB_CREATE: "create",
    lib.ISO_SUB_WRITE: "write",
    lib.ISO_SUB_FSOPEN: "fsopen",
    lib.ISO_SUB_FSCONFIG: "fsconfig",
    lib.ISO_SUB_FSCREATE: "create superblock",
    lib.ISO_SUB_FSMOUNT: "fsmount",
    lib.ISO_SUB_OPEN_NULL: "open null device",
    lib.ISO_SUB_CHECK_NULL: "check null device",
    lib.ISO_SUB_STAT_TARGET: "stat target",
    lib.ISO_SUB_MOUNT: "mount",
    lib.ISO_SUB_MKDIR: "mkdir",
    lib.ISO_SUB_PIVOT: "pivot_root",
    lib.ISO_SUB_CHDIR: "chdir",
    lib.ISO_SUB_UMOUNT: "umount",
}
assert len(SUBSTEPS) == lib.ISO_SUB_MAX - 1

PLAN_HOLD = lib.ISO_PLAN_HOLD
PLAN_FORK = lib.ISO_PLAN_FORK
PLAN_CLOSE_FDS = lib.ISO_PLAN_CLOSE_FDS
PLAN_LEGACY_CLONE = lib.ISO_PLAN_LEGACY_CLONE
PLAN_SETGROUPS_DENY = lib.ISO_PLAN_SETGROUPS_DENY
PLAN_SYNC = lib.ISO_PLAN_SYNC
PLAN_TIMING = lib.ISO_PLAN_TIMING
PLAN_NETNS_LATE = lib.ISO_PLAN_NETNS_LATE
PLAN_NETNS_LO = lib.ISO_PLAN_NETNS_LO


@dataclass(slots=True)
class Plan:
    """Everything a spawn needs: clone flags, parent-side steps, and the child's ops.

    ``ops`` must end in ``Exec`` or ``ExecAt``.  Fds named here (``cgroup_fd``,
    ``join_fds``, ``SetNs.fd`` ...) are borrowed: the caller keeps them open
    until the spawn returns.  With ``PLAN_CLOSE_FDS`` the child program
    inherits only those (every op's ``fd`` slot, ``FdMap`` sources,
    ``join_fds``, ``netns_fd`` and ``cgroup_fd``) besides 0-2.
    """

    ops: list[Op]
    argv: Sequence[bytes]
    envp: Sequence[bytes] | None    # None: the parent's environ, read at spawn time
    clone_flags: int = 0
    flags: int = 0
    cgroup_fd: int = -1
    uid_map: bytes | None = None
    gid_map: bytes | None = None
    join_fds: tuple[int, ...] = ()      # for CgroupJoin
    netns_fd: int = -1
    _packed: Any = field(default=None, repr=False)

    def pack(self) -> Any:
        """Build the ``struct iso_plan`` cdata.  The result owns all its memory."""
        arena = _Arena()
        ops_buf = bytearray(OP_STRUCT.size * len(self.ops))
        pack_into = OP_STRUCT.pack_into
        used = {self.netns_fd} - {-1}     # the fds the ops name (see PLAN_CLOSE_FDS)
        for i, op in enumerate(self.ops):
            flags, fd, args, vals = op.encode(arena)
            pack_into(ops_buf, i * 64, op.kind, flags, fd, 0, *args, *vals)
            if fd >= 0:
                used.add(fd)
            if type(op) is FdMap:
                used.update(src for src, _ in op.pairs)
        keep: list[Any] = []
        c_ops = ffi.from_buffer("struct iso_op[]", ops_buf) if self.ops else ffi.NULL
        c_arena = ffi.from_buffer("char[]", arena.buf)
        argv = [ffi.new("char[]", a) for a in self.argv]
        envp = [ffi.new("char[]", e) for e in self.envp] if self.envp is not None else None
        c_argv = ffi.new("char *[]", argv + [ffi.NULL])
        c_envp = ffi.new("char *[]", envp + [ffi.NULL]) if envp is not None else ffi.NULL
        keep += [ops_buf, arena, c_ops, c_arena, argv, envp, c_argv, c_envp]
        p = ffi.new("struct iso_plan *")
        p.clone_flags = self.clone_flags
        p.flags = self.flags
        p.cgroup_fd = self.cgroup_fd
        p.ops = c_ops
        p.n_ops = len(self.ops)
        p.arena = c_arena
        p.arena_len = len(arena.buf)
        p.argv = c_argv
        p.envp = c_envp
        if self.uid_map is not None:
            m = ffi.new("char[]", self.uid_map)
            keep.append(m)
            p.uid_map = m
        if self.gid_map is not None:
            m = ffi.new("char[]", self.gid_map)
            keep.append(m)
            p.gid_map = m
        if self.join_fds:
            fds = ffi.new("int32_t[]", list(self.join_fds))
            keep.append(fds)
            p.join_fds = fds
            p.n_join_fds = len(self.join_fds)
        p.netns_fd = self.netns_fd
        op_fds = frozenset(used)
        c_fds = _keep_fds(p, op_fds, self.join_fds, self.cgroup_fd)
        keep.append(c_fds)
        if self.flags & PLAN_TIMING and self.ops:
            times = ffi.new("uint64_t[]", len(self.ops) + 1)
            keep.append(times)
            p.op_times = times
        self._packed = (p, keep, arena, op_fds)
        return p

    def with_cgroup(self, cgroup_fd: int, join_fds: tuple[int, ...]) -> Plan:
        """This packed plan for another cgroup of the same shape: a copy whose
        ``struct iso_plan`` names the new fds and shares everything else."""
        if (cgroup_fd, join_fds) == (self.cgroup_fd, self.join_fds):
            return self
        assert self._packed is not None and len(join_fds) == len(self.join_fds)
        packed, keep, arena, op_fds = self._packed
        p = ffi.new("struct iso_plan *", packed[0])
        p.cgroup_fd = cgroup_fd
        fds = ffi.new("int32_t[]", list(join_fds)) if join_fds else ffi.NULL
        p.join_fds = fds
        c_keep = _keep_fds(p, op_fds, join_fds, cgroup_fd)
        new = Plan(ops=self.ops, argv=self.argv, envp=self.envp, clone_flags=self.clone_flags,
                   flags=self.flags, cgroup_fd=cgroup_fd, uid_map=self.uid_map, gid_map=self.gid_map,
                   join_fds=join_fds, netns_fd=self.netns_fd)
        new._packed = (p, [keep, fds, c_keep], arena, op_fds)
        return new

    def error_for(self, step: int, kind: int, err: int, *, entry: int = -1,
                  substep: int = 0) -> errors.IsolateError:
        """The exception for a child report; ``ProtocolError`` if it does not fit this plan.

        ``entry`` is the failing entry of a batched op (``RootMkdirs``,
        ``RootBinds``, ``RootMasks``), -1 for any other; ``substep`` an
        ``enum iso_substep`` (0: not told).
        """
        if not 0 <= step < len(self.ops):
            return errors.ProtocolError(
                f"bad report from child: step {step} outside the plan's {len(self.ops)} ops"
                f" (kind {kind}, errno {err})")
        op = self.ops[step]
        if op.kind != kind:
            return errors.ProtocolError(
                f"bad report from child: step {step} is a {type(op).__name__} (kind {op.kind}),"
                f" the report says kind {kind}")
        if not 0 < err < 4096:
            return errors.ProtocolError(f"bad report from child: errno {err} at step {step}")
        if substep != 0 and substep not in SUBSTEPS:
            return errors.ProtocolError(f"bad report from child: substep {substep} at step {step}")
        part = SUBSTEPS.get(substep)
        if entry == -1:
            return op.error(err, step=step, op=op.describe(), path=op.path(), substep=part)
        # A batched op (RootMkdirs, RootBinds, RootMasks) describes each of its entries.
        describe: Callable[[], Sequence[tuple[str, str | None]]] | None = getattr(
            op, "describe_entries", None)
        entries = describe() if describe is not None else ()
        if not 0 <= entry < len(entries):
            return errors.ProtocolError(
                f"bad report from child: entry {entry} at step {step}, a {type(op).__name__}"
                f" of {len(entries)} entries")
        what, path = entries[entry]
        return op.error(err, step=step, op=what, path=path, entry=entry, entries=len(entries),
                        substep=part)


def _keep_fds(p: Any, op_fds: frozenset[int], join_fds: tuple[int, ...], cgroup_fd: int) -> Any:
    """Set ``p.keep_fds``: the fds the child program inherits (see ``Plan``); returns the cdata."""
    fds = sorted(op_fds | set(join_fds) | ({cgroup_fd} - {-1}))
    c_fds = ffi.new("int32_t[]", fds) if fds else ffi.NULL
    p.keep_fds = c_fds
    p.n_keep_fds = len(fds)
    return c_fds


def decode_report(plan: Plan, data: bytes) -> errors.IsolateError:
    """Turn the bytes of a child's failure report into the exception to raise."""
    if len(data) != REPORT_STRUCT.size:
        return errors.ProtocolError(f"bad report from child: {data!r}")
    step, kind, err, _pid, entry, substep, _, _ = REPORT_STRUCT.unpack(data)
    return plan.error_for(step, kind, err, entry=entry, substep=substep)


def unpack_ops(ops_buf: bytes, arena: bytes) -> list[Op]:
    """A pure-Python reader of packed ops: the inverse of ``Plan.pack`` (for tests)."""
    a = _Arena()
    a.buf = bytearray(arena)
    out = []
    for off in range(0, len(ops_buf), OP_STRUCT.size):
        kind, flags, fd, _, *rest = OP_STRUCT.unpack_from(ops_buf, off)
        out.append(OP_CLASSES[kind].decode(flags, fd, tuple(rest[:4]), tuple(rest[4:]), a))
    return out
