"""The only caller of ``lib.iso_spawn``: runs a packed plan and raises on failure.

The protocol (see ``csrc/spawn.c``): the child writes one fixed-size
``struct iso_report`` on an O_CLOEXEC pipe if a step fails; end-of-file means
execve succeeded.  A failed child is reaped by the C side before we return.

The child is the child program ``_isolate_child`` (csrc/init.c), which the
spawn's clone executes from a sealed memfd before any op; it is loaded into
that memfd once per process (``_load_child``).

With a ``Delegate`` set (``set_delegate``: the ``isolate-oci`` planner's
worker, ``isolate.oci.warm``), another process clones instead: ``execute``
sends it the plan (``PackedPlan.wire``) and its fds, and the spawned process
is that process's child; ``wait_status`` then waits through it too.
"""

from __future__ import annotations

import errno
import os

from ._record import dataclass
from . import errors
from ._native import ffi, lib
from ._plan import REPORT_STRUCT, STAGES, PackedPlan, Plan, decode_report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol

    class Delegate(Protocol):
        """Another process that clones for this one (``isolate.oci.warm.FrontEnd``)."""

        def spawn(self, wire: bytes, fds: Sequence[int], helper: bytes) -> tuple[Outcome, int]:
            """Clone the plan ``wire`` (``PackedPlan.wire``) with ``fds``, running the child
            program at ``helper``: the outcome, and an owned pidfd of the child (-1: none)."""
            ...

        def release(self) -> Outcome:
            """Let the held child go (``iso_release``); its outcome."""
            ...

        def abandon(self) -> None:
            """Kill and reap the held child (``iso_abandon``)."""
            ...

        def wait(self, pid: int) -> int:
            """``waitpid(pid, 0)``'s status for a child the delegate cloned; raises
            ``ChildProcessError`` if it is not one."""
            ...

        def forward_signals(self) -> None:
            """Pass the signals the delegate gets on to the child of its next ``wait``."""
            ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a delegate's ``iso_spawn`` or ``iso_release`` gave: ``rc`` (0 or -errno), the
    failing ``stage``, the child's ``pid``, whether clone3 made it, whether it is ``held``
    (waiting for ``release``), and its ``report`` (empty: it exec'd)."""

    rc: int
    stage: int
    pid: int
    clone3: bool
    held: bool
    report: bytes


_delegate: Delegate | None = None


def set_delegate(delegate: Delegate | None) -> None:
    """Clone through ``delegate`` from now on in this process (None: here, again)."""
    global _delegate
    _delegate = delegate


def forward_signals() -> None:
    """With a delegate: the signals it gets from now on go to the child it is next asked to
    wait for (``runc run`` and ``exec``: the caller signals the runtime, not the container).
    Without one, nothing: the caller's ``wait`` passes them on itself."""
    if _delegate is not None:
        _delegate.forward_signals()


def wait_status(pid: int) -> int:
    """``waitpid(pid, 0)``'s status: ``pid`` is a child this process spawned (with a delegate:
    one the delegate cloned).  Raises ``ChildProcessError`` if it is none."""
    if _delegate is not None:
        return _delegate.wait(pid)
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue


@dataclass(frozen=True, slots=True)
class Spawned:
    """A child that has exec'd: its pid and an owned pidfd."""

    pid: int
    pidfd: int
    clone3: bool
    timings: dict[str, int] | None = None
    #: Cloned by a delegate: its child, not ours (wait with ``wait_status``).
    remote: bool = False


def _spawn_error(rc: int, child: object) -> errors.SpawnError:
    return _stage_error(rc, child.stage)  # type: ignore[attr-defined]


def _stage_error(rc: int, stage_no: int) -> errors.SpawnError:
    stage = STAGES.get(stage_no, f"stage {stage_no}")
    if -rc == errno.E2BIG and stage_no == lib.ISO_STAGE_CHILD:
        # execve reports E2BIG when it cannot allocate the new program's argument pages,
        # which a tiny memory cgroup causes long before any argument limit is reached.
        stage += (" (its argument pages could not be allocated: the cgroup's memory limit is "
                  "too small, or the environment too large)")
    return errors.SpawnError(-rc, stage=stage)


#: The child program, built with the package (csrc/build_child.py).
CHILD_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_isolate_child")
_CHILD_PROGRAM_B = os.fsencode(CHILD_PROGRAM)


def _load_child() -> None:
    """Load the child program into its sealed memfd (once; again if its fd was closed)."""
    rc = lib.iso_helper_load(_CHILD_PROGRAM_B)
    if rc == 0:
        return
    err = -rc
    if err == errno.ENOENT:
        raise errors.UnsupportedError(
            f"the child program {CHILD_PROGRAM} is missing: reinstall isolate (pip install .)")
    if err in (errno.EACCES, errno.EPERM):
        raise errors.UnsupportedError(
            f"cannot make an executable sealed memfd for the child program ([Errno {err}] "
            f"{os.strerror(err)}); isolate runs it from one so that nothing in a sandbox can "
            "reach a host binary: allow executable memfds (sysctl vm.memfd_noexec=0)")
    raise errors.SpawnError(err, stage="load the child program")


def execute(packed: PackedPlan, fds: Sequence[int] = (), *,
            before_release: Callable[[int], None] | None = None) -> Spawned:
    """Spawn ``packed`` with this spawn's ``fds`` (in ``packed.plan.fd_names`` order).

    ``before_release(pid)`` runs while the child waits, before any op (the
    plan is held: ``PLAN_HOLD``).  Raises ``SpawnError`` for a parent-side
    failure and the op's ``SetupError`` subclass for a child-side one;
    nothing is left behind.
    """
    if _delegate is not None:
        return _execute_delegated(_delegate, packed, fds, before_release)
    inst = packed.instantiate(fds, hold=before_release is not None)
    c_plan = inst.c
    _load_child()
    child = ffi.new("struct iso_child *")
    rc = lib.iso_spawn(c_plan, child)
    if rc < 0:
        raise _spawn_error(rc, child)
    # Held: it waits for its go-ahead.  (A child that died before the hold, an OOM kill
    # under a tiny memory limit, was reaped into ``child`` already: nothing to release.)
    if before_release is not None and child.sync_fd >= 0:
        try:
            before_release(child.pid)
        except BaseException:
            lib.iso_abandon(child)
            raise
        rc = lib.iso_release(c_plan, child)
        if rc < 0:
            raise _spawn_error(rc, child)
    if child.report_len:
        if child.report_len == ffi.sizeof(child.report) and child.report.err == 0:
            # Ready at an ExecGate: alive, waiting for its go-ahead.
            return Spawned(child.pid, child.pidfd, bool(child.clone3_used), None)
        data = bytes(ffi.buffer(ffi.addressof(child, "report"), child.report_len))
        raise decode_report(inst.plan, data)
    timings = None
    if packed.plan.flags & lib.ISO_PLAN_TIMING:
        timings = _timings(inst.plan, c_plan, child)
    return Spawned(child.pid, child.pidfd, bool(child.clone3_used), timings)


def _execute_delegated(d: Delegate, packed: PackedPlan, fds: Sequence[int],
                       before_release: Callable[[int], None] | None) -> Spawned:
    """``execute`` through the delegate ``d``: the same protocol, the same errors."""
    wire, sent = packed.wire(fds, hold=before_release is not None)
    out, pidfd = d.spawn(wire, sent, _CHILD_PROGRAM_B)
    try:
        if out.rc < 0:
            raise _stage_error(out.rc, out.stage)
        pid, clone3 = out.pid, out.clone3
        if before_release is not None and out.held:
            try:
                before_release(pid)
            except BaseException:
                d.abandon()
                raise
            out = d.release()
            if out.rc < 0:
                raise _stage_error(out.rc, out.stage)
        if out.report:
            if len(out.report) == REPORT_STRUCT.size and REPORT_STRUCT.unpack(out.report)[2] == 0:
                return Spawned(pid, pidfd, clone3, None, remote=True)   # ready at its ExecGate
            raise decode_report(packed.plan.bind(fds), out.report)
    except BaseException:
        if pidfd >= 0:
            os.close(pidfd)
        raise
    return Spawned(pid, pidfd, clone3, None, remote=True)


def _timings(plan: Plan, c_plan: object, child: object) -> dict[str, int]:
    """Phase durations in ns: parent side, then each child op (``"op N: <describe>"``)."""
    c = child
    out = {
        "clone": c.t_cloned - c.t_start,  # type: ignore[attr-defined]
        "id_maps": c.t_mapped - c.t_cloned,  # type: ignore[attr-defined]
        "release": c.t_released - c.t_mapped,  # type: ignore[attr-defined]
        "child_ops_and_exec": c.t_done - c.t_released,  # type: ignore[attr-defined]
    }
    times = c_plan.op_times  # type: ignore[attr-defined]
    if times != ffi.NULL:
        n = len(plan.ops)
        stamps = [times[i] for i in range(n)] + [c.t_done]  # type: ignore[attr-defined]
        if all(stamps[:n]):
            for i, op in enumerate(plan.ops):
                out[f"op {i}: {op.describe()}"] = stamps[i + 1] - stamps[i]
    return out


def detached_tmpfs(mode: int, size: str | None = None, source: bytes | None = None,
                   attrs: int = 0) -> int:
    """A new tmpfs, not attached anywhere: its fd (O_CLOEXEC, the caller's to close); raises OSError.

    ``size`` as tmpfs takes it (None: its default), ``source`` as mountinfo
    shows it (None: ``tmpfs``), ``attrs`` the mount's MOUNT_ATTR_* flags.
    """
    import os

    fd = lib.iso_detached_tmpfs(f"{mode:o}".encode(), size.encode() if size else ffi.NULL,
                                source if source else ffi.NULL, attrs)
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd))
    return int(fd)


