"""Plans as values: ops declared once with their slots, packed into the C ``struct iso_plan``.

Python decides, C executes: every op is plain, validated data.  An op class
declares once, in its ``layout``, where each of its fields goes in the
64-byte ``struct iso_op``: ``kind, flags, fd, reserved`` (4 x 32 bits),
``arg0..arg3`` (arena offsets or small counts) and ``val0..val3`` (64-bit
numbers).  Packing and unpacking walk that layout: no op has code of its own
for either.  Strings and arrays live in one arena whose first byte is NUL, so
offset 0 means "none".

A ``Plan`` is a frozen value.  ``Plan.pack()`` does every allocation the
child will need (see ``csrc/child.c``, which allocates nothing between clone
and execve) and gives a ``PackedPlan``, which is never changed: one serves
every spawn of its shape.  What differs from one spawn to the next, the fd
numbers of stdio pipes, of joined namespaces or of a cgroup, appears in a plan
as ``SpawnFd`` placeholders, named in ``Plan.fd_names``;
``PackedPlan.instantiate(fds)`` writes one spawn's numbers into a copy of its
own.

The slots (how a field packs) are in ``_slots.py``, the ops themselves in
``_ops.py`` and ``_ops_root.py``; only this module and ``_spawn.py`` touch
the compiled binding.
"""

from __future__ import annotations

import struct

from . import errors
from ._native import ffi as ffi
from ._native import lib as lib
from ._record import dataclass, fields, replace
from ._slots import Arena as Arena
from ._slots import Fd, Ints, Sink, Slot
from ._slots import SpawnFd as SpawnFd
from ._slots import resolve_fd as resolve_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from typing import Any, ClassVar, TypeVar

    OpT = TypeVar("OpT", bound="type[Op]")

OP_STRUCT = struct.Struct("=IIii4I4Q")
_PACK_I32 = struct.Struct("=i").pack_into
#: ``struct iso_report`` (api.h): step, kind, err, pid, entry, substep, 2 reserved.
REPORT_STRUCT = struct.Struct("=8i")
MAX_FD_PAIRS = 1024
assert OP_STRUCT.size == ffi.sizeof("struct iso_op") == 64
assert REPORT_STRUCT.size == ffi.sizeof("struct iso_report")

F_RECURSIVE: int = lib.ISO_F_RECURSIVE
F_EXIST_OK: int = lib.ISO_F_EXIST_OK
F_CHROOT_FALLBACK: int = lib.ISO_F_CHROOT_FALLBACK
F_READONLY: int = lib.ISO_F_READONLY


#: What a ``RootMkdir`` or ``RootMkdirs`` entry makes (``enum iso_entry_type``, api.h).
ENTRY_DIR: int = lib.ISO_ENTRY_DIR
ENTRY_FILE: int = lib.ISO_ENTRY_FILE          # an empty regular file (a mount point)
ENTRY_SYMLINK: int = lib.ISO_ENTRY_SYMLINK    # link: its target
ENTRY_CONTENTS: int = lib.ISO_ENTRY_CONTENTS  # a new file holding link's bytes (RootMkdirs only)
ENTRY_CHARDEV: int = lib.ISO_ENTRY_CHARDEV    # a character device, link its st_rdev (RootMkdirs only)


