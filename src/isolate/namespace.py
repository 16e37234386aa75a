"""``Namespace``: an open Linux namespace (an nsfs file descriptor).

Open one that exists (``Namespace.of(pid, "net")``, ``Namespace.from_path``),
create a persistent one bound to a file as ``ip netns add`` does
(``Namespace.create``), hand it to ``spawn(join=[...])``, or move the calling
thread into it for a while (``with ns.entered():``).

The calling interpreter is never moved into a new namespace by ``create``:
the namespace is made by a short-lived child (``isolate.spawn``; for a pid
namespace, a child kept as its init) and its ``/proc/<pid>/ns/<type>`` file
is bind-mounted onto the target file while the child waits.  That works in a multithreaded process, where ``unshare``
of a mount, user or pid namespace fails with ``EINVAL``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import os
import re
import stat
import subprocess
import threading
import warnings

from . import _plan as P
from . import _spawn
from .errors import ConfigError, SpawnError, UnsupportedError
from .idmap import IdMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any, final

    from ._owner import Record
    from ._planner import ProcessPlan
else:
    from ._record import final

__all__ = ["Namespace", "NAMESPACE_TYPES"]

#: Namespace type names, as in /proc/<pid>/ns.
NAMESPACE_TYPES = frozenset(P.NSTYPES)

# /proc/<pid>/ns entries that name the namespace a process's *children* get.
_FOR_CHILDREN = {"pid_for_children": "pid", "time_for_children": "time"}

# ioctl_ns(2): NS_GET_NSTYPE is _IO(0xb7, 0x3) (linux/nsfs.h, Linux 4.11).
# ioctl numbers are a stable ABI; the build-time constant table is C-only.
_NS_GET_NSTYPE = (0xB7 << 8) | 0x3

# mount(2) flags, from the kernel headers at build time.
_MS_BIND: int = P.lib.MS_BIND
_MS_PRIVATE: int = P.lib.MS_PRIVATE

# umount2(2) flags from <sys/mount.h>; a stable ABI like the ioctl above.
_MNT_DETACH = 2
_UMOUNT_NOFOLLOW = 8

# readlink of a descriptor opened from /proc/<pid>/ns: "net:[4026531840]".
_NSFS_LINK = re.compile(r"([a-z_]+):\[(\d+)\]")

# Types the calling thread may setns into and back out of (see entered()).
_ENTERABLE = frozenset({"net", "uts", "ipc", "cgroup", "time"})
_NOT_ENTERABLE = {
    "mnt": "setns into a mount namespace needs a process that shares its filesystem "
           "information (root, cwd) with no other thread, and a Python process may have "
           "threads (EINVAL); it would also move every thread's view of the filesystem",
    "user": "setns into a user namespace needs a single-threaded process (EINVAL) and "
            "changes the credentials of the whole process for good",
    "pid": "setns into a pid namespace never moves the caller: it only decides where the "
           "caller's future children are born (pid_for_children)",
}


# --- mount(2) for the parent ----------------------------------------------
# The C core runs mounts inside a spawned child; binding a namespace file
# happens in the caller's own mount namespace, through _spawn's host wrappers.


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    """mount(2); raises ``OSError`` naming ``target``."""
    from ._spawn import mount

    mount(source, target, fstype, flags)


def _umount(target: str, flags: int = 0) -> None:
    """umount2(2); raises ``OSError`` naming ``target``."""
    from ._spawn import umount

    umount(target, flags)


# --- helpers ----------------------------------------------------------------


def _check_type(value: Any, what: str = "type") -> str:
    if not isinstance(value, str) or value not in P.NSTYPES:
        raise ConfigError(f"{what}: unknown namespace type {value!r} "
                          f"(known: {', '.join(sorted(P.NSTYPES))})")
    return value


def _path_str(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        s = os.fsdecode(value)
    elif isinstance(value, str) or hasattr(value, "__fspath__"):
        s = os.fspath(value)
        if isinstance(s, bytes):
            s = os.fsdecode(s)
    else:
        raise ConfigError(f"{what} must be a path, got {value!r}")
    if not s:
        raise ConfigError(f"{what} must not be empty")
    if "\0" in s:
        raise ConfigError(f"{what} contains a NUL byte: {value!r}")
    return s


def _nsfs_device() -> int:
    # nsfs is one internal filesystem: every namespace file has its st_dev.
    return os.stat("/proc/self/ns/net" if os.path.exists("/proc/self/ns/net")
                   else "/proc/self/ns/mnt").st_dev


def _identify(fd: int) -> tuple[str, int, int] | None:
    """``(type, inode, device)`` if ``fd`` is an nsfs file, else None."""
    st = os.fstat(fd)
    # Checking the filesystem first means no ioctl ever reaches a device driver.
    if not stat.S_ISREG(st.st_mode) or st.st_dev != _nsfs_device():
        return None
    try:
        name = P.NSNAMES.get(fcntl.ioctl(fd, _NS_GET_NSTYPE))
    except OSError:
        # Kernels before 4.11 lack the ioctl; a file opened from /proc/<pid>/ns
        # still reads back as "net:[4026531840]".
        m = _NSFS_LINK.fullmatch(os.readlink(f"/proc/self/fd/{fd}"))
        name = m.group(1) if m is not None and int(m.group(2)) == st.st_ino else None
    if name not in P.NSTYPES:
        return None
    return name, st.st_ino, st.st_dev


class _Binding:
    """What ``Namespace.create`` made, undone in reverse order by ``release``.

    ``rec`` is the owner record naming each of those things (see
    ``isolate.gc``): it ends once everything is undone, and stays (for a
    reclaim after this process is gone) if something could not be.
    """

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self.rec: Record | None = None

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self._undo.append((what, fn))

    def release(self) -> None:
        """Undo everything; every step runs even if one fails, the first error is raised."""
        first: BaseException | None = None
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except BaseException as e:  # keep undoing: the rest must not leak
                if first is None:
                    first = e
        if first is not None:
            if self.rec is not None:
                self.rec.flush()
            raise first
        if self.rec is not None:
            self.rec.clear()
            self.rec = None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_for(real: str, mountinfo: str) -> tuple[str, bool, bool]:
    """For the absolute, resolved directory ``real``, from mountinfo text:
    (the mount point holding it, whether that mount is shared, whether anything is mounted below it).
    """
    best, shared, below = "/", False, False
    inside = real.rstrip("/") + "/"
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields:
            continue
        mp = _unescape(fields[4])
        if real == mp or real.startswith(mp.rstrip("/") + "/"):
            # A later line with the same mount point is stacked on top of the earlier one.
            if len(mp) >= len(best):
                best = mp
                shared = any(t.startswith("shared:") for t in fields[6:fields.index("-")])
        elif mp.startswith(inside):
            below = True
    return best, shared, below


def _private_dir(directory: str, binding: _Binding) -> None:
    """Make sure ``directory`` is on a mount that is not shared (needed for a mnt namespace file).

    A bind of a mount namespace file onto a shared mount would propagate into
    peer mount namespaces, possibly into the bound namespace itself, a
    reference loop; older kernels refuse it with EINVAL (unshare(1)).  Like
    iproute2 does for /run/netns, a plain directory is turned into a mount
    point by binding it onto itself, and that new mount made private.
    """
    real = os.path.realpath(directory)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        mp, shared, below = mount_for(real, f.read())
    if not shared:
        return
    if mp == real or below:
        raise ConfigError(
            f"path: {directory!r} is on a shared mount ({mp}); a mount namespace file needs a "
            "private one: choose another directory, or run "
            f"'mount --bind {real} {real} && mount --make-private {real}'")
    if binding.rec is not None:
        binding.rec.mount(real, role="private-mount")
    _mount(real, real, None, _MS_BIND)
    # Undo with a plain umount: a lazy one would also detach anything others
    # mounted inside it meanwhile.
    binding.push(f"unmount {real}", lambda: _umount(real, _UMOUNT_NOFOLLOW))
    _mount(None, real, None, _MS_PRIVATE)


def _tool(name: str) -> str:
    import shutil

    found = shutil.which(name, path="/usr/bin:/bin") or shutil.which(name)
    if found is None:
        raise UnsupportedError(f"Namespace.create needs the '{name}' program (coreutils)")
    return found


# --- Namespace ----------------------------------------------------------------


@final
class Namespace:
    """An open namespace: an nsfs file descriptor this object owns.

    ``type`` is the name used in /proc/<pid>/ns (``"net"``, ``"mnt"``, ...),
    ``inode`` and ``device`` identify the namespace (two objects refer to the
    same namespace exactly when both are equal), ``path`` is the file it was
    opened from or bound to.  Pass it to ``isolate.spawn(join=[...])`` to
    start a process inside it.

    ``close()`` (or the ``with`` block) releases the descriptor, and for a
    namespace made by ``create()`` also removes its bind mount and file.
    A ``Namespace`` dropped while open only warns (``ResourceWarning``).
    No public constructor: use ``of``, ``from_path`` or ``create``.
    """

    __slots__ = ("_fd", "type", "inode", "device", "path", "_binding", "_holder", "_lock",
                 "__weakref__")

    #: The namespace's name in /proc/<pid>/ns (``"net"``, ``"mnt"``, ...).
    type: str
    #: The namespace's inode number: with ``device``, its identity.
    inode: int
    #: The device number of the nsfs file.
    device: int
    #: The file it was opened from or bound to (None: opened from an fd).
    path: str | None
    _fd: int
    _binding: _Binding | None
    _holder: Any
    _lock: threading.Lock

    def __init__(self) -> None:
        raise TypeError("use Namespace.of(), Namespace.from_path() or Namespace.create()")

    @classmethod
    def _adopt(cls, fd: int, path: str | None, what: str) -> Namespace:
        """Wrap ``fd`` (owned from now on); ``ConfigError`` naming ``what`` if not a namespace."""
        try:
            ident = _identify(fd)
        except BaseException:
            os.close(fd)
            raise
        if ident is None:
            os.close(fd)
            raise ConfigError(f"{what} is not a namespace file")
        self = object.__new__(cls)
        self._fd = fd
        self.type, self.inode, self.device = ident
        self.path = path
        self._binding = None
        self._holder = None
        self._lock = threading.Lock()
        return self

    @classmethod
    def of(cls, pid: int | Any, type: str) -> Namespace:
        """The ``type`` namespace of process ``pid`` (an int or an ``isolate.Process``).

        ``type`` is a name from /proc/<pid>/ns: one of ``NAMESPACE_TYPES``, or
        ``pid_for_children``/``time_for_children`` (the namespace the process's
        children get).  Raises ``ConfigError`` for an unknown type or a pid
        with no live process, ``UnsupportedError`` if the kernel lacks the
        type, and ``OSError`` if the kernel refuses access (ptrace rules).
        """
        if isinstance(type, str) and type in _FOR_CHILDREN:
            entry = type
        else:
            entry = _check_type(type)
        proc = None
        if not isinstance(pid, int) and isinstance(getattr(pid, "pid", None), int):
            proc, pid = pid, pid.pid
            # A Process not yet reaped keeps its pid: no reuse race.
            if proc.returncode is not None:
                raise ConfigError(f"pid: process {pid} has exited")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ConfigError(f"pid must be a positive process id, got {pid!r}")
        path = f"/proc/{pid}/ns/{entry}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not os.path.lexists(f"/proc/self/ns/{entry}"):
                raise UnsupportedError(
                    f"this kernel has no {entry} namespaces "
                    f"(needs CONFIG_{_FOR_CHILDREN.get(entry, entry).upper()}_NS)") from None
            if os.path.exists(f"/proc/{pid}"):
                # A zombie has no namespaces left; so has a pid namespace with no init yet.
                raise ConfigError(f"pid: process {pid} has exited or has no {entry} "
                                  "namespace") from None
            raise ConfigError(f"pid: no process with pid {pid}") from None
        return cls._adopt(fd, path, path)

    @classmethod
    def from_path(cls, path: str | bytes | os.PathLike[Any], *, type: str | None = None) -> Namespace:
        """Open the namespace file at ``path`` (``/proc/<pid>/ns/net``, ``/run/netns/x``, ...).

        The type is read from the file (the ``NS_GET_NSTYPE`` ioctl); with
        ``type=`` given, a file of another type is refused.  Raises
        ``ConfigError`` naming the path if it does not exist or is not a
        namespace file.
        """
        p = _path_str(path, "path")
        if type is not None:
            _check_type(type)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise ConfigError(f"path: {p!r} does not exist") from None
        except OSError as e:
            raise ConfigError(f"path: {p!r}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO or device to look at it could block or have effects.
            raise ConfigError(f"path: {p!r} is not a namespace file")
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        self = cls._adopt(fd, os.path.abspath(p), f"path: {p!r}")
        if type is not None and self.type != type:
            found = self.type
            self.close()
            raise ConfigError(f"path: {p!r} is a {found} namespace, not {type}")
        return self

    @classmethod
    def create(
        cls,
        type: str,
        path: str | bytes | os.PathLike[Any] | None = None,
        *,
        uid_map: Sequence[IdMap] | None = None,
        gid_map: Sequence[IdMap] | None = None,
    ) -> Namespace:
        """A new ``type`` namespace, kept alive by a bind mount on ``path``.

        Like ``ip netns add``: the namespace's nsfs file is bind-mounted onto
        an empty file at ``path`` (created; its directory must exist, the
        file must not).  With ``path=None`` a private directory is made under
        /run (or the temporary directory) and removed again.  ``close()``, or
        the end of the ``with`` block, unmounts and removes everything made
        here; so does any failure inside ``create``.  If this process dies
        without ``close()``, ``isolate gc`` (or the next ``Namespace.create``
        of any isolate process in the same directory) unmounts and removes
        them: each is named in an owner record (see ``isolate.gc``).
        Needs CAP_SYS_ADMIN.

        The namespace is made by a child spawned with it (so the caller never
        changes namespace), bound while the child waits:

        - ``net``: its loopback interface is up, as with ``spawn``.
        - ``mnt``: a copy of the caller's mounts, made private recursively
          (as ``unshare --mount``) so nothing propagates back.  A mount
          namespace file must not sit on a shared mount: a plain directory
          on one is bound onto itself and made private first (undone on close).
        - ``user``: maps ``uid_map``/``gid_map`` (default: the caller's ids
          as root); binding it keeps the maps.
        - ``pid``: a pid namespace dies with its init, so the child stays:
          an idle ``cat`` is kept as pid 1 until ``close()`` (it exits on
          its own if this process dies).  Processes spawned into it get
          pids 2, 3, ...; their orphans are reparented to that init, which
          does not reap them until ``close()`` kills the namespace.
          ``close()`` kills every process inside; the init itself is
          reaped (in a thread, if need be) once the caller has waited for
          the processes it spawned there, as the kernel requires.
        - ``time``: clock offsets are frozen once a process has entered a
          time namespace, so its offsets are zero.

        Raises ``ConfigError`` for bad input (before anything is made),
        ``SpawnError`` if the bind mount fails (``EPERM`` without privilege).
        """
        _check_type(type)
        if (uid_map is not None or gid_map is not None) and type != "user":
            raise ConfigError(f"uid_map/gid_map only apply to a user namespace, not {type!r}")
        target: str | None = None
        if path is not None:
            target = os.path.abspath(_path_str(path, "path"))
            parent = os.path.dirname(target)
            if os.path.lexists(target):
                raise ConfigError(f"path: {target!r} already exists")
            if not os.path.isdir(parent):
                raise ConfigError(f"path: directory {parent!r} does not exist")
        program = [_tool("cat")] if type == "pid" else [_tool("true")]
        plan = None
        if type != "pid":
            from . import _plans
            from ._planner import FdLayout
            from .process import specs

            # Validates the maps before anything is made.
            spec, iso, _ = specs(program, namespaces={type}, uid_map=uid_map, gid_map=gid_map)
            plan = _plans.packed_process(spec, iso, FdLayout())

        from . import _owner

        binding = _Binding()
        try:
            # Dead owners' namespace files and directories here go first; what
            # is made below is named in an owner record of this process.
            if target is None:
                import tempfile

                base = "/run" if os.access("/run", os.W_OK | os.X_OK) else tempfile.gettempdir()
                _owner.reclaim_once([base])
                rec = binding.rec = _owner.record("namespace")
                tmpdir = os.path.join(base, f"isolate-ns-{os.urandom(6).hex()}")
                rec.pending(tmpdir, role="namespace-dir")
                os.mkdir(tmpdir, 0o700)
                binding.push(f"remove {tmpdir}", lambda: os.rmdir(tmpdir))
                rec.made(tmpdir, "namespace-dir")
                target = os.path.join(tmpdir, type)
            else:
                _owner.reclaim_once([os.path.dirname(target)])
                rec = binding.rec = _owner.record("namespace")
            if type == "mnt":
                _private_dir(os.path.dirname(target), binding)
            rec.pending(target, role="namespace-file")
            tfd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                          os.O_CLOEXEC, 0o444)
            final_target = target
            binding.push(f"remove {target}", lambda: os.unlink(final_target))
            rec.made(target, "namespace-file", os.fstat(tfd))
            try:
                holder = None
                if plan is None:
                    holder = _spawn_pid_holder(program, binding)
                    _bind(f"/proc/{holder.pid}/ns/pid", tfd, target, binding)
                else:
                    _spawn_and_bind(plan, type, tfd, target, binding)
            finally:
                os.close(tfd)
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            self = cls._adopt(fd, target, f"path: {target!r}")
            self._binding = binding
            self._holder = holder
            rec.flush()
            return self
        except BaseException:
            try:
                binding.release()
            except OSError as cleanup:
                # The original error matters more; still, say what was left.
                warnings.warn(f"Namespace.create: cleanup after a failure: {cleanup}",
                              ResourceWarning, stacklevel=2)
            raise

    # --- the open descriptor ---

    def fileno(self) -> int:
        """The nsfs file descriptor (owned by this object).  ``ConfigError`` once closed."""
        if self._fd < 0:
            raise ConfigError(f"{self!r} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run."""
        return self._fd < 0

    def close(self) -> None:
        """Close the descriptor; for a created namespace also unmount and remove its file.

        Idempotent.  A created pid namespace loses its init here, which kills
        every process still inside it.
        """
        with self._lock:
            fd, self._fd = self._fd, -1
            binding, self._binding = self._binding, None
        if fd >= 0:
            os.close(fd)
        if binding is not None:
            binding.release()

    def detach(self) -> None:
        """Close the descriptor, but leave a created namespace's file and bind mount in place.

        The namespace is handed over, as ``ip netns add`` leaves
        /run/netns/NAME: it lives on at ``path`` after this process exits,
        and ``isolate gc`` never reclaims it (its owner record goes).  Whoever
        takes it over removes it (``umount PATH && rm PATH``).  A pid
        namespace ends with its init, which lives only as long as this
        process: detaching one raises ``ConfigError``.  Idempotent.
        """
        if self._holder is not None:
            raise ConfigError("a created pid namespace cannot be detached: it ends with its "
                              "init, which lives only as long as this process")
        with self._lock:
            fd, self._fd = self._fd, -1
            binding, self._binding = self._binding, None
        if fd >= 0:
            os.close(fd)
        if binding is not None and binding.rec is not None:
            binding.rec.clear()

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            extra = " (its bind mount is left in place)" if self._binding is not None else ""
            warnings.warn(f"unclosed {self!r}{extra}", ResourceWarning, source=self)
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def __repr__(self) -> str:
        state = " closed" if getattr(self, "_fd", -1) < 0 else ""
        where = f" path={self.path!r}" if self.path else ""
        return f"<isolate.Namespace {self.type}:[{self.inode}]{where}{state}>"

    # --- entering ---

    def entered(self) -> contextlib.AbstractContextManager[Namespace]:
        """Move the calling thread into this namespace for a ``with`` block, then back.

        Works for ``net``, ``uts``, ``ipc`` and ``cgroup``: only the calling
        thread moves (sockets it opens, the hostname it sees), other threads
        stay where they are (threads started inside the block begin in the
        namespace and stay there).  Leave the block on the same thread; inside an
        ``async`` function, other tasks that run meanwhile on this thread are
        inside too.  ``time`` is a special case: the kernel lets only a
        single-threaded process enter a time namespace (``EUSERS``
        otherwise, raised as ``UnsupportedError``) and then it applies to the
        whole process's clocks, and to children started inside the block.

        ``mnt``, ``user`` and ``pid`` raise ``UnsupportedError`` at once
        (see the message for why); spawn into them with ``join=`` instead.
        """
        if self.type not in _ENTERABLE:
            raise UnsupportedError(f"cannot enter a {self.type} namespace from the calling "
                                   f"thread: {_NOT_ENTERABLE[self.type]}; use "
                                   "isolate.spawn(..., join=[ns]) instead")
        return self._entered()

    @contextlib.contextmanager
    def _entered(self) -> Iterator[Namespace]:
        fd = self.fileno()
        nstype = P.NSTYPES[self.type]
        back = os.open(f"/proc/thread-self/ns/{self.type}", os.O_RDONLY | os.O_CLOEXEC)
        thread = threading.get_ident()
        try:
            try:
                _spawn.setns(fd, nstype)
            except OSError as e:
                if e.errno == _errno.EUSERS:
                    raise UnsupportedError(
                        "cannot enter a time namespace: the kernel allows it only in a "
                        f"single-threaded process, and this one has {threading.active_count()} "
                        "Python threads (EUSERS); use isolate.spawn(..., join=[ns])") from None
                raise
            try:
                yield self
            finally:
                if threading.get_ident() != thread:
                    raise RuntimeError(f"{self!r}: entered() left on another thread; the "
                                       "entering thread is still inside")
                # Returning to the namespace we came from is always allowed.
                _spawn.setns(back, nstype)
        finally:
            os.close(back)


