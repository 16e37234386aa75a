"""The plan cache: plans made and packed once per key, in the one cache (``_cache``).

A judge or a CI sandbox starts the same shape of process thousands of times;
validating, planning and packing it again each time would cost more than the
clone.  Every key here is made of values (``ProcessSpec``, ``Isolation``,
``FdLayout``, ``Host``, ``RootSpec``, ``RootContext``, ops, bytes), never of
object identities, so equal configs meet in one entry whichever objects they
came from (a fresh ``RootFS.host()`` per ``Container`` included).  Forgetting
a value in a key is impossible: the planners read nothing but their
arguments (and the host's user database and devices).

What is memoized: packed process plans (``packed_process``), a container's
root ops (``container_root``), compiled seccomp filters (``seccomp_program``),
the resolved staging directory (``stage_path``), whether a root can be built
in place (``builds_in_place``), the detached tmpfs mounts shared roots are
cloned from, and two probes.  Entries hold what their plans name: a shared
root's fd stays open while any plan naming it lives.
"""

from __future__ import annotations

import os

from . import _ops as O
from . import _spawn
from ._cache import get, memo, put
from ._plan import MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, OpSeq
from ._planner import FdLayout, Host, Isolation, ProcessPlan, plan_process, seccomp_caps
from ._planner_root import (HostFacts, RootContext, container_root_ops, root_ops, shareable,
                            shared_contents)
from .config import BindMount, ProcessSpec, RootSpec, TmpfsMount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from ._ops_root import MkdirEntry
    from ._plan import Op, PackedPlan
    from .seccomp import SeccompProfile

__all__ = ["packed_process", "container_root", "seccomp_program", "profile_program", "stage_path",
           "builds_in_place", "root_is_initramfs", "shared_roots_work"]

# --- process plans -----------------------------------------------------------------


def seccomp_program(spec: ProcessSpec) -> bytes | None:
    """``spec.seccomp`` as BPF: bytes as given, a profile compiled, ``"default"`` as Docker's
    profile for the capabilities the process keeps (each compiled once)."""
    sc = spec.seccomp
    if sc is None or isinstance(sc, bytes):
        return sc
    if sc == "default":
        caps = seccomp_caps(spec)

        def default() -> bytes:
            from .seccomp import SeccompProfile

            return SeccompProfile.default(caps).compile()

        return memo(("seccomp", "default", caps), default)
    return profile_program(sc)


def profile_program(profile: SeccompProfile) -> bytes:
    """``profile`` compiled (``seccomp.compiled``: kept between a planner's workers), once per
    process."""
    def make() -> bytes:
        from .seccomp import compiled

        return compiled(profile)

    return memo(("seccomp", profile), make)


def packed_process(spec: ProcessSpec, iso: Isolation, io: FdLayout,
                   extra: Sequence[Op] = (), keep: tuple[object, ...] = ()) -> tuple[ProcessPlan, PackedPlan]:
    """The plan of a spawn and its packed form, planned and packed once per key.

    ``keep``: owners of the fds ``extra`` names (a shared root's), kept alive
    by the packed plan.  Raises ``ConfigError`` as ``plan_process`` does.
    """
    host = Host.values(spec)
    ops = extra if type(extra) is OpSeq else OpSeq(extra)
    prog = seccomp_program(spec)

    def make() -> tuple[ProcessPlan, PackedPlan]:
        planned = plan_process(spec, iso, io, Host(*host), ops, prog)
        return planned, planned.plan.pack(keep)

    if any(type(k) is Owned for k in keep):
        return make()    # one start's own mounts: nothing to keep for another
    return memo(("process", spec, iso, io, host, ops, prog), make)


# --- roots ----------------------------------------------------------------------------


class Detached:
    """A detached mount (an fd from fsmount), closed when no entry or plan holds it."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # (os.close is bound early: at interpreter exit the module may be gone.)
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            _close(fd)


class Owned(Detached):
    """A detached mount of one start (a ``copy_up`` tmpfs): never kept by a cache entry."""

    __slots__ = ()


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


def _make_master(top: Sequence[MkdirEntry], etc: Sequence[MkdirEntry]) -> Detached:
    """A detached read-only tmpfs holding ``top`` and ``etc`` (RootMkdirs entries): every
    start of a shared root attaches a clone (``RootMount(fd=...)``), which saves making
    the root, its mount points and /etc's files in each child."""
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
        _spawn.mount_fd_setattr(fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)
    except BaseException:
        os.close(fd)
        raise
    return Detached(fd)


def _make_empty() -> Detached:
    """An empty read-only tmpfs (as a masked directory gets)."""
    fd = _spawn.detached_tmpfs(0o1777)    # tmpfs's own default, as a fresh mask has
    try:
        _spawn.mount_fd_setattr(fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                                | MOUNT_ATTR_NOEXEC)
    except BaseException:
        os.close(fd)
        raise
    return Detached(fd)


