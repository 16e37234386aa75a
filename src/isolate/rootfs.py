"""``RootFS``: the root filesystem a container sees, built in its own mount namespace.

A ``RootFS`` is a validated description; nothing is mounted in the caller's
namespace.  At spawn time it becomes plan ops (see ``csrc/ops_root.c``) that
the child runs in its new mount namespace:

1. the new root is mounted right on a staging directory (``/tmp``), host
   paths being read where they are.  Where a host path the build reads lies
   under that directory, or with an overlay, a tmpfs is mounted there first
   and the child pivots into it, keeping the old root at ``/oldroot`` and
   building at ``/newroot`` (bubblewrap's layout);
2. every mount target is opened with
   ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` inside the new root,
   so a symlink planted in an image can never send a mount outside it;
3. ``pivot_root`` into the new root and the old root is detached, so no
   path, fd or ``..`` leads back to the host's tree.

A host root started again (from a ``RootFS``'s second use) whose containers
can never remount anything (no CAP_SYS_ADMIN, no user namespace: see
``Container``) is not rebuilt each time: its read-only tmpfs, with the mount
points and /etc's files, is made once in the caller (detached, mounted
nowhere) and each child attaches a clone of it.

Where ``pivot_root`` cannot work (the initramfs rootfs), the root is moved
over ``/`` and entered with ``chroot`` instead; ``Container`` states which
(``Result.root_mode``).  A chroot is weaker: the host tree still exists in
the mount namespace, hidden below the new root.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import stat
import threading
from pathlib import Path

from ._record import dataclass
from . import _plan as P
from . import _spawn
from ._plan_root import RootBinds, RootMasks, RootMkdirs
from .errors import ConfigError, UnsupportedError
from .process import _fsencode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from typing import Any, TypeAlias

    from ._owner import Record

__all__ = ["RootFS", "Changes", "OCI_MASKED_PATHS", "OCI_READONLY_PATHS", "HOST_DIRS", "HOST_ETC",
           "SHM_SIZE", "TMP_SIZE", "HOME_SIZE", "OVERLAY_SIZE"]

StrPath: TypeAlias = "str | os.PathLike[str]"

#: Paths hidden by the OCI runtime spec's default (runc, crun, Docker).
OCI_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
#: Paths made read-only by the OCI runtime spec's default.
OCI_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

#: Host top-level directories ``RootFS.host()`` binds read-only (or recreates as symlinks).
HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: Entries of the host's /etc that ``RootFS.host()`` binds read-only, where they exist.
HOST_ETC = (
    "passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "ld.so.cache",
    "ld.so.conf", "ssl", "alternatives", "localtime", "timezone", "mime.types", "protocols",
    "services",
)

#: Regular files of /etc up to this size are copied into the new root, larger ones bound
#: read-only.  Measured per start: writing a file costs ~13 us plus ~0.9 us per KiB, a file
#: mount point and a bind ~37 us, so the break-even is near 48 KiB (mime.types, 72 KiB, is bound).
ETC_COPY_MAX = 48 << 10

#: The host's device nodes in the container's fresh /dev (made with mknod, or bound in a user namespace).
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")

_MA: Any = P.lib
_NOSUID_NODEV = _MA.MOUNT_ATTR_NOSUID | _MA.MOUNT_ATTR_NODEV
_NOSUID_NODEV_NOEXEC = _NOSUID_NODEV | _MA.MOUNT_ATTR_NOEXEC
_RDONLY = _MA.MOUNT_ATTR_RDONLY
#: ``atime=`` values and their MOUNT_ATTR_* (relatime is the kernel's default, 0).
_ATIME = {"relatime": 0, "noatime": _MA.MOUNT_ATTR_NOATIME, "strictatime": _MA.MOUNT_ATTR_STRICTATIME}
_ATIME_MASK = _MA.MOUNT_ATTR_NOATIME | _MA.MOUNT_ATTR_STRICTATIME

#: Default tmpfs sizes.  A tmpfs without one may take half of the host's RAM,
#: and its pages are not any process's: no OOM kill frees them while the
#: container lives, and without a memory limit nothing charges them to it.
#: So each writable tmpfs of a container is bounded by default; the most one
#: container can keep in host memory that way is their sum (832 MiB, 1.8 GiB
#: with an overlay).  /dev/shm as Docker's; /tmp large enough for a compiler's
#: or a package build's scratch files; $HOME for caches and dotfiles; the
#: overlay's upper layer (everything written over the root) for a package
#: installation.  Each can be changed: ``RootFS.host(tmp_size=, home_size=)``,
#: ``tmpfs(size=)``, ``mount_options("/dev/shm", size=)``, ``overlay(size=)``.
SHM_SIZE = "64m"
TMP_SIZE = "512m"
HOME_SIZE = "256m"
OVERLAY_SIZE = "1g"

#: The mounts a RootFS makes itself, as ``RootFS.mount_options()`` names them.
BUILTIN_MOUNTS = ("/proc", "/sys", "/dev", "/dev/pts", "/dev/shm")


def _fs(value: object, what: str) -> bytes:
    b = _fsencode(value, what)
    if not b:
        raise ConfigError(f"{what} must be a non-empty path, got {value!r}")
    return b


def container_path(value: object, what: str) -> bytes:
    """A path inside the container: absolute, normalized, no ``..``; returned without the
    leading slash (``b"usr/bin"``; ``b"."`` for the root itself)."""
    b = _fs(value, what)
    if not b.startswith(b"/"):
        raise ConfigError(f"{what} must be an absolute path inside the container, got {value!r}")
    parts = [p for p in b.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise ConfigError(f"{what} must not contain '..' (it would leave the root): {value!r}")
    return b"/".join(parts) or b"."


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be True or False, got {value!r}")
    return value


def _attrs(what: str, *, readonly: object = False, nosuid: object = False, nodev: object = False,
           noexec: object = False, atime: object = None) -> int:
    """MOUNT_ATTR_* for the flags a caller asked for; ``what`` names the mount in errors."""
    attrs = 0
    for name, value, bit in (("readonly", readonly, _RDONLY), ("nosuid", nosuid, _MA.MOUNT_ATTR_NOSUID),
                             ("nodev", nodev, _MA.MOUNT_ATTR_NODEV),
                             ("noexec", noexec, _MA.MOUNT_ATTR_NOEXEC)):
        if _flag(value, f"{what} {name}"):
            attrs |= bit
    if atime is not None:
        if atime not in _ATIME:
            raise ConfigError(f"{what} atime must be one of {', '.join(sorted(_ATIME))}, got {atime!r}")
        attrs |= _ATIME[atime]
    return attrs


def _mode(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o7777:
        raise ConfigError(f"{what} must be an integer up to 0o7777, got {value!r}")
    return value


def _size(value: object, what: str) -> str | None:
    """A tmpfs size: bytes as an int, or a string tmpfs accepts (``64m``, ``50%``)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"{what} must be a positive number of bytes, got {value!r}")
        return str(value)
    if isinstance(value, str):
        body = value[:-1] if value[-1:].lower() in ("k", "m", "g", "%") else value
        if body.isdigit() and int(body) > 0:
            return value
    raise ConfigError(f"{what} must be bytes (int) or like '64m' or '50%', got {value!r}")


@dataclass(frozen=True, slots=True)
class _Bind:
    source: bytes          # absolute host path
    target: bytes          # container path, relative form
    readonly: bool
    recursive: bool
    is_dir: bool
    attrs: int = 0         # MOUNT_ATTR_NOSUID/NODEV/NOEXEC to set (the rest is the source's)


