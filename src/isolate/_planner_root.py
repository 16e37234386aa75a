"""The root planner: pure functions from a ``RootSpec`` to the ops that build it.

``root_ops(spec, ctx)`` gives the ops that build a new root at ``ctx.new``
in the child's mount namespace (see ``csrc/ops_root.c``):

1. the new root is mounted right on a staging directory (``/tmp``), host
   paths being read where they are (``RootContext.direct``).  Where a host
   path the build reads lies under that directory, or with an overlay, a
   tmpfs is mounted there first and the child pivots into it, keeping the
   old root at ``/oldroot`` and building at ``/newroot`` (bubblewrap's
   layout);
2. every mount target is opened with ``openat2(RESOLVE_IN_ROOT |
   RESOLVE_NO_MAGICLINKS)`` inside the new root, so a symlink planted in an
   image can never send a mount outside it.

``container_root_ops`` adds what a container does after it: the switch
(``pivot_root``, or ``chroot`` where that cannot work), a late /sys, the
working directory, a read-only root.  A host root shared by many starts
(``shareable``) is one read-only tmpfs made once in the caller; its ops then
attach a clone of it (``master``, ``empty``: the fds, see ``_plans``).

What the host looks like (its device numbers, its cgroup hierarchies) comes
from a ``HostFacts``, so tests can give their own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import _cache
from . import _ops as O
from ._plan import (MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MS_MOVE, MS_PRIVATE,
                    MS_REC, MS_SHARED, MS_SLAVE, MS_UNBINDABLE, Op)
from ._record import dataclass
from ._slots import SpawnFd
from ._validate import ATIME_MASK
from .config import BindMount, MountOptions, RootSpec, SpecialMount, TmpfsMount
from .errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence
    from typing import Any, ClassVar

    from ._ops_root import MkdirEntry

__all__ = ["RootContext", "root_context", "HostFacts", "root_ops", "container_root_ops", "shared_contents",
           "shareable", "sys_after_switch", "DEV_NODES", "OCI_MASKED_PATHS", "OCI_READONLY_PATHS"]

#: Paths hidden by the OCI runtime spec's default (runc, crun, Docker).
OCI_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
#: Paths made read-only by the OCI runtime spec's default.
OCI_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
#: The host's device nodes in the container's fresh /dev (made with mknod, or bound in a user namespace).
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")

_NOSUID_NODEV = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
# RootSpec.propagation's names (an "r" before one: recursive) as mount(2) flags.
_PROPAGATION = {"shared": MS_SHARED, "slave": MS_SLAVE, "private": MS_PRIVATE, "unbindable": MS_UNBINDABLE}


@dataclass(frozen=True, slots=True, kw_only=True)
class RootContext:
    """Where things are in the child while the new root is built, and what the container has."""

    _cache_hash: ClassVar[bool] = True

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
    # ``shareable``): nothing in the container can ever remount it.
    shared_root: bool = False
    # The mount namespace is one joined by path (``join``), not a new one: the root is
    # built there, as runc does (see ``container_root_ops``).
    joined_mnt: bool = False
    # The user namespace maps ids other than identically: the host binds (a caller's
    # binds, the host's /usr ..., an image directory) are idmapped mounts the caller
    # prepares per spawn (``RootBind.fd``, ``_idmount``).
    idmap: bool = False
    # Files of the container's network bound read-only at these targets (``b"etc/hosts"``,
    # ``b"etc/resolv.conf"``): detached mounts the caller makes per spawn (``net_fd_names``).
    net_files: tuple[bytes, ...] = ()


def root_context(**values: Any) -> RootContext:
    """``RootContext(**values)``, one object for equal values (a cache key then compares it
    by identity)."""
    key = ("root context", *sorted(values.items()))
    return _cache.memo(key, lambda: RootContext(**values))


class HostFacts:
    """What the host has that a root's ops name: device numbers and cgroup hierarchies."""

    def devices(self) -> dict[str, bytes]:
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

    def v1_hierarchies(self) -> list[tuple[str, str]]:
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

    def v2_hierarchy(self) -> Any:
        """The cgroup2 ``Hierarchy``, or None."""
        from .cgroup import _layout

        try:
            return _layout().v2
        except UnsupportedError:
            return None