class K:
    """Op kinds (``enum iso_op_kind`` in csrc/api.h)."""

    SETNS: int = lib.ISO_OP_SETNS
    UNSHARE: int = lib.ISO_OP_UNSHARE
    MOUNT: int = lib.ISO_OP_MOUNT
    BIND: int = lib.ISO_OP_BIND
    MOUNT_SETATTR: int = lib.ISO_OP_MOUNT_SETATTR
    MKDIR: int = lib.ISO_OP_MKDIR
    MKNOD: int = lib.ISO_OP_MKNOD
    SYMLINK: int = lib.ISO_OP_SYMLINK
    WRITE_FILE: int = lib.ISO_OP_WRITE_FILE
    PIVOT_ROOT: int = lib.ISO_OP_PIVOT_ROOT
    CHROOT: int = lib.ISO_OP_CHROOT
    SETHOSTNAME: int = lib.ISO_OP_SETHOSTNAME
    SETDOMAINNAME: int = lib.ISO_OP_SETDOMAINNAME
    CHDIR: int = lib.ISO_OP_CHDIR
    UMASK: int = lib.ISO_OP_UMASK
    SETRLIMIT: int = lib.ISO_OP_SETRLIMIT
    SETSID: int = lib.ISO_OP_SETSID
    SETPGID: int = lib.ISO_OP_SETPGID
    SETCTTY: int = lib.ISO_OP_SETCTTY
    FDMAP: int = lib.ISO_OP_FDMAP
    CLOSE_FDS: int = lib.ISO_OP_CLOSE_FDS
    SETGROUPS: int = lib.ISO_OP_SETGROUPS
    SETRESGID: int = lib.ISO_OP_SETRESGID
    SETRESUID: int = lib.ISO_OP_SETRESUID
    KEEPCAPS: int = lib.ISO_OP_KEEPCAPS
    CAP_BOUND: int = lib.ISO_OP_CAP_BOUND
    CAPSET: int = lib.ISO_OP_CAPSET
    CAP_AMBIENT: int = lib.ISO_OP_CAP_AMBIENT
    NO_NEW_PRIVS: int = lib.ISO_OP_NO_NEW_PRIVS
    PDEATHSIG: int = lib.ISO_OP_PDEATHSIG
    SECCOMP: int = lib.ISO_OP_SECCOMP
    LOOPBACK_UP: int = lib.ISO_OP_LOOPBACK_UP
    EXECVE: int = lib.ISO_OP_EXECVE
    EXECVEAT: int = lib.ISO_OP_EXECVEAT
    ROOT_STAGE: int = lib.ISO_OP_ROOT_STAGE
    ROOT_MKDIR: int = lib.ISO_OP_ROOT_MKDIR
    ROOT_BIND: int = lib.ISO_OP_ROOT_BIND
    ROOT_MOUNT: int = lib.ISO_OP_ROOT_MOUNT
    ROOT_MASK: int = lib.ISO_OP_ROOT_MASK
    ROOT_MKDIRS: int = lib.ISO_OP_ROOT_MKDIRS
    ROOT_BINDS: int = lib.ISO_OP_ROOT_BINDS
    ROOT_MASKS: int = lib.ISO_OP_ROOT_MASKS
    ROOT_CHDIR: int = lib.ISO_OP_ROOT_CHDIR
    SET_DUMPABLE: int = lib.ISO_OP_SET_DUMPABLE
    EXEC_GATE: int = lib.ISO_OP_EXEC_GATE
    CONSOLE: int = lib.ISO_OP_CONSOLE
    CGROUP_JOIN: int = lib.ISO_OP_CGROUP_JOIN
    NETNS_JOIN: int = lib.ISO_OP_NETNS_JOIN
    FORK: int = lib.ISO_OP_FORK
    MAX: int = lib.ISO_OP_KIND_MAX


# Kernel constants the planners use, from the headers at build time.
MS_REC: int = lib.MS_REC
MS_PRIVATE: int = lib.MS_PRIVATE
MS_SHARED: int = lib.MS_SHARED
MS_SLAVE: int = lib.MS_SLAVE
MS_UNBINDABLE: int = lib.MS_UNBINDABLE
MS_BIND: int = lib.MS_BIND
MS_MOVE: int = lib.MS_MOVE
MS_REMOUNT: int = lib.MS_REMOUNT
MOUNT_ATTR_RDONLY: int = lib.MOUNT_ATTR_RDONLY
MOUNT_ATTR_NOSUID: int = lib.MOUNT_ATTR_NOSUID
MOUNT_ATTR_NODEV: int = lib.MOUNT_ATTR_NODEV
MOUNT_ATTR_NOEXEC: int = lib.MOUNT_ATTR_NOEXEC
MOUNT_ATTR_NOATIME: int = lib.MOUNT_ATTR_NOATIME
MOUNT_ATTR_STRICTATIME: int = lib.MOUNT_ATTR_STRICTATIME
O_CREAT: int = lib.O_CREAT
O_TRUNC: int = lib.O_TRUNC
AT_EMPTY_PATH: int = lib.AT_EMPTY_PATH

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


def flag_names(value: int, table: dict[str, int]) -> str:
    """``value``'s bits as the ``|``-joined names of ``table`` (``"0"`` for none)."""
    names = [n for n, bit in table.items() if value & bit]
    return "|".join(names) if names else "0"


