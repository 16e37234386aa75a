"""What the runtime applies itself to a container: its device nodes, sysctls and oom_score_adj.

``Container`` has no field for these three OCI properties; ``convert``
checks them (``Conversion.devices``, ``.sysctl``, ``.oom_score_adj``) and
``runtime.create`` applies them as runc does, while the container's process
waits at its exec gate (after its root is built, before the program runs)::

    with oom_score_adj(conv.oom_score_adj), personality(conv.personality):
        proc = container.start(...)             # the child inherits both
    make_devices(proc.pid, [d for d in conv.devices if not d.bind])
    bind_devices(proc.pid, [d for d in conv.devices if d.bind])
    write_sysctls(proc.pid, conv.sysctl)

Device nodes are made through ``/proc/<pid>/root`` with every path
resolved inside that root (openat2 RESOLVE_IN_ROOT), so nothing the image
holds (a symlinked ``/dev``) leads out of it.  Sysctls are written by this
process's thread moved into the container's network, IPC or UTS namespace,
through the runtime's own ``/proc`` (never one the container could mount
over): those files act on the writer's namespace.
"""

from __future__ import annotations

import contextlib
import os
import stat

from .._record import dataclass
from ..errors import ConfigError, UnsupportedError
from ._schema import show

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from .spec import LinuxDevice

__all__ = ["DeviceNode", "Sysctl", "devices_of", "sysctls_of", "make_devices", "bind_devices", "write_sysctls", "oom_score_adj",
           "personality", "PERSONALITY_DOMAINS"]

_AT_FDCWD = -100
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH, _MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429        # the same on every architecture
_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000

#: linux.personality's domains as personality(2) numbers (<linux/personality.h>).
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}


@dataclass(frozen=True, slots=True)
class DeviceNode:
    """A ``linux.devices`` entry, checked: ``mode`` holds the file type and permission bits."""

    index: int          # its place in linux.devices, for errors
    path: str           # absolute, in the container
    mode: int
    major: int
    minor: int
    uid: int
    gid: int
    bind: bool = False  # in a user namespace: the host's node is bound (bind_devices)


@dataclass(frozen=True, slots=True)
class Sysctl:
    """A ``linux.sysctl`` entry, checked: ``path`` below /proc/sys, ``ns`` the namespace it acts on."""

    key: str
    value: str
    path: str
    ns: str


_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def devices_of(devices: tuple[LinuxDevice, ...], has_root: bool, userns: bool) -> tuple[DeviceNode, ...]:
    """``linux.devices`` checked, as runc makes them (mknod; mode 0666 and uid/gid 0 by default).

    podman sends ``fileMode`` with the file-type bits (8630 = 0o20666): they must agree
    with ``type``, and only the permission bits are applied.  runc adds no device-cgroup
    rule for them: ``linux.resources.devices`` decides what may be opened.
    """
    out = []
    for i, d in enumerate(devices):
        where = f"linux.devices[{i}]"
        if not has_root:
            raise UnsupportedError(f"{where}: device nodes need a new root (a mount namespace), "
                                   f"got {show(d.path)}")
        kind = _DEVICE_TYPES[d.type]
        mode = 0o666 if d.file_mode is None else d.file_mode
        if stat.S_IFMT(mode) not in (0, kind):
            raise ConfigError(f"{where}.fileMode: {oct(mode)} is not a {show(d.type)} device's type "
                              f"({oct(kind)})")
        parts = d.path.strip("/").split("/")
        if not d.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ConfigError(f"{where}.path: must be absolute and plain (no '.' or '..'), got {show(d.path)}")
        # In a user namespace (no mknod) the runtime binds the host's node, as runc does.
        out.append(DeviceNode(index=i, path=d.path, mode=kind | (mode & 0o7777), major=d.major or 0,
                              minor=d.minor or 0, uid=d.uid or 0, gid=d.gid or 0, bind=userns))
    return tuple(out)


