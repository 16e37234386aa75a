"""Plan ops that build a new root inside the child, resolving every target in it.

Each target is opened with openat2(RESOLVE_IN_ROOT) in ``csrc/ops_root.c``
and mounted onto by fd, so no path string is followed out of the new root.
The batched ops (``RootMkdirs``, ``RootBinds``, ``RootMasks``) have kinds of
their own, their entry count in ``val2``; a failure report names the entry.
"""

from __future__ import annotations

from . import errors
from ._plan import (ENTRY_CHARDEV, ENTRY_CONTENTS, ENTRY_DIR, ENTRY_FILE, ENTRY_SYMLINK,
                    F_CHROOT_FALLBACK, F_EXIST_OK, F_READONLY, F_RECURSIVE, K, Op, register, text)
from ._slots import ARG, VAL, Fd, Flag, Num, Packed, Str, Strs
from ._record import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import ClassVar

    from ._slots import Slot

__all__ = ["RootStage", "RootMkdir", "RootMkdirs", "RootBind", "RootBinds", "RootMount", "RootMask",
           "RootMasks", "RootChdir", "SetDumpable"]


def _rel(root: bytes | None, path: bytes) -> str:
    if root is None:
        return text(path)
    return text(root.rstrip(b"/") + b"/" + path.lstrip(b"/")) if path != b"." else text(root)


def _names(path: bytes, what: str) -> None:
    if not path or b"\0" in path:
        raise ValueError(f"{what}: bad path {path!r}")


# --- codecs of the batched entries and of filesystem options -------------------------

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


def _unpack_fs_options(buf: bytearray, off: int, n: int) -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for _ in range(n):
        kind = buf[off:off + 1]
        key_end = buf.index(0, off + 1)
        val_end = buf.index(0, key_end + 1)
        key = buf[off + 1:key_end].decode()
        val = buf[key_end + 1:val_end].decode("utf-8", "surrogateescape")
        out.append((key, None if kind == b"f" else val))
        off = val_end + 1
    return tuple(out)


MkdirEntry = tuple[bytes, int, int, "bytes | None"]


def _pack_mkdir_entries(entries: Sequence[MkdirEntry]) -> bytes:
    """Type byte, mode (2 bytes), name, NUL, then the link and a NUL (``ENTRY_DIR``,
    ``ENTRY_FILE``, ``ENTRY_SYMLINK``), the length (4 bytes) and the contents
    (``ENTRY_CONTENTS``), or the 8 ``st_rdev`` bytes (``ENTRY_CHARDEV``)."""
    packed = bytearray()
    for name, type_, mode, link in entries:
        packed += bytes((type_, mode & 0xFF, mode >> 8)) + name + b"\0"
        if type_ == ENTRY_CHARDEV:
            assert link is not None
            packed += link
        elif type_ == ENTRY_CONTENTS:
            assert link is not None
            packed += len(link).to_bytes(4, "little") + link
        else:
            packed += (link or b"") + b"\0"
    return bytes(packed)


def _unpack_mkdir_entries(buf: bytearray, off: int, n: int) -> tuple[MkdirEntry, ...]:
    entries: list[MkdirEntry] = []
    for _ in range(n):
        type_, mode = buf[off], buf[off + 1] | buf[off + 2] << 8
        name_end = buf.index(0, off + 3)
        name = bytes(buf[off + 3:name_end])
        if type_ == ENTRY_CHARDEV:
            entries.append((name, ENTRY_CHARDEV, mode, bytes(buf[name_end + 1:name_end + 9])))
            off = name_end + 9
        elif type_ == ENTRY_CONTENTS:
            size = int.from_bytes(buf[name_end + 1:name_end + 5], "little")
            entries.append((name, ENTRY_CONTENTS, mode, bytes(buf[name_end + 5:name_end + 5 + size])))
            off = name_end + 5 + size
        else:
            link_end = buf.index(0, name_end + 1)
            link = bytes(buf[name_end + 1:link_end])
            entries.append((name, type_, mode, link if type_ == ENTRY_SYMLINK else None))
            off = link_end + 1
    return tuple(entries)