def text(b: bytes | None) -> str:
    """Bytes from a plan as text for messages (``""`` for None)."""
    return "" if b is None else b.decode("utf-8", "surrogateescape")


# --- ops ----------------------------------------------------------------------------

#: Op kind -> its class.
OP_CLASSES: dict[int, type[Op]] = {}


@dataclass(frozen=True, slots=True)
class Op:
    """One step the child runs between clone and execve.

    A subclass names its ``kind``, the ``error`` a failure raises, and its
    ``layout``: the ``Slot`` of each field (fields not named there, and
    every slot not named, pack as zero).  ``register`` compiles it.
    """

    kind: ClassVar[int]
    error: ClassVar[type[errors.SetupError]] = errors.SetupError
    layout: ClassVar[Mapping[str, Slot]] = {}
    #: (field name, slot) in field order, and the fields that hold fds: set by ``register``.
    _slots: ClassVar[tuple[tuple[str, Slot], ...]] = ()
    _fd_fields: ClassVar[tuple[tuple[str, Slot], ...]] = ()

    def describe(self) -> str:
        """A short text for error messages, e.g. ``mount proc on /proc``."""
        return type(self).__name__.lower()

    def path(self) -> str | None:
        """The file name an error should carry, if any."""
        return None

    def raw(self, arena: Arena, sink: Sink | None = None) -> list[int]:
        """The ten values after ``kind`` in ``struct iso_op`` (flags, fd, args, vals)."""
        out = [0, -1, 0, 0, 0, 0, 0, 0, 0, 0]
        s = sink if sink is not None else Sink()
        for name, slot in self._slots:
            slot.put(getattr(self, name), out, arena, s)
        return out

    @classmethod
    def from_raw(cls, raw: Sequence[int], arena: Arena) -> Op:
        """The op ``raw`` (as ``Op.raw`` gives it) describes."""
        return cls(**{name: slot.get(raw, arena) for name, slot in cls._slots})

    def bind(self, fds: Sequence[int]) -> Op:
        """This op with the spawn's fds in place of its ``SpawnFd`` placeholders."""
        if not self._fd_fields:
            return self
        changes = {name: slot.bind(getattr(self, name), fds) for name, slot in self._fd_fields}
        return replace(self, **changes)

    def spawn_fds(self) -> Iterator[int]:
        """The fd values this op names (``SpawnFd`` placeholders included)."""
        for name, slot in self._fd_fields:
            value = getattr(self, name)
            if isinstance(slot, Fd):
                yield value
            elif isinstance(slot, Ints) and slot.pairs:
                yield from (a for a, _ in value)
            else:
                yield from value


def register(cls: OpT) -> OpT:
    """Compile ``cls.layout`` and enter the class in ``OP_CLASSES``."""
    names = {f.name for f in fields(cls)}
    layout = cls.layout
    unknown = set(layout) - names
    assert not unknown, f"{cls.__name__}.layout names no field: {unknown}"
    cls._slots = tuple((f.name, layout[f.name]) for f in fields(cls) if f.name in layout)
    cls._fd_fields = tuple((n, s) for n, s in cls._slots if s.holds_fds)
    assert cls.kind not in OP_CLASSES, f"two classes of kind {cls.kind}"
    OP_CLASSES[cls.kind] = cls
    return cls


class OpSeq(tuple[Op, ...]):
    """An immutable run of ops that hashes once.

    Plan cache keys hold a container's root, some sixty ops: as one
    ``OpSeq``, made once per root, a key costs a dict lookup instead of
    sixty hashes.
    """

    def __hash__(self) -> int:
        h: int | None = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = tuple.__hash__(self)
        return h


# --- plans ---------------------------------------------------------------------------

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