# runc's list of sysctls an IPC namespace owns (besides fs.mqueue.*).
_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def sysctls_of(sysctl: dict[str, str], namespaces: frozenset[str] | set[str]) -> tuple[Sysctl, ...]:
    """``linux.sysctl`` checked as runc checks it: only a sysctl of a namespace the
    container has (made or joined) may be set, never the host's."""
    out = []
    for key, value in sysctl.items():
        where = f"linux.sysctl[{show(key)}]"
        parts = key.replace("/", ".").split(".")
        if any(p in ("", ".", "..") or "\0" in p for p in parts):
            raise ConfigError(f"{where}: not a sysctl name")
        name = ".".join(parts)
        if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
            ns = "ipc"
        elif name.startswith("net."):
            ns = "net"
        elif name in ("kernel.domainname", "kernel.hostname"):
            ns = "uts"
            if name == "kernel.hostname":
                raise ConfigError(f"{where}: conflicts with the OCI hostname field (runc refuses it too)")
        else:
            raise ConfigError(f"{where}: {name} is not in a namespace of the container's own, "
                              "so it would change the host")
        if ns not in namespaces:
            raise ConfigError(f"{where}: {name} is not allowed in the host's {ns} namespace")
        out.append(Sysctl(key=key, value=value, path="/".join(parts), ns=ns))
    return tuple(out)


def _open_dir(root: int, path: str) -> int:
    from .._spawn import open_in_root

    return open_in_root(root, path or ".", os.O_PATH | os.O_DIRECTORY)


def make_devices(pid: int, nodes: Sequence[DeviceNode]) -> None:
    """mknod each of ``nodes`` in the root of process ``pid`` (its parents made 0755), as runc:
    a path that exists is left as it is; a new node gets the uid and gid asked for.

    Raises ``ConfigError`` naming the entry when a node cannot be made.
    """
    if not nodes:
        return
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    old = os.umask(0)           # the modes are meant exactly (runc clears its umask too)
    try:
        for node in nodes:
            where = f"linux.devices[{node.index}] ({node.path})"
            parts = node.path.strip("/").split("/")
            try:
                fd = _parent_dir(root, parts)
                try:
                    os.mknod(parts[-1], node.mode, os.makedev(node.major, node.minor), dir_fd=fd)
                except FileExistsError:
                    continue
                else:
                    os.chown(parts[-1], node.uid, node.gid, dir_fd=fd, follow_symlinks=False)
                finally:
                    os.close(fd)
            except OSError as e:
                raise ConfigError(f"{where}: cannot make the device node: {e.strerror}") from None
    finally:
        os.umask(old)
        os.close(root)


def _parent_dir(root: int, parts: list[str]) -> int:
    """An fd on the directory holding ``parts[-1]`` inside ``root``, its missing parents
    made 0755 on the way; the caller closes it."""
    for i, name in enumerate(parts[:-1]):
        fd = _open_dir(root, "/".join(parts[:i]))
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        finally:
            os.close(fd)
    return _open_dir(root, "/".join(parts[:-1]))


def _mount_point(root: int, node: DeviceNode) -> None:
    """The parents (0755) and an empty file at ``node.path`` inside ``root``, unless it exists."""
    parts = node.path.strip("/").split("/")
    fd = _parent_dir(root, parts)
    try:
        os.mknod(parts[-1], stat.S_IFREG | 0o644, dir_fd=fd)
    except FileExistsError:
        pass
    finally:
        os.close(fd)