def _pack_pairs(entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    return b"".join(s + b"\0" + t + b"\0" for s, t in entries)


def _unpack_pairs(buf: bytearray, off: int, n: int) -> tuple[tuple[bytes, bytes], ...]:
    out = []
    for _ in range(n):
        s_end = buf.index(0, off)
        t_end = buf.index(0, s_end + 1)
        out.append((bytes(buf[off:s_end]), bytes(buf[s_end + 1:t_end])))
        off = t_end + 1
    return tuple(out)


FS_OPTIONS = (_pack_fs_options, _unpack_fs_options)
MKDIR_ENTRIES = (_pack_mkdir_entries, _unpack_mkdir_entries)
PATH_PAIRS = (_pack_pairs, _unpack_pairs)

_BIND_FLAGS: Mapping[str, Slot] = {"recursive": Flag(F_RECURSIVE), "readonly": Flag(F_READONLY),
                                   "optional": Flag(F_EXIST_OK), "attr_set": Num(VAL(0)),
                                   "attr_clr": Num(VAL(1))}


# --- the ops ------------------------------------------------------------------------

@register
@dataclass(frozen=True, slots=True)
class RootStage(Op):
    """tmpfs on ``base``, pivot into it: old root at /oldroot, new root built at /newroot."""

    kind: ClassVar[int] = K.ROOT_STAGE
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {"base": Str(ARG(0)), "chroot": Flag(F_CHROOT_FALLBACK)}
    base: bytes
    chroot: bool = False

    def describe(self) -> str:
        how = "without pivot_root" if self.chroot else "with pivot_root"
        return f"stage the new root on {text(self.base)} ({how})"

    def path(self) -> str | None:
        return text(self.base)


@register
@dataclass(frozen=True, slots=True)
class RootMkdir(Op):
    """Create ``name`` in ``parent``, both resolved inside ``root`` (type ``ENTRY_DIR``,
    ``ENTRY_FILE`` or ``ENTRY_SYMLINK``)."""

    kind: ClassVar[int] = K.ROOT_MKDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "root": Str(ARG(0)), "parent": Str(ARG(1)), "name": Str(ARG(2)), "link": Str(ARG(3)),
        "mode": Num(VAL(0)), "type": Num(VAL(1))}
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


@register
@dataclass(frozen=True, slots=True)
class RootMkdirs(Op):
    """Several ``RootMkdir`` entries of one directory, made through one fd.

    ``entries``: ``(name, type, mode, link or None)``; each name is one
    path component, so nothing but the directory is resolved.
    ``ENTRY_CONTENTS`` is a new file (which must not exist) holding the
    bytes in place of the link; ``ENTRY_CHARDEV`` a character device, its
    ``st_rdev`` as eight bytes little-endian.
    """

    kind: ClassVar[int] = K.ROOT_MKDIRS
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "root": Str(ARG(0)), "parent": Str(ARG(1)),
        "entries": Packed(ARG(2), count=VAL(2), codec=MKDIR_ENTRIES)}
    root: bytes | None
    parent: bytes
    entries: tuple[MkdirEntry, ...]

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
        return f"create {text(names)} in {_rel(self.root, self.parent)}"

    def path(self) -> str | None:
        return _rel(self.root, self.parent)

    def describe_entries(self) -> tuple[tuple[str, str | None], ...]:
        """What each entry makes, and its path (an error names the failing entry)."""
        paths = [_rel(self.root, self.parent.rstrip(b"/") + b"/" + e[0]) for e in self.entries]
        return tuple((f"{_ENTRY_VERBS[e[1]]} {p}", p) for e, p in zip(self.entries, paths))


@register
@dataclass(frozen=True, slots=True)
class RootBind(Op):
    """Bind ``source`` (inside ``source_root``, or as is if None) onto ``target`` inside ``root``.

    ``fd`` >= 0 (in a container's plans a ``SpawnFd``, see ``_idmount``): a
    detached clone of the source the parent made, attributes set and
    idmapped with the child's user namespace, attached on ``target``
    instead; -1 there (the parent could not clone it) binds as without.
    """

    kind: ClassVar[int] = K.ROOT_BIND
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "source_root": Str(ARG(0)), "source": Str(ARG(1)), "root": Str(ARG(2)),
        "target": Str(ARG(3)), **_BIND_FLAGS, "fd": Fd()}
    source_root: bytes | None
    source: bytes
    root: bytes | None
    target: bytes
    recursive: bool = True
    readonly: bool = False
    optional: bool = False
    attr_set: int = 0
    attr_clr: int = 0
    fd: int = -1

    def describe(self) -> str:
        ro = " read-only" if self.readonly else ""
        idmapped = " (idmapped where the filesystem allows)" if self.fd != -1 else ""
        return f"bind{ro} {_rel(self.source_root, self.source)} on {_rel(self.root, self.target)}{idmapped}"

    def path(self) -> str | None:
        return _rel(self.root, self.target)