@dataclass(frozen=True, slots=True)
class _Tmpfs:
    target: bytes
    size: str | None
    mode: int
    attrs: int = _NOSUID_NODEV     # MOUNT_ATTR_* of the new mount, atime included


@dataclass(frozen=True, slots=True)
class _Special:
    """A filesystem that is not a plain tmpfs or bind: ``mqueue`` or ``cgroup``."""

    kind: str
    target: bytes
    attrs: int


@dataclass(frozen=True, slots=True)
class _Builtin:
    """Flags and options of one of the mounts RootFS makes itself."""

    attrs: int
    size: str | None = None
    mode: int | None = None
    gid: int | None = None


_BUILTIN_DEFAULTS = {
    "/proc": _Builtin(_NOSUID_NODEV_NOEXEC),
    "/sys": _Builtin(_NOSUID_NODEV_NOEXEC | _RDONLY),
    "/dev": _Builtin(_MA.MOUNT_ATTR_NOSUID | _MA.MOUNT_ATTR_NOEXEC, size="64k", mode=0o755),
    "/dev/pts": _Builtin(_MA.MOUNT_ATTR_NOSUID | _MA.MOUNT_ATTR_NOEXEC, mode=0o620),
    "/dev/shm": _Builtin(_NOSUID_NODEV, size=SHM_SIZE, mode=0o1777),
}


@dataclass(frozen=True, slots=True)
class _Overlay:
    upper: Path | None     # None: upper layer on a tmpfs, discarded with the container
    size: str | None