def _below(path: bytes, top: bytes) -> bool:
    """Whether the relative ``path`` is ``top`` or lies under it."""
    return path == top or path.startswith(top + b"/")


def _host(old: bytes, path: bytes) -> bytes:
    """A host path as the child sees it while building (under /oldroot after the pivot)."""
    return path if old == b"/" else old + path


def _lowerdir_plus() -> bool:
    """Whether overlayfs takes "lowerdir+" (one lower layer per fsconfig call: Linux 6.8)."""
    def probe() -> bool:
        try:
            major, minor = (int(x) for x in os.uname().release.split(".")[:2])
        except ValueError:
            return False
        return (major, minor) >= (6, 8)

    return bool(_cache.memo(("overlay lowerdir+",), probe))


def _ovl_escape(path: bytes) -> str:
    s = os.fsdecode(path)
    for ch in ("\\", ":", ","):
        s = s.replace(ch, "\\" + ch)
    return s


def _tmpfs_options(b: MountOptions) -> tuple[tuple[str, str | None], ...]:
    opts: tuple[tuple[str, str | None], ...] = (("mode", f"{b.mode:04o}"),) if b.mode is not None else ()
    return opts + ((("size", b.size),) if b.size else ())


def mkdirs(root: bytes, target: bytes, *, is_dir: bool, made: Collection[bytes] = ()) -> list[Op]:
    """Ops creating every component of ``target`` inside ``root`` (the last a file if not is_dir);
    a first component in ``made`` (already created at the top of the root) is skipped."""
    parts = target.split(b"/")
    ops: list[Op] = []
    for i, name in enumerate(parts):
        if i == 0 and name in made and (is_dir or len(parts) > 1):
            continue     # a directory (or symlink to one) made with the root's first entries
        parent = b"/".join(parts[:i]) or b"."
        last = i == len(parts) - 1
        ops.append(O.RootMkdir(root, parent, name, mode=0o755 if (is_dir or not last) else 0o644,
                               type=0 if (is_dir or not last) else 1))
    return ops


def shared_contents(spec: RootSpec) -> tuple[tuple[MkdirEntry, ...], tuple[MkdirEntry, ...]]:
    """A host root's top-level entries and /etc's (``RootMkdirs`` entries): what a shared
    master tmpfs holds."""
    top: list[MkdirEntry] = [
        (name.encode(), 2, 0o777, link) if link is not None else (name.encode(), 0, 0o755, None)
        for name, link in spec.host_dirs]
    made = {e[0] for e in top}
    if spec.host_etc:
        top.append((b"etc", 0, 0o755, None))
        made.add(b"etc")
    points = [m.target for m in spec.mounts if not isinstance(m, BindMount)] \
        + [b"proc"] * spec.proc + [b"sys"] * spec.sys + [b"dev"] * spec.dev
    for point in points:
        first = point.split(b"/")[0]
        if first not in made:
            top.append((first, 0, 0o755, None))
            made.add(first)
    # Files with their contents (type 3), links, and mount points for the binds.
    etc: list[MkdirEntry] = [
        (name.encode(), 2, 0o777, payload) if kind == "link" else
        (name.encode(), 3, 0o644, payload) if kind == "file" else
        (name.encode(), 0 if kind == "dir" else 1, 0o755 if kind == "dir" else 0o644, None)
        for name, kind, payload in spec.host_etc]
    return tuple(top), tuple(etc)


def shareable(spec: RootSpec, ctx: RootContext) -> bool:
    """Whether the root can be one read-only tmpfs made once and shared by every start.

    Only a host root, read-only, without an overlay, built in place, in no
    user namespace (its files belong to the caller as they would to the
    child) and with every mount point at its top (nothing is created in it
    at run time); the caller (``Container``) vouches that no process in the
    container can remount it (no CAP_SYS_ADMIN).  (Whether the kernel lets a
    child attach a mount of ours is the caller's to probe.)
    """
    return (ctx.shared_root and not ctx.userns and ctx.direct and not ctx.chroot
            and spec.directory is None and spec.overlay is None and spec.readonly
            and all(isinstance(m, TmpfsMount) and b"/" not in m.target and not m.copy_up
                   for m in spec.mounts))