def mount_fd_setattr(fd: int, attr_set: int) -> None:
    """Set MOUNT_ATTR_* ``attr_set`` on the mount ``fd`` refers to; raises OSError."""
    import os

    rc = lib.iso_mount_fd_setattr(fd, attr_set)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def clone_tree(path: bytes, *, recursive: bool, attr_set: int = 0, attr_clr: int = 0) -> int:
    """A detached clone of the mount tree at ``path`` with MOUNT_ATTR_* ``attr_set``/``attr_clr``
    applied: its fd (O_CLOEXEC, the caller's to close); raises OSError naming ``path``."""
    import os

    fd = lib.iso_clone_tree(path, int(recursive), attr_set, attr_clr)
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd), os.fsdecode(path))
    return int(fd)


def net_config(netns_fd: int, name: str, address: str | None, prefix: int = 0,
               gateway: str | None = None, *, up: bool = True) -> None:
    """Give the interface ``name`` of the network namespace ``netns_fd`` the IPv4 ``address``
    with ``prefix`` and a default route through ``gateway`` (None: no address, or no
    route), and with ``up`` bring it up and set the namespace's sysctls as Docker does
    (every port may be bound, every group may ping).  A thread of the C core's own does
    it (ioctls, no netlink); none of the caller's threads changes namespace.  Raises
    OSError naming the interface."""
    import ipaddress
    import os

    what = (lib.ISO_NET_ADDRESS if address is not None else 0) | (lib.ISO_NET_UP if up else 0)
    addr = int(ipaddress.IPv4Address(address)) if address is not None else 0
    gw = int(ipaddress.IPv4Address(gateway)) if gateway is not None else 0
    rc = lib.iso_net_config(netns_fd, name.encode(), addr, prefix, gw, what)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc), name)


