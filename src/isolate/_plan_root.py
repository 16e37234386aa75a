"""Plan ops that build a new root inside the child, resolving every target in it.

Split from ``_plan.py`` (which imports and registers them).  Each target is
opened with openat2(RESOLVE_IN_ROOT) in ``csrc/ops_root.c`` and mounted onto
by fd, so no path string is followed out of the new root.
"""

from __future__ import annotations


from . import errors
from ._record import dataclass
from ._plan import (F_CHROOT_FALLBACK, F_EXIST_OK, F_READONLY, F_RECURSIVE, Op, _Arena, _d, _s,
                    _Vals, lib)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, ClassVar

#: What a ``RootMkdir`` or ``RootMkdirs`` entry makes (``enum iso_entry_type``, api.h).
ENTRY_DIR: int = lib.ISO_ENTRY_DIR
ENTRY_FILE: int = lib.ISO_ENTRY_FILE          # an empty regular file (a mount point)
ENTRY_SYMLINK: int = lib.ISO_ENTRY_SYMLINK    # link: its target
ENTRY_CONTENTS: int = lib.ISO_ENTRY_CONTENTS  # a new file holding link's bytes (RootMkdirs only)
ENTRY_CHARDEV: int = lib.ISO_ENTRY_CHARDEV    # a character device, link its st_rdev (RootMkdirs only)
_ENTRY_VERBS = {ENTRY_DIR: "mkdir", ENTRY_FILE: "create file", ENTRY_SYMLINK: "symlink",
                ENTRY_CONTENTS: "write file", ENTRY_CHARDEV: "mknod"}
_WITH_LINK = (ENTRY_SYMLINK, ENTRY_CONTENTS, ENTRY_CHARDEV)


def _pack_fs_options(options: Sequence[tuple[str, str | None]]) -> bytes:
    """``[(key, value or None for a flag)]`` as ops_root.c reads them: type byte, key, value."""
    out = bytearray()
    for key, value in options:
        out += (b"f" if value is None else b"s") + key.encode() + b"\0"
        out += (b"" if value is None else value.encode("utf-8", "surrogateescape")) + b"\0"
    return bytes(out)


def _unpack_fs_options(arena: _Arena, off: int, n: int) -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for _ in range(n):
        kind = arena.buf[off:off + 1]
        key_end = arena.buf.index(0, off + 1)
        val_end = arena.buf.index(0, key_end + 1)
        key = arena.buf[off + 1:key_end].decode()
        val = arena.buf[key_end + 1:val_end].decode("utf-8", "surrogateescape")
        out.append((key, None if kind == b"f" else val))
        off = val_end + 1
    return tuple(out)


def _rel(root: bytes | None, path: bytes) -> str:
    if root is None:
        return _d(path)
    return _d(root.rstrip(b"/") + b"/" + path.lstrip(b"/")) if path != b"." else _d(root)