def _bind(source: str, tfd: int, target: str, binding: _Binding) -> None:
    # Mounting on /proc/self/fd/N hits exactly the file created above, even
    # if someone swapped the name for a symlink meanwhile.
    if binding.rec is not None:
        binding.rec.mount(target, role="namespace-mount")
    try:
        _mount(source, f"/proc/self/fd/{tfd}", None, _MS_BIND)
    except OSError as e:
        raise SpawnError(e.errno or _errno.EIO, stage=f"bind {source} onto {target}",
                         filename=target) from None
    binding.push(f"unmount {target}",
                 lambda: _umount(target, _MNT_DETACH | _UMOUNT_NOFOLLOW))


def _spawn_and_bind(plan: tuple[ProcessPlan, P.PackedPlan], type: str, tfd: int, target: str,
                    binding: _Binding) -> None:
    """Spawn ``plan`` (a child in a new ``type`` namespace) and bind its namespace while it waits."""
    planned, packed = plan

    # A child cloned with CLONE_VM enters a new time namespace only at execve
    # (the vDSO is per address space); until then it is its time_for_children.
    entry = "time_for_children" if type == "time" else type

    def bind(pid: int) -> None:
        if planned.held_maps is not None:
            # Maps only newuidmap/newgidmap may write (see spawn).
            from .process import _newidmap

            _newidmap("newuidmap", pid, planned.held_maps[0])
            _newidmap("newgidmap", pid, planned.held_maps[1])
        _bind(f"/proc/{pid}/ns/{entry}", tfd, target, binding)

    spawned = _spawn.execute(packed, before_release=bind)
    try:
        code = os.waitstatus_to_exitcode(_spawn.wait_status(spawned.pid))
    except ChildProcessError:
        code = 0  # reaped by someone else's waitpid(-1); the bind is what counts
    finally:
        os.close(spawned.pidfd)
    if code != 0:
        raise SpawnError(_errno.ECHILD, stage=f"helper for the {type} namespace exited with {code}")


def _reap(proc: Any) -> None:
    proc.wait()
    proc.close()


def _spawn_pid_holder(program: list[str], binding: _Binding) -> Any:
    from .process import DEVNULL, PIPE, spawn

    holder = spawn(program, namespaces={"pid"}, stdin=PIPE, stdout=DEVNULL, stderr=DEVNULL)

    def stop() -> None:
        # SIGKILL to a pid namespace's init kills every process inside it, but
        # the init only finishes exiting once all of them have been reaped,
        # and those spawned with join= are the caller's children, reaped when
        # the caller waits for them.  Blocking here could deadlock that
        # caller, so a late init is reaped by a thread.
        holder.kill()
        try:
            holder.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            threading.Thread(target=_reap, args=(holder,), daemon=True,
                             name=f"isolate-reap-{holder.pid}").start()
            return
        holder.close()

    binding.push(f"stop pid {holder.pid}", stop)
    return holder