def bind_devices(pid: int, nodes: Sequence[DeviceNode]) -> None:
    """Bind the host's node at each of ``nodes``' paths in the root of process ``pid``, as
    runc does where mknod is refused (a user namespace).

    The host's node must be the device the entry names (type and numbers; runc
    binds whatever is at the path).  Each is cloned (open_tree): here as root,
    else by the child below in a copy of this mount namespace that the
    container's user namespace owns.  A child process enters the container's
    user and mount namespaces as its root
    (files it makes are the container root's), makes the mount point inside the
    container's root (RESOLVE_IN_ROOT) and attaches the clone there.  Raises
    ``ConfigError`` naming the entry.
    """
    if not nodes:
        return
    import ctypes

    from .._spawn import open_in_root, setns, unshare
    from .rootless import in_user_namespace

    libc = ctypes.CDLL(None, use_errno=True)
    privileged = os.geteuid() == 0 and not in_user_namespace()
    trees: list[int] = []
    user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for node in nodes:
            where = f"linux.devices[{node.index}] ({node.path})"
            try:
                st = os.stat(node.path)
            except OSError as e:
                raise ConfigError(f"{where}: the host's node to bind in a user namespace: {e.strerror}") from None
            if stat.S_IFMT(st.st_mode) != stat.S_IFMT(node.mode) or (
                    not stat.S_ISFIFO(st.st_mode) and st.st_rdev != os.makedev(node.major, node.minor)):
                raise ConfigError(f"{where}: the host's {node.path} is not the device the entry names "
                                  f"({os.major(st.st_rdev)}:{os.minor(st.st_rdev)}, mode {oct(st.st_mode)})")
            if privileged:
                fd = libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(node.path),
                                  _OPEN_TREE_CLONE | os.O_CLOEXEC)
                if fd < 0:
                    raise ConfigError(f"{where}: cannot clone the host's node: {os.strerror(ctypes.get_errno())}")
                trees.append(fd)

        def bind_all(at: list[int]) -> None:
            setns(user, _CLONE_NEWUSER)
            if not privileged:
                # Without root here, only a mount namespace of the container's user
                # namespace (a copy of ours) lets the host's node be cloned.
                unshare(_CLONE_NEWNS)
                for i, node in enumerate(nodes):
                    at[0] = i
                    fd = libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(node.path),
                                      _OPEN_TREE_CLONE | os.O_CLOEXEC)
                    if fd < 0:
                        raise OSError(ctypes.get_errno(), "open_tree")
                    trees.append(fd)
            setns(mnt, _CLONE_NEWNS)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            top = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            for i, node in enumerate(nodes):
                at[0] = i
                _mount_point(top, node)
                target = open_in_root(top, node.path, os.O_PATH)
                if libc.syscall(_SYS_MOVE_MOUNT, trees[i], b"", target, b"",
                                _MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH) < 0:
                    raise OSError(ctypes.get_errno(), "move_mount")
                os.close(target)

        failed, err = _in_child(bind_all)
        if err:
            node = nodes[max(failed, 0)]
            raise ConfigError(f"linux.devices[{node.index}] ({node.path}): cannot bind the host's node: "
                              f"{os.strerror(err)}")
    finally:
        for fd in trees:
            os.close(fd)
        os.close(mnt)
        os.close(user)


