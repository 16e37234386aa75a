"""``RootFS``: the public builder of a container's root filesystem.

A ``RootFS`` collects a root's description call by call, checking every
argument when it is given, and holds it as a ``RootSpec`` (``RootFS.spec``),
a frozen value.  Nothing is mounted in the caller's namespace: at spawn time
the spec becomes plan ops (``_planner_root.root_ops``) that the child runs in
its new mount namespace, and the plan cache keys on the spec, so two
``RootFS`` that describe the same root share one plan.

Where ``pivot_root`` cannot work (the initramfs rootfs), the root is moved
over ``/`` and entered with ``chroot`` instead; ``Container`` states which
(``Result.root_mode``).  A chroot is weaker: the host tree still exists in
the mount namespace, hidden below the new root.

A root with ``overlay(upper=DIR)`` keeps per-run state here: the work
directories made for a run (named in an owner record, see ``isolate.gc``),
removed when the container is gone.
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from pathlib import Path

from . import _plans
from . import _validate as V
from ._plan import MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY
from ._planner_root import DEV_NODES, OCI_MASKED_PATHS, OCI_READONLY_PATHS, RootContext, root_ops
from ._record import dataclass, replace
from ._validate import ATIME_MASK, container_path
from .config import (BUILTIN_DEFAULTS, ETC_COPY_MAX, HOME_SIZE, HOST_DIRS, HOST_ETC, ROOT_PROPAGATIONS, SHM_SIZE,
                     TMP_SIZE, BindMount, MountOptions, OverlaySpec, RootSpec, SpecialMount,
                     TmpfsMount, host_root)
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TypeAlias

    from ._owner import Record
    from ._plan import Op
    from .images.image import Image
    from .images.store import Store

__all__ = ["RootFS", "Changes", "OCI_MASKED_PATHS", "OCI_READONLY_PATHS", "HOST_DIRS", "HOST_ETC",
           "SHM_SIZE", "TMP_SIZE", "HOME_SIZE", "OVERLAY_SIZE", "DEV_NODES", "ETC_COPY_MAX",
           "container_path"]

StrPath: TypeAlias = "str | os.PathLike[str]"

#: The default size of an overlay's upper layer (``config.OVERLAY_SIZE``).
OVERLAY_SIZE = "1g"

#: The mounts a RootFS makes itself, as ``RootFS.mount_options()`` names them.
BUILTIN_MOUNTS = ("/proc", "/sys", "/dev", "/dev/pts", "/dev/shm")


@dataclass(frozen=True, slots=True)
class Changes:
    """What a sandbox did to an overlay: paths inside the container, sorted."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]