def defer_sys(spec: RootSpec, ctx: RootContext) -> bool:
    """Whether sysfs is mounted after every other mount.

    sysfs shows the network namespace of whoever mounts it.  With a new
    one and no user namespace, the spawn makes the namespace while the
    child runs its first ops (see ``_planner.late_netns``), and the child
    enters it before the first op that needs it: the later sysfs comes,
    the more of the root is built meanwhile.  Not when a caller's mount or
    path lies below /sys, which must come after it, nor when the spec places
    /sys among its mounts (``RootSpec.order``: an OCI config's order is kept).
    """
    return bool(spec.sys and ctx.new_net and not ctx.userns and "/sys" not in dict(spec.order)
                and not any(_below(m.target, b"sys") for m in spec.mounts)
                and not any(_below(p, b"sys") for p in spec.masked + spec.readonly_paths))


def sys_after_switch(spec: RootSpec, ctx: RootContext) -> bool:
    """Whether ``sys_ops`` run after pivot_root, on ``/`` (``container_root_ops`` adds them):
    pivot_root, too, then runs while the network namespace is being made."""
    return defer_sys(spec, ctx) and spec.dev and not ctx.chroot


def sys_ops(spec: RootSpec, root: bytes, null: bytes, empty: int = -1,
            null_root: bytes | None = None) -> list[Op]:
    """sysfs at ``root``/sys, and the OCI masks below it.

    ``null``: the null device for masked files, resolved inside ``null_root``
    (None: inside ``root``; see ``RootMask``); ``empty``: a shared empty
    tmpfs for the masked directories, or -1.
    """
    ops: list[Op] = [O.RootMount(b"sysfs", root, b"sys", source=b"sysfs",
                                 attrs=spec.builtin["/sys"].attrs)]
    masked = tuple(p.lstrip("/").encode() for p in OCI_MASKED_PATHS if p.startswith("/sys"))
    if spec.oci_masks and masked:
        ops.append(O.RootMasks(root, masked, null, fd=empty, null_root=null_root))
    return ops