@dataclass(frozen=True, slots=True)
class RootStage(Op):
    """tmpfs on ``base``, pivot into it: old root at /oldroot, new root built at /newroot."""

    kind: ClassVar[int] = lib.ISO_OP_ROOT_STAGE
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    base: bytes
    chroot: bool = False

    def describe(self) -> str:
        how = "without pivot_root" if self.chroot else "with pivot_root"
        return f"stage the new root on {_d(self.base)} ({how})"

    def path(self) -> str | None:
        return _d(self.base)

    def encode(self, arena: _Arena) -> Any:
        return (F_CHROOT_FALLBACK if self.chroot else 0), -1, (arena.str(self.base), 0, 0, 0), (
            0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        b = _s(arena, args[0])
        assert b is not None
        return cls(base=b, chroot=bool(flags & F_CHROOT_FALLBACK))


@dataclass(frozen=True, slots=True)
class RootMkdir(Op):
    """Create ``name`` in ``parent``, both resolved inside ``root`` (type ``ENTRY_DIR``,
    ``ENTRY_FILE`` or ``ENTRY_SYMLINK``)."""

    kind: ClassVar[int] = lib.ISO_OP_ROOT_MKDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    root: bytes | None
    parent: bytes
    name: bytes
    mode: int = 0o755
    type: int = ENTRY_DIR
    link: bytes | None = None

    def describe(self) -> str:
        what = _ENTRY_VERBS[self.type]
        return f"{what} {_rel(self.root, self.parent.rstrip(b'/') + b'/' + self.name)}"

    def path(self) -> str | None:
        return _rel(self.root, self.parent.rstrip(b"/") + b"/" + self.name)

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.str(self.root), arena.str(self.parent), arena.str(self.name),
                       arena.str(self.link)), (self.mode, self.type, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        r, p, n = _s(arena, args[0]), _s(arena, args[1]), _s(arena, args[2])
        assert p is not None and n is not None
        return cls(root=r, parent=p, name=n, link=_s(arena, args[3]), mode=vals[0], type=vals[1])


@dataclass(frozen=True, slots=True)
class RootMkdirs(Op):
    """Several ``RootMkdir`` entries of one directory, made through one fd.

    ``entries``: ``(name, type, mode, link or None)``; each name is one
    path component, so nothing but the directory is resolved.
    ``ENTRY_CONTENTS`` is a new file (which must not exist) holding the
    bytes in place of the link; ``ENTRY_CHARDEV`` a character device, its
    ``st_rdev`` as eight bytes little-endian.
    """

    kind: ClassVar[int] = lib.ISO_OP_ROOT_MKDIRS
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    root: bytes | None
    parent: bytes
    entries: tuple[tuple[bytes, int, int, bytes | None], ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("RootMkdirs needs at least one entry")
        for name, type_, mode, link in self.entries:
            # One component only: mkdirat() and friends follow symlinks in the
            # leading components of a name, which would leave the root.
            if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
                raise ValueError(f"RootMkdirs: {name!r} is not one path component")
            if type_ not in _ENTRY_VERBS or not 0 <= mode <= 0o7777 \
                    or (type_ in _WITH_LINK) != (link is not None) or (link is not None and len(link) >= 2**32) \
                    or (type_ == ENTRY_CHARDEV and len(link or b"") != 8):
                raise ValueError(f"RootMkdirs: bad entry {(name, type_, mode, link)!r}")

    def describe(self) -> str:
        names = b", ".join(e[0] for e in self.entries)
        return f"create {_d(names)} in {_rel(self.root, self.parent)}"

    def path(self) -> str | None:
        return _rel(self.root, self.parent)

    def describe_entries(self) -> tuple[tuple[str, str | None], ...]:
        """What each entry makes, and its path (an error names the failing entry)."""
        paths = [_rel(self.root, self.parent.rstrip(b"/") + b"/" + e[0]) for e in self.entries]
        return tuple((f"{_ENTRY_VERBS[e[1]]} {p}", p) for e, p in zip(self.entries, paths))

    def encode(self, arena: _Arena) -> Any:
        packed = bytearray()
        for name, type_, mode, link in self.entries:
            packed += bytes((type_, mode & 0xFF, mode >> 8)) + name + b"\0"
            if type_ == ENTRY_CHARDEV:
                assert link is not None
                packed += link
            elif type_ == ENTRY_CONTENTS:
                assert link is not None
                packed += len(link).to_bytes(4, "little") + link
            else:
                packed += (link or b"") + b"\0"
        return 0, -1, (arena.str(self.root), arena.str(self.parent), arena.data(bytes(packed), 1),
                       0), (0, 0, len(self.entries), 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        p = _s(arena, args[1])
        assert p is not None
        off = args[2]
        entries: list[tuple[bytes, int, int, bytes | None]] = []
        for _ in range(vals[2]):
            type_, mode = arena.buf[off], arena.buf[off + 1] | arena.buf[off + 2] << 8
            name_end = arena.buf.index(0, off + 3)
            if type_ == ENTRY_CHARDEV:
                entries.append((bytes(arena.buf[off + 3:name_end]), ENTRY_CHARDEV, mode,
                                bytes(arena.buf[name_end + 1:name_end + 9])))
                off = name_end + 9
                continue
            if type_ == ENTRY_CONTENTS:
                size = int.from_bytes(arena.buf[name_end + 1:name_end + 5], "little")
                entries.append((bytes(arena.buf[off + 3:name_end]), ENTRY_CONTENTS, mode,
                                bytes(arena.buf[name_end + 5:name_end + 5 + size])))
                off = name_end + 5 + size
                continue
            link_end = arena.buf.index(0, name_end + 1)
            name, link = bytes(arena.buf[off + 3:name_end]), bytes(arena.buf[name_end + 1:link_end])
            entries.append((name, type_, mode, link if type_ == ENTRY_SYMLINK else None))
            off = link_end + 1
        return cls(root=_s(arena, args[0]), parent=p, entries=tuple(entries))


@dataclass(frozen=True, slots=True)
class RootBind(Op):
    """Bind ``source`` (inside ``source_root``, or as is if None) onto ``target`` inside ``root``."""

    kind: ClassVar[int] = lib.ISO_OP_ROOT_BIND
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    source_root: bytes | None
    source: bytes
    root: bytes | None
    target: bytes
    recursive: bool = True
    readonly: bool = False
    optional: bool = False
    attr_set: int = 0
    attr_clr: int = 0

    def describe(self) -> str:
        ro = " read-only" if self.readonly else ""
        return f"bind{ro} {_rel(self.source_root, self.source)} on {_rel(self.root, self.target)}"

    def path(self) -> str | None:
        return _rel(self.root, self.target)

    def encode(self, arena: _Arena) -> Any:
        flags = ((F_RECURSIVE if self.recursive else 0) | (F_READONLY if self.readonly else 0)
                 | (F_EXIST_OK if self.optional else 0))
        return flags, -1, (arena.str(self.source_root), arena.str(self.source),
                           arena.str(self.root), arena.str(self.target)), (
            self.attr_set, self.attr_clr, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        s, t = _s(arena, args[1]), _s(arena, args[3])
        assert s is not None and t is not None
        return cls(source_root=_s(arena, args[0]), source=s, root=_s(arena, args[2]), target=t,
                   recursive=bool(flags & F_RECURSIVE), readonly=bool(flags & F_READONLY),
                   optional=bool(flags & F_EXIST_OK), attr_set=vals[0], attr_clr=vals[1])


def _names(path: bytes, what: str) -> None:
    if not path or b"\0" in path:
        raise ValueError(f"{what}: bad path {path!r}")


@dataclass(frozen=True, slots=True)
class RootBinds(Op):
    """``RootBind`` of each ``(source, target)`` pair, all with the same roots and flags.

    Both roots are opened once for all, so a pair must not mount over
    either root: meant for paths below mounts the plan made itself (/dev's
    nodes, the OCI read-only paths in /proc), not for a caller's paths.
    """

    kind: ClassVar[int] = lib.ISO_OP_ROOT_BINDS
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    source_root: bytes | None
    root: bytes | None
    entries: tuple[tuple[bytes, bytes], ...]
    recursive: bool = True
    readonly: bool = False
    optional: bool = False
    attr_set: int = 0
    attr_clr: int = 0

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("RootBinds needs at least one entry")
        for source, target in self.entries:
            _names(source, "RootBinds")
            _names(target, "RootBinds")

    def expand(self) -> list[RootBind]:
        """The same binds as one ``RootBind`` each."""
        return [RootBind(self.source_root, s, self.root, t, recursive=self.recursive,
                         readonly=self.readonly, optional=self.optional, attr_set=self.attr_set,
                         attr_clr=self.attr_clr) for s, t in self.entries]

    def describe(self) -> str:
        ro = " read-only" if self.readonly else ""
        pairs = ", ".join(_rel(self.source_root, s) if (s, self.source_root) == (t, self.root) else
                          f"{_rel(self.source_root, s)} on {_rel(self.root, t)}" for s, t in self.entries)
        return f"bind{ro} {pairs}"

    def path(self) -> str | None:
        return _rel(self.root, self.entries[0][1]) if len(self.entries) == 1 else None

    def describe_entries(self) -> tuple[tuple[str, str | None], ...]:
        """Each entry's bind, and its target (an error names the failing entry)."""
        return tuple((one.describe(), one.path()) for one in self.expand())

    def encode(self, arena: _Arena) -> Any:
        flags = ((F_RECURSIVE if self.recursive else 0) | (F_READONLY if self.readonly else 0)
                 | (F_EXIST_OK if self.optional else 0))
        packed = b"".join(s + b"\0" + t + b"\0" for s, t in self.entries)
        return flags, -1, (arena.str(self.source_root), arena.data(packed, 1),
                           arena.str(self.root), 0), (self.attr_set, self.attr_clr, len(self.entries), 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        off, entries = args[1], []
        for _ in range(vals[2]):
            s_end = arena.buf.index(0, off)
            t_end = arena.buf.index(0, s_end + 1)
            entries.append((bytes(arena.buf[off:s_end]), bytes(arena.buf[s_end + 1:t_end])))
            off = t_end + 1
        return cls(source_root=_s(arena, args[0]), root=_s(arena, args[2]), entries=tuple(entries),
                   recursive=bool(flags & F_RECURSIVE), readonly=bool(flags & F_READONLY),
                   optional=bool(flags & F_EXIST_OK), attr_set=vals[0], attr_clr=vals[1])


@dataclass(frozen=True, slots=True)
class RootMount(Op):
    """A new ``fstype`` filesystem (fsopen/fsmount) attached at ``target`` inside ``root``.

    ``fd`` >= 0: instead, a clone of that detached mount, which the caller
    keeps open (``RootFS``'s shared read-only root).
    """

    kind: ClassVar[int] = lib.ISO_OP_ROOT_MOUNT
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    fstype: bytes
    root: bytes | None
    target: bytes
    source: bytes | None = None
    attrs: int = 0
    options: tuple[tuple[str, str | None], ...] = ()
    optional: bool = False
    fd: int = -1

    def describe(self) -> str:
        if self.fd >= 0:
            return f"attach a clone of the prepared {_d(self.fstype)} (fd {self.fd}) on {_rel(self.root, self.target)}"
        return f"mount {_d(self.fstype)} on {_rel(self.root, self.target)}"

    def path(self) -> str | None:
        return _rel(self.root, self.target)

    def encode(self, arena: _Arena) -> Any:
        opts = arena.data(_pack_fs_options(self.options), 1) if self.options else 0
        return (F_EXIST_OK if self.optional else 0), self.fd, (
            arena.str(self.fstype), arena.str(self.source), arena.str(self.root),
            arena.str(self.target)), (self.attrs, opts, len(self.options), 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        f, t = _s(arena, args[0]), _s(arena, args[3])
        assert f is not None and t is not None
        return cls(fstype=f, source=_s(arena, args[1]), root=_s(arena, args[2]), target=t,
                   attrs=vals[0], options=_unpack_fs_options(arena, vals[1], vals[2]),
                   optional=bool(flags & F_EXIST_OK), fd=fd)


def _null_where(root: bytes | None, null: bytes, null_root: bytes | None) -> str:
    """Where a mask's null device is, for its description."""
    return _rel(root if null_root is None else null_root, null)


@dataclass(frozen=True, slots=True)
class RootMask(Op):
    """Hide ``target`` inside ``root``: read-only empty tmpfs on a directory, ``null`` on a file.

    ``null`` is resolved inside ``null_root`` (None: inside ``root``), never
    as is, and must be the character device 1:3 once opened, else the op
    fails with ENODEV: an image's symlinks cannot make it a host file.
    Packed as arg0 root, arg1 target, arg2 null, arg3 null_root (0: None).
    """

    kind: ClassVar[int] = lib.ISO_OP_ROOT_MASK
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    root: bytes
    target: bytes
    null: bytes
    null_root: bytes | None = None

    def describe(self) -> str:
        return (f"mask {_rel(self.root, self.target)} "
                f"(null device: {_null_where(self.root, self.null, self.null_root)})")

    def path(self) -> str | None:
        return _rel(self.root, self.target)

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.str(self.root), arena.str(self.target), arena.str(self.null),
                       arena.str(self.null_root)), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        r, t, n = _s(arena, args[0]), _s(arena, args[1]), _s(arena, args[2])
        assert r is not None and t is not None and n is not None
        return cls(root=r, target=t, null=n, null_root=_s(arena, args[3]))


@dataclass(frozen=True, slots=True)
class RootMasks(Op):
    """``RootMask`` of each of ``targets``: the root opened once, one tmpfs for the directories.

    As with ``RootBinds``, no target may be the root itself: meant for the
    OCI default masked paths, below the /proc and /sys the plan mounted.
    ``null`` and ``null_root`` as for ``RootMask``; the null device is opened
    and checked once for all.
    """

    kind: ClassVar[int] = lib.ISO_OP_ROOT_MASKS
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    root: bytes
    targets: tuple[bytes, ...]
    null: bytes
    #: An empty read-only detached tmpfs the caller keeps, cloned for directories (-1: one is made).
    fd: int = -1
    null_root: bytes | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("RootMasks needs at least one target")
        for t in self.targets:
            _names(t, "RootMasks")

    def expand(self) -> list[RootMask]:
        """The same masks as one ``RootMask`` each."""
        return [RootMask(self.root, t, self.null, self.null_root) for t in self.targets]

    def describe(self) -> str:
        return ("mask " + ", ".join(_rel(self.root, t) for t in self.targets)
                + f" (null device: {_null_where(self.root, self.null, self.null_root)})")

    def path(self) -> str | None:
        return _rel(self.root, self.targets[0]) if len(self.targets) == 1 else None

    def describe_entries(self) -> tuple[tuple[str, str | None], ...]:
        """Each entry's mask, and its path (an error names the failing entry)."""
        return tuple((one.describe(), one.path()) for one in self.expand())

    def encode(self, arena: _Arena) -> Any:
        packed = b"".join(t + b"\0" for t in self.targets)
        return 0, self.fd, (arena.str(self.root), arena.data(packed[:-1], 1), arena.str(self.null),
                            arena.str(self.null_root)), (0, 0, len(self.targets), 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        r, n = _s(arena, args[0]), _s(arena, args[2])
        assert r is not None and n is not None
        off, targets = args[1], []
        for _ in range(vals[2]):
            end = arena.buf.index(0, off)
            targets.append(bytes(arena.buf[off:end]))
            off = end + 1
        return cls(root=r, targets=tuple(targets), null=n, fd=fd, null_root=_s(arena, args[3]))


@dataclass(frozen=True, slots=True)
class RootChdir(Op):
    """chdir to ``target`` resolved inside ``root`` with no magic links (no /proc/self/fd/N)."""

    kind: ClassVar[int] = lib.ISO_OP_ROOT_CHDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    root: bytes
    target: bytes

    def describe(self) -> str:
        return f"chdir {_rel(self.root, self.target)}"

    def path(self) -> str | None:
        return _rel(self.root, self.target)

    def encode(self, arena: _Arena) -> Any:
        return 0, -1, (arena.str(self.root), arena.str(self.target), 0, 0), (0, 0, 0, 0)

    @classmethod
    def decode(cls, flags: int, fd: int, args: Any, vals: Any, arena: _Arena) -> Op:
        r, t = _s(arena, args[0]), _s(arena, args[1])
        assert r is not None and t is not None
        return cls(root=r, target=t)


@dataclass(frozen=True, slots=True)
class SetDumpable(_Vals):
    kind: ClassVar[int] = lib.ISO_OP_SET_DUMPABLE
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    on: int = 0

    def describe(self) -> str:
        return f"prctl PR_SET_DUMPABLE {self.on}"