@register
@dataclass(frozen=True, slots=True)
class RootBinds(Op):
    """``RootBind`` of each ``(source, target)`` pair, all with the same roots and flags.

    Both roots are opened once for all, so a pair must not mount over
    either root: meant for paths below mounts the plan made itself (/dev's
    nodes, the OCI read-only paths in /proc), not for a caller's paths.
    """

    kind: ClassVar[int] = K.ROOT_BINDS
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "source_root": Str(ARG(0)), "entries": Packed(ARG(1), count=VAL(2), codec=PATH_PAIRS),
        "root": Str(ARG(2)), **_BIND_FLAGS}
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


@register
@dataclass(frozen=True, slots=True)
class RootMount(Op):
    """A new ``fstype`` filesystem (fsopen/fsmount) attached at ``target`` inside ``root``.

    ``fd`` >= 0: instead, a clone of that detached mount, which the caller
    keeps open (``RootFS``'s shared read-only root).
    """

    kind: ClassVar[int] = K.ROOT_MOUNT
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "fstype": Str(ARG(0)), "source": Str(ARG(1)), "root": Str(ARG(2)), "target": Str(ARG(3)),
        "attrs": Num(VAL(0)), "options": Packed(VAL(1), count=VAL(2), codec=FS_OPTIONS),
        "optional": Flag(F_EXIST_OK), "fd": Fd()}
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
            return (f"attach a clone of the prepared {text(self.fstype)} (fd {self.fd}) on "
                    f"{_rel(self.root, self.target)}")
        return f"mount {text(self.fstype)} on {_rel(self.root, self.target)}"

    def path(self) -> str | None:
        return _rel(self.root, self.target)


def _null_where(root: bytes | None, null: bytes, null_root: bytes | None) -> str:
    """Where a mask's null device is, for its description."""
    return _rel(root if null_root is None else null_root, null)


@register
@dataclass(frozen=True, slots=True)
class RootMask(Op):
    """Hide ``target`` inside ``root``: read-only empty tmpfs on a directory, ``null`` on a file.

    ``null`` is resolved inside ``null_root`` (None: inside ``root``), never
    as is, and must be the character device 1:3 once opened, else the op
    fails with ENODEV: an image's symlinks cannot make it a host file.
    """

    kind: ClassVar[int] = K.ROOT_MASK
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "root": Str(ARG(0)), "target": Str(ARG(1)), "null": Str(ARG(2)), "null_root": Str(ARG(3))}
    root: bytes
    target: bytes
    null: bytes
    null_root: bytes | None = None

    def describe(self) -> str:
        return (f"mask {_rel(self.root, self.target)} "
                f"(null device: {_null_where(self.root, self.null, self.null_root)})")

    def path(self) -> str | None:
        return _rel(self.root, self.target)


@register
@dataclass(frozen=True, slots=True)
class RootMasks(Op):
    """``RootMask`` of each of ``targets``: the root opened once, one tmpfs for the directories.

    As with ``RootBinds``, no target may be the root itself: meant for the
    OCI default masked paths, below the /proc and /sys the plan mounted.
    ``null`` and ``null_root`` as for ``RootMask``; the null device is opened
    and checked once for all.
    """

    kind: ClassVar[int] = K.ROOT_MASKS
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {
        "root": Str(ARG(0)), "targets": Strs(ARG(1), count=VAL(2)), "null": Str(ARG(2)),
        "fd": Fd(), "null_root": Str(ARG(3))}
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


@register
@dataclass(frozen=True, slots=True)
class RootChdir(Op):
    """chdir to ``target`` resolved inside ``root`` with no magic links (no /proc/self/fd/N)."""

    kind: ClassVar[int] = K.ROOT_CHDIR
    error: ClassVar[type[errors.SetupError]] = errors.MountError
    layout: ClassVar[Mapping[str, Slot]] = {"root": Str(ARG(0)), "target": Str(ARG(1))}
    root: bytes
    target: bytes

    def describe(self) -> str:
        return f"chdir {_rel(self.root, self.target)}"

    def path(self) -> str | None:
        return _rel(self.root, self.target)


@register
@dataclass(frozen=True, slots=True)
class SetDumpable(Op):
    """prctl(PR_SET_DUMPABLE): 0 keeps what is already in a container from ptracing the
    process, or opening its /proc/<pid>/exe, until its execve."""

    kind: ClassVar[int] = K.SET_DUMPABLE
    error: ClassVar[type[errors.SetupError]] = errors.IdentityError
    layout: ClassVar[Mapping[str, Slot]] = {"on": Num(VAL(0))}
    on: int = 0

    def describe(self) -> str:
        return f"prctl PR_SET_DUMPABLE {self.on}"