class RootFS:
    """The root filesystem of a container: host binds or a directory, plus mounts.

    Build one with ``RootFS.host()`` (the host's /usr, /bin, /lib*, a minimal
    /etc, read-only: no image needed) or ``RootFS.from_directory(path)`` (an
    unpacked image), then add ``bind()``, ``tmpfs()`` and ``overlay()``; each
    returns the ``RootFS`` so calls chain.  Every argument is checked when
    given (``ConfigError``), before any namespace or mount exists.  ``spec``
    is what it describes so far, a ``RootSpec``.

    The container always gets a fresh /proc, /sys read-only, a minimal /dev
    (null, zero, full, random, urandom, tty, pts with its own instance, ptmx,
    shm, console when stdio is a terminal), and the OCI default masked and
    read-only paths, unless turned off (``proc=False`` ...); ``mount_options()``
    changes their flags.  ``mqueue()``, ``cgroupfs()``, ``mask_paths()`` and
    ``readonly_paths()`` add what OCI configs ask for.

    Mounts are made in this order: the root, /proc, /sys, /dev, then those
    added by ``bind()``, ``tmpfs()``, ``mqueue()`` and ``cgroupfs()`` in the
    order of the calls, then the masked and read-only paths; ``place()`` puts
    /proc, /sys, /dev, /dev/pts or /dev/shm among the others instead.  A
    container with its own network namespace and no user namespace mounts
    /sys last (after the switch to the new root), unless something is
    mounted below it or it was placed.
    """

    def __init__(self, *, directory: StrPath | None = None, readonly: bool = True,
                 proc: bool = True, sys: bool = True, dev: bool = True,
                 oci_masks: bool = True, idmap: bool = True) -> None:
        """Prefer ``RootFS.host()`` and ``RootFS.from_directory()``.

        ``idmap``: the host binds (the image directory, the host's /usr ...,
        ``bind()``) are idmapped mounts when container root is not host root
        (see docs/guides/sandboxing.md, "Read-write binds and setuid files");
        False keeps them plain binds, whose files then show as ``nobody``.
        """
        d = None
        if directory is not None:
            d = Path(os.fsdecode(V.nonempty_path(directory, "rootfs")))
            if not d.is_absolute():
                d = Path.cwd() / d
            if not d.exists():
                raise ConfigError(f"rootfs: {str(d)!r} does not exist")
            if not d.is_dir():
                raise ConfigError(f"rootfs: {str(d)!r} is not a directory")
            d = Path(os.path.realpath(d))
        self._spec = RootSpec(directory=d, readonly=bool(readonly), proc=bool(proc), sys=bool(sys),
                              dev=bool(dev), oci_masks=bool(oci_masks), idmap=bool(idmap))
        self._created: list[Path] = []   # overlay directories made for the current run
        self._rec: Record | None = None  # the owner record of the run's overlay work directories
        self._held: str | None = None    # the store's hold on the image layers a run uses
        #: The image of a ``from_image`` root (its config is the container's default), or None.
        self.image: Image | None = None

    @classmethod
    def from_spec(cls, spec: RootSpec) -> RootFS:
        """A builder that starts from ``spec`` (no check of the host is made again)."""
        if not isinstance(spec, RootSpec):
            raise ConfigError(f"from_spec needs a RootSpec, got {spec!r}")
        self = cls.__new__(cls)
        self._spec = spec
        self._created = []
        self._rec = None
        self._held = None
        self.image = None
        return self

    @property
    def spec(self) -> RootSpec:
        """What this root is so far: a frozen ``RootSpec`` (a new one after each builder call)."""
        return self._spec

    def __repr__(self) -> str:
        s = self._spec
        src = (f"image={self.image.name or self.image.digest!r}" if self.image is not None else
               f"layers={len(s.layers)}" if s.layers else
               f"directory={str(s.directory)!r}" if s.directory else "host")
        binds = sum(isinstance(m, BindMount) for m in s.mounts)
        tmpfs = sum(isinstance(m, TmpfsMount) for m in s.mounts)
        return f"<isolate.RootFS {src} binds={binds} tmpfs={tmpfs}>"

    def _ops(self, ctx: RootContext) -> list[Op]:
        """The ops that build this root for ``ctx`` (``root_ops``; for tests and tools)."""
        return root_ops(self._spec, ctx)

    def _add(self, mount: BindMount | TmpfsMount | SpecialMount) -> RootFS:
        self._spec = replace(self._spec, mounts=self._spec.mounts + (mount,))
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
        return cls.from_spec(host_root(etc=etc, tmp=tmp, home=home, tmp_size=tmp_size,
                                       home_size=home_size))

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

    @classmethod
    def from_image(cls, reference: str | Image, *, store: Store | None = None, readonly: bool = False,
                   size: int | str | None = OVERLAY_SIZE, **options: bool) -> RootFS:
        """An image of the store as the root: its layers (unpacked once, on first use: see
        ``Image.layers``) stacked as overlayfs lower layers under a writable tmpfs layer
        of ``size`` (``overlay()``'s), as containerd's overlay snapshotter does: nothing
        is copied per container, and every container of the image shares the layers.

        ``reference``: a name or digest (``Image.open``) or an ``Image``.  The
        layers are mounted read-only (they are never written) and nodev;
        ``readonly`` makes the merged root read-only too.  A ``Container`` on
        this root runs the image's Entrypoint and Cmd, with its Env, WorkingDir
        and User, unless told otherwise (``image`` holds the ``Image``).  While
        a container runs on it, its layers are recorded in use
        (``Store.hold_layers``): ``isolate rmi`` and ``isolate image prune``
        keep them.  Without root, when the store's layers keep their owners
        shifted into the caller's subordinate ids (``Store.is_shifted``), the
        container's user namespace maps those ids (0 is the caller, 1 and up its
        ranges: ``idmap.subid_maps``) whatever its user, so the image's files
        show their image owners inside.  Raises ``ImageError`` (not in the
        store, a bad layer, layers shifted with other subordinate ids than the
        caller's now).
        """
        from .images.image import Image, check_shift

        image = reference if isinstance(reference, Image) else Image.open(reference, store=store)
        _check_platform(image)
        layers = tuple(image.layers())
        check_shift(image)
        if not layers:
            raise ConfigError(f"rootfs: the image {image.name or image.digest} has no layers")
        self = cls(directory=None, readonly=False, **options)
        ov = OverlaySpec(upper=None, size=V.size(size, "overlay size"))
        self._spec = replace(self._spec, layers=layers, overlay=ov, readonly=bool(readonly))
        self.image = image
        return self

    @classmethod
    def as_is(cls, path: StrPath) -> RootFS:
        """The directory ``path`` entered as it is, with chroot(2): nothing is mounted.

        For a container without a mount namespace of its own (or in one it
        joins), as runc enters an OCI bundle's root then: the directory is
        the one that namespace shows, and it takes no ``bind()``, ``tmpfs()``
        or other mount (``ConfigError``).  A chroot holds only a process
        without CAP_SYS_CHROOT.
        """
        d = cls(directory=path, readonly=False, proc=False, sys=False, dev=False, oci_masks=False)
        d._spec = replace(d._spec, in_place=True)
        return d

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
        attrs = V.mount_attrs("bind", nosuid=nosuid, nodev=nodev, noexec=noexec)
        src = V.nonempty_path(source, "bind source")
        try:
            st = os.stat(src)
        except OSError as e:
            raise ConfigError(f"bind source {os.fsdecode(src)!r}: {e.strerror}") from None
        real = os.path.realpath(src)
        dst = container_path(src if target is None else target, "bind target")
        if dst == b".":
            raise ConfigError(f"bind target must not be the root: {target!r}")
        return self._add(BindMount(source=real, target=dst, readonly=bool(readonly),
                                   recursive=bool(recursive), is_dir=stat.S_ISDIR(st.st_mode),
                                   attrs=attrs))

    def tmpfs(self, target: StrPath, *, size: int | str | None = None, mode: int = 0o1777,
              readonly: bool = False, nosuid: bool = True, nodev: bool = True, noexec: bool = False,
              atime: str | None = None, source: str = "tmpfs", copy_up: bool = False) -> RootFS:
        """A fresh tmpfs at ``target``; ``size`` in bytes or as tmpfs takes it (``"64m"``).

        ``readonly``, ``nosuid``, ``nodev``, ``noexec``: the mount's flags
        (nosuid and nodev by default); ``atime``: ``"relatime"`` (the
        default), ``"noatime"`` or ``"strictatime"``.  ``source``: the name
        /proc/self/mountinfo shows as the mount's source (an OCI mount's
        ``source``).  A read-only tmpfs stays empty (its root directory has
        ``mode``).  ``copy_up``: the tmpfs starts with a copy of the image's
        directory it covers (an OCI ``tmpcopyup``: symlinks as symlinks, owners
        and modes kept, never following a symlink out of the image), made
        at each start; an image root only.  Raises ``ConfigError`` naming
        the bad argument.
        """
        dst = container_path(target, "tmpfs target")
        if dst == b".":
            raise ConfigError(f"tmpfs target must not be the root: {target!r}")
        mode = V.mode(mode, "tmpfs mode")
        attrs = V.mount_attrs("tmpfs", readonly=readonly, nosuid=nosuid, nodev=nodev, noexec=noexec,
                              atime=atime)
        src = V.nonempty_path(source, "tmpfs source")
        if len(src) > 255:
            raise ConfigError(f"tmpfs source must be at most 255 bytes, got {source!r}")
        return self._add(TmpfsMount(target=dst, size=V.size(size, "tmpfs size"), mode=mode, attrs=attrs,
                                    source=src, copy_up=bool(copy_up)))

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
        attrs = V.mount_attrs("mqueue", readonly=readonly, nosuid=nosuid, nodev=nodev, noexec=noexec)
        return self._add(SpecialMount(kind="mqueue", target=dst, attrs=attrs))

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
        attrs = V.mount_attrs("cgroupfs", readonly=readonly, nosuid=nosuid, nodev=nodev, noexec=noexec)
        return self._add(SpecialMount(kind="cgroup", target=dst, attrs=attrs))

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
        if target not in BUILTIN_DEFAULTS:
            raise ConfigError(f"mount_options target must be one of {', '.join(BUILTIN_MOUNTS)}, "
                              f"got {target!r}")
        spec = self._spec
        on = {"/proc": spec.proc, "/sys": spec.sys}.get(target, spec.dev)
        if not on:
            raise ConfigError(f"mount_options {target!r}: the RootFS makes no {target} "
                              f"(it was turned off)")
        cur = spec.builtin[target]
        attrs = cur.attrs
        what = f"mount_options {target!r}"
        for name, value, bit in (("readonly", readonly, MOUNT_ATTR_RDONLY),
                                 ("nosuid", nosuid, MOUNT_ATTR_NOSUID),
                                 ("nodev", nodev, MOUNT_ATTR_NODEV),
                                 ("noexec", noexec, MOUNT_ATTR_NOEXEC)):
            if value is not None:
                attrs = attrs | bit if V.flag(value, f"{what} {name}") else attrs & ~bit
        if atime is not None:
            attrs = (attrs & ~ATIME_MASK) | V.mount_attrs(what, atime=atime)
        for name, option, allowed in (("size", size, ("/dev", "/dev/shm")),
                                      ("mode", mode, ("/dev", "/dev/pts", "/dev/shm")),
                                      ("gid", gid, ("/dev/pts",))):
            if option is not None and target not in allowed:
                raise ConfigError(f"{what}: {name} applies only to {', '.join(allowed)}, got {option!r}")
        if gid is not None and (not isinstance(gid, int) or isinstance(gid, bool)
                                or not 0 <= gid < 2**32 - 1):
            raise ConfigError(f"{what} gid must be a group id (int), got {gid!r}")
        new = MountOptions(attrs=attrs, size=cur.size if size is None else V.size(size, f"{what} size"),
                           mode=cur.mode if mode is None else V.mode(mode, f"{what} mode"),
                           gid=cur.gid if gid is None else gid)
        self._spec = replace(spec, builtin={**spec.builtin, target: new})
        return self

    def place(self, target: str) -> RootFS:
        """Make the mount the RootFS makes itself at ``target`` (``/proc``, ``/sys``, ``/dev``,
        ``/dev/pts`` or ``/dev/shm``) after the mounts added so far rather than first.

        Calls in the order an OCI config lists its mounts keep that order.
        /dev/pts and /dev/shm not placed go with /dev; one placed before /dev
        is hidden by it.  Raises ``ConfigError`` for another target, one the
        RootFS does not make, or one placed twice.
        """
        spec = self._spec
        try:
            self._spec = replace(spec, order=spec.order + ((target, len(spec.mounts)),))
        except ConfigError:
            raise ConfigError(f"place: {target!r} is not a mount this RootFS makes "
                              f"({', '.join(BUILTIN_MOUNTS)}, unless turned off), or is placed "
                              "already") from None
        return self

    def propagation(self, kind: str | None) -> RootFS:
        """The mount propagation of the root once the container is in it, as the OCI
        ``linux.rootfsPropagation`` (``"shared"``, ``"slave"``, ``"private"``,
        ``"unbindable"``, or ``"r"`` and one of those for the mounts below it too).

        None (the default) leaves every mount of the container private.  A
        shared root starts a peer group of its own: nothing propagates to or
        from the host.  Raises ``ConfigError`` for another value.
        """
        try:
            self._spec = replace(self._spec, propagation=kind)
        except ConfigError:
            raise ConfigError(f"propagation must be one of {', '.join(ROOT_PROPAGATIONS)} or None, "
                              f"got {kind!r}") from None
        return self

    def mask_paths(self, *paths: StrPath) -> RootFS:
        """Hide ``paths`` in the container: a file gets /dev/null over it, a directory an
        empty read-only tmpfs (as the OCI ``linux.maskedPaths``).  A path the
        container lacks is left alone (not created).  Applied after every mount,
        in addition to the OCI default list unless ``oci_masks=False``."""
        masked = self._below_root(paths, "masked path", "")
        self._spec = replace(self._spec, masked=self._spec.masked + masked)
        return self

    def readonly_paths(self, *paths: StrPath) -> RootFS:
        """Make ``paths`` read-only in the container (a read-only bind of each onto itself,
        with the mounts below it), as the OCI ``linux.readonlyPaths``.  A path the
        container lacks is left alone.  Applied after every mount, in addition
        to the OCI default list unless ``oci_masks=False``."""
        ro = self._below_root(paths, "read-only path", " (use readonly=True)")
        self._spec = replace(self._spec, readonly_paths=self._spec.readonly_paths + ro)
        return self

    @staticmethod
    def _below_root(paths: tuple[StrPath, ...], what: str, hint: str) -> tuple[bytes, ...]:
        """``paths`` as container paths; ``ConfigError`` naming ``what`` for the root itself."""
        targets = tuple(container_path(p, what) for p in paths)
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
        directory = self._spec.directory
        if upper is not None:
            up = Path(os.fsdecode(V.nonempty_path(upper, "overlay upper")))
            if not up.is_absolute():
                up = Path.cwd() / up
            if not up.is_dir():
                raise ConfigError(f"overlay upper: {str(up)!r} is not an existing directory")
            up = Path(os.path.realpath(up))
            if directory is not None and (up == directory or directory in up.parents):
                raise ConfigError(f"overlay upper {str(up)!r} must not be inside the rootfs")
        ov = OverlaySpec(upper=up, size=V.size(size, "overlay size"))
        # The layer exists to be written.
        self._spec = replace(self._spec, overlay=ov, readonly=False)
        return self

    @property
    def directory(self) -> Path | None:
        """The image directory, or None for a host root."""
        return self._spec.directory

    @property
    def readonly(self) -> bool:
        """Whether the root itself is mounted read-only."""
        return self._spec.readonly

    def changes(self) -> Changes:
        """What the sandbox added, changed and deleted, read from a kept overlay layer.

        Deletions are overlayfs whiteouts (0:0 character devices) and opaque
        directories.  Raises ``ConfigError`` without ``overlay(upper=DIR)``.
        """
        spec = self._spec
        if spec.overlay is None or spec.overlay.upper is None:
            raise ConfigError("changes() needs overlay(upper=DIR)")
        upper = spec.overlay.upper / "upper"
        lowers = self._lower_dirs()
        # Mount points made for the container's own mounts are not the sandbox's doing.
        ours = spec.mount_points()
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
                elif lower is not None and (os.path.lexists(lower) if not spec.layers
                                            else _in_layers(spec.layers, inside)):
                    if stat.S_ISDIR(st.st_mode) and not _opaque(p):
                        continue     # a directory only traversed to reach a change below
                    changed.append(inside)
                else:
                    added.append(inside)
        return Changes(added=tuple(sorted(added)), changed=tuple(sorted(changed)),
                       deleted=tuple(sorted(deleted)))

    def _lower_dirs(self) -> dict[str, Path]:
        spec = self._spec
        if spec.directory is not None:
            return {"": spec.directory}
        if spec.layers:
            return {"": spec.layers[-1]}
        return {name: Path("/", name) for name, link in spec.host_dirs if link is None}

    def _lower_for(self, lowers: dict[str, Path], inside: str) -> str | None:
        if "" in lowers:
            return str(lowers[""]) + inside
        top, _, rest = inside.lstrip("/").partition("/")
        if top in lowers:
            return str(lowers[top] / rest) if rest else str(lowers[top])
        return None

    # --- a run's overlay directories ----------------------------------------------

    def _prepare(self) -> None:
        """Create the kept overlay directories (parent side, before the spawn).

        The work directories made here are named in an owner record of this
        process (see ``isolate.gc``), and dead owners' work directories in
        this layer are reclaimed first.  The upper layer is the caller's
        data: never recorded, never reclaimed.
        """
        self._created = []
        self._rec = None
        spec = self._spec
        self._unhold()            # a previous run's record (its process is gone)
        self._hold(os.getpid())
        if spec.overlay is None or spec.overlay.upper is None:
            return
        from . import _owner

        base = spec.overlay.upper
        work = base / "work"
        _owner.reclaim_once([str(base), str(work)])
        dirs = [base / "upper", work]
        if spec.directory is None:
            for name, link in spec.host_dirs:
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
                    if d == work:
                        # Written before anything is made in it: a work directory left
                        # pending (its inode unknown) is removed only when empty, and what
                        # comes next goes inside it unrecorded.
                        rec.flush()
        if rec is not None:
            rec.flush()

    def _started(self, pid: int, *, hand_over: bool = True) -> None:
        """The container's first process ``pid`` runs on the overlay: its work directories
        stay while it runs, whatever becomes of this process (see ``isolate.gc``).

        ``hand_over``: the hold on the image layers passes to ``pid`` too; False when the
        container dies with this process (``die_with_parent``), whose own hold then
        covers it (one journal write less per start; ``_hand_over`` at ``detach``)."""
        if self._rec is not None:
            self._rec.holder(pid)
        if hand_over:
            self._hand_over(pid)

    def _hand_over(self, pid: int) -> None:
        """Pass the hold on the image layers to ``pid`` (the container outlives this process)."""
        if self._held is not None:
            self._hold(pid)

    def _abort(self) -> None:
        """Undo ``_prepare`` after a failed spawn: nothing of ours is left behind."""
        import shutil

        for d in reversed(self._created):
            shutil.rmtree(d, ignore_errors=True)
        self._created = []
        self._forget()

    def _finish(self) -> None:
        """After the container is gone: drop the overlay work directories (kernel scratch)."""
        ov = self._spec.overlay
        if ov is not None and ov.upper is not None:
            import shutil

            shutil.rmtree(ov.upper / "work", ignore_errors=True)
        self._created = []
        self._forget()

    def _forget(self) -> None:
        """End the run's owner record: its work directories are gone (or were never made)."""
        rec, self._rec = self._rec, None
        if rec is not None:
            rec.clear()
        self._unhold()

    def _hold(self, pid: int) -> None:
        """Hold the image layers for ``pid``: the caller before it mounts them (checked
        against a prune, under the store's lock), then handed over to the container's
        first process (``Store.pass_layers``)."""
        layers = self._spec.layers
        if not layers:
            return
        store = self._layer_store()
        ids = tuple("sha256:" + p.name for p in layers)
        if self._held is None:
            self._held = store.hold_layers(ids, pid)
        else:
            self._held = store.pass_layers(self._held, ids, pid)

    def _layer_store(self) -> Store:
        from .images.store import Store

        # A layer is <store>/layers/sha256/<hex>; the store exists (no Store() checks per start).
        store = Store.__new__(Store)
        store.root = self._spec.layers[0].parents[2]
        return store

    def _unhold(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._layer_store().release_layers(held)


def _check_platform(image: Image) -> None:
    """``ImageError`` for an image of another OS or architecture than this machine's
    (its programs would fail with ENOEXEC)."""
    from .errors import ImageError
    from .images.manifest import host_platform

    host, c = host_platform(), image.config
    if (c.os and c.os != host.os) or (c.architecture and c.architecture != host.architecture):
        raise ImageError(f"{image.name or image.digest}: the image is for {c.os}/{c.architecture}, "
                         f"this machine runs {host.os}/{host.architecture}")


def _in_layers(layers: tuple[Path, ...], inside: str) -> bool:
    """Whether ``inside`` is in the merged view of an image's ``layers`` (bottom first)."""
    from .images.image import lookup_layered

    return lookup_layered(list(layers), inside) is not None


def _opaque(path: Path) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError as e:
            if e.errno not in (_errno.ENODATA, _errno.ENOTSUP, _errno.EPERM):
                raise
    return False


def root_is_initramfs() -> bool:
    """Whether / is the initramfs rootfs, which pivot_root(2) cannot move (EINVAL)."""
    return _plans.root_is_initramfs()