PLAN_HOLD: int = lib.ISO_PLAN_HOLD
PLAN_FORK: int = lib.ISO_PLAN_FORK
PLAN_CLOSE_FDS: int = lib.ISO_PLAN_CLOSE_FDS
PLAN_LEGACY_CLONE: int = lib.ISO_PLAN_LEGACY_CLONE
PLAN_SETGROUPS_DENY: int = lib.ISO_PLAN_SETGROUPS_DENY
PLAN_SYNC: int = lib.ISO_PLAN_SYNC
PLAN_TIMING: int = lib.ISO_PLAN_TIMING
PLAN_NETNS_LATE: int = lib.ISO_PLAN_NETNS_LATE
PLAN_NETNS_LO: int = lib.ISO_PLAN_NETNS_LO


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a spawn needs: clone flags, parent-side steps, and the child's ops.

    ``ops`` must end in ``Exec`` or ``ExecAt``.  Fds named here are
    borrowed: the caller keeps them open until the spawn returns.  A
    ``SpawnFd`` (in an op, ``cgroup_fd``, ``join_fds`` or ``netns_fd``) is a
    placeholder for the fd named ``fd_names[index]``, given per spawn.  With
    ``PLAN_CLOSE_FDS`` the child program inherits only the fds the plan names
    (every op's ``fd`` slot, ``FdMap`` sources, ``join_fds``, ``netns_fd``
    and ``cgroup_fd``) besides 0-2.
    """

    ops: Sequence[Op]
    argv: Sequence[bytes]
    envp: Sequence[bytes] | None    # None: the parent's environ, read at spawn time
    clone_flags: int = 0
    flags: int = 0
    cgroup_fd: int = -1
    uid_map: bytes | None = None
    gid_map: bytes | None = None
    join_fds: tuple[int, ...] = ()      # for CgroupJoin
    netns_fd: int = -1
    fd_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if type(self.ops) is not tuple and type(self.ops) is not OpSeq:
            set_(self, "ops", tuple(self.ops))
        if type(self.argv) is not tuple:
            set_(self, "argv", tuple(self.argv))
        if self.envp is not None and type(self.envp) is not tuple:
            set_(self, "envp", tuple(self.envp))
        if type(self.join_fds) is not tuple:
            set_(self, "join_fds", tuple(self.join_fds))

    def pack(self, keep: tuple[object, ...] = ()) -> PackedPlan:
        """Pack the plan for C: every allocation the child needs, done here.

        ``keep``: objects the packed plan keeps alive (owners of fds it names).
        """
        return PackedPlan(self, keep)

    def bind(self, fds: Sequence[int]) -> Plan:
        """This plan with the spawn's ``fds`` (in ``fd_names`` order) in place of its placeholders."""
        if not self.fd_names:
            return self
        return replace(self, ops=tuple(op.bind(fds) for op in self.ops),
                       cgroup_fd=resolve_fd(self.cgroup_fd, fds),
                       join_fds=tuple(resolve_fd(f, fds) for f in self.join_fds),
                       netns_fd=resolve_fd(self.netns_fd, fds), fd_names=())

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