def root_ops(spec: RootSpec, ctx: RootContext, *, master: int = -1, empty: int = -1,
             facts: HostFacts | None = None, copies: Mapping[int, int] | None = None) -> list[Op]:
    """The ops that build the root ``spec`` at ``ctx.new`` (before the switch into it).

    ``master``: a detached read-only tmpfs holding ``shared_contents(spec)``
    to attach a clone of (a ``shareable`` root), else -1; ``empty``: an empty
    read-only tmpfs cloned for masked directories, or -1; ``copies``: for
    the index in ``spec.mounts`` of each ``copy_up`` tmpfs, its detached
    tmpfs (already filled, one container's own) to attach a clone of.
    """
    if spec.in_place:
        return []        # entered as it is (container_root_ops)
    facts = facts or HostFacts()
    ops: list[Op] = [] if ctx.direct else [O.RootStage(base=ctx.stage, chroot=ctx.chroot)]
    prepared: list[SpawnFd] = []

    def host_fd() -> int:
        """The fd slot of a bind of a host path: the next prepared mount (``_idmount``) when
        the binds are idmapped (and the spec allows it), else -1.  (In a joined mount
        namespace the caller's paths are not the child's: no idmap.)"""
        if not ctx.idmap or ctx.joined_mnt or not spec.idmap:
            return -1
        prepared.append(SpawnFd(len(prepared)))
        return prepared[-1]

    made: set[bytes] = set()     # top-level entries of the new root already created
    new, old = ctx.new, ctx.old
    ov = spec.overlay
    upper_base = work_base = b""
    # With idmapped binds, an overlay's host layers are idmapped too (overlayfs takes
    # idmapped layers from Linux 5.19): each is attached below the staging tmpfs and
    # the overlay is made of those, so container root reads a root-only lower layer
    # and writes a kept upper one as host root could (the setid guard applies).
    idmap_layers = ov is not None and ctx.idmap and not ctx.joined_mnt and spec.idmap
    ovl = ctx.stage + b"/ovl" if ctx.chroot else b"/ovl"
    # An image's layers below a kernel without "lowerdir+" are bound at short names: the
    # whole "lowerdir" list is one fsconfig string, of at most 256 bytes.
    short_layers = bool(spec.layers) and not _lowerdir_plus()
    if ov is not None and (ov.upper is None or idmap_layers or short_layers):
        # The upper layer's own tmpfs, in the staging root: it lives as long
        # as the overlay mounts that use it, and goes with them.
        ops.append(O.RootMkdir(root=None, parent=os.path.dirname(ovl) or b"/",
                               name=os.path.basename(ovl)))
        opts = [("mode", "0755")] + ([("size", ov.size)] if ov.size else [])
        ops.append(O.RootMount(b"tmpfs", None, ovl, source=b"tmpfs", attrs=_NOSUID_NODEV,
                               options=tuple(opts)))
    if ov is not None and ov.upper is None:
        for d in (b"upper", b"work"):
            ops.append(O.RootMkdir(root=None, parent=ovl, name=d))
        upper_base, work_base = ovl + b"/upper", ovl + b"/work"
    elif ov is not None:
        assert ov.upper is not None
        up = os.fsencode(ov.upper)
        if idmap_layers:
            ops.append(O.RootMkdir(root=None, parent=ovl, name=b"kept"))
            ops.append(O.RootBind(old, up.lstrip(b"/"), None, ovl + b"/kept", recursive=False,
                                  attr_set=_NOSUID_NODEV, fd=host_fd()))
            upper_base, work_base = ovl + b"/kept/upper", ovl + b"/kept/work"
        else:
            upper_base = _host(old, up + b"/upper")
            work_base = _host(old, up + b"/work")
    layers: list[int] = []

    def lower(path: bytes, *, short: bool = False) -> bytes:
        """The overlay's lower layer for host ``path``: an idmapped clone in the staging
        tmpfs (or a plain bind there, ``short``), or the host path as the child sees it."""
        if not idmap_layers and not short:
            return _host(old, path)
        name = b"l%d" % len(layers)
        layers.append(0)
        ops.append(O.RootMkdir(root=None, parent=ovl, name=name))
        ops.append(O.RootBind(old, path.lstrip(b"/") or b".", None, ovl + b"/" + name,
                              readonly=True, fd=host_fd()))
        return ovl + b"/" + name

    def overlay(lower: bytes, upper: bytes, work: bytes, target_root: bytes | None,
                target: bytes, attrs: int = 0) -> Op:
        opts: list[tuple[str, str | None]] = [
            ("lowerdir", _ovl_escape(lower)), ("upperdir", _ovl_escape(upper)),
            ("workdir", _ovl_escape(work))]
        if ctx.userns:
            # trusted.* xattrs need CAP_SYS_ADMIN in the initial user namespace.
            opts.append(("userxattr", None))
        return O.RootMount(b"overlay", target_root, target, source=b"overlay", attrs=attrs,
                           options=tuple(opts))

    if spec.layers:
        # An image: its layers (top first) under the upper layer, nothing copied per
        # container.  One fsconfig "lowerdir+" per layer (Linux 6.8): no option-size
        # limit whatever the number of layers; before that, one "lowerdir" list.
        # userxattr always: the layers' opaque markers are user.overlay.* (images.unpack).
        assert ov is not None
        parents = {p.parent for p in spec.layers}
        if idmap_layers and not short_layers and len(parents) == 1 and len(spec.layers) > 1:
            # The layers of a store share a directory: one idmapped clone of it, not one per
            # layer (each costs a clone and an idmap in the caller, a bind in the child).
            # It stays in the staging tmpfs, which the container never sees.
            base = lower(os.fsencode(parents.pop()))
            lowers = [base + b"/" + os.fsencode(p.name) for p in reversed(spec.layers)]
        else:
            lowers = [lower(os.fsencode(p), short=short_layers) for p in reversed(spec.layers)]
        if not short_layers:
            lower_opts = [("lowerdir+", os.fsdecode(x)) for x in lowers]
        else:
            lower_opts = [("lowerdir", ":".join(_ovl_escape(x) for x in lowers))]
        ops.append(O.RootMkdir(root=None, parent=os.path.dirname(new), name=os.path.basename(new)))
        ops.append(O.RootMount(b"overlay", None, new, source=b"overlay", attrs=MOUNT_ATTR_NODEV,
                               options=(*lower_opts, ("upperdir", _ovl_escape(upper_base)),
                                        ("workdir", _ovl_escape(work_base)), ("userxattr", None))))
    elif spec.directory is not None:
        d = os.fsencode(spec.directory)
        # nodev: a device node an image carries (say, one for the host's disk)
        # must never open; the container's devices are the fresh /dev's.
        if ov is None:
            ops.append(O.RootBind(old, d.lstrip(b"/") or b".", None, new, recursive=True,
                                  attr_set=MOUNT_ATTR_NODEV, fd=host_fd()))
        else:
            ops.append(O.RootMkdir(root=None, parent=os.path.dirname(new),
                                   name=os.path.basename(new)))
            ops.append(overlay(lower(d), upper_base, work_base, None, new,
                               attrs=MOUNT_ATTR_NODEV))
    else:
        # Every top-level entry of the fresh root in one op (one directory fd).
        top, etc = shared_contents(spec)
        made.update(e[0] for e in top)
        if master >= 0:
            ops.append(O.RootMount(b"tmpfs", None, new, fd=master))
        else:
            ops.append(O.RootMount(b"tmpfs", None, new, source=b"tmpfs",
                                   attrs=MOUNT_ATTR_NOSUID, options=(("mode", "0755"),)))
            ops.append(O.RootMkdirs(new, b".", top))
        for name, link in spec.host_dirs:
            n = name.encode()
            if link is not None:
                continue
            if ov is None:
                ops.append(O.RootBind(old, n, new, n, readonly=True, fd=host_fd()))
            else:
                if ov.upper is None:
                    ops.append(O.RootMkdir(root=None, parent=upper_base, name=n))
                    ops.append(O.RootMkdir(root=None, parent=work_base, name=n))
                ops.append(overlay(lower(b"/" + n), upper_base + b"/" + n,
                                   work_base + b"/" + n, new, n))
        if spec.host_etc:
            if master < 0:
                ops.append(O.RootMkdirs(new, b"etc", etc))
            binds = [(b"etc/" + name.encode(),) * 2 for name, kind, _ in spec.host_etc
                     if kind in ("dir", "bind")]
            if binds:
                # Into our own fresh tmpfs: no target can be a symlink (see RootBinds).
                ops.append(O.RootBinds(old, new, tuple(binds), readonly=True, optional=True))

    deferred = defer_sys(spec, ctx)

    def builtin(name: str) -> list[Op]:
        """The ops of one of the mounts the root makes itself (see ``RootSpec.order``)."""
        if name in ("/proc", "/sys"):
            # procfs can only be mounted by the owner of the pid namespace, sysfs by the owner
            # of the network namespace: in a user namespace without its own, bind the host's.
            mnt, fresh = name[1:].encode(), ctx.new_pid if name == "/proc" else ctx.new_net
            fstype = b"proc" if name == "/proc" else b"sysfs"
            out = mkdirs(new, mnt, is_dir=True, made=made)
            attrs = spec.builtin[name].attrs
            if deferred and mnt == b"sys":
                return out
            if fresh or not ctx.userns:
                return out + [O.RootMount(fstype, new, mnt, source=fstype, attrs=attrs)]
            return out + [O.RootBind(old, mnt, new, mnt, readonly=bool(attrs & MOUNT_ATTR_RDONLY),
                                     attr_set=attrs & ~(MOUNT_ATTR_RDONLY | ATIME_MASK))]
        if name == "/dev":
            out = _dev_ops(spec, ctx, made, facts)
            # /dev/pts and /dev/shm go with /dev unless placed on their own.
            return out + [op for sub in ("/dev/pts", "/dev/shm") if sub not in placed
                          for op in _dev_sub_ops(spec, new, sub)]
        return _dev_sub_ops(spec, new, name)

    def mount(i: int, m: BindMount | TmpfsMount | SpecialMount) -> list[Op]:
        if isinstance(m, TmpfsMount) and m.copy_up:
            if copies is None or i not in copies:
                raise ConfigError(f"RootSpec.mounts[{i}]: copy_up needs its filled tmpfs")
            return mkdirs(new, m.target, is_dir=True, made=made) + [O.RootMount(
                b"tmpfs", new, m.target, fd=copies[i])]
        if isinstance(m, TmpfsMount):
            opts2: list[tuple[str, str | None]] = [("mode", f"{m.mode:o}")]
            if m.size:
                opts2.append(("size", m.size))
            return mkdirs(new, m.target, is_dir=True, made=made) + [O.RootMount(
                b"tmpfs", new, m.target, source=m.source, attrs=m.attrs, options=tuple(opts2))]
        if isinstance(m, BindMount):
            fd = host_fd()
            # A read-write idmapped bind lets container root write as the directory's
            # owner, host root included: nosuid and nodev, whatever lands there (see
            # docs/guides/sandboxing.md, "Read-write binds and setuid files").
            guard = _NOSUID_NODEV if fd != -1 and not m.readonly else 0
            return mkdirs(new, m.target, is_dir=m.is_dir) + [O.RootBind(
                old, m.source.lstrip(b"/") or b".", new, m.target, readonly=m.readonly,
                recursive=m.recursive, attr_set=m.attrs | guard, fd=fd)]
        out = mkdirs(new, m.target, is_dir=True, made=made)
        if m.kind == "mqueue":
            if ctx.userns and not ctx.new_ipc:
                # mqueue can only be mounted by the owner of the ipc namespace.
                return out + [O.RootBind(old, b"dev/mqueue", new, m.target, recursive=False,
                                         readonly=bool(m.attrs & MOUNT_ATTR_RDONLY),
                                         attr_set=m.attrs & ~MOUNT_ATTR_RDONLY)]
            return out + [O.RootMount(b"mqueue", new, m.target, source=b"mqueue", attrs=m.attrs)]
        v1 = facts.v1_hierarchies()
        return out + cgroup_ops(ctx, m, v1, None if v1 else facts.v2_hierarchy())

    # The mounts in the order the spec gives (an OCI config's): those the root makes itself
    # where ``order`` puts them (first when it does not), the others as they were added.
    # Every target is resolved inside the new root whatever comes before it.
    placed = dict(spec.order)
    on = {"/proc": spec.proc, "/sys": spec.sys, "/dev": spec.dev}
    for name in ("/proc", "/sys", "/dev"):
        if on[name] and name not in placed:
            ops += builtin(name)
    for i in range(len(spec.mounts) + 1):
        for name, at in spec.order:
            if at == i:
                ops += builtin(name)
        if i < len(spec.mounts):
            ops += mount(i, spec.mounts[i])
    masked: list[bytes] = []
    ro_paths: list[bytes] = []
    if spec.oci_masks:
        masked += [p.lstrip("/").encode() for p in OCI_MASKED_PATHS
                   if (p.startswith("/proc") and spec.proc) or (p.startswith("/sys") and spec.sys)]
        ro_paths += [p.lstrip("/").encode() for p in OCI_READONLY_PATHS if spec.proc]
    # The OCI defaults lie below the /proc and /sys mounted above, so none can
    # be the root: one op each list (see RootMasks).  A caller's paths may lead
    # anywhere in an image, the root included: one op each, resolving the root anew.
    # The null device bound over masked files: the fresh /dev's, resolved inside the
    # new root as the /dev mount was (never from the staging root, where an image's
    # dev symlink would lead to a host file), or the host's when there is no /dev.
    null, null_root = (b"dev/null", None) if spec.dev else (b"dev/null", old)
    if deferred:
        masked = [p for p in masked if not _below(p, b"sys")]
    # The read-only paths, then the masked ones, as runc makes them.
    if ro_paths:
        ops.append(O.RootBinds(new, new, tuple((rel, rel) for rel in ro_paths), readonly=True,
                               optional=True))
    ops += [O.RootBind(new, rel, new, rel, readonly=True, optional=True)
            for rel in spec.readonly_paths]
    if masked:
        ops.append(O.RootMasks(new, tuple(masked), null, fd=empty, null_root=null_root))
    ops += [O.RootMask(new, rel, null, null_root) for rel in spec.masked]
    if deferred and not sys_after_switch(spec, ctx):
        ops += sys_ops(spec, new, null, empty, null_root)
    for i, target in enumerate(ctx.net_files):
        # Numbered after the prepared mounts (``plan_process`` names them ``net 0`` ...);
        # an empty source: not a host path (``_idmount.prepare`` leaves them alone).
        ops += mkdirs(new, target, is_dir=False, made=made)
        ops.append(O.RootBind(None, b"", new, target, recursive=False, readonly=True,
                              fd=SpawnFd(len(prepared) + i)))
    return ops


