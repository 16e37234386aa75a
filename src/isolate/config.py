"""The typed configs: ``ProcessSpec``, ``RootSpec`` and ``ContainerConfig``.

Plain data: frozen, slotted, keyword-only records, each checked once, when
it is made.  A bad value raises ``ConfigError`` naming the field and the
value, before any process, mount or cgroup exists.  ``spawn``, ``run``,
``Container``, ``RootFS`` and the OCI converter all produce or take them,
and every plan is cached on them (see ``_planner.py``): two equal configs
share one plan, whichever objects they came from.

::

    spec = ProcessSpec(args=["make", "test"], env={"PATH": "/usr/bin"}, user="nobody")
    config = ContainerConfig(rootfs=RootFS.host().spec, process=spec,
                             limits=Limits(memory_max=256 << 20))
    with Container(config) as c:
        result = c.run(timeout=60)

A ``ProcessSpec`` made directly has the sandbox's defaults (the OCI
capability set, Docker's seccomp profile, no_new_privs, umask 022, a session
of its own, SIGKILL when its spawning thread dies); ``isolate.spawn`` and
``isolate.run`` pass their own, ``subprocess``-like, defaults.
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import _cache
from . import _validate as V
from ._plan import (CAPABILITIES, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
                    MOUNT_ATTR_RDONLY, NSTYPES)
from ._record import dataclass, field
from ._validate import FrozenMap
from .errors import ConfigError
from .idmap import IdMap, check_maps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from typing import Any, ClassVar, Literal, TypeAlias

    from .cgroup import Limits
    from .net.ports import PortMapping
    from .seccomp import SeccompProfile

    StrPath: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"

__all__ = ["ProcessSpec", "RootSpec", "ContainerConfig", "BindMount", "TmpfsMount", "SpecialMount",
           "MountOptions", "OverlaySpec", "FrozenMap", "NAMESPACES", "DEFAULT_NAMESPACES", "USERNS_MODES",
           "CAP_SETS", "MAX_ARG", "host_root"]

#: Namespace names as in /proc/<pid>/ns.
NAMESPACES = frozenset(NSTYPES)
#: What a Container unshares by default.  ``time`` is left out: nothing needs it by default.
DEFAULT_NAMESPACES = frozenset({"user", "pid", "mnt", "uts", "ipc", "net", "cgroup"})
#: ``ContainerConfig.userns``: how a new user namespace maps ids without explicit maps.
#: ``"auto"``: root's container gets a block of 65536 host ids no other live container
#: has (``isolate._idalloc``), a non-root caller's the default of ``spawn``;
#: ``"identity"``: every id to itself (root only); ``"keep-id"``: the caller's id to
#: itself, one line, and the container runs as it.
USERNS_MODES = ("auto", "identity", "keep-id")
#: The five capability sets of ``capability_sets``.
CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
#: The most argv may hold, in bytes.
MAX_ARG = 1 << 20

_RLIMIT_NAMES = {n[len("RLIMIT_"):].lower(): getattr(resource, n) for n in dir(resource)
                 if n.startswith("RLIMIT_")}


class _Env(FrozenMap):
    """An environment ``ProcessSpec`` checked (a ``replace`` does not check it again)."""

    __slots__ = ()


class _Rlimits(FrozenMap):
    """Resource limits ``ProcessSpec`` checked, as (soft, hard) pairs."""

    __slots__ = ()


class _CapSets(FrozenMap):
    """The five capability sets ``ProcessSpec`` checked, as frozensets of names."""

    __slots__ = ()


_CAP_NAMES = frozenset(CAPABILITIES)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def rlimit_number(name: object) -> int:
    """The RLIMIT_* number of ``name`` (``"nofile"``, ``"RLIMIT_NOFILE"`` or the number)."""
    if isinstance(name, int) and not isinstance(name, bool):
        if name in _RLIMIT_NAMES.values():
            return int(name)
    elif isinstance(name, str):
        key = name.lower().removeprefix("rlimit_")
        if key in _RLIMIT_NAMES:
            return int(_RLIMIT_NAMES[key])
    raise ConfigError(f"rlimits: unknown resource {name!r}")


def _rlimits(value: object) -> FrozenMap | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"rlimits must map resource names to limits, got {value!r}")
    out = {}
    inf = resource.RLIM_INFINITY
    for name, limit in value.items():
        rlimit_number(name)
        try:
            soft, hard = (limit, limit) if isinstance(limit, int) else tuple(limit)
        except (TypeError, ValueError):
            raise ConfigError(f"rlimits[{name!r}] must be a limit or (soft, hard), got {limit!r}") from None
        for v in (soft, hard):
            if not isinstance(v, int) or isinstance(v, bool) or (v < 0 and v != inf):
                raise ConfigError(f"rlimits[{name!r}] must be non-negative integers, got {limit!r}")
        if hard != inf and (soft == inf or soft > hard):
            raise ConfigError(f"rlimits[{name!r}]: soft limit above hard limit: {limit!r}")
        out[name] = (soft, hard)
    return _Rlimits(out)


def _env(value: object) -> FrozenMap | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"env must be a mapping of names to values, got {value!r}")
    for k, v in value.items():
        kb = V.fsencode(k, "env key")
        V.fsencode(v, f"env[{k!r}]")
        if not kb or b"=" in kb:
            raise ConfigError(f"env key must be non-empty and without '=': {k!r}")
    return _Env(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """What runs: the program, its environment, its identity and its privileges.

    ``args``: the argv (may be empty in a ``ContainerConfig``, whose runs
    give one).  ``executable``: the file to run instead of looking
    ``args[0]`` up in PATH.  ``env``: None inherits the caller's environment
    (``spawn``) or gives PATH, HOME and TERM (``Container``).  ``cwd``: the
    working directory (inside the root, for a container).  ``user``,
    ``group``, ``groups``: ids or names (see ``isolate.spawn`` and
    ``Container`` for where names are looked up and the defaults).
    ``capabilities``: names kept (every other is dropped from every set),
    ``"default"`` for the OCI set, None to keep all; ``capability_sets``
    instead gives each of ``CAP_SETS`` exactly.  ``seccomp``: BPF bytes, a
    ``SeccompProfile``, ``"default"`` (Docker's profile for the capabilities
    kept) or None.  ``rlimits``: ``{"nofile": (soft, hard)}``.
    ``new_session``: None gives a session of its own only to a process in a
    namespace (``spawn``).  ``die_with_parent``: SIGKILL when the spawning
    *thread* exits.  ``close_fds``: no fd but stdio and those passed reaches
    the program.
    """

    _cache_hash: ClassVar[bool] = True   # keys the plan cache: hashed once

    args: Sequence[StrPath] = ()
    executable: StrPath | None = None
    env: Mapping[str, str] | Mapping[bytes, bytes] | None = None
    cwd: StrPath | None = None
    user: int | str | None = None
    group: int | str | None = None
    groups: Sequence[int | str] | None = None
    capabilities: Iterable[str] | Literal["default"] | None = "default"
    capability_sets: Mapping[str, Iterable[str]] | None = None
    no_new_privs: bool = True
    seccomp: SeccompProfile | bytes | Literal["default"] | None = "default"
    rlimits: Mapping[str | int, int | tuple[int, int]] | None = None
    umask: int | None = 0o022
    die_with_parent: bool = True
    new_session: bool | None = True
    process_group: bool = False
    tty: bool = False
    close_fds: bool = True

    def __post_init__(self) -> None:
        args = self.args
        if type(args) is not tuple:
            if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
                raise ConfigError(f"argv must be a sequence of strings, got {args!r}")
            args = tuple(args)
            _set(self, "args", args)
        total = 0
        for i, a in enumerate(args):
            if type(a) is str and "\0" not in a:
                total += len(a) + 1 if a.isascii() else len(os.fsencode(a)) + 1
            else:
                total += len(V.fsencode(a, f"argv[{i}]")) + 1
        if total > MAX_ARG:
            raise ConfigError(f"argv is too long ({total} bytes)")
        if self.executable is not None:
            V.fsencode(self.executable, "executable")
        if self.env is not None and type(self.env) is not _Env:
            _set(self, "env", _env(self.env))
        if self.cwd is not None:
            V.fsencode(self.cwd, "cwd")
        for name in ("user", "group"):
            value = getattr(self, name)
            if value is not None:
                V.id_value(value, name)
        if self.groups is not None:
            if isinstance(self.groups, (str, bytes)):
                raise ConfigError(f"groups must be a list of ids or names, got {self.groups!r}")
            groups = tuple(self.groups)
            for i, g in enumerate(groups):
                V.id_value(g, f"groups[{i}]")
            if len(groups) > 65536:
                raise ConfigError(f"groups: too many ({len(groups)})")
            _set(self, "groups", groups)
        caps = self.capabilities
        if caps is not None and caps != "default" and not (type(caps) is frozenset
                                                             and caps <= _CAP_NAMES):
            if isinstance(caps, str):
                raise ConfigError(f"capabilities must be 'default', None or a collection of capability "
                                  f"names, got {caps!r}")
            _set(self, "capabilities", V.cap_names(caps, "capabilities"))
        sets = self.capability_sets
        if sets is not None and not isinstance(sets, _CapSets):
            if not isinstance(sets, Mapping) or set(sets) - set(CAP_SETS):
                raise ConfigError(f"capability_sets must map some of {', '.join(CAP_SETS)} to names, "
                                  f"got {sets!r}")
            norm = _CapSets((k, V.cap_names(sets.get(k, ()), f"capability_sets[{k!r}]"))
                            for k in CAP_SETS)
            # The kernel raises only ambient capabilities that are permitted and inheritable.
            if norm["effective"] - norm["permitted"]:
                raise ConfigError("capability_sets: effective capabilities must be permitted")
            _set(self, "capability_sets", norm)
        seccomp = self.seccomp
        if isinstance(seccomp, (bytes, bytearray)):
            prog = bytes(seccomp)
            if not prog or len(prog) % 8 or len(prog) // 8 > 4096:
                raise ConfigError(f"seccomp must be a BPF program of 1 to 4096 8-byte instructions, "
                                  f"got {len(prog)} bytes")
            _set(self, "seccomp", prog)
        elif seccomp is not None and seccomp != "default":
            from .seccomp import SeccompProfile

            if not isinstance(seccomp, SeccompProfile):
                raise ConfigError(f"seccomp must be 'default', a SeccompProfile, bytes or None, "
                                  f"got {seccomp!r}")
        if self.rlimits is not None and type(self.rlimits) is not _Rlimits:
            _set(self, "rlimits", _rlimits(self.rlimits))
        umask = self.umask
        if umask is not None and (not isinstance(umask, int) or isinstance(umask, bool)
                                  or not 0 <= umask <= 0o777):
            raise ConfigError(f"umask must be an integer from 0 to 0o777, got {umask!r}")
        if type(self.no_new_privs) is not bool:
            _set(self, "no_new_privs", bool(self.no_new_privs))
        if type(self.die_with_parent) is not bool:
            _set(self, "die_with_parent", bool(self.die_with_parent))
        if type(self.process_group) is not bool:
            _set(self, "process_group", bool(self.process_group))
        if type(self.tty) is not bool:
            _set(self, "tty", bool(self.tty))
        if type(self.close_fds) is not bool:
            _set(self, "close_fds", bool(self.close_fds))
        if self.new_session is not None and type(self.new_session) is not bool:
            _set(self, "new_session", bool(self.new_session))


# --- the root filesystem -------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class BindMount:
    """A host path bound into the container (``RootFS.bind``)."""

    source: bytes          # absolute host path, symlinks resolved
    target: bytes          # container path, relative form (see ``container_path``)
    readonly: bool = False
    recursive: bool = True
    is_dir: bool = True
    attrs: int = 0         # MOUNT_ATTR_NOSUID/NODEV/NOEXEC to set (the rest is the source's)


@dataclass(frozen=True, slots=True, kw_only=True)
class TmpfsMount:
    """A fresh tmpfs (``RootFS.tmpfs``).

    ``copy_up``: the tmpfs starts with a copy of the directory it covers in
    the image (an OCI mount's ``tmpcopyup``), made at each start.
    """

    target: bytes
    size: str | None = None
    mode: int = 0o1777
    attrs: int = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV   # MOUNT_ATTR_* of the mount, atime included
    source: bytes = b"tmpfs"   # the mount's source, as /proc/self/mountinfo shows it
    copy_up: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecialMount:
    """A filesystem that is not a plain tmpfs or bind: ``mqueue`` or ``cgroup``."""

    kind: Literal["mqueue", "cgroup"]
    target: bytes
    attrs: int

    def __post_init__(self) -> None:
        if self.kind not in ("mqueue", "cgroup"):
            raise ConfigError(f"SpecialMount.kind must be 'mqueue' or 'cgroup', got {self.kind!r}")


@dataclass(frozen=True, slots=True)
class MountOptions:
    """Flags and options of one of the mounts a root makes itself (``RootFS.mount_options``)."""

    attrs: int
    size: str | None = None
    mode: int | None = None
    gid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlaySpec:
    """A writable layer over the root: on a tmpfs of ``size`` (``upper`` None), or kept in ``upper``."""

    upper: Path | None = None
    size: str | None = None


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
#: The default size of a host root's /tmp (see ``SHM_SIZE``).
TMP_SIZE = "512m"
#: The default size of the tmpfs on a container's home directory (see ``SHM_SIZE``).
HOME_SIZE = "256m"
#: The default size of an overlay's upper layer (see ``SHM_SIZE``).
OVERLAY_SIZE = "1g"

_NOSUID_NODEV = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
_NOSUID_NODEV_NOEXEC = _NOSUID_NODEV | MOUNT_ATTR_NOEXEC

#: The mounts a root makes itself, and their defaults.
BUILTIN_DEFAULTS = FrozenMap({
    "/proc": MountOptions(_NOSUID_NODEV_NOEXEC),
    "/sys": MountOptions(_NOSUID_NODEV_NOEXEC | MOUNT_ATTR_RDONLY),
    "/dev": MountOptions(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, size="64k", mode=0o755),
    "/dev/pts": MountOptions(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, mode=0o620),
    "/dev/shm": MountOptions(_NOSUID_NODEV, size=SHM_SIZE, mode=0o1777),
})

AnyMount: TypeAlias = "BindMount | TmpfsMount | SpecialMount"

#: The propagation types a root can be given (``RootSpec.propagation``), as the OCI
#: ``linux.rootfsPropagation`` names them: ``r`` applies to every mount below it too.
ROOT_PROPAGATIONS = ("shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate",
                     "runbindable")


@dataclass(frozen=True, slots=True, kw_only=True)
class RootSpec:
    """What a container's root filesystem looks like: the value ``RootFS`` builds.

    ``directory``: an image (absolute, resolved) or None for a host root,
    whose ``host_dirs`` (``(name, symlink target or None)``: /usr, /bin,
    /lib* ...) are bound read-only and ``host_etc`` (``(name, kind,
    contents)``, kind ``file`` (copied), ``dir``, ``bind`` or ``link``) make
    its /etc.  ``mounts`` in the order they are made; ``builtin`` the options
    of /proc, /sys, /dev, /dev/pts and /dev/shm; ``order`` where those go
    among ``mounts`` (``(target, n)``: made after the first ``n`` mounts,
    ties in the order listed; one not listed goes first, /dev/pts and
    /dev/shm with /dev); ``masked`` and ``readonly_paths`` container paths
    (relative form); ``propagation`` the root's mount propagation once the
    container is in it (``ROOT_PROPAGATIONS``; None leaves it private).
    ``in_place``: ``directory`` is entered as it is, with chroot(2), and
    nothing is mounted (an OCI container without a mount namespace of its
    own, as runc enters its root then).  Two equal specs give
    one plan: a ``Container`` given a fresh ``RootFS.host()`` each time plans
    as fast as one given the same ``RootFS`` again.
    """

    _cache_hash: ClassVar[bool] = True   # keys the plan cache: hashed once

    directory: Path | None = None
    readonly: bool = True
    proc: bool = True
    sys: bool = True
    dev: bool = True
    oci_masks: bool = True
    host_dirs: tuple[tuple[str, bytes | None], ...] = ()
    host_etc: tuple[tuple[str, str, bytes], ...] = ()
    mounts: tuple[AnyMount, ...] = ()
    builtin: Mapping[str, MountOptions] = BUILTIN_DEFAULTS
    masked: tuple[bytes, ...] = ()
    readonly_paths: tuple[bytes, ...] = ()
    overlay: OverlaySpec | None = None
    order: tuple[tuple[str, int], ...] = ()
    propagation: str | None = None
    in_place: bool = False
    #: When the container's user namespace maps ids other than identically and the caller
    #: is root, the host binds (``host_dirs``, ``directory``, bind ``mounts``) are idmapped
    #: mounts with the container's maps (see ``isolate._idmount``); False keeps them plain
    #: (an OCI config's binds: only those it asks to be idmapped would be).
    idmap: bool = True
    #: An image's layer directories, bottom first (``RootFS.from_image``): the overlay's
    #: lower layers, under its upper one (``overlay`` is required; ``directory`` is None).
    layers: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if type(self.layers) is not tuple:
            _set(self, "layers", tuple(self.layers))
        if self.layers:
            if self.directory is not None or self.overlay is None or self.in_place:
                raise ConfigError("RootSpec.layers: an image's layers need an overlay and no directory")
            for p in self.layers:
                if not (isinstance(p, Path) and p.is_absolute()):
                    raise ConfigError(f"RootSpec.layers: {p!r} is not an absolute Path")
        if self.directory is not None and not (isinstance(self.directory, Path)
                                               and self.directory.is_absolute()):
            raise ConfigError(f"RootSpec.directory must be an absolute Path, got {self.directory!r}")
        for m in self.mounts:
            if not isinstance(m, (BindMount, TmpfsMount, SpecialMount)):
                raise ConfigError(f"RootSpec.mounts: {m!r} is not a mount")
            if isinstance(m, TmpfsMount) and m.copy_up and (self.directory is None or self.in_place):
                raise ConfigError(f"RootSpec.mounts: copy_up of the tmpfs on /{m.target.decode(errors='replace')} "
                                  f"needs an image directory (and a root that is built, not in_place)")
        if set(self.builtin) - set(BUILTIN_DEFAULTS):
            raise ConfigError(f"RootSpec.builtin: unknown mounts {sorted(set(self.builtin) - set(BUILTIN_DEFAULTS))}")
        if type(self.builtin) is not FrozenMap:
            _set(self, "builtin", FrozenMap(self.builtin))
        for name in ("host_dirs", "host_etc", "mounts", "masked", "readonly_paths", "order"):
            value = getattr(self, name)
            if type(value) is not tuple:
                _set(self, name, tuple(value))
        _set(self, "order", tuple((t, n) for t, n in self.order))
        last, seen = 0, set()
        for target, n in self.order:
            on = {"/proc": self.proc, "/sys": self.sys}.get(target, self.dev)
            if target not in BUILTIN_DEFAULTS or target in seen or not on:
                raise ConfigError(f"RootSpec.order: {target!r} is not a mount the root makes, or is "
                                  "listed twice")
            if not isinstance(n, int) or not last <= n <= len(self.mounts):
                raise ConfigError(f"RootSpec.order: {target!r} at {n!r}: out of order or past the "
                                  f"{len(self.mounts)} mounts")
            seen.add(target)
            last = n
        if self.in_place and (self.directory is None or self.readonly or self.proc or self.sys or self.dev
                              or self.oci_masks or self.mounts or self.masked or self.readonly_paths
                              or self.overlay is not None or self.propagation is not None):
            raise ConfigError("RootSpec.in_place: a directory entered as it is makes no mount "
                              "(no proc, sys, dev, masks, mounts, overlay or read-only root)")
        if self.propagation is not None and self.propagation not in ROOT_PROPAGATIONS:
            raise ConfigError(f"RootSpec.propagation must be one of {', '.join(ROOT_PROPAGATIONS)}, "
                              f"got {self.propagation!r}")

    def mount_points(self) -> set[str]:
        """Every directory the root's own mounts need (container paths, with a leading slash)."""
        points = set()
        targets = [m.target for m in self.mounts]
        targets += [b"proc"] * self.proc + [b"sys"] * self.sys + [b"dev"] * self.dev
        for t in targets:
            parts = t.split(b"/")
            for i in range(1, len(parts) + 1):
                points.add("/" + os.fsdecode(b"/".join(parts[:i])))
        return points


def _stamp(path: str) -> tuple[int, ...] | None:
    """What changes when ``path`` (or what a symlink there leads to) changes; None if absent."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    out: tuple[int, ...] = (st.st_ino, st.st_dev, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if stat.S_ISLNK(st.st_mode):
        try:
            t = os.stat(path)
            out += (t.st_ino, t.st_dev, t.st_mode, t.st_size, t.st_mtime_ns, t.st_ctime_ns)
        except OSError:
            out += (-1,)
    return out


def _read_host_dir(name: str) -> tuple[str, bytes | None] | None:
    p = "/" + name
    if os.path.islink(p):
        return name, os.fsencode(os.readlink(p))
    if os.path.isdir(p):
        return name, None
    return None


def _read_host_etc(name: str) -> tuple[str, str, bytes] | None:
    p = "/etc/" + name
    try:
        if os.path.islink(p) and os.path.realpath(p).startswith("/usr/"):
            # e.g. localtime -> /usr/share/zoneinfo/...: the same link works inside.
            return name, "link", os.fsencode(os.readlink(p))
        if os.path.isdir(p):
            return name, "dir", b""
        if os.path.isfile(p) and os.stat(p).st_size <= ETC_COPY_MAX:
            # Small files are copied: a write costs a fraction of a bind mount.
            with open(p, "rb") as f:
                return name, "file", f.read()
        if os.path.exists(p):
            return name, "bind", b""
    except OSError:
        pass     # unreadable or vanished: left out, as if absent
    return None


def _host_snapshot(etc: tuple[str, ...]) -> tuple[tuple[tuple[str, bytes | None], ...],
                                                   tuple[tuple[str, str, bytes], ...]]:
    """The host's top directories and /etc entries ``etc``, as they are now.

    Read again only for what changed since the last call (each path is
    stat'ed, not read): a fresh ``RootFS.host()`` costs a few stat calls,
    and equal snapshots share their bytes (so their hash is computed once).
    """
    stamps = tuple(_stamp("/" + n) for n in HOST_DIRS) + tuple(_stamp("/etc/" + n) for n in etc)

    def read() -> tuple[tuple[tuple[str, bytes | None], ...], tuple[tuple[str, str, bytes], ...]]:
        dirs = tuple(d for d in map(_read_host_dir, HOST_DIRS) if d is not None)
        return dirs, tuple(e for e in map(_read_host_etc, etc) if e is not None)

    return _cache.memo(("host snapshot", etc, stamps), read)


def host_root(*, etc: Sequence[str] = HOST_ETC, tmp: bool = True, home: StrPath | None = None,
              tmp_size: int | str | None = TMP_SIZE, home_size: int | str | None = HOME_SIZE) -> RootSpec:
    """The ``RootSpec`` of ``RootFS.host()`` (see there for the arguments)."""
    tmp_size, home_size = V.size(tmp_size, "tmp_size"), V.size(home_size, "home_size")
    if isinstance(etc, str):
        raise ConfigError(f"etc must be a list of names in /etc, got {etc!r}")
    names = tuple(etc)
    for name in names:
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            raise ConfigError(f"etc: {name!r} is not a name in /etc")
    mounts: list[TmpfsMount] = []
    if tmp:
        mounts.append(TmpfsMount(target=b"tmp", size=tmp_size))
    if home is not None:
        dst = V.container_path(home, "tmpfs target")
        if dst == b".":
            raise ConfigError(f"tmpfs target must not be the root: {home!r}")
        mounts.append(TmpfsMount(target=dst, size=home_size, mode=0o700))
    dirs, etc_entries = _host_snapshot(names)
    return RootSpec(host_dirs=dirs, host_etc=etc_entries, mounts=tuple(mounts))


# --- containers ------------------------------------------------------------------------

#: The hostname of a container given no ``name``: fixed, so that every such
#: container shares one spawn plan.
DEFAULT_HOSTNAME = "isolate"


def hostname_for(name: str) -> str:
    """``name`` made a valid hostname: labels of ASCII letters, digits and '-' (any other
    character becomes '-'), at most 63 bytes each and 64 in all (the kernel's limit);
    ``DEFAULT_HOSTNAME`` when nothing is left."""
    chars = "".join(c if (c.isascii() and c.isalnum()) or c in "-." else "-" for c in name)
    labels = [part.strip("-")[:63].strip("-") for part in chars.split(".")]
    host = ".".join(label for label in labels if label)[:64].rstrip(".-")
    return host or DEFAULT_HOSTNAME


def host_root_for(user: Any, group: Any = None, groups: Any = None) -> tuple[RootSpec, Any]:
    """``host_root()`` for a container's ``user``: with a tmpfs on /root for root, and the
    user's ``Identity`` as that root's /etc/passwd gives it (None: root)."""
    if user in (None, 0, "0", "root"):
        return host_root(home="/root"), None
    from ._userdb import resolve, rootfs_db

    spec = host_root()
    ident = resolve(rootfs_db(spec), user, group, groups)
    if ident.uid == 0:
        spec = host_root(home="/root")
    return spec, ident


def namespace_set(value: Any, what: str = "namespaces") -> frozenset[str]:
    """Namespace names, checked."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{what} must be a collection of names, got {value!r}")
    out = frozenset(value)
    for ns in out:
        if ns not in NSTYPES:
            raise ConfigError(f"{what}: unknown namespace {ns!r} (known: {', '.join(sorted(NSTYPES))})")
    return out


_NET_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_net(value: object) -> str:
    """A container's ``net``: ``"none"``, ``"host"``, ``"bridge"`` or a network's name (a
    letter or digit, then letters, digits, ``_ . -``; 64 at most); ``ConfigError`` else."""
    if not isinstance(value, str) or not value or len(value) > 64 or not value[0].isalnum() \
            or not set(value) <= _NET_NAME_CHARS:
        raise ConfigError(f"net must be 'none', 'host', 'bridge', a network's name or a network "
                          f"namespace, got {value!r}")
    return value


def dns_list(value: object) -> tuple[str, ...]:
    """``dns=``: IPv4 addresses of resolvers, checked (``ConfigError`` naming a bad one)."""
    from .net.network import check_dns

    return check_dns(value, version=4)


def id_maps(value: Sequence[IdMap] | None, what: str) -> tuple[IdMap, ...] | None:
    """A checked id map (None stays None)."""
    if value is None:
        return None
    maps = tuple(value)
    check_maps(maps, what)
    return maps


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """Everything a ``Container`` is, as data: its root, its namespaces, its process.

    ``rootfs``: a ``RootSpec`` (``RootFS(...).spec``), ``"host"`` (the
    default: ``RootFS.host()``, with a tmpfs on /root for a root user) or
    None (the host's tree).  ``process``: the first process's settings
    (its ``args`` may be left empty for ``run(argv)`` to give).
    ``namespaces``: those created (default ``DEFAULT_NAMESPACES``); ``net``
    ``"none"`` (a namespace of its own with ``lo`` up), ``"host"``,
    ``"bridge"`` (the default network, ``isolate``) or the name of a network
    (``isolate.net``: a namespace of its own per start, given an address,
    routes and names there; ``publish`` forwards host ports to it, ``dns``
    names its resolvers);
    ``userns`` (how a new user namespace maps ids when ``uid_map``/``gid_map``
    do not say: ``"auto"``, the default, gives root's container 65536 host
    ids of its own, so container root is no host user of note; ``"identity"``
    maps every id to itself, container root is host root; ``"keep-id"``
    maps the caller's id to itself, one line; see ``USERNS_MODES`` and the
    guide's "Container root is not host root"); ``uid_map``/``gid_map``
    (explicit maps, which override ``userns``); ``limits`` (a cgroup named
    ``name`` is made for the container); ``hostname`` (``"auto"``: from
    ``name``, else ``DEFAULT_HOSTNAME``; None keeps the host's); ``domainname``
    (the NIS domain name, setdomainname(2); None keeps the one the uts
    namespace has);
    ``pivot_root`` (None: auto; False: chroot); ``stage`` (the directory the
    root is built on); ``make_cwd`` (create the working directory when the
    root lacks it).  See ``Container`` for what each means.
    """

    _cache_hash: ClassVar[bool] = True   # keys the plan cache: hashed once

    rootfs: RootSpec | Literal["host"] | None = "host"
    process: ProcessSpec = field(default_factory=ProcessSpec)
    namespaces: Collection[str] = DEFAULT_NAMESPACES
    net: str = "none"
    publish: Sequence[PortMapping] = ()
    dns: Sequence[str] | None = None
    userns: Literal["auto", "identity", "keep-id"] = "auto"
    uid_map: Sequence[IdMap] | None = None
    gid_map: Sequence[IdMap] | None = None
    limits: Limits | None = None
    name: str | None = None
    hostname: str | None = "auto"
    domainname: str | None = None
    pivot_root: bool | None = None
    stage: str = "/tmp"
    make_cwd: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.process, ProcessSpec):
            raise ConfigError(f"process must be a ProcessSpec, got {self.process!r}")
        if self.rootfs == "host":
            p = self.process
            _set(self, "rootfs", host_root_for(p.user, p.group, p.groups)[0])
        elif self.rootfs is not None and not isinstance(self.rootfs, RootSpec):
            raise ConfigError(f"rootfs must be a RootSpec, 'host' or None, got {self.rootfs!r}")
        ns = namespace_set(self.namespaces)
        net = check_net(self.net)
        _set(self, "net", net)
        if net == "host":
            ns = ns - {"net"}
        elif net != "none" and "net" not in ns:
            raise ConfigError(f"net={net!r} needs the 'net' namespace in namespaces")
        if self.publish is None or (type(self.publish) in (tuple, list) and not self.publish):
            _set(self, "publish", ())   # isolate.net.ports (dataclasses, typing) only for ports
        else:
            from .net.ports import publish_list

            _set(self, "publish", publish_list(self.publish))
        if self.publish and net in ("none", "host"):
            raise ConfigError(f"publish needs a network (net='bridge' or a network's name), "
                              f"not net={net!r}")
        if self.dns is not None:
            _set(self, "dns", dns_list(self.dns))
            if net in ("none", "host"):
                raise ConfigError(f"dns needs a network (net='bridge' or a network's name), "
                                  f"not net={net!r}")
        # (A rootfs needs a mount namespace, new or joined: Container checks it with its joins.)
        _set(self, "namespaces", ns)
        if self.userns not in USERNS_MODES:
            raise ConfigError(f"userns must be one of {', '.join(map(repr, USERNS_MODES))}, "
                              f"got {self.userns!r}")
        maps = (id_maps(self.uid_map, "uid_map"), id_maps(self.gid_map, "gid_map"))
        if (maps[0] is not None or maps[1] is not None) and "user" not in ns:
            raise ConfigError("uid_map/gid_map need the 'user' namespace in namespaces")
        _set(self, "uid_map", maps[0])
        _set(self, "gid_map", maps[1])
        if self.limits is not None:
            from .cgroup import Limits

            if not isinstance(self.limits, Limits):
                raise ConfigError(f"limits must be an isolate.cgroup.Limits, got {self.limits!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError(f"name must be a string or None, got {self.name!r}")
        host = self.hostname
        if host == "auto":
            # Not the default name, unique per container: the plan cache would never hit.
            host = (None if "uts" not in ns else
                    hostname_for(self.name) if self.name is not None else DEFAULT_HOSTNAME)
            _set(self, "hostname", host)
        elif host is not None and not isinstance(host, str):
            raise ConfigError(f"hostname must be a string or None, got {host!r}")
        if host is not None:
            h = V.fsencode(host, "hostname")
            if not 0 < len(h) <= 64:
                raise ConfigError(f"hostname must be 1 to 64 bytes, got {host!r}")
        if self.domainname is not None:
            if not isinstance(self.domainname, str) or len(V.fsencode(self.domainname, "domainname")) > 64:
                raise ConfigError(f"domainname must be a string of at most 64 bytes, got {self.domainname!r}")
        if self.pivot_root is not None:
            _set(self, "pivot_root", bool(self.pivot_root))
        if not isinstance(self.stage, str):
            raise ConfigError(f"stage must be an existing directory, got {self.stage!r}")
        _set(self, "make_cwd", bool(self.make_cwd))

    @property
    def root(self) -> RootSpec | None:
        """``rootfs``, which is never ``"host"`` once the config is made."""
        r = self.rootfs
        assert not isinstance(r, str)
        return r