class PackedPlan:
    """A ``Plan`` packed for C: ops and arena as bytes, argv and envp as cdata.

    Never changed after it is made, so one serves every spawn of its plan,
    from any thread.  ``instantiate`` gives one spawn's ``struct iso_plan``,
    with that spawn's fds.
    """

    __slots__ = ("plan", "ops", "arena", "_c_ops", "_c_arena", "_c_argv", "_c_envp", "_keep",
                 "_static_fds", "_holes", "_template", "_static_keep", "_wire_fds", "__weakref__")

    def __init__(self, plan: Plan, keep: tuple[object, ...] = ()) -> None:
        self.plan = plan
        arena = Arena()
        sink = Sink()
        ops = plan.ops
        buf = bytearray(OP_STRUCT.size * len(ops))
        pack_into = OP_STRUCT.pack_into
        for i, op in enumerate(ops):
            sink.op_base = base = i * OP_STRUCT.size
            raw = op.raw(arena, sink)
            pack_into(buf, base, op.kind, raw[0], raw[1], 0, *raw[2:])
        self.ops = bytes(buf)
        self.arena = bytes(arena.buf)
        for f in (plan.netns_fd, plan.cgroup_fd, *plan.join_fds):
            if type(f) is not SpawnFd and f >= 0:
                sink.fds.add(f)
        self._static_fds = frozenset(sink.fds)
        # (byte offset, fd index) of each per-spawn fd, in the ops and in the arena.
        self._holes = (tuple((off, i) for where, off, i in sink.holes if where == 0),
                       tuple((off, i) for where, off, i in sink.holes if where == 1))
        # For wire(): every fd's place, as an offset into ops + arena (the arena follows the
        # ops), with the plan's own fd (>= 0) or a per-spawn one (SpawnFd, < -1).
        ops_len = len(self.ops)
        self._wire_fds = tuple((off + (ops_len if where else 0), fd) for where, off, fd in sink.placed) \
            + tuple((off + (ops_len if where else 0), SpawnFd(i)) for where, off, i in sink.holes)
        refs: list[Any] = [keep]
        self._c_ops = ffi.from_buffer("struct iso_op[]", self.ops) if ops else ffi.NULL
        self._c_arena = ffi.from_buffer("char[]", self.arena)
        argv = [ffi.new("char[]", a) for a in plan.argv]
        self._c_argv = ffi.new("char *[]", argv + [ffi.NULL])
        envp = [ffi.new("char[]", e) for e in plan.envp] if plan.envp is not None else None
        self._c_envp = ffi.new("char *[]", envp + [ffi.NULL]) if envp is not None else ffi.NULL
        refs += [argv, envp]
        t = ffi.new("struct iso_plan *")
        t.clone_flags = plan.clone_flags
        t.flags = plan.flags
        t.ops = self._c_ops
        t.n_ops = len(ops)
        t.arena = self._c_arena
        t.arena_len = len(self.arena)
        t.argv = self._c_argv
        t.envp = self._c_envp
        for name in ("uid_map", "gid_map"):
            value = getattr(plan, name)
            if value is not None:
                m = ffi.new("char[]", value)
                refs.append(m)
                setattr(t, name, m)
        self._template = t
        self._keep = refs
        self._static_keep = None if plan.fd_names else self._fd_array(sorted(self._static_fds))

    def wire(self, fds: Sequence[int] = (), *, hold: bool = False) -> tuple[bytes, list[int]]:
        """One spawn's plan as bytes for another process (the ``isolate-oci`` front end,
        csrc/front/front.c), and the fds to send with it (SCM_RIGHTS), in that order.

        ``fds`` and ``hold`` as ``instantiate`` takes them.  Every fd of the plan,
        its own and this spawn's, is a hole: ``(offset, index)``, an offset into the
        ops followed by the arena and an index into the sent fds (-1: the number -1),
        so that the receiver writes the numbers the fds have there.  The layout
        (``WIRE_HEADER``, then 8-aligned sections) is read by ``unwire`` and by
        ``wire_read`` in front.c; both ends run on one machine: native byte order.
        ``PLAN_TIMING`` is dropped (the stamps stay with the receiver).
        """
        plan = self.plan
        if len(fds) != len(plan.fd_names):
            raise ValueError(f"the plan takes {len(plan.fd_names)} fds ({plan.fd_names}), got {len(fds)}")
        sent: list[int] = []
        index: dict[int, int] = {}

        def at(fd: int) -> int:
            fd = resolve_fd(fd, fds)
            if fd < 0:
                return -1
            i = index.get(fd)
            if i is None:
                i = index[fd] = len(sent)
                sent.append(fd)
            return i

        holes = [(off, at(fd)) for off, fd in self._wire_fds]
        joins = [at(f) for f in plan.join_fds]
        netns, cgroup = at(plan.netns_fd), at(plan.cgroup_fd)
        argv = b"".join(a + b"\0" for a in plan.argv)
        envp = b"".join(e + b"\0" for e in plan.envp) if plan.envp is not None else b""
        uid_map, gid_map = plan.uid_map, plan.gid_map
        flags = (plan.flags | (PLAN_HOLD if hold else 0)) & ~PLAN_TIMING
        sections = [self.ops + self.arena, argv, envp, uid_map or b"", gid_map or b"",
                    struct.pack(f"={len(joins)}i", *joins),
                    b"".join(_WIRE_HOLE.pack(off, i) for off, i in holes)]
        body = b"".join(s + b"\0" * (-len(s) % 8) for s in sections)
        head = WIRE_HEADER.pack(
            WIRE_MAGIC, WIRE_VERSION, plan.clone_flags, flags, len(plan.ops), len(self.arena),
            len(plan.argv), -1 if plan.envp is None else len(plan.envp),
            -1 if uid_map is None else len(uid_map), -1 if gid_map is None else len(gid_map),
            len(joins), len(sent), netns, cgroup, len(holes), len(argv), len(envp),
            WIRE_HEADER.size + len(body), 0)
        return head + body, sent

    def _fd_array(self, fds: list[int]) -> Any:
        return ffi.new("int32_t[]", fds) if fds else ffi.NULL

    def instantiate(self, fds: Sequence[int] = (), *, hold: bool = False) -> SpawnPlan:
        """One spawn's ``struct iso_plan``: ``fds`` (in ``plan.fd_names`` order) in place of
        the placeholders; ``hold`` sets ``PLAN_HOLD`` (the child waits for ``iso_release``)."""
        plan = self.plan
        if len(fds) != len(plan.fd_names):
            raise ValueError(f"the plan takes {len(plan.fd_names)} fds ({plan.fd_names}), got {len(fds)}")
        p = ffi.new("struct iso_plan *", self._template[0])
        refs: list[Any] = [self, p]
        # A copy of each buffer that has a spawn's fd in it, with the fd written in.
        op_holes, arena_holes = self._holes
        if op_holes:
            ops = bytearray(self.ops)
            for off, index in op_holes:
                _PACK_I32(ops, off, fds[index])
            p.ops = c_ops = ffi.from_buffer("struct iso_op[]", ops)
            refs += [ops, c_ops]
        if arena_holes:
            arena = bytearray(self.arena)
            for off, index in arena_holes:
                _PACK_I32(arena, off, fds[index])
            p.arena = c_arena = ffi.from_buffer("char[]", arena)
            refs += [arena, c_arena]
        cgroup_fd = resolve_fd(plan.cgroup_fd, fds)
        netns_fd = resolve_fd(plan.netns_fd, fds)
        p.cgroup_fd = cgroup_fd
        p.netns_fd = netns_fd
        if plan.join_fds:
            join = [resolve_fd(f, fds) for f in plan.join_fds]
            c_join = ffi.new("int32_t[]", join)
            refs.append(c_join)
            p.join_fds = c_join
            p.n_join_fds = len(join)
        if self._static_keep is not None:
            p.keep_fds = self._static_keep
            p.n_keep_fds = len(self._static_fds)
        else:
            # The fds the child program inherits: those the ops name, this spawn's too.
            names = sorted(self._static_fds.union(f for f in fds if f >= 0))
            keep = ffi.new("int32_t[]", names)
            refs.append(keep)
            p.keep_fds = keep
            p.n_keep_fds = len(names)
        if hold:
            p.flags |= PLAN_HOLD
        if plan.flags & PLAN_TIMING and plan.ops:
            times = ffi.new("uint64_t[]", len(plan.ops) + 1)
            refs.append(times)
            p.op_times = times
        return SpawnPlan(p, refs, fds)