def _dev_ops(spec: RootSpec, ctx: RootContext, made: set[bytes], facts: HostFacts) -> list[Op]:
    new, old = ctx.new, ctx.old
    ops: list[Op] = mkdirs(new, b"dev", is_dir=True, made=made)
    dev = spec.builtin["/dev"]
    ops.append(O.RootMount(b"tmpfs", new, b"dev", source=b"tmpfs", attrs=dev.attrs,
                           options=_tmpfs_options(dev)))
    # Every entry of the fresh /dev in one op: the device nodes, pts and
    # shm, and the usual links.  The nodes are made with mknod, as runc
    # does, the same devices as the host's; in a user namespace, which may
    # not create device nodes, or on a nodev /dev, the host's are bound.
    nodes = {} if ctx.userns or dev.attrs & MOUNT_ATTR_NODEV else facts.devices()
    entries: list[MkdirEntry] = [
        (name.encode(), 4, 0o666, nodes[name]) if name in nodes else (name.encode(), 1, 0o666, None)
        for name in DEV_NODES]
    entries += [(b"pts", 0, 0o755, None), (b"ptmx", 2, 0o777, b"pts/ptmx"),
                (b"shm", 0, 0o755, None)]
    entries += [(lname, 2, 0o777, link) for lname, link in (
        (b"fd", b"/proc/self/fd"), (b"stdin", b"/proc/self/fd/0"),
        (b"stdout", b"/proc/self/fd/1"), (b"stderr", b"/proc/self/fd/2"))]
    if ctx.console is not None:
        entries.append((b"console", 1, 0o600, None))
    ops.append(O.RootMkdirs(new, b"dev", tuple(entries)))
    bound = [n for n in DEV_NODES if n not in nodes]
    if bound:
        # Onto the files just made in our own fresh tmpfs (see RootBinds).
        ops.append(O.RootBinds(old, new, tuple((b"dev/" + n.encode(),) * 2 for n in bound),
                               recursive=False, attr_set=MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC))
    if ctx.console is not None:
        ops.append(O.RootBind(old, ctx.console.lstrip(b"/"), new, b"dev/console", recursive=False))
    return ops