@dataclass(frozen=True, slots=True)
class Changes:
    """What a sandbox did to an overlay: paths inside the container, sorted."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]


@dataclass(slots=True)
class _Ctx:
    """Where things are in the child while the new root is built."""

    new: bytes             # the new root (absolute in the staging root)
    old: bytes             # root under which host paths are resolved
    stage: bytes           # staging directory (absolute)
    chroot: bool
    userns: bool
    new_net: bool
    new_pid: bool
    console: bytes | None  # host path of the terminal to bind at /dev/console
    # The new root is mounted right on ``stage`` and host paths are read in
    # place (``old`` is ``/``): no staging tmpfs and no first pivot_root.
    direct: bool = False
    new_ipc: bool = True   # the container has an ipc namespace of its own (mqueue)
    new_cgroupns: bool = False
    # The container's cgroup: every hierarchy's mount point -> its directory
    # there (``Cgroup.paths``); None when the process stays in the caller's.
    cgroup_paths: tuple[tuple[str, str], ...] | None = None
    # The caller allows a read-only root shared with other containers (see
    # RootFS._shareable): nothing in the container can ever remount it.
    shared_root: bool = False


class RootFS:
    """The root filesystem of a container: host binds or a directory, plus mounts.

    Build one with ``RootFS.host()`` (the host's /usr, /bin, /lib*, a minimal
    /etc, read-only: no image needed) or ``RootFS.from_directory(path)`` (an
    unpacked image), then add ``bind()``, ``tmpfs()`` and ``overlay()``; each
    returns the ``RootFS`` so calls chain.  Every argument is checked when
    given (``ConfigError``), before any namespace or mount exists.

    The container always gets a fresh /proc, /sys read-only, a minimal /dev
    (null, zero, full, random, urandom, tty, pts with its own instance, ptmx,
    shm, console when stdio is a terminal), and the OCI default masked and
    read-only paths, unless turned off (``proc=False`` ...); ``mount_options()``
    changes their flags.  ``mqueue()``, ``cgroupfs()``, ``mask_paths()`` and
    ``readonly_paths()`` add what OCI configs ask for.

    Mounts are made in this order: the root, /proc, /sys, /dev, then those
    added by ``bind()``, ``tmpfs()``, ``mqueue()`` and ``cgroupfs()`` in the
    order of the calls, then the masked and read-only paths.  A container
    with its own network namespace and no user namespace mounts /sys last
    (after the switch to the new root), unless something is mounted below it.
    """

    def __init__(self, *, directory: StrPath | None = None, readonly: bool = True,
                 proc: bool = True, sys: bool = True, dev: bool = True,
                 oci_masks: bool = True) -> None:
        """Prefer ``RootFS.host()`` and ``RootFS.from_directory()``."""
        self._directory: Path | None = None
        if directory is not None:
            d = Path(os.fsdecode(_fs(directory, "rootfs")))
            if not d.is_absolute():
                d = Path.cwd() / d
            if not d.exists():
                raise ConfigError(f"rootfs: {str(d)!r} does not exist")
            if not d.is_dir():
                raise ConfigError(f"rootfs: {str(d)!r} is not a directory")
            self._directory = Path(os.path.realpath(d))
        self.readonly = bool(readonly)
        self.proc, self.sys, self.dev, self.oci_masks = bool(proc), bool(sys), bool(dev), bool(oci_masks)
        self._host_dirs: list[tuple[str, bytes | None]] = []   # (name, symlink target or None)
        # (name, "dir" | "file" | "link", file contents or link target)
        self._host_etc: list[tuple[str, str, bytes]] = []
        self._mounts: list[_Bind | _Tmpfs | _Special] = []     # in the order of the calls
        self._builtin: dict[str, _Builtin] = dict(_BUILTIN_DEFAULTS)
        self._masked: list[bytes] = []
        self._readonly_paths: list[bytes] = []
        self._gen = 0          # bumped by every builder call: part of the op cache key
        self._overlay: _Overlay | None = None
        self._created: list[Path] = []   # overlay directories made for the current run
        self._rec: Record | None = None  # the owner record of the run's overlay work directories
        self._cache: dict[tuple[object, ...], P.OpSeq] = {}
        self._in_place: dict[tuple[object, ...], bool] = {}
        self._used_once: set[tuple[object, ...]] = set()
        self._master: tuple[object, int] | None = None   # (its contents, fd): see _shared_master
        self._empty = -1       # fd: see _empty_master

    def __repr__(self) -> str:
        src = f"directory={str(self._directory)!r}" if self._directory else "host"
        return f"<isolate.RootFS {src} binds={len(self._binds)} tmpfs={len(self._tmpfs)}>"

    @property
    def _binds(self) -> list[_Bind]:
        return [m for m in self._mounts if isinstance(m, _Bind)]

    @property
    def _tmpfs(self) -> list[_Tmpfs]:
        return [m for m in self._mounts if isinstance(m, _Tmpfs)]

    def _add(self, mount: _Bind | _Tmpfs | _Special) -> RootFS:
        self._mounts.append(mount)
        self._gen += 1
        return self

    # --- constructors --------------------------------------------------------

    @classmethod
    def host(cls, *, etc: Sequence[str] = HOST_ETC, tmp: bool = True,
             home: StrPath | None = None, tmp_size: int | str | None = TMP_SIZE,
             home_size: int | str | None = HOME_SIZE) -> RootFS:
        """The host's /usr, /bin, /sbin, /lib* and a minimal /etc, read-only.

        Merged-/usr hosts (``/bin -> usr/bin``) get the same symlinks.  Small
        regular files of /etc are copied when the ``RootFS`` is made (a snapshot;
        writing them costs less than binding them), directories are bound.  ``tmp``
        puts a tmpfs of ``tmp_size`` on /tmp (default ``TMP_SIZE``, 512 MiB),
        ``home`` another, of ``home_size`` (default ``HOME_SIZE``, 256 MiB),
        on that path (the caller's ``$HOME`` inside); sizes are bytes or as
        tmpfs takes them (``"1g"``, ``"10%"`` of RAM), None for tmpfs's own
        default, half of RAM (unbounded, for a sandbox).  /dev/shm has
        ``SHM_SIZE`` (64 MiB; ``mount_options("/dev/shm", size=...)``).  The
        root itself is an empty read-only tmpfs.  Writing past a size fails
        with ENOSPC.
        """
        tmp_size, home_size = _size(tmp_size, "tmp_size"), _size(home_size, "home_size")
        self = cls()
        for name in HOST_DIRS:
            p = Path("/", name)
            if p.is_symlink():
                self._host_dirs.append((name, os.fsencode(os.readlink(p))))
            elif p.is_dir():
                self._host_dirs.append((name, None))
        if isinstance(etc, str):
            raise ConfigError(f"etc must be a list of names in /etc, got {etc!r}")
        for name in etc:
            if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
                raise ConfigError(f"etc: {name!r} is not a name in /etc")
            p = Path("/etc", name)
            try:
                if p.is_symlink() and os.path.realpath(p).startswith("/usr/"):
                    # e.g. localtime -> /usr/share/zoneinfo/...: the same link works inside.
                    self._host_etc.append((name, "link", os.fsencode(os.readlink(p))))
                elif p.is_dir():
                    self._host_etc.append((name, "dir", b""))
                elif p.is_file() and p.stat().st_size <= ETC_COPY_MAX:
                    # Small files are copied: a write costs a fraction of a bind mount.
                    self._host_etc.append((name, "file", p.read_bytes()))
                elif p.exists():
                    self._host_etc.append((name, "dir" if p.is_dir() else "bind", b""))
            except OSError:
                continue     # unreadable or vanished: left out, as if absent
        if tmp:
            self.tmpfs("/tmp", size=tmp_size)
        if home is not None:
            self.tmpfs(home, mode=0o700, size=home_size)
        return self

    @classmethod
    def from_directory(cls, path: StrPath, *, readonly: bool = True, **options: bool) -> RootFS:
        """An unpacked image at ``path`` (a directory) as the root, read-only by default.

        Mount points the image lacks (/proc, /dev, bind targets) are created in
        the directory, as bubblewrap does; use ``overlay()`` to leave it untouched.
        The image is untrusted: every path the build opens in it is resolved
        inside it (its symlinks cannot lead out), and it is mounted nodev, so a
        device node it carries never opens (with ``dev=False`` the image's own
        /dev nodes do not work either: ``bind()`` the host's devices instead).
        """
        return cls(directory=path, readonly=readonly, **options)

    # --- builders ------------------------------------------------------------

    def bind(self, source: StrPath, target: StrPath | None = None, *, readonly: bool = False,
             recursive: bool = True, nosuid: bool = False, nodev: bool = False,
             noexec: bool = False) -> RootFS:
        """Bind the host's ``source`` at ``target`` (default: the same path) in the container.

        ``readonly``, ``nosuid``, ``nodev``, ``noexec``: set that flag on the
        bind (on every mount below it too when ``recursive``); False leaves the
        flag as the source mount has it.  Raises ``ConfigError`` for a missing
        source, a target outside the container or a flag that is not a bool.
        """
        attrs = _attrs("bind", nosuid=nosuid, nodev=nodev, noexec=noexec)
        src = _fs(source, "bind source")
        try:
            st = os.stat(src)
        except OSError as e:
            raise ConfigError(f"bind source {os.fsdecode(src)!r}: {e.strerror}") from None
        real = os.path.realpath(src)
        dst = container_path(src if target is None else target, "bind target")
        if dst == b".":
            raise ConfigError(f"bind target must not be the root: {target!r}")
        return self._add(_Bind(source=real, target=dst, readonly=bool(readonly),
                               recursive=bool(recursive), is_dir=stat.S_ISDIR(st.st_mode), attrs=attrs))

    def tmpfs(self, target: StrPath, *, size: int | str | None = None, mode: int = 0o1777,
              readonly: bool = False, nosuid: bool = True, nodev: bool = True, noexec: bool = False,
              atime: str | None = None) -> RootFS:
        """A fresh tmpfs at ``target``; ``size`` in bytes or as tmpfs takes it (``"64m"``).

        ``readonly``, ``nosuid``, ``nodev``, ``noexec``: the mount's flags
        (nosuid and nodev by default); ``atime``: ``"relatime"`` (the
        default), ``"noatime"`` or ``"strictatime"``.  A read-only tmpfs
        stays empty (its root directory has ``mode``).  Raises ``ConfigError``
        naming the bad argument.
        """
        dst = container_path(target, "tmpfs target")
        if dst == b".":
            raise ConfigError(f"tmpfs target must not be the root: {target!r}")
        mode = _mode(mode, "tmpfs mode")
        attrs = _attrs("tmpfs", readonly=readonly, nosuid=nosuid, nodev=nodev, noexec=noexec,
                       atime=atime)
        return self._add(_Tmpfs(target=dst, size=_size(size, "tmpfs size"), mode=mode, attrs=attrs))

    def mqueue(self, target: StrPath = "/dev/mqueue", *, readonly: bool = False, nosuid: bool = True,
               nodev: bool = True, noexec: bool = True) -> RootFS:
        """The POSIX message queue filesystem (mq_overview(7)) at ``target``.

        It shows the queues of the container's ipc namespace.  In a user
        namespace without an ipc namespace of its own the kernel refuses the
        mount, and the host's /dev/mqueue is bound instead (as runc does; the
        container fails to start if the host has none).  Flags as for ``tmpfs()``.
        """
        dst = container_path(target, "mqueue target")
        if dst == b".":
            raise ConfigError(f"mqueue target must not be the root: {target!r}")
        attrs = _attrs("mqueue", readonly=readonly, nosuid=nosuid, nodev=nodev, noexec=noexec)
        return self._add(_Special(kind="mqueue", target=dst, attrs=attrs))

    def cgroupfs(self, target: StrPath = "/sys/fs/cgroup", *, readonly: bool = True, nosuid: bool = True,
                 nodev: bool = True, noexec: bool = True) -> RootFS:
        """The container's own cgroup at ``target``, as runc mounts it for type "cgroup".

        Cgroup v1 and hybrid hosts: a tmpfs (mode 0755, the flags but never
        read-only) holding one bind of the container's directory per v1
        hierarchy, named as the hierarchy's mount point
        (``target/memory`` ...; co-mounted controllers get symlinks, as
        ``cpu -> cpu,cpuacct``).  Pure v2: a cgroup2 mount when the container
        has a cgroup namespace (it shows the container's cgroup as its root),
        else a bind of the container's directory.  The container's cgroup is
        the one the ``Container`` has (``limits=`` or ``cgroup=``) or, in a
        hierarchy it does not join, the caller's own.  ``readonly`` (the
        default) and the other flags apply to the cgroup mounts.
        """
        dst = container_path(target, "cgroupfs target")
        if dst == b".":
            raise ConfigError(f"cgroupfs target must not be the root: {target!r}")
        attrs = _attrs("cgroupfs", readonly=readonly, nosuid=nosuid, nodev=nodev, noexec=noexec)
        return self._add(_Special(kind="cgroup", target=dst, attrs=attrs))

    def mount_options(self, target: str, *, readonly: bool | None = None, nosuid: bool | None = None,
                      nodev: bool | None = None, noexec: bool | None = None, atime: str | None = None,
                      size: int | str | None = None, mode: int | None = None,
                      gid: int | None = None) -> RootFS:
        """Change the flags or options of a mount the RootFS makes itself.

        ``target`` is one of ``/proc``, ``/sys``, ``/dev``, ``/dev/pts`` and
        ``/dev/shm``; an argument left None keeps its default (/proc:
        nosuid, nodev, noexec; /sys: those and read-only; /dev: nosuid,
        noexec, size 64k, mode 0755; /dev/pts: nosuid, noexec, mode 0620;
        /dev/shm: nosuid, nodev, size ``SHM_SIZE`` (64m, as Docker's), mode
        1777; all relatime).  ``size``: /dev and /dev/shm (bytes, or as
        tmpfs takes it: ``"256m"``; ``"50%"`` of RAM lifts the bound);
        ``mode``: /dev, /dev/pts, /dev/shm; ``gid`` (owner
        group of new ptys): /dev/pts.  Raises ``ConfigError`` naming the
        target and the argument it cannot take.
        """
        if target not in _BUILTIN_DEFAULTS:
            raise ConfigError(f"mount_options target must be one of {', '.join(BUILTIN_MOUNTS)}, "
                              f"got {target!r}")
        on = {"/proc": self.proc, "/sys": self.sys}.get(target, self.dev)
        if not on:
            raise ConfigError(f"mount_options {target!r}: the RootFS makes no {target} "
                              f"(it was turned off)")
        cur = self._builtin[target]
        attrs = cur.attrs
        what = f"mount_options {target!r}"
        for name, value, bit in (("readonly", readonly, _RDONLY), ("nosuid", nosuid, _MA.MOUNT_ATTR_NOSUID),
                                 ("nodev", nodev, _MA.MOUNT_ATTR_NODEV),
                                 ("noexec", noexec, _MA.MOUNT_ATTR_NOEXEC)):
            if value is not None:
                attrs = attrs | bit if _flag(value, f"{what} {name}") else attrs & ~bit
        if atime is not None:
            attrs = (attrs & ~_ATIME_MASK) | _attrs(what, atime=atime)
        for name, option, allowed in (("size", size, ("/dev", "/dev/shm")),
                                      ("mode", mode, ("/dev", "/dev/pts", "/dev/shm")),
                                      ("gid", gid, ("/dev/pts",))):
            if option is not None and target not in allowed:
                raise ConfigError(f"{what}: {name} applies only to {', '.join(allowed)}, got {option!r}")
        if gid is not None and (not isinstance(gid, int) or isinstance(gid, bool)
                                or not 0 <= gid < 2**32 - 1):
            raise ConfigError(f"{what} gid must be a group id (int), got {gid!r}")
        self._builtin[target] = _Builtin(
            attrs=attrs, size=cur.size if size is None else _size(size, f"{what} size"),
            mode=cur.mode if mode is None else _mode(mode, f"{what} mode"),
            gid=cur.gid if gid is None else gid)
        self._gen += 1
        return self

    def mask_paths(self, *paths: StrPath) -> RootFS:
        """Hide ``paths`` in the container: a file gets /dev/null over it, a directory an
        empty read-only tmpfs (as the OCI ``linux.maskedPaths``).  A path the
        container lacks is left alone (not created).  Applied after every mount,
        in addition to the OCI default list unless ``oci_masks=False``."""
        self._masked += self._below_root(paths, "masked path", "")
        self._gen += 1
        return self

    def readonly_paths(self, *paths: StrPath) -> RootFS:
        """Make ``paths`` read-only in the container (a read-only bind of each onto itself,
        with the mounts below it), as the OCI ``linux.readonlyPaths``.  A path the
        container lacks is left alone.  Applied after every mount, in addition
        to the OCI default list unless ``oci_masks=False``."""
        self._readonly_paths += self._below_root(paths, "read-only path", " (use readonly=True)")
        self._gen += 1
        return self

    @staticmethod
    def _below_root(paths: tuple[StrPath, ...], what: str, hint: str) -> list[bytes]:
        """``paths`` as container paths; ``ConfigError`` naming ``what`` for the root itself."""
        targets = [container_path(p, what) for p in paths]
        if b"." in targets:
            raise ConfigError(f"{what} must not be the root{hint}")
        return targets

    def overlay(self, upper: StrPath | None = None, *,
                size: int | str | None = OVERLAY_SIZE) -> RootFS:
        """A writable layer over this root.

        ``upper=None`` keeps the changes on a tmpfs of ``size`` (default
        ``OVERLAY_SIZE``, 1 GiB; bytes or as tmpfs takes it; None: half of
        RAM) that vanishes with the container: writing past it fails with
        ENOSPC.  ``upper=DIR`` keeps them in ``DIR/upper`` (with a
        work directory ``DIR/work``, removed after the run) for ``changes()``.
        On a host root, each bound directory (/usr, /bin ...) gets its layer.
        """
        up = None
        if upper is not None:
            up = Path(os.fsdecode(_fs(upper, "overlay upper")))
            if not up.is_absolute():
                up = Path.cwd() / up
            if not up.is_dir():
                raise ConfigError(f"overlay upper: {str(up)!r} is not an existing directory")
            up = Path(os.path.realpath(up))
            if self._directory is not None and (up == self._directory or
                                                self._directory in up.parents):
                raise ConfigError(f"overlay upper {str(up)!r} must not be inside the rootfs")
        self._overlay = _Overlay(upper=up, size=_size(size, "overlay size"))
        self.readonly = False    # the layer exists to be written
        return self

    @property
    def directory(self) -> Path | None:
        """The image directory, or None for a host root."""
        return self._directory

    def changes(self) -> Changes:
        """What the sandbox added, changed and deleted, read from a kept overlay layer.

        Deletions are overlayfs whiteouts (0:0 character devices) and opaque
        directories.  Raises ``ConfigError`` without ``overlay(upper=DIR)``.
        """
        if self._overlay is None or self._overlay.upper is None:
            raise ConfigError("changes() needs overlay(upper=DIR)")
        upper = self._overlay.upper / "upper"
        lowers = self._lower_dirs()
        # Mount points made for the container's own mounts are not the sandbox's doing.
        ours = self._mount_points()
        added: list[str] = []
        changed: list[str] = []
        deleted: list[str] = []
        if not upper.is_dir():
            return Changes(added=(), changed=(), deleted=())
        for dirpath, dirnames, filenames in os.walk(upper):
            rel = Path(dirpath).relative_to(upper)
            for name in sorted(dirnames + filenames):
                p = Path(dirpath, name)
                inside = "/" + str(rel / name) if str(rel) != "." else "/" + name
                lower = self._lower_for(lowers, inside)
                st = p.lstat()
                if inside in ours and (stat.S_ISDIR(st.st_mode) or st.st_size == 0):
                    if not stat.S_ISDIR(st.st_mode) or not any(p.iterdir()):
                        continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    deleted.append(inside)
                elif lower is not None and os.path.lexists(lower):
                    if stat.S_ISDIR(st.st_mode) and not _opaque(p):
                        continue     # a directory only traversed to reach a change below
                    changed.append(inside)
                else:
                    added.append(inside)
        return Changes(added=tuple(sorted(added)), changed=tuple(sorted(changed)),
                       deleted=tuple(sorted(deleted)))

    def _mount_points(self) -> set[str]:
        points = set()
        targets = [m.target for m in self._mounts]
        targets += [b"proc"] * self.proc + [b"sys"] * self.sys + [b"dev"] * self.dev
        for t in targets:
            parts = t.split(b"/")
            for i in range(1, len(parts) + 1):
                points.add("/" + os.fsdecode(b"/".join(parts[:i])))
        return points

    def _lower_dirs(self) -> dict[str, Path]:
        if self._directory is not None:
            return {"": self._directory}
        return {name: Path("/", name) for name, link in self._host_dirs if link is None}

    def _lower_for(self, lowers: dict[str, Path], inside: str) -> str | None:
        if "" in lowers:
            return str(lowers[""]) + inside
        top, _, rest = inside.lstrip("/").partition("/")
        if top in lowers:
            return str(lowers[top] / rest) if rest else str(lowers[top])
        return None

    # --- plan ----------------------------------------------------------------

    def _prepare(self) -> None:
        """Create the kept overlay directories (parent side, before the spawn).

        The work directories made here are named in an owner record of this
        process (see ``isolate.gc``), and dead owners' work directories in
        this layer are reclaimed first.  The upper layer is the caller's
        data: never recorded, never reclaimed.
        """
        self._created = []
        self._rec = None
        if self._overlay is None or self._overlay.upper is None:
            return
        from . import _owner

        base = self._overlay.upper
        work = base / "work"
        _owner.reclaim_once([str(base), str(work)])
        dirs = [base / "upper", work]
        if self._directory is None:
            for name, link in self._host_dirs:
                if link is None:
                    dirs += [base / "upper" / name, work / name]
        rec = None
        for d in dirs:
            if not d.exists():
                # The work directory, or what is made in one found there (and not below it).
                scratch = d == work or (d.parent == work and work not in self._created)
                if scratch:
                    if rec is None:
                        rec = self._rec = _owner.record("overlay")
                    rec.pending(str(d), role="overlay-work")
                try:
                    d.mkdir(mode=0o755)
                except BaseException:
                    if rec is not None and scratch:
                        rec.cancel(str(d))
                    raise
                self._created.append(d)
                if rec is not None and scratch:
                    rec.made(str(d), "overlay-work")
        if rec is not None:
            rec.flush()

    def _started(self, pid: int) -> None:
        """The container's first process ``pid`` runs on the overlay: its work directories
        stay while it runs, whatever becomes of this process (see ``isolate.gc``)."""
        if self._rec is not None:
            self._rec.holder(pid)

    def _abort(self) -> None:
        """Undo ``_prepare`` after a failed spawn: nothing of ours is left behind."""
        import shutil

        for d in reversed(self._created):
            shutil.rmtree(d, ignore_errors=True)
        self._created = []
        self._forget()

    def _finish(self) -> None:
        """After the container is gone: drop the overlay work directories (kernel scratch)."""
        if self._overlay is not None and self._overlay.upper is not None:
            import shutil

            shutil.rmtree(self._overlay.upper / "work", ignore_errors=True)
        self._created = []
        self._forget()

    def _forget(self) -> None:
        """End the run's owner record: its work directories are gone (or were never made)."""
        rec, self._rec = self._rec, None
        if rec is not None:
            rec.clear()

    def __del__(self, _close: Any = os.close) -> None:
        # The shared root's fd (see _shared_master) lives as long as the RootFS.
        # (os.close is bound early: at interpreter exit the module may be gone.)
        master = getattr(self, "_master", None)
        if master is not None:
            self._master = None
            _close(master[1])
        if getattr(self, "_empty", -1) >= 0:
            empty, self._empty = self._empty, -1
            _close(empty)

    def _ops(self, ctx: _Ctx) -> list[P.Op]:
        """The ops that build the new root at ``ctx.new`` (before the switch)."""
        return list(self._op_seq(ctx))

    def _shareable(self, ctx: _Ctx) -> bool:
        """Whether the root can be one read-only tmpfs made once and shared by every start.

        Only a host root, read-only, without an overlay, built in place, in no
        user namespace (its files belong to the caller as they would to the
        child) and with every mount point at its top (nothing is created in
        it at run time); the caller (``Container``) vouches that no process
        in the container can remount it (no CAP_SYS_ADMIN).
        """
        return (ctx.shared_root and not ctx.userns and ctx.direct and not ctx.chroot
                and self._directory is None and self._overlay is None and self.readonly
                and all(isinstance(m, _Tmpfs) and b"/" not in m.target for m in self._mounts)
                and _shared_roots_work())

    def _op_seq(self, ctx: _Ctx) -> P.OpSeq:
        """``_ops`` as the one ``OpSeq`` made per context.

        Ops are immutable, so they are made once per context and reused: a
        container started again with the same RootFS plans in no time, and
        the same object keeps the spawn plan cache's key cheap.
        """
        key = (ctx.new, ctx.old, ctx.stage, ctx.chroot, ctx.userns, ctx.new_net, ctx.new_pid,
               ctx.console, ctx.direct, ctx.new_ipc, ctx.new_cgroupns, ctx.cgroup_paths, self._gen,
               self._overlay, self.proc, self.sys, self.dev, self.oci_masks, self._directory,
               ctx.shared_root, self.readonly)
        ops = self._cache.get(key)
        if ops is None:
            share = self._shareable(ctx)
            if share and key not in self._used_once:
                # Built in the child the first time: a RootFS used once (as
                # Container's default) would pay for the shared root for nothing.
                self._used_once.add(key)
                return P.OpSeq(self._make_ops(ctx, share=False))
            ops = self._cache[key] = P.OpSeq(self._make_ops(ctx, share=share))
        return ops

    def _shared_master(self, top: Sequence[tuple[bytes, int, int, bytes | None]],
                       etc: Sequence[tuple[bytes, int, int, bytes | None]]) -> int:
        """The fd of a detached read-only tmpfs holding ``top`` and ``etc`` (RootMkdirs entries).

        Made once per contents and kept (closed with the RootFS); every start
        attaches a clone (``RootMount(fd=...)``), which saves making the root,
        its mount points and /etc's files in each child.
        """
        contents = (tuple(top), tuple(etc))
        with _MASTER_LOCK:
            if self._master is not None:
                if self._master[0] == contents:
                    return self._master[1]
                # Only plans of an older generation (never made again) name it.
                os.close(self._master[1])
                self._master = None
            fd = self._make_master(top, etc)
            self._master = (contents, fd)
            return fd

    def _empty_master(self) -> int:
        """An empty read-only tmpfs (as a masked directory gets), made once: its fd."""
        with _MASTER_LOCK:
            if self._empty < 0:
                fd = _spawn.detached_tmpfs(0o1777)    # tmpfs's own default, as a fresh mask has
                try:
                    _spawn.mount_fd_setattr(fd, _RDONLY | _NOSUID_NODEV_NOEXEC)
                except BaseException:
                    os.close(fd)
                    raise
                self._empty = fd
            return self._empty

    @staticmethod
    def _make_master(top: Sequence[tuple[bytes, int, int, bytes | None]],
                     etc: Sequence[tuple[bytes, int, int, bytes | None]]) -> int:
        fd = _spawn.detached_tmpfs(0o755)
        try:
            for entry in top:
                _make_entry(fd, *entry)
            if etc:
                efd = os.open("etc", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                try:
                    for entry in etc:
                        _make_entry(efd, *entry)
                finally:
                    os.close(efd)
            _spawn.mount_fd_setattr(fd, _RDONLY | _MA.MOUNT_ATTR_NOSUID)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _builds_in_place(self, stage: bytes, console: bytes | None) -> bool:
        """Whether the new root can be mounted right on ``stage`` (see ``_Ctx.direct``).

        Only when no host path the build reads lies under ``stage`` (the new
        root covers it) and there is no overlay (whose upper layer lives in
        the staging tmpfs).  Saves a tmpfs mount and a pivot_root per start.
        """
        key = (stage, console, self._gen, self._overlay, self._directory)
        hit = self._in_place.get(key)
        if hit is None:
            hit = self._in_place[key] = self._sources_clear_of(stage, console)
        return hit

    def _sources_clear_of(self, stage: bytes, console: bytes | None) -> bool:
        if self._overlay is not None:
            return False
        sources = [os.fsencode(self._directory)] if self._directory is not None else []
        sources += [b"/" + n.encode() for n, link in self._host_dirs if link is None]
        sources += [b"/etc/" + n.encode() for n, kind, _ in self._host_etc if kind in ("dir", "bind")]
        sources += [b.source for b in self._binds]
        sources += [b"/dev", b"/proc", b"/sys"] + ([console] if console is not None else [])
        under = stage.rstrip(b"/") + b"/"
        for src in sources:
            real = os.path.realpath(src)
            if real == stage or real.startswith(under) or stage.startswith(real.rstrip(b"/") + b"/"):
                return False
        return True

    def _make_ops(self, ctx: _Ctx, share: bool = False) -> list[P.Op]:
        ops: list[P.Op] = [] if ctx.direct else [P.RootStage(base=ctx.stage, chroot=ctx.chroot)]
        made: set[bytes] = set()     # top-level entries of the new root already created
        new, old = ctx.new, ctx.old
        ov = self._overlay
        if ov is not None and ov.upper is None:
            # The upper layer's own tmpfs, in the staging root: it lives as long
            # as the overlay mounts that use it, and goes with them.
            ovl = ctx.stage + b"/ovl" if ctx.chroot else b"/ovl"
            ops.append(P.RootMkdir(root=None, parent=os.path.dirname(ovl) or b"/",
                                   name=os.path.basename(ovl)))
            opts = [("mode", "0755")] + ([("size", ov.size)] if ov.size else [])
            ops.append(P.RootMount(b"tmpfs", None, ovl, source=b"tmpfs", attrs=_NOSUID_NODEV,
                                   options=tuple(opts)))
            for d in (b"upper", b"work"):
                ops.append(P.RootMkdir(root=None, parent=ovl, name=d))
            upper_base, work_base = ovl + b"/upper", ovl + b"/work"
        elif ov is not None:
            assert ov.upper is not None
            up = os.fsencode(ov.upper)
            upper_base = _host(old, up + b"/upper")
            work_base = _host(old, up + b"/work")

        def overlay(lower: bytes, upper: bytes, work: bytes, target_root: bytes | None,
                    target: bytes, attrs: int = 0) -> P.Op:
            opts: list[tuple[str, str | None]] = [
                ("lowerdir", _ovl_escape(lower)), ("upperdir", _ovl_escape(upper)),
                ("workdir", _ovl_escape(work))]
            if ctx.userns:
                # trusted.* xattrs need CAP_SYS_ADMIN in the initial user namespace.
                opts.append(("userxattr", None))
            return P.RootMount(b"overlay", target_root, target, source=b"overlay", attrs=attrs,
                               options=tuple(opts))

        if self._directory is not None:
            d = os.fsencode(self._directory)
            # nodev: a device node an image carries (say, one for the host's disk)
            # must never open; the container's devices are the fresh /dev's.
            if ov is None:
                ops.append(P.RootBind(old, d.lstrip(b"/") or b".", None, new, recursive=True,
                                      attr_set=_MA.MOUNT_ATTR_NODEV))
            else:
                ops.append(P.RootMkdir(root=None, parent=os.path.dirname(new),
                                       name=os.path.basename(new)))
                ops.append(overlay(_host(old, d), upper_base, work_base, None, new,
                                   attrs=_MA.MOUNT_ATTR_NODEV))
        else:
            # Every top-level entry of the fresh root in one op (one directory fd).
            top: list[tuple[bytes, int, int, bytes | None]] = [
                (name.encode(), 2, 0o777, link) if link is not None else (name.encode(), 0, 0o755, None)
                for name, link in self._host_dirs]
            if self._host_etc:
                top.append((b"etc", 0, 0o755, None))
            made.update(e[0] for e in top)
            points = [m.target for m in self._mounts if not isinstance(m, _Bind)] \
                + [b"proc"] * self.proc + [b"sys"] * self.sys + [b"dev"] * self.dev
            for point in points:
                first = point.split(b"/")[0]
                if first not in made:
                    top.append((first, 0, 0o755, None))
                    made.add(first)
            # Files with their contents (type 3), links, and mount points for
            # the binds, through one fd of the fresh /etc.
            etc: list[tuple[bytes, int, int, bytes | None]] = [
                (name.encode(), 2, 0o777, payload) if kind == "link" else
                (name.encode(), 3, 0o644, payload) if kind == "file" else
                (name.encode(), 0 if kind == "dir" else 1, 0o755 if kind == "dir" else 0o644, None)
                for name, kind, payload in self._host_etc]
            if share:
                ops.append(P.RootMount(b"tmpfs", None, new, fd=self._shared_master(top, etc)))
            else:
                ops.append(P.RootMount(b"tmpfs", None, new, source=b"tmpfs",
                                       attrs=_MA.MOUNT_ATTR_NOSUID, options=(("mode", "0755"),)))
                ops.append(RootMkdirs(new, b".", tuple(top)))
            for name, link in self._host_dirs:
                n = name.encode()
                if link is not None:
                    continue
                if ov is None:
                    ops.append(P.RootBind(old, n, new, n, readonly=True))
                else:
                    if ov.upper is None:
                        ops.append(P.RootMkdir(root=None, parent=upper_base, name=n))
                        ops.append(P.RootMkdir(root=None, parent=work_base, name=n))
                    ops.append(overlay(_host(old, b"/" + n), upper_base + b"/" + n,
                                       work_base + b"/" + n, new, n))
            if self._host_etc:
                if not share:
                    ops.append(RootMkdirs(new, b"etc", tuple(etc)))
                binds = [(b"etc/" + name.encode(),) * 2 for name, kind, _ in self._host_etc
                         if kind in ("dir", "bind")]
                if binds:
                    # Into our own fresh tmpfs: no target can be a symlink (see RootBinds).
                    ops.append(RootBinds(old, new, tuple(binds), readonly=True, optional=True))

        defer_sys = self._defer_sys(ctx)
        # procfs can only be mounted by the owner of the pid namespace, sysfs by the
        # owner of the network namespace: in a user namespace without its own, bind the host's.
        for on, mnt, fstype, fresh in ((self.proc, b"proc", b"proc", ctx.new_pid),
                                        (self.sys, b"sys", b"sysfs", ctx.new_net)):
            if not on:
                continue
            ops += _mkdirs(new, mnt, is_dir=True, made=made)
            attrs = self._builtin["/" + mnt.decode()].attrs
            if defer_sys and mnt == b"sys":
                continue
            if fresh or not ctx.userns:
                ops.append(P.RootMount(fstype, new, mnt, source=fstype, attrs=attrs))
            else:
                ops.append(P.RootBind(old, mnt, new, mnt, readonly=bool(attrs & _RDONLY),
                                      attr_set=attrs & ~(_RDONLY | _ATIME_MASK)))
        if self.dev:
            ops += self._dev_ops(ctx, made)
        for m in self._mounts:
            if isinstance(m, _Tmpfs):
                ops += _mkdirs(new, m.target, is_dir=True, made=made)
                opts2: list[tuple[str, str | None]] = [("mode", f"{m.mode:o}")]
                if m.size:
                    opts2.append(("size", m.size))
                ops.append(P.RootMount(b"tmpfs", new, m.target, source=b"tmpfs", attrs=m.attrs,
                                       options=tuple(opts2)))
            elif isinstance(m, _Bind):
                ops += _mkdirs(new, m.target, is_dir=m.is_dir)
                ops.append(P.RootBind(old, m.source.lstrip(b"/") or b".", new, m.target,
                                      readonly=m.readonly, recursive=m.recursive, attr_set=m.attrs))
            elif m.kind == "mqueue":
                ops += _mkdirs(new, m.target, is_dir=True, made=made)
                if ctx.userns and not ctx.new_ipc:
                    # mqueue can only be mounted by the owner of the ipc namespace.
                    ops.append(P.RootBind(old, b"dev/mqueue", new, m.target, recursive=False,
                                          readonly=bool(m.attrs & _RDONLY),
                                          attr_set=m.attrs & ~_RDONLY))
                else:
                    ops.append(P.RootMount(b"mqueue", new, m.target, source=b"mqueue", attrs=m.attrs))
            else:
                ops += _mkdirs(new, m.target, is_dir=True, made=made)
                v1 = _v1_hierarchies()
                ops += _cgroup_ops(ctx, m, v1, None if v1 else _cgroup_v2())
        masked: list[bytes] = []
        ro_paths: list[bytes] = []
        if self.oci_masks:
            masked += [p.lstrip("/").encode() for p in OCI_MASKED_PATHS
                       if (p.startswith("/proc") and self.proc) or (p.startswith("/sys") and self.sys)]
            ro_paths += [p.lstrip("/").encode() for p in OCI_READONLY_PATHS if self.proc]
        # The OCI defaults lie below the /proc and /sys mounted above, so none can
        # be the root: one op each list (see RootMasks).  A caller's paths may lead
        # anywhere in an image, the root included: one op each, resolving the root anew.
        # The null device bound over masked files: the fresh /dev's, resolved inside the
        # new root as the /dev mount was (never from the staging root, where an image's
        # dev symlink would lead to a host file), or the host's when there is no /dev.
        null, null_root = (b"dev/null", None) if self.dev else (b"dev/null", old)
        if defer_sys:
            masked = [p for p in masked if not _below(p, b"sys")]
        if masked:
            ops.append(RootMasks(new, tuple(masked), null, fd=self._empty_master() if share else -1,
                                 null_root=null_root))
        ops += [P.RootMask(new, rel, null, null_root) for rel in self._masked]
        if ro_paths:
            ops.append(RootBinds(new, new, tuple((rel, rel) for rel in ro_paths), readonly=True,
                                 optional=True))
        ops += [P.RootBind(new, rel, new, rel, readonly=True, optional=True)
                for rel in self._readonly_paths]
        if defer_sys and not self._sys_after_switch(ctx):
            ops += self._sys_ops(new, null, share, null_root)
        return ops

    def _mounts_cgroupfs(self) -> bool:
        """Whether the root holds a ``cgroupfs()``: only then do its ops depend on the
        container's cgroup (``_Ctx.cgroup_paths``)."""
        return any(isinstance(m, _Special) and m.kind == "cgroup" for m in self._mounts)

    def _defer_sys(self, ctx: _Ctx) -> bool:
        """Whether sysfs is mounted after every other mount.

        sysfs shows the network namespace of whoever mounts it.  With a new
        one and no user namespace, the spawn makes the namespace while the
        child runs its first ops (see ``process._late_netns``), and the child
        enters it before the first op that needs it: the later sysfs comes,
        the more of the root is built meanwhile.  Not when a caller's mount or
        path lies below /sys, which must come after it.
        """
        return bool(self.sys and ctx.new_net and not ctx.userns
                    and not any(_below(m.target, b"sys") for m in self._mounts)
                    and not any(_below(p, b"sys") for p in self._masked + self._readonly_paths))

    def _sys_after_switch(self, ctx: _Ctx) -> bool:
        """Whether ``_sys_ops`` run after pivot_root, on ``/`` (``Container`` adds them):
        pivot_root, too, then runs while the network namespace is being made."""
        return self._defer_sys(ctx) and self.dev and not ctx.chroot

    def _sys_ops(self, root: bytes, null: bytes, share: bool = False,
                 null_root: bytes | None = None) -> list[P.Op]:
        """sysfs at ``root``/sys, and the OCI masks below it.

        ``null``: the null device for masked files, resolved inside ``null_root``
        (None: inside ``root``; see ``RootMask``).
        """
        ops: list[P.Op] = [P.RootMount(b"sysfs", root, b"sys", source=b"sysfs",
                                       attrs=self._builtin["/sys"].attrs)]
        masked = tuple(p.lstrip("/").encode() for p in OCI_MASKED_PATHS if p.startswith("/sys"))
        if self.oci_masks and masked:
            ops.append(RootMasks(root, masked, null, fd=self._empty_master() if share else -1,
                                 null_root=null_root))
        return ops

    def _dev_ops(self, ctx: _Ctx, made: set[bytes]) -> list[P.Op]:
        new, old = ctx.new, ctx.old
        ops: list[P.Op] = _mkdirs(new, b"dev", is_dir=True, made=made)
        dev, pts, shm = self._builtin["/dev"], self._builtin["/dev/pts"], self._builtin["/dev/shm"]
        ops.append(P.RootMount(b"tmpfs", new, b"dev", source=b"tmpfs", attrs=dev.attrs,
                               options=_tmpfs_options(dev)))
        # Every entry of the fresh /dev in one op: the device nodes, pts and
        # shm, and the usual links.  The nodes are made with mknod, as runc
        # does, the same devices as the host's; in a user namespace, which may
        # not create device nodes, or on a nodev /dev, the host's are bound.
        nodes = {} if ctx.userns or dev.attrs & _MA.MOUNT_ATTR_NODEV else _host_devices()
        entries: list[tuple[bytes, int, int, bytes | None]] = [
            (name.encode(), 4, 0o666, nodes[name]) if name in nodes else (name.encode(), 1, 0o666, None)
            for name in DEV_NODES]
        entries += [(b"pts", 0, 0o755, None), (b"ptmx", 2, 0o777, b"pts/ptmx"),
                    (b"shm", 0, 0o755, None)]
        entries += [(lname, 2, 0o777, link) for lname, link in (
            (b"fd", b"/proc/self/fd"), (b"stdin", b"/proc/self/fd/0"),
            (b"stdout", b"/proc/self/fd/1"), (b"stderr", b"/proc/self/fd/2"))]
        if ctx.console is not None:
            entries.append((b"console", 1, 0o600, None))
        ops.append(RootMkdirs(new, b"dev", tuple(entries)))
        bound = [n for n in DEV_NODES if n not in nodes]
        if bound:
            # Onto the files just made in our own fresh tmpfs (see RootBinds).
            ops.append(RootBinds(old, new, tuple((b"dev/" + n.encode(),) * 2 for n in bound),
                                 recursive=False, attr_set=_MA.MOUNT_ATTR_NOSUID | _MA.MOUNT_ATTR_NOEXEC))
        pts_opts: tuple[tuple[str, str | None], ...] = (
            ("newinstance", None), ("ptmxmode", "0666"), ("mode", f"{pts.mode:04o}"))
        if pts.gid is not None:
            pts_opts += (("gid", str(pts.gid)),)
        ops.append(P.RootMount(b"devpts", new, b"dev/pts", source=b"devpts", attrs=pts.attrs,
                               options=pts_opts))
        ops.append(P.RootMount(b"tmpfs", new, b"dev/shm", source=b"shm", attrs=shm.attrs,
                               options=_tmpfs_options(shm)))
        if ctx.console is not None:
            ops.append(P.RootBind(old, ctx.console.lstrip(b"/"), new, b"dev/console",
                                  recursive=False))
        return ops


def _make_entry(dfd: int, name: bytes, type_: int, mode: int, link: bytes | None) -> None:
    """A RootMkdirs entry made by this process in the directory ``dfd`` (modes exactly: no umask)."""
    if type_ == 0:
        os.mkdir(name, mode, dir_fd=dfd)
        os.chmod(name, mode, dir_fd=dfd)
    elif type_ == 2:
        assert link is not None
        os.symlink(link, name, dir_fd=dfd)
    else:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=dfd)
        try:
            os.fchmod(fd, mode)
            view = memoryview(link or b"")
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


_SHARED_ROOTS: list[bool] = []
_MASTER_LOCK = threading.Lock()


def _shared_roots_work() -> bool:
    """Whether a child in a new mount namespace may clone a detached mount of ours (probed once).

    Root only (the tmpfs is made here, in the caller's user namespace).  The
    probe spawns once: a kernel that refuses (EINVAL) keeps every root built
    in the child.
    """
    if not _SHARED_ROOTS:
        ok = False
        if os.geteuid() == 0 and os.path.exists("/bin/true"):
            from .process import spawn

            try:
                fd = _spawn.detached_tmpfs(0o755)
            except OSError:
                fd = -1
            if fd >= 0:
                try:
                    p = spawn(["/bin/true"], namespaces={"mnt"},
                              ops=[P.RootMount(b"tmpfs", None, b"/tmp", fd=fd)])
                    ok = p.wait() == 0
                    p.close()
                except (OSError, ConfigError):
                    ok = False
                finally:
                    os.close(fd)
        _SHARED_ROOTS.append(ok)
    return _SHARED_ROOTS[0]


def _below(path: bytes, top: bytes) -> bool:
    """Whether the relative ``path`` is ``top`` or lies under it."""
    return path == top or path.startswith(top + b"/")


def _host_devices() -> dict[str, bytes]:
    """DEV_NODES that are character devices on the host: name -> st_rdev (8 bytes, little-endian)."""
    out = {}
    for name in DEV_NODES:
        try:
            st = os.stat(f"/dev/{name}")
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode):
            out[name] = st.st_rdev.to_bytes(8, "little")
    return out


def _tmpfs_options(b: _Builtin) -> tuple[tuple[str, str | None], ...]:
    opts: tuple[tuple[str, str | None], ...] = (("mode", f"{b.mode:04o}"),) if b.mode is not None else ()
    return opts + ((("size", b.size),) if b.size else ())


def _v1_hierarchies() -> list[tuple[str, str]]:
    """Every cgroup v1 hierarchy once: (mount point, this process's cgroup directory there).

    Named hierarchies (``name=systemd``) count too: runc binds them as well.
    """
    from .cgroup.layout import V1_CONTROLLERS, Hierarchy, _unescape, parse_proc_cgroup

    _, own = parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    out: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 5 or len(r) < 3 or r[0] != "cgroup":
            continue
        keys = frozenset(o for o in r[2].split(",") if o in V1_CONTROLLERS or o.startswith("name="))
        if not keys or keys in seen:
            continue
        seen.add(keys)
        mount, root = _unescape(f[4]), _unescape(f[3])
        path = next((own[k] for k in sorted(keys) if k in own), "/")
        out.append((mount, Hierarchy(1, mount, root, keys, path).fs_path(path)))
    return out


def _cgroup_v2() -> Any:
    from .cgroup import _layout

    try:
        return _layout().v2
    except UnsupportedError:
        return None


def _cgroup_ops(ctx: _Ctx, m: _Special, v1: Sequence[tuple[str, str]], v2: Any) -> list[P.Op]:
    """The container's cgroup at ``m.target`` (see ``RootFS.cgroupfs``).

    ``v1``: ``_v1_hierarchies()``; ``v2``: the cgroup2 ``Hierarchy`` or None,
    used when there is no v1 hierarchy (a pure v2 host).
    """
    new, old = ctx.new, ctx.old
    paths = dict(ctx.cgroup_paths or ())
    ro, attrs = bool(m.attrs & _RDONLY), m.attrs & ~_RDONLY

    def bind(directory: str, target: bytes) -> P.Op:
        # Not recursive: a cgroup directory has no mounts below it.
        return P.RootBind(old, os.fsencode(directory).lstrip(b"/") or b".", new, target,
                          recursive=False, readonly=ro, attr_set=attrs)

    if not v1:
        if v2 is None:
            raise ConfigError("cgroupfs: this host has no cgroup filesystem mounted")
        if ctx.new_cgroupns:
            # The namespace's root is the cgroup the child was born in (CLONE_INTO_CGROUP).
            return [P.RootMount(b"cgroup2", new, m.target, source=b"cgroup2", attrs=m.attrs)]
        return [bind(paths.get(v2.mount) or v2.fs_path(v2.own), m.target)]
    # v1 and hybrid: runc's layout, without the hybrid host's cgroup2 (runc leaves it out):
    # the container's directory where it has one, else the caller's, which the child is in.
    ops: list[P.Op] = [P.RootMount(b"tmpfs", new, m.target, source=b"tmpfs", attrs=attrs,
                                   options=(("mode", "0755"),))]
    entries: list[tuple[bytes, int, int, bytes | None]] = []
    binds: list[P.Op] = []
    names: set[bytes] = set()
    for mount, own_dir in v1:
        name = os.fsencode(os.path.basename(mount.rstrip("/")))
        if not name or name in names or name in (b".", b".."):
            continue
        names.add(name)
        entries.append((name, 0, 0o755, None))
        binds.append(bind(paths.get(mount) or own_dir, m.target + b"/" + name))
    for name in sorted(names):
        # Co-mounted controllers: cpu -> cpu,cpuacct, as runc and systemd link them.
        for part in name.split(b","):
            if part != name and part not in names and b"=" not in part:
                names.add(part)
                entries.append((part, 2, 0o777, name))
    ops.append(RootMkdirs(new, m.target, tuple(entries)))
    return ops + binds


def _host(old: bytes, path: bytes) -> bytes:
    """A host path as the child sees it while building (under /oldroot after the pivot)."""
    return path if old == b"/" else old + path


def _ovl_escape(path: bytes) -> str:
    s = os.fsdecode(path)
    for ch in ("\\", ":", ","):
        s = s.replace(ch, "\\" + ch)
    return s


def _mkdirs(root: bytes, target: bytes, *, is_dir: bool, made: Collection[bytes] = ()) -> list[P.Op]:
    """Ops creating every component of ``target`` inside ``root`` (the last a file if not is_dir);
    a first component in ``made`` (already created at the top of the root) is skipped."""
    parts = target.split(b"/")
    ops: list[P.Op] = []
    for i, name in enumerate(parts):
        if i == 0 and name in made and (is_dir or len(parts) > 1):
            continue     # a directory (or symlink to one) made with the root's first entries
        parent = b"/".join(parts[:i]) or b"."
        last = i == len(parts) - 1
        ops.append(P.RootMkdir(root, parent, name, mode=0o755 if (is_dir or not last) else 0o644,
                               type=0 if (is_dir or not last) else 1))
    return ops


def _opaque(path: Path) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError as e:
            if e.errno not in (_errno.ENODATA, _errno.ENOTSUP, _errno.EPERM):
                raise
    return False


@functools.lru_cache(maxsize=1)
def root_is_initramfs() -> bool:
    """Whether / is the initramfs rootfs, which pivot_root(2) cannot move (EINVAL)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                if fields[4] == b"/":
                    fstype = fields[fields.index(b"-") + 1]
                    return fstype == b"rootfs"
    except (OSError, ValueError, IndexError):
        pass
    return False