class SpawnPlan:
    """One spawn's ``struct iso_plan`` (``c``), alive as long as this object."""

    __slots__ = ("c", "_refs", "fds")

    def __init__(self, c: Any, refs: list[Any], fds: Sequence[int]) -> None:
        self.c, self._refs, self.fds = c, refs, tuple(fds)

    @property
    def plan(self) -> Plan:
        """The plan as this spawn runs it: its fds in place (for messages)."""
        packed: PackedPlan = self._refs[0]
        return packed.plan.bind(self.fds)


#: ``PackedPlan.wire``'s header (front.c: ``struct iso_wire_plan``): magic, version, clone
#: flags, plan flags, n_ops, arena_len, argc, envc (-1: the receiver's environ), uid_map and
#: gid_map lengths (-1: none), n_join_fds, n_fds, netns_fd and cgroup_fd (indices, -1: none),
#: n_holes, argv and envp byte lengths, total length, and a reserved zero.
WIRE_HEADER = struct.Struct("=4sIQIIIIiiiIIiiIIIII")
WIRE_MAGIC = b"ISOW"
WIRE_VERSION = 1
#: A hole: the offset in ops + arena of an int32 fd, and the index of its fd (-1: none).
_WIRE_HOLE = struct.Struct("=Ii")
assert WIRE_HEADER.size == 80


@dataclass(frozen=True, slots=True, kw_only=True)
class WirePlan:
    """A plan as ``unwire`` reads ``PackedPlan.wire``'s bytes, with the receiver's fds in place."""

    clone_flags: int
    flags: int
    ops: bytes
    arena: bytes
    argv: tuple[bytes, ...]
    envp: tuple[bytes, ...] | None
    uid_map: bytes | None
    gid_map: bytes | None
    join_fds: tuple[int, ...]
    netns_fd: int
    cgroup_fd: int
    keep_fds: tuple[int, ...]