def mount_fd_idmap(fd: int, userns_fd: int, *, recursive: bool) -> None:
    """Idmap the detached mount ``fd`` with the user namespace ``userns_fd``'s maps; raises
    OSError (EINVAL: a filesystem that does not support it)."""
    import os

    rc = lib.iso_mount_fd_idmap(fd, userns_fd, int(recursive))
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def open_in_root(dirfd: int, path: str | bytes, flags: int) -> int:
    """openat2(``dirfd``, ``path``, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): ``path`` of
    the tree ``dirfd`` opens, with every symlink resolved inside it.  The fd
    (O_CLOEXEC, the caller's to close); raises OSError naming ``path``."""
    import os

    rc = lib.iso_open_in_root(dirfd, os.fsencode(path), flags)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc), os.fsdecode(path))
    return int(rc)


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread; raises OSError."""
    import os

    rc = lib.iso_setns(fd, nstype)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def netns_new(*, home: int) -> int:
    """A new network namespace with lo up, made by the calling thread: an fd on it.

    The fd is O_CLOEXEC and the caller's to close.  The thread then goes back
    to the network namespace ``home`` (an fd on it); nothing else changes
    namespace.  The same C code makes a spawn's late network namespace.
    Raises OSError (EPERM without CAP_SYS_ADMIN).
    """
    import os

    rc = lib.iso_netns_new(1, home)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return int(rc)


def set_dumpable(on: bool) -> None:
    """prctl(PR_SET_DUMPABLE) for this process; raises OSError."""
    import os

    rc = lib.iso_set_dumpable(1 if on else 0)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread (``flags``: CLONE_NEW* bits); raises OSError."""
    import os

    rc = lib.iso_unshare(flags)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def clone3_available() -> bool:
    """Whether this kernel has clone3(2): a call with no arguments fails with EINVAL, not ENOSYS."""
    import errno

    return syscall_errno("clone3") != errno.ENOSYS


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2) in the caller's own mount namespace; raises OSError naming ``target``."""
    import os

    enc = os.fsencode
    rc = lib.iso_mount(enc(source) if source is not None else ffi.NULL, enc(target),
                       enc(fstype) if fstype is not None else ffi.NULL, flags,
                       enc(data) if data is not None else ffi.NULL)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc), target)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2); raises OSError naming ``target``."""
    import os

    rc = lib.iso_umount2(os.fsencode(target), flags)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc), target)


_SYSCALLS = {
    "open_tree": lib.ISO_SYS_OPEN_TREE, "move_mount": lib.ISO_SYS_MOVE_MOUNT,
    "fsopen": lib.ISO_SYS_FSOPEN, "fsconfig": lib.ISO_SYS_FSCONFIG, "fsmount": lib.ISO_SYS_FSMOUNT,
    "mount_setattr": lib.ISO_SYS_MOUNT_SETATTR, "close_range": lib.ISO_SYS_CLOSE_RANGE,
    "pidfd_open": lib.ISO_SYS_PIDFD_OPEN, "clone3": lib.ISO_SYS_CLONE3,
}


def syscall_errno(name: str, *args: int) -> int:
    """Call syscall ``name`` with ``args`` (up to 5): 0 if it succeeded, else its errno.

    For probing: ENOSYS means the kernel lacks it.  An fd a valid call
    returns is closed at once.
    """
    a = list(args) + [0] * (5 - len(args))
    return -int(lib.iso_syscall_errno(_SYSCALLS[name], *a))


def bpf_load_device_prog(insns: bytes, log_size: int) -> tuple[int, str]:
    """bpf(BPF_PROG_LOAD) of a cgroup device program (``insns``: 8-byte instructions).

    Kernel style: its fd (O_CLOEXEC, the caller's to close) or -errno, and
    the verifier's log (at most ``log_size`` bytes; empty on success).
    """
    log = ffi.new("char[]", log_size)
    rc = int(lib.iso_bpf_load_device_prog(insns, len(insns) // 8, log, log_size))
    return rc, (ffi.string(log).decode(errors="replace").strip() if rc < 0 else "")


def bpf_attach_device_prog(prog_fd: int, cgroup_fd: int) -> int:
    """Attach device program ``prog_fd`` to the cgroup directory ``cgroup_fd``: 0 or -errno."""
    return int(lib.iso_bpf_attach_device_prog(prog_fd, cgroup_fd))


def bpf_detach_device_prog(prog_fd: int, cgroup_fd: int) -> int:
    """Detach device program ``prog_fd`` from the cgroup directory ``cgroup_fd``: 0 or -errno."""
    return int(lib.iso_bpf_detach_device_prog(prog_fd, cgroup_fd))