def _dev_sub_ops(spec: RootSpec, new: bytes, name: str) -> list[Op]:
    """/dev/pts or /dev/shm, on the directory the /dev tmpfs holds (``_dev_ops``), resolved
    inside the new root like any target."""
    if name == "/dev/pts":
        pts = spec.builtin["/dev/pts"]
        pts_opts: tuple[tuple[str, str | None], ...] = (
            ("newinstance", None), ("ptmxmode", "0666"), ("mode", f"{pts.mode:04o}"))
        if pts.gid is not None:
            pts_opts += (("gid", str(pts.gid)),)
        return [O.RootMount(b"devpts", new, b"dev/pts", source=b"devpts", attrs=pts.attrs,
                            options=pts_opts)]
    shm = spec.builtin["/dev/shm"]
    return [O.RootMount(b"tmpfs", new, b"dev/shm", source=b"shm", attrs=shm.attrs,
                        options=_tmpfs_options(shm))]


def cgroup_ops(ctx: RootContext, m: SpecialMount, v1: Sequence[tuple[str, str]], v2: Any) -> list[Op]:
    """The container's cgroup at ``m.target`` (see ``RootFS.cgroupfs``).

    ``v1``: ``HostFacts.v1_hierarchies()``; ``v2``: the cgroup2 ``Hierarchy``
    or None, used when there is no v1 hierarchy (a pure v2 host).
    """
    new, old = ctx.new, ctx.old
    paths = dict(ctx.cgroup_paths or ())
    ro, attrs = bool(m.attrs & MOUNT_ATTR_RDONLY), m.attrs & ~MOUNT_ATTR_RDONLY

    def bind(directory: str, target: bytes) -> Op:
        # Not recursive: a cgroup directory has no mounts below it.
        return O.RootBind(old, os.fsencode(directory).lstrip(b"/") or b".", new, target,
                          recursive=False, readonly=ro, attr_set=attrs)

    if not v1:
        if v2 is None:
            raise ConfigError("cgroupfs: this host has no cgroup filesystem mounted")
        if ctx.new_cgroupns:
            # The namespace's root is the cgroup the child was born in (CLONE_INTO_CGROUP).
            return [O.RootMount(b"cgroup2", new, m.target, source=b"cgroup2", attrs=m.attrs)]
        return [bind(paths.get(v2.mount) or v2.fs_path(v2.own), m.target)]
    # v1 and hybrid: runc's layout, without the hybrid host's cgroup2 (runc leaves it out):
    # the container's directory where it has one, else the caller's, which the child is in.
    ops: list[Op] = [O.RootMount(b"tmpfs", new, m.target, source=b"tmpfs", attrs=attrs,
                                 options=(("mode", "0755"),))]
    entries: list[MkdirEntry] = []
    binds: list[Op] = []
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
    ops.append(O.RootMkdirs(new, m.target, tuple(entries)))
    return ops + binds