def unwire(data: bytes, fds: Sequence[int]) -> WirePlan:
    """The pure-Python reader of ``PackedPlan.wire`` (front.c does the same in C), with
    ``fds`` (the received fds, in the sent order) written into its holes.

    Raises ``ProtocolError`` for bytes that are not a whole plan of this version.
    """
    if len(data) < WIRE_HEADER.size:
        raise errors.ProtocolError(f"wire plan: {len(data)} bytes, shorter than its header")
    (magic, version, clone_flags, flags, n_ops, arena_len, argc, envc, uid_len, gid_len, n_join,
     n_fds, netns, cgroup, n_holes, argv_len, envp_len, total, _) = WIRE_HEADER.unpack_from(data)
    if magic != WIRE_MAGIC or version != WIRE_VERSION or total != len(data) or n_fds != len(fds):
        raise errors.ProtocolError(f"wire plan: bad header (magic {magic!r}, version {version}, "
                                   f"length {total} of {len(data)}, {n_fds} fds of {len(fds)})")
    pos = WIRE_HEADER.size

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise errors.ProtocolError(f"wire plan: a section of {n} bytes at {pos} overruns it")
        out = data[pos:pos + n]
        pos += n + (-n % 8)
        return out

    def fd_at(i: int) -> int:
        if not -1 <= i < len(fds):
            raise errors.ProtocolError(f"wire plan: fd index {i} of {len(fds)} fds")
        return -1 if i < 0 else fds[i]

    body = bytearray(take(n_ops * OP_STRUCT.size + arena_len))

    def strings(raw: bytes, n: int) -> tuple[bytes, ...]:
        out = tuple(raw.split(b"\0")[:-1]) if raw else ()
        if len(out) != n:
            raise errors.ProtocolError(f"wire plan: {len(out)} strings, the header says {n}")
        return out

    argv = strings(take(argv_len), argc)
    envp = strings(take(envp_len), envc) if envc >= 0 else None
    uid_map = take(uid_len) if uid_len >= 0 else None
    gid_map = take(gid_len) if gid_len >= 0 else None
    joins = struct.unpack(f"={n_join}i", take(4 * n_join))
    holes = take(_WIRE_HOLE.size * n_holes)
    for off, i in _WIRE_HOLE.iter_unpack(holes):
        if off + 4 > len(body):
            raise errors.ProtocolError(f"wire plan: a hole at {off} outside its {len(body)} bytes")
        _PACK_I32(body, off, fd_at(i))
    cut = n_ops * OP_STRUCT.size
    return WirePlan(clone_flags=clone_flags, flags=flags, ops=bytes(body[:cut]), arena=bytes(body[cut:]),
                    argv=argv, envp=envp, uid_map=uid_map, gid_map=gid_map,
                    join_fds=tuple(fd_at(i) for i in joins), netns_fd=fd_at(netns),
                    cgroup_fd=fd_at(cgroup), keep_fds=tuple(sorted(fds)))


def decode_report(plan: Plan, data: bytes) -> errors.IsolateError:
    """Turn the bytes of a child's failure report into the exception to raise."""
    if len(data) != REPORT_STRUCT.size:
        return errors.ProtocolError(f"bad report from child: {data!r}")
    step, kind, err, _pid, entry, substep, _, _ = REPORT_STRUCT.unpack(data)
    return plan.error_for(step, kind, err, entry=entry, substep=substep)


def unpack_ops(ops_buf: bytes, arena: bytes) -> list[Op]:
    """A pure-Python reader of packed ops: the inverse of ``Plan.pack`` (for tests)."""
    a = Arena(arena)
    out = []
    for off in range(0, len(ops_buf), OP_STRUCT.size):
        kind, flags, fd, _, *rest = OP_STRUCT.unpack_from(ops_buf, off)
        raw = [flags, fd, *rest]
        out.append(OP_CLASSES[kind].from_raw(raw, a))
    return out


def pack_ops(ops: Iterable[Op]) -> tuple[bytes, bytes]:
    """The ops (as C reads them) and the arena of a plan of ``ops`` (for tests and tools)."""
    packed = Plan(ops=tuple(ops), argv=(b"x",), envp=None).pack()
    return packed.ops, packed.arena