def shared_roots_work() -> bool:
    """Whether a child in a new mount namespace may clone a detached mount of ours (probed once).

    Root only (the tmpfs is made here, in the caller's user namespace).  The
    probe spawns once: a kernel that refuses (EINVAL) keeps every root built
    in the child.
    """
    def probe() -> bool:
        if os.geteuid() != 0 or not os.path.exists("/bin/true"):
            return False
        try:
            master = _make_empty()
        except OSError:
            return False
        spec = ProcessSpec(args=("/bin/true",), capabilities=None, seccomp=None, no_new_privs=False,
                           umask=None, die_with_parent=False, new_session=False)
        _, packed = packed_process(spec, Isolation(namespaces=frozenset({"mnt"})), FdLayout(),
                                   (O.RootMount(b"tmpfs", None, b"/tmp", fd=master.fd),), (master,))
        try:
            child = _spawn.execute(packed, ())
        except OSError:
            return False
        try:
            status = _spawn.wait_status(child.pid)
        finally:
            os.close(child.pidfd)
        return os.waitstatus_to_exitcode(status) == 0

    return memo(("probe", "shared roots"), probe)


def root_is_initramfs() -> bool:
    """Whether / is the initramfs rootfs, which pivot_root(2) cannot move (EINVAL)."""
    def probe() -> bool:
        try:
            with open("/proc/self/mountinfo", "rb") as f:
                for line in f:
                    fields = line.split()
                    if fields[4] == b"/":
                        return bool(fields[fields.index(b"-") + 1] == b"rootfs")
        except (OSError, ValueError, IndexError):
            pass
        return False

    return memo(("probe", "initramfs"), probe)


def stage_path(stage: str, check: bool) -> bytes:
    """The real path of a staging directory (``check``: it must exist), resolved once.

    Right after a container run the lookups cost ~100 us (cold caches), on
    every start.  The stage is only a mount point in the child's own mount
    namespace; should it vanish later, the child's mount fails with a
    ``MountError`` naming it.
    """
    from .errors import ConfigError

    st = os.fsencode(stage)
    if not check:
        return os.path.realpath(st)

    def resolve() -> bytes:
        if not os.path.isdir(st):
            raise ConfigError(f"stage must be an existing directory, got {stage!r}")
        return os.path.realpath(st)

    return memo(("stage", st), resolve)


def builds_in_place(spec: RootSpec, stage: bytes, console: bytes | None) -> bool:
    """Whether the new root can be mounted right on ``stage`` (see ``RootContext.direct``).

    Only when no host path the build reads lies under ``stage`` (the new
    root covers it) and there is no overlay (whose upper layer lives in the
    staging tmpfs).  Saves a tmpfs mount and a pivot_root per start.
    """
    def check() -> bool:
        if spec.overlay is not None:
            return False
        sources = [os.fsencode(spec.directory)] if spec.directory is not None else []
        sources += [b"/" + n.encode() for n, link in spec.host_dirs if link is None]
        sources += [b"/etc/" + n.encode() for n, kind, _ in spec.host_etc if kind in ("dir", "bind")]
        sources += [m.source for m in spec.mounts if isinstance(m, BindMount)]
        sources += [b"/dev", b"/proc", b"/sys"] + ([console] if console is not None else [])
        under = stage.rstrip(b"/") + b"/"
        for src in sources:
            real = os.path.realpath(src)
            if real == stage or real.startswith(under) or stage.startswith(real.rstrip(b"/") + b"/"):
                return False
        return True

    return memo(("in place", spec, stage, console), check)


def container_root(spec: RootSpec, ctx: RootContext, *, cwd: bytes, make_cwd: bool,
                   umask: int | None, facts: HostFacts | None = None) -> tuple[OpSeq, tuple[Detached, ...]]:
    """A container's root ops (``container_root_ops`` of ``root_ops``), made once per key,
    and the detached mounts they clone (to keep alive with any plan naming them).

    A ``shareable`` root is built in the child the first time (a root used
    once would pay for the shared one for nothing), then from a master made
    once for its contents.  A root with ``copy_up`` tmpfs mounts is planned at
    each call, with a tmpfs of its own filled for each (``_copyup``).
    """
    ups = [i for i, m in enumerate(spec.mounts) if isinstance(m, TmpfsMount) and m.copy_up]
    if ups and not spec.in_place:
        from ._copyup import copy_up

        assert spec.directory is not None    # RootSpec checks it
        owned: list[Owned] = []
        for i in ups:
            tm = spec.mounts[i]
            assert isinstance(tm, TmpfsMount)
            owned.append(Owned(copy_up(spec.directory, tm)))
        base = root_ops(spec, ctx, facts=facts, copies={i: o.fd for i, o in zip(ups, owned)})
        return OpSeq(container_root_ops(spec, ctx, base, cwd=cwd, make_cwd=make_cwd, umask=umask)), tuple(owned)
    key = ("root", spec, ctx, cwd, make_cwd, umask)
    hit = get(key)
    if hit is not None and hit[2]:
        return hit[0], hit[1]
    share = shareable(spec, ctx) and shared_roots_work()
    holders: tuple[Detached, ...] = ()
    master = empty = -1
    if share and hit is not None:
        top, etc = shared_contents(spec)
        m = memo(("master", top, etc), lambda: _make_master(top, etc))
        e = memo(("master", "empty"), _make_empty)
        holders, master, empty = (m, e), m.fd, e.fd
    base = root_ops(spec, ctx, master=master, empty=empty, facts=facts)
    ops = OpSeq(container_root_ops(spec, ctx, base, cwd=cwd, make_cwd=make_cwd, umask=umask))
    # Final unless a shared root is still to be made for a second use.
    final = not share or hit is not None
    put(key, (ops, holders, final))
    return ops, holders