def _in_child(steps: Callable[[list[int]], None]) -> tuple[int, int]:
    """Run ``steps(at)`` in a forked child that only makes system calls, then ``_exit``s: for
    namespaces this process may enter but never leave.  ``steps`` keeps the index of the
    item it works on in ``at[0]``.  Returns (that index, errno) when it failed, else
    (-1, 0); a child that reported nothing counts as (0, 1)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        at, err = [-1], 0
        try:
            steps(at)
            at[0] = -1
        except OSError as e:
            err = e.errno or 1
        except BaseException:
            err = 1
        os.write(w, f"{at[0]} {err}".encode())
        os._exit(0)
    os.close(w)
    try:
        report = os.read(r, 64).decode().split()
    finally:
        os.close(r)
        os.waitpid(child, 0)
    return (int(report[0]), int(report[1])) if len(report) == 2 else (0, 1)


def write_sysctls(pid: int, sysctls: Sequence[Sysctl]) -> None:
    """Write each of ``sysctls`` in the namespace of process ``pid`` it belongs to.

    Raises ``ConfigError`` naming the key and value when the kernel refuses it.
    """
    if not sysctls:
        return
    from ..namespace import Namespace
    from .rootless import in_user_namespace

    if os.geteuid() != 0 or in_user_namespace():
        _write_sysctls_in_child(pid, sysctls)
        return
    for s in sysctls:
        with Namespace.of(pid, s.ns) as ns, ns.entered():
            try:
                _write_sysctl(s)
            except OSError as e:
                raise ConfigError(f"linux.sysctl: cannot set {s.key} to {s.value!r}: {e.strerror}") from None


def _write_sysctl(s: Sysctl) -> None:
    fd = os.open(f"/proc/sys/{s.path}", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a sysctl file")
        os.write(fd, s.value.encode())
    finally:
        os.close(fd)


_NS_FLAGS = {"net": 0x40000000, "ipc": 0x08000000, "uts": 0x04000000}


def _write_sysctls_in_child(pid: int, sysctls: Sequence[Sysctl]) -> None:
    """``write_sysctls`` without root in the host's user namespace: this process may enter
    the container's namespaces (as root of the user namespace owning them) but never
    come back to the host's, so a child enters them, writes and exits."""
    from .._spawn import setns

    names = ["user", *sorted({s.ns for s in sysctls})]
    fds = {n: os.open(f"/proc/{pid}/ns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in names}
    try:
        own_user = os.stat("/proc/self/ns/user").st_ino == os.fstat(fds["user"]).st_ino

        def write_all(at: list[int]) -> None:
            if not own_user:
                setns(fds["user"], _CLONE_NEWUSER)
            for i, s in enumerate(sysctls):
                at[0] = i
                setns(fds[s.ns], _NS_FLAGS[s.ns])
                _write_sysctl(s)

        failed, err = _in_child(write_all)
        if err:
            s = sysctls[max(failed, 0)]
            raise ConfigError(f"linux.sysctl: cannot set {s.key} to {s.value!r}: {os.strerror(err)}")
    finally:
        for fd in fds.values():
            os.close(fd)


@contextlib.contextmanager
def oom_score_adj(value: int | None) -> Iterator[None]:
    """This process's oom_score_adj set to ``value`` for the block (the processes it
    starts inherit it, as runc's init does), then put back.

    Lowering it below the floor this process may reach needs CAP_SYS_RESOURCE:
    without it the kernel says EACCES, raised as ``ConfigError`` naming the field.
    """
    if value is None:
        yield
        return
    path = "/proc/self/oom_score_adj"
    with open(path, "rb") as f:
        old = f.read().strip()
    try:
        with open(path, "wb", buffering=0) as f:
            f.write(str(value).encode())
    except OSError as e:
        why = (f"lowering it below this runtime's own ({old.decode()}) needs CAP_SYS_RESOURCE"
               if e.errno == 13 else e.strerror)
        raise ConfigError(f"process.oomScoreAdj: cannot set {value}: {why}") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError), open(path, "wb", buffering=0) as f:
            f.write(old)


@contextlib.contextmanager
def personality(domain: int | None) -> Iterator[None]:
    """This process's execution domain set to ``domain`` for the block (personality(2):
    the processes it starts inherit it, and keep it across execve), then put back.

    runc 1.2 and crun call personality(2) in the container's process; isolate
    starts that process from this one, which passes it on the same way.
    """
    if domain is None:
        yield
        return
    import ctypes

    call = ctypes.CDLL(None, use_errno=True).personality
    call.argtypes, call.restype = [ctypes.c_ulong], ctypes.c_int
    old = call(0xFFFFFFFF)          # only queries
    if old < 0 or call(domain) < 0:      # exactly the domain, no flags, as runc 1.2
        err = ctypes.get_errno()
        raise ConfigError(f"linux.personality: cannot set domain {domain:#x}: {os.strerror(err)}")
    try:
        yield
    finally:
        call(old)