def mounts_cgroupfs(spec: RootSpec) -> bool:
    """Whether the root holds a ``cgroupfs()``: only then do its ops depend on the
    container's cgroup (``RootContext.cgroup_paths``)."""
    return any(isinstance(m, SpecialMount) and m.kind == "cgroup" for m in spec.mounts)


def container_root_ops(spec: RootSpec, ctx: RootContext, base: Sequence[Op], *, cwd: bytes,
                       make_cwd: bool, umask: int | None) -> list[Op]:
    """A container's whole root: ``base`` (``root_ops``), the switch into it, and after it.

    ``cwd``: the working directory (relative form, ``b"."`` for the root);
    ``make_cwd`` creates it (0755, by root, as runc) when the root lacks it;
    ``umask``: the caller's, restored at the end, for a process given none
    (None: the process sets its own later).
    """
    # The modes in the plan (0755 directories, 0644 /etc files, ...) are
    # meant exactly: a caller's umask of 077 would otherwise make /etc
    # unreadable to every user but root inside.
    ops: list[Op] = [O.Umask(0)]
    if ctx.joined_mnt and not spec.in_place:
        # A joined namespace's mounts may be shared with others' (the host's): runc's
        # default, rslave, keeps every mount made from here on from propagating to them.
        ops.append(O.Mount(None, b"/", None, MS_REC | MS_SLAVE))
    ops += base
    if spec.in_place:
        # No mount namespace of its own (or a joined one): runc chroots into the root as
        # the namespace shows it.  (Without CAP_SYS_CHROOT a process cannot leave it.)
        assert spec.directory is not None
        ops += [O.Chdir(path_=os.fsencode(spec.directory)), O.Chroot(b".")]
    elif ctx.chroot:
        ops += [O.Chdir(path_=ctx.new), O.Mount(b".", b"/", None, MS_MOVE), O.Chroot(b".")]
    else:
        ops.append(O.PivotRoot(new_root=ctx.new))
    if sys_after_switch(spec, ctx):
        ops += sys_ops(spec, b"/", b"/dev/null")
    if spec.propagation is not None:
        # On the root as the container sees it, once in it (the spec's rootfsPropagation;
        # see oci/convert.py): a shared root is the first of a new peer group, never the host's.
        rec = spec.propagation[1:] in _PROPAGATION
        flag = _PROPAGATION[spec.propagation[1:] if rec else spec.propagation] | (MS_REC if rec else 0)
        ops.append(O.Mount(None, b"/", None, flag))
    if make_cwd and cwd != b".":
        parts = cwd.split(b"/")
        for i, name in enumerate(parts):
            ops.append(O.RootMkdir(root=b"/", parent=b"/" + b"/".join(parts[:i]), name=name))
    if spec.readonly:
        # Last, so that mount points could still be made on the root.
        ops.append(O.MountSetattr(b"/", attr_set=MOUNT_ATTR_RDONLY, recursive=False))
    if cwd != b".":
        # (Entering the root, by pivot_root or chroot, ends in its "/".)
        ops.append(O.RootChdir(b"/", cwd))
    if umask is not None:
        # No umask of our own: the process keeps the caller's (spawn sets none).
        ops.append(O.Umask(umask))
    return ops
