"""``Container``: namespaces, id maps, a cgroup, a root filesystem and a process, in one spawn.

::

    with isolate.Container(rootfs=RootFS.host(), limits=Limits(memory_max=256 << 20, pids_max=64),
                           hostname="box") as c:
        result = c.run(["make", "test"], timeout=60)
    print(result.returncode, result.peak_memory, result.oom_killed)

Everything a container needs becomes one plan (``build_plan(ops=...)``) and
one C call; nothing is mounted in the caller's namespace, so the container's
mounts vanish with its last process.  The secure defaults: every namespace
(user, pid, mnt, uts, ipc, net with only ``lo`` up, cgroup), the OCI default
capability set (none for a non-root user), ``no_new_privs``, Docker's
default seccomp profile (which also refuses TIOCSTI), a session of its own,
a hostname of its own, bounded tmpfs sizes (see ``RootFS.host``), at most
``DEFAULT_MAX_OUTPUT`` bytes of each captured stream kept, SIGKILL when the
spawning thread dies, and every fd that was not passed closed.
"""

from __future__ import annotations

import enum
import functools
import itertools
import os
import signal
import subprocess
import threading
import time
import warnings

from ._record import asdict, dataclass
from . import _plan as P
from ._userdb import Identity, rootfs_db, resolve
from .errors import ConfigError, UnsupportedError
from .idmap import IdMap
from .process import DEVNULL, PIPE, STDOUT, Process, _max_output, spawn
from .rootfs import _MA, RootFS, _Ctx, container_path, root_is_initramfs
from .seccomp import OCI_DEFAULT_CAPS, SeccompProfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import IO, Any, TypeAlias

__all__ = ["Container", "Result", "DEFAULT_NAMESPACES", "OCI_DEFAULT_CAPS", "DEFAULT_HOSTNAME",
           "DEFAULT_MAX_OUTPUT"]

#: What a Container unshares by default.  ``time`` is left out: nothing needs it by default.
DEFAULT_NAMESPACES = frozenset({"user", "pid", "mnt", "uts", "ipc", "net", "cgroup"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_ID_RANGE = 4294967295          # the whole uid space except (uid_t)-1
#: The hostname of a container given no ``name``: fixed, so that every such
#: container shares one spawn plan.
DEFAULT_HOSTNAME = "isolate"
#: What ``Container.run``/``exec`` keep of each captured stream by default:
#: 32 MiB, far more than a log anyone reads or a judge compares, while a
#: sandbox printing without end costs its caller at most twice that (both
#: streams) instead of all of its memory.  The rest is read and discarded.
DEFAULT_MAX_OUTPUT = 32 << 20

Stdio: TypeAlias = "None | int | IO[Any]"
_counter = itertools.count()


@dataclass(frozen=True, slots=True)
class Result:
    """What a container run gave.

    ``returncode`` is negative for a signal (as in ``subprocess``);
    ``stdout``/``stderr`` are bytes when captured, else None; ``wall_time``
    and ``cpu_time`` are seconds; ``peak_memory`` bytes (from the cgroup, or
    the largest process RSS without one); ``root_mode`` says how the root was
    entered: ``"pivot_root"``, ``"chroot"`` (weaker: initramfs hosts) or
    ``"none"`` (no rootfs); ``truncated`` that stdout or stderr went past
    ``max_output`` (what was kept is their first ``max_output`` bytes).
    On a timeout, ``stdout``/``stderr`` hold what was read until then.
    """

    args: list[Any]
    returncode: int
    stdout: bytes | None
    stderr: bytes | None
    wall_time: float
    cpu_time: float
    peak_memory: int | None
    oom_killed: bool
    timed_out: bool
    root_mode: str
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes decoded as UTF-8 with replacement)."""
        d = asdict(self)
        d["args"] = [os.fsdecode(a) if isinstance(a, (bytes, str)) else str(a) for a in self.args]
        for k in ("stdout", "stderr"):
            if d[k] is not None:
                d[k] = d[k].decode("utf-8", "replace")
        return d

    def check_returncode(self) -> None:
        """Raise ``subprocess.CalledProcessError`` if the command did not exit 0."""
        if self.returncode != 0:
            raise subprocess.CalledProcessError(self.returncode, self.args, self.stdout, self.stderr)


class _NsRef:
    """An open /proc/<pid>/ns/<type> file, in the shape ``spawn(join=...)`` takes."""

    def __init__(self, type_: str, fd: int) -> None:
        self.type = type_
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


#: Stage directory -> its real path, checked once per process: right after a
#: container run the lookups cost ~100 us (cold caches), on every start.  The
#: stage is only a mount point in the child's own mount namespace; should it
#: vanish later, the child's mount fails with a MountError naming it.
_STAGES: dict[bytes, bytes] = {}

#: The default id map of a root caller: every id to itself (immutable, so shared).
_IDENTITY_MAP = (IdMap(inside=0, outside=0, count=MAX_ID_RANGE),)


#: A container's whole root plan, per RootFS op sequence and what the container
#: adds (cwd, ...): (that sequence, the plan).  See ``Container._root_ops``.
_ROOT_PLANS: dict[tuple[object, ...], tuple[P.OpSeq, P.OpSeq]] = {}


@functools.lru_cache(maxsize=64)
def _chdir_ops(cwd: bytes) -> P.OpSeq:
    return P.OpSeq((P.Chdir(path_=cwd),))


@functools.lru_cache(maxsize=16)
def _default_seccomp(caps: frozenset[str]) -> bytes:
    return SeccompProfile.default(caps).compile()


def _without_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` less those that say what ``spawn`` does anyway (None, False, no join):
    fewer values to key the spawn plan cache on.  (``groups=[]`` is not a default.)"""
    return {k: v for k, v in options.items()
            if v is not None and v is not False and not (k == "join" and not v)}


def _process_umask() -> int:
    """This process's umask, read without changing it (Linux 4.7+), else by setting it back."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cap_names(value: Any) -> frozenset[str] | None:
    """``"default"`` -> the OCI set, None -> keep all, iterable -> those (validated)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value == "default":
            return OCI_DEFAULT_CAPS
        raise ConfigError(f"capabilities must be 'default', None or a list of names, got {value!r}")
    out = set()
    for c in value:
        if not isinstance(c, str):
            raise ConfigError(f"capabilities: {c!r} is not a capability name")
        key = c.upper() if c.upper().startswith("CAP_") else "CAP_" + c.upper()
        if key not in P.CAPABILITIES:
            raise ConfigError(f"capabilities: unknown capability {c!r}")
        out.add(key)
    return frozenset(out)


class _Auto(enum.Enum):
    """The default of ``Container(hostname=...)``: from the name, or DEFAULT_HOSTNAME."""

    HOSTNAME = "auto"


def hostname_for(name: str) -> str:
    """``name`` made a valid hostname: labels of ASCII letters, digits and '-' (any other
    character becomes '-'), at most 63 bytes each and 64 in all (the kernel's limit);
    ``DEFAULT_HOSTNAME`` when nothing is left."""
    chars = "".join(c if (c.isascii() and c.isalnum()) or c in "-." else "-" for c in name)
    labels = [part.strip("-")[:63].strip("-") for part in chars.split(".")]
    host = ".".join(label for label in labels if label)[:64].rstrip(".-")
    return host or DEFAULT_HOSTNAME


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"timeout must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _collect(proc: Process, timeout: float | None, input: bytes | None, max_output: int | None,
             kill: Callable[[], None]) -> tuple[bytes | None, bytes | None, bool]:
    """Wait for ``proc``, reading its pipes: (stdout, stderr, timed out).

    On ``timeout``, ``kill()`` ends it and what it wrote until then is kept;
    ``proc.truncated`` says whether output past ``max_output`` was discarded.
    """
    out = err = None
    try:
        if proc.stdout is not None or proc.stderr is not None or proc.stdin is not None:
            out, err = proc.communicate(input, timeout, max_output=max_output)
        else:
            proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill()
        proc.wait()
        out, err = proc._drain()
        return out, err, True
    except BaseException:
        kill()
        proc.wait()
        raise
    return out, err, False


class Container:
    """A container: created by ``start()``/``run()``, torn down by ``close()`` or ``with``.

    Options (keyword-only; every one checked here, before anything exists):
    ``rootfs`` (a ``RootFS``; default ``RootFS.host()``; None keeps the
    host's tree), ``namespaces`` (default ``DEFAULT_NAMESPACES``), ``net``
    (``"none"``: own network namespace with ``lo``; ``"host"``: the host's;
    an open network namespace such as a ``PooledNetns``: that one),
    ``join`` (open namespaces, e.g. from ``NetnsPool``, to enter instead of
    creating; needs ``user`` left out of ``namespaces``),
    ``uid_map``/``gid_map`` (default: root maps every id to itself; other
    callers map root inside to themselves), ``limits`` (an
    ``isolate.cgroup.Limits``: a cgroup named ``name`` is made for the
    container) or ``cgroup`` (a caller-owned ``Cgroup``, or a ``CgroupPool``
    the container takes a fresh group from and hands it back to on close),
    ``hostname`` (default: ``name`` made a valid hostname when given, else
    ``DEFAULT_HOSTNAME``, never the host's; None keeps the name the new uts
    namespace starts with, the host's),
    ``env`` (default: PATH, HOME, TERM), ``cwd``, ``user``/``group``/
    ``groups`` (below), ``capabilities`` (``"default"``: the OCI set;
    ``[]``: none; None: keep all; a non-root ``user`` keeps none of them
    but in its bounding set), ``capability_sets`` (each of the five sets
    exactly, as OCI's process.capabilities; overrides ``capabilities``; the
    only way to give a non-root user ambient capabilities),
    ``no_new_privs``, ``seccomp`` (``"default"``: Docker's profile, which
    here also refuses TIOCSTI and TIOCLINUX; a ``SeccompProfile``; BPF
    bytes; None), ``rlimits``, ``umask``,
    ``die_with_parent`` (SIGKILL when the *thread* that started the
    container exits: PR_SET_PDEATHSIG follows the spawning thread, not the
    process), ``pivot_root`` (None: auto; False forces the chroot mode, in
    which the default capability set also loses CAP_SYS_CHROOT, the key to
    leaving a chroot; without a user namespace and without ``Limits.devices``
    rules it loses CAP_MKNOD, with which a made device node would open the
    host's disk), ``make_cwd`` (create ``cwd`` inside the root when
    missing, as OCI runtimes do), ``new_session`` (True, the default: every
    process of the container runs in a session of its own, without a
    controlling terminal, so it cannot push input into the caller's
    terminal with TIOCSTI; False hands it the caller's session and
    terminal: for interactive use, with only the seccomp filter refusing
    TIOCSTI).

    ``user`` is root (uid 0, gid 0, no supplementary groups) by default, or
    a uid or a name of the container's own /etc/passwd: the host's copy
    for ``RootFS.host()``, the image's for a directory root (read inside
    it: its symlinks never lead out), the host's for ``rootfs=None``.  Its
    group is ``group`` if given, else its passwd entry's, else 65534
    ("nogroup", for a uid without an entry), never 0 by accident; its
    supplementary groups are ``groups`` if given, else (without ``group``)
    those the container's /etc/group lists it in, as Docker does: never the
    caller's.  An unknown name raises ``ConfigError``.
    """

    def __init__(
        self,
        *,
        rootfs: RootFS | None | str = "host",
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        join: Iterable[Any] = (),
        net: Any = "none",
        uid_map: Sequence[IdMap] | None = None,
        gid_map: Sequence[IdMap] | None = None,
        limits: Any = None,
        cgroup: Any = None,
        name: str | None = None,
        hostname: str | None | _Auto = _Auto.HOSTNAME,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        user: int | str | None = None,
        group: int | str | None = None,
        groups: Sequence[int | str] | None = None,
        capabilities: Iterable[str] | str | None = "default",
        capability_sets: Mapping[str, Iterable[str]] | None = None,
        no_new_privs: bool = True,
        seccomp: SeccompProfile | bytes | str | None = "default",
        rlimits: Mapping[Any, Any] | None = None,
        umask: int | None = 0o022,
        die_with_parent: bool = True,
        pivot_root: bool | None = None,
        stage: str = "/tmp",
        make_cwd: bool = False,
        new_session: bool = True,
    ) -> None:
        self._closed = True
        ident: Identity | None = None     # None: root (uid 0, gid 0), no supplementary groups
        if isinstance(rootfs, str):
            if rootfs != "host":
                raise ConfigError(f"rootfs must be a RootFS, 'host' or None, got {rootfs!r}")
            if user in (None, 0, "0", "root"):
                rootfs = RootFS.host(home="/root")
            else:
                rootfs = RootFS.host()
                ident = resolve(rootfs_db(rootfs), user, group, groups)
                if ident.uid == 0:
                    rootfs = RootFS.host(home="/root")
        elif rootfs is not None and not isinstance(rootfs, RootFS):
            raise ConfigError(f"rootfs must be a RootFS, 'host' or None, got {rootfs!r}")
        self.rootfs = rootfs
        if ident is None and (user is not None or group is not None or groups is not None):
            ident = resolve(rootfs_db(rootfs), user, group, groups)
        self._identity = ident
        if isinstance(namespaces, str):
            raise ConfigError(f"namespaces must be a collection of names, got {namespaces!r}")
        ns = set(namespaces)
        for n in ns:
            if n not in P.NSTYPES:
                raise ConfigError(f"namespaces: unknown namespace {n!r}")
        self._join = list(join)
        if not isinstance(net, str) and getattr(net, "type", None) == "net" and hasattr(net, "fileno"):
            self._join.append(net)     # e.g. a PooledNetns: joined instead of created
        elif net not in ("none", "host"):
            raise ConfigError(f"net must be 'none', 'host' or a network namespace, got {net!r}")
        if net == "host":
            ns.discard("net")
        for item in self._join:
            t = getattr(item, "type", None)
            if t not in P.NSTYPES or not hasattr(item, "fileno"):
                raise ConfigError(f"join: {item!r} is not an open namespace")
            ns.discard(t)
            if t == "mnt" and rootfs is not None:
                raise ConfigError("join: a joined mount namespace cannot take a rootfs")
            if "user" in ns and t not in ("user", "net"):
                # The joined namespace belongs to another user namespace, in which a
                # process born in a new user namespace holds no capability (setns: EPERM).
                # A network namespace is entered by the parent before the clone, so it
                # combines with a new user namespace (its lo must already be up).
                raise ConfigError(f"join: joining a {t} namespace needs 'user' left out of namespaces")
        if rootfs is not None and "mnt" not in ns:
            raise ConfigError("a rootfs needs the 'mnt' namespace")
        self.namespaces = frozenset(ns)
        if "user" in ns and uid_map is None and os.geteuid() == 0:
            uid_map = _IDENTITY_MAP
        if "user" in ns and gid_map is None and os.geteuid() == 0:
            gid_map = _IDENTITY_MAP
        self._uid_map, self._gid_map = uid_map, gid_map
        if limits is not None and cgroup is not None:
            raise ConfigError("give limits or cgroup, not both")
        if limits is not None:
            from .cgroup import Limits

            if not isinstance(limits, Limits):
                raise ConfigError(f"limits must be an isolate.cgroup.Limits, got {limits!r}")
        self.limits = limits
        self._pool = None
        if cgroup is not None and hasattr(cgroup, "take") and not hasattr(cgroup, "_spawn_target"):
            self._pool, cgroup = cgroup, None   # a CgroupPool: a fresh group at start
        self._cgroup = cgroup
        self._own_cgroup = False
        self.name = name if name is not None else f"isolate-{os.getpid()}-{next(_counter)}"
        if isinstance(hostname, _Auto):
            # Not the default name, unique per container: the plan cache would never hit.
            hostname = (None if "uts" not in self.namespaces else
                        hostname_for(name) if name is not None else DEFAULT_HOSTNAME)
        elif hostname is not None and not isinstance(hostname, str):
            raise ConfigError(f"hostname must be a string or None, got {hostname!r}")
        self.hostname = hostname
        self.new_session = bool(new_session)
        self.env = dict(env) if env is not None else None
        if rootfs is None:
            self.cwd = os.fsencode(cwd)
        else:
            self.cwd = b"." if cwd == "/" else container_path(cwd, "cwd")
        self.user, self.group, self.groups = user, group, groups
        if pivot_root is None:
            pivot_root = not root_is_initramfs()
        self.root_mode = "none" if rootfs is None else ("pivot_root" if pivot_root else "chroot")
        self.capabilities = _cap_names(capabilities)
        if self.root_mode == "chroot" and capabilities == "default":
            # Under chroot the host tree still exists below the root, and chroot(2)
            # itself is the way out (chroot a subdirectory, then '..' past the root).
            assert self.capabilities is not None
            self.capabilities = self.capabilities - {"CAP_SYS_CHROOT"}
        group_limits = limits if limits is not None else getattr(self._pool or cgroup, "limits", None)
        if (capabilities == "default" and "user" not in self.namespaces
                and getattr(group_limits, "devices", None) is None):
            # Outside a user namespace a device node made with mknod opens the
            # host's device (a disk, /dev/mem), and without device rules in its
            # cgroup nothing stops it, as runc's device cgroup would.
            assert self.capabilities is not None
            self.capabilities = self.capabilities - {"CAP_MKNOD"}
        self.no_new_privs = bool(no_new_privs)
        self._seccomp_prog: bytes | None
        if seccomp is None:
            self._seccomp_prog = None
        elif isinstance(seccomp, str):
            if seccomp != "default":
                raise ConfigError(f"seccomp must be 'default', a SeccompProfile, bytes or None, got {seccomp!r}")
            caps = self.capabilities if self.capabilities is not None else frozenset(P.CAPABILITIES)
            self._seccomp_prog = _default_seccomp(caps)
        elif isinstance(seccomp, SeccompProfile):
            self._seccomp_prog = seccomp.compile()
        elif isinstance(seccomp, (bytes, bytearray)):
            self._seccomp_prog = bytes(seccomp)
        else:
            raise ConfigError(f"seccomp must be 'default', a SeccompProfile, bytes or None, got {seccomp!r}")
        self.capability_sets = capability_sets
        # No process of the container can ever remount anything: without
        # CAP_SYS_ADMIN in its bounding set (and in no user namespace, where
        # the root would be its own), so a read-only root may be shared.
        self._root_unmountable = (capability_sets is None and self.capabilities is not None
                                  and "CAP_SYS_ADMIN" not in self.capabilities
                                  and "user" not in self.namespaces and os.geteuid() == 0)
        self.make_cwd = bool(make_cwd)
        self.rlimits = rlimits
        self.umask = umask
        self.die_with_parent = bool(die_with_parent)
        st = os.fsencode(stage)
        real = _STAGES.get(st)
        if real is None:
            if rootfs is not None and not os.path.isdir(st):
                raise ConfigError(f"stage must be an existing directory, got {stage!r}")
            real = os.path.realpath(st)
            if rootfs is not None:
                if len(_STAGES) >= 64:
                    _STAGES.clear()
                _STAGES[st] = real
        self._stage = real
        self.process: Process | None = None
        self._lock = threading.Lock()
        self._start_time = 0.0
        self._oom_base = 0
        self._timed_out = False
        self._ns_fds: dict[str, int] = {}
        #: ``from_bundle``: the bundle's process args, and the conversion holding its joined namespaces.
        self.args: tuple[str, ...] | None = None
        self._conversion: Any = None
        self._closed = False

    @classmethod
    def from_bundle(cls, path: str | os.PathLike[str], *, strict: bool = False) -> Container:
        """The container an OCI bundle describes: ``<path>/config.json``, read and converted.

        ``args`` is the config's ``process.args``: ``c.run(c.args)``.  The
        namespaces the config joins by path stay open until ``close()``.
        ``strict=True`` raises ``UnsupportedError`` naming every field that
        would not be applied; bad input raises ``ConfigError`` naming the
        JSON path (see ``isolate.oci.container_from_bundle``).
        """
        from .oci.convert import container_from_bundle

        container, conv = container_from_bundle(path, strict=strict)
        container.args = conv.args
        container._conversion = conv
        return container

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"<isolate.Container {self.name} {state}>"

    @property
    def running(self) -> bool:
        """Whether the container's first process is alive."""
        return self.process is not None and self.process.returncode is None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The host pid of the container's first process (its pid 1 with a pid namespace)."""
        return self.process.pid if self.process is not None else None

    @property
    def cgroup(self) -> Any:
        """The container's cgroup, or None."""
        return self._cgroup

    # --- the plan ------------------------------------------------------------

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        if env is not None:
            return dict(env)
        if self.env is not None:
            return dict(self.env)
        home = "/root" if self._identity is None or self._identity.uid == 0 else "/"
        out = {"PATH": DEFAULT_PATH, "HOME": home}
        if "TERM" in os.environ:
            out["TERM"] = os.environ["TERM"]
        return out

    def _console(self, stdout: Stdio) -> bytes | None:
        fd = 1 if stdout is None else (stdout if isinstance(stdout, int) else
                                       (stdout.fileno() if hasattr(stdout, "fileno") else -1))
        if not isinstance(fd, int) or fd < 0 or fd in (PIPE, DEVNULL, STDOUT):
            return None
        try:
            return os.fsencode(os.ttyname(fd)) if os.isatty(fd) else None
        except OSError:
            return None

    def _root_ops(self, cwd: bytes, stdout: Stdio) -> P.OpSeq:
        if self.rootfs is None:
            return _chdir_ops(cwd)
        chroot = self.root_mode == "chroot"
        stage = self._stage
        console = self._console(stdout)
        direct = not chroot and self.rootfs._builds_in_place(stage, console)
        if direct:
            new, old = stage, b"/"
        elif chroot:
            new, old = stage + b"/newroot", stage + b"/oldroot"
        else:
            new, old = b"/newroot", b"/oldroot"
        ctx = _Ctx(new=new, old=old, stage=stage, chroot=chroot, userns="user" in self.namespaces,
                   new_net="net" in self.namespaces, new_pid="pid" in self.namespaces,
                   console=console, direct=direct, new_ipc="ipc" in self.namespaces,
                   new_cgroupns="cgroup" in self.namespaces,
                   # Only a cgroupfs mount shows the group's paths: without one, every
                   # group (a pool hands out a new one per container) shares the plan.
                   cgroup_paths=None if self._cgroup is None or not self.rootfs._mounts_cgroupfs()
                   else tuple(sorted(self._cgroup.paths.items())),
                   shared_root=self._root_unmountable and (not self.make_cwd or cwd == b"."))
        base = self.rootfs._op_seq(ctx)
        umask = None if self.umask is not None else _process_umask()
        key = (id(base), ctx.new, chroot, cwd, self.make_cwd, self.rootfs.readonly, umask)
        hit = _ROOT_PLANS.get(key)
        if hit is not None and hit[0] is base:
            return hit[1]
        # The modes in the plan (0755 directories, 0644 /etc files, ...) are
        # meant exactly: a caller's umask of 077 would otherwise make /etc
        # unreadable to every user but root inside.
        ops: list[P.Op] = [P.Umask(0)]
        ops += base
        if chroot:
            ops += [P.Chdir(path_=ctx.new), P.Mount(b".", b"/", None, _MA.MS_MOVE), P.Chroot(b".")]
        else:
            ops.append(P.PivotRoot(new_root=ctx.new))
        if self.rootfs._sys_after_switch(ctx):
            ops += self.rootfs._sys_ops(b"/", b"/dev/null")
        if self.make_cwd and cwd != b".":
            # As runc: a working directory the image lacks is created (0755, by root).
            parts = cwd.split(b"/")
            for i, name in enumerate(parts):
                ops.append(P.RootMkdir(root=b"/", parent=b"/" + b"/".join(parts[:i]), name=name))
        if self.rootfs.readonly:
            # Last, so that mount points could still be made on the root.
            ops.append(P.MountSetattr(b"/", attr_set=_MA.MOUNT_ATTR_RDONLY, recursive=False))
        if cwd != b".":
            # (Entering the root, by pivot_root or chroot, ends in its "/".)
            ops.append(P.RootChdir(b"/", cwd))
        if umask is not None:
            # No umask of our own: the process keeps the caller's (spawn sets none).
            ops.append(P.Umask(umask))
        seq = P.OpSeq(ops)
        if len(_ROOT_PLANS) >= 64:
            _ROOT_PLANS.pop(next(iter(_ROOT_PLANS)))
        # The value holds ``base``, so its id in the key cannot be reused while cached.
        _ROOT_PLANS[key] = (base, seq)
        return seq

    def _credentials(self, user: Any) -> dict[str, Any]:
        """``spawn``'s user, group and groups: ``user`` (None: the container's) as the
        container's /etc/passwd and /etc/group say (see ``isolate._userdb``)."""
        ident = self._identity
        if user is not None:
            ident = resolve(rootfs_db(self.rootfs), user, self.group, self.groups)
        # A caller without root in a new user namespace of its own ids cannot set groups
        # (the kernel denies setgroups there, CVE-2014-8989), unless it asked for some.
        settable = os.geteuid() == 0 or self.groups is not None or self._held_maps()
        if ident is None:
            return {"groups": () if settable else None}
        return {"user": ident.uid, "group": ident.gid, "groups": ident.groups if settable else None}

    def _held_maps(self) -> bool:
        """Whether the id maps go through newuidmap/newgidmap (which allow setgroups)."""
        if "user" not in self.namespaces:
            return False
        umaps, gmaps = self._uid_map, self._gid_map
        return bool(umaps is not None and (len(umaps) > 1 or umaps[0].outside != os.geteuid())
                    or gmaps is not None and (len(gmaps) > 1 or gmaps[0].outside != os.getegid()))

    def _spawn_options(self, *, env: Mapping[str, str] | None, user: Any) -> dict[str, Any]:
        opts = dict(
            env=self._env(env),
            **self._credentials(user),
            capabilities=self.capabilities,
            capability_sets=self.capability_sets,
            no_new_privs=self.no_new_privs,
            seccomp=self._seccomp_prog,
            rlimits=self.rlimits,
            umask=self.umask,
            die_with_parent=self.die_with_parent,
        )
        return _without_defaults(opts)

    def _ensure_cgroup(self) -> None:
        if self._cgroup is None and self._pool is not None:
            self._cgroup = self._pool.take()
            self._own_cgroup = True    # closing it hands it back to the pool
        elif self._cgroup is None and self.limits is not None:
            from .cgroup import Cgroup

            self._cgroup = Cgroup.create(self.name, limits=self.limits)
            self._own_cgroup = True

    # --- lifecycle -----------------------------------------------------------

    def start(self, argv: Sequence[Any], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, stdin: Stdio = None, stdout: Stdio = None,
              stderr: Stdio = None, pass_fds: Sequence[int] | Mapping[int, int] = (),
              tty: bool = False, exec_gate: int | None = None, console_socket: int | None = None,
              console_size: tuple[int, int] | None = None,
              new_session: bool | None = None) -> Process:
        """Create the container and start ``argv`` as its first process; returns the ``Process``.

        ``tty``: stdin is a terminal, made the controlling one in a new
        session (it must not be another session's: open a pty for it).
        Otherwise the process runs in a session of its own without a
        controlling terminal (no TIOCSTI into the caller's), unless
        ``new_session`` (default: the container's ``new_session``) is False.
        ``exec_gate`` (for OCI create/start): an fd; the process is set up,
        then waits before execve until a byte can be read from it.
        ``console_socket``: a connected unix socket; the process gets a
        terminal from the container's own /dev/ptmx (of ``console_size``,
        rows and columns) as stdio, and its master is sent there (SCM_RIGHTS).

        Raises ``ConfigError`` for bad input (nothing created), the failing
        step's ``SetupError`` (everything created so far is removed), or
        ``RuntimeError`` if the container is already running.
        """
        if self._closed:
            raise ConfigError("the container is closed")
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self!r} is already running")
            c = self.cwd if cwd is None else (container_path(cwd, "cwd") if self.rootfs is not None
                                              else os.fsencode(cwd))
            opts = self._spawn_options(env=env, user=None)
            created_cgroup = self._cgroup is None
            if self.rootfs is not None:
                self.rootfs._prepare()
            try:
                self._ensure_cgroup()
                # After the cgroup exists: RootFS.cgroupfs() binds its directories.
                ops: Sequence[P.Op] = self._root_ops(c, stdout)
                if console_socket is not None:
                    rows, cols = console_size or (0, 0)
                    ops = [*ops, P.Console(fd=console_socket, rows=rows, cols=cols,
                                         bind_console=self.rootfs is not None and self.rootfs.dev)]
                base = self._cgroup.stats() if self._cgroup is not None else None
                self._oom_base = base.oom_kill if base is not None else 0
                self._start_time = time.monotonic()
                self._timed_out = False
                opts.update(_without_defaults({
                    "join": self._join, "uid_map": self._uid_map, "gid_map": self._gid_map,
                    "hostname": self.hostname, "cgroup": self._cgroup, "tty": tty,
                    "exec_gate": exec_gate}))
                # The console op makes the session itself (setsid, then its terminal).
                own = self.new_session if new_session is None else new_session
                opts["new_session"] = own and console_socket is None
                self.process = spawn(argv, namespaces=self.namespaces, ops=ops, stdin=stdin,
                                     stdout=stdout, stderr=stderr, pass_fds=pass_fds, **opts)
                if self.rootfs is not None:
                    self.rootfs._started(self.process.pid)   # its overlay stays while it runs
            except BaseException:
                if self.rootfs is not None:
                    self.rootfs._abort()
                if created_cgroup and self._own_cgroup:
                    self._close_cgroup()
                raise
        return self.process

    def wait(self, timeout: float | None = None, *, input: bytes | None = None,
             max_output: int | None = DEFAULT_MAX_OUTPUT) -> Result:
        """Wait for the first process (killing the container after ``timeout`` seconds).

        Reads its captured stdout/stderr, keeping at most ``max_output``
        bytes of each (None: all); the rest is read and discarded, so the
        process never blocks on a full pipe, and ``Result.truncated`` is set.
        On ``timeout`` the output read until then is kept.  With a pid
        namespace, the container ends with its first process; its other
        processes are killed.
        """
        t = _timeout(timeout)
        max_output = _max_output(max_output)
        proc = self.process
        if proc is None:
            raise RuntimeError(f"{self!r} was never started")
        out, err, self._timed_out = _collect(proc, t, input, max_output, self.kill)
        wall = time.monotonic() - self._start_time
        self._reap_tree()
        return self._result(proc, out, err, wall)

    def _result(self, proc: Process, out: bytes | None, err: bytes | None, wall: float) -> Result:
        assert proc.returncode is not None
        ru = proc.rusage
        cpu = (ru.ru_utime + ru.ru_stime) if ru is not None else 0.0
        peak = int(ru.ru_maxrss) * 1024 if ru is not None else None
        oom = False
        if self._cgroup is not None:
            try:
                st = self._cgroup.stats()
            except Exception:      # a vanished cgroup only loses the figures
                st = None
            if st is not None:
                if st.cpu_usage_usec is not None:
                    cpu = st.cpu_usage_usec / 1e6
                if st.memory_peak is not None:
                    peak = st.memory_peak
                oom = st.oom_kill > self._oom_base
        return Result(args=list(proc.args), returncode=proc.returncode, stdout=out, stderr=err,
                      wall_time=wall, cpu_time=cpu, peak_memory=peak, oom_killed=oom,
                      timed_out=self._timed_out, root_mode=self.root_mode, truncated=proc.truncated)

    def _reap_tree(self) -> None:
        # Without a pid namespace the first process's children may outlive it.
        if "pid" not in self.namespaces and self._cgroup is not None:
            try:
                self._cgroup.kill()
            except Exception:
                pass

    def run(self, argv: Sequence[Any], *, timeout: float | None = None, input: bytes | None = None,
            capture_output: bool = True, env: Mapping[str, str] | None = None,
            cwd: str | None = None, stdin: Stdio = None, stdout: Stdio = None,
            stderr: Stdio = None, pass_fds: Sequence[int] | Mapping[int, int] = (),
            max_output: int | None = DEFAULT_MAX_OUTPUT) -> Result:
        """Start ``argv`` in a fresh container and wait for it; returns a ``Result``.

        ``capture_output`` (default) collects stdout and stderr, at most
        ``max_output`` bytes of each (default ``DEFAULT_MAX_OUTPUT``; None:
        everything): the rest is read and thrown away, the process never
        blocks, and ``Result.truncated`` is set.  Pass ``capture_output``
        False, or ``stdout``/``stderr``, to stream instead.  On ``timeout``
        the container is killed, ``Result.timed_out`` is set, and the output
        read until then is in the result.
        """
        t = _timeout(timeout)
        max_output = _max_output(max_output)
        if input is not None:
            if stdin is not None:
                raise ConfigError("stdin and input cannot both be given")
            stdin = PIPE
        if capture_output and stdout is None and stderr is None:
            stdout = stderr = PIPE
        self.start(argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                   pass_fds=pass_fds)
        try:
            return self.wait(t, input=input, max_output=max_output)
        finally:
            self._release_process()

    def _release_process(self) -> None:
        if self.process is not None:
            self.process.close()
        self._close_ns_fds()

    def exec(self, argv: Sequence[Any], *, timeout: float | None = None, input: bytes | None = None,
             capture_output: bool = True, env: Mapping[str, str] | None = None,
             cwd: str | None = None, user: int | str | None = None,
             max_output: int | None = DEFAULT_MAX_OUTPUT) -> Result:
        """Run ``argv`` inside the running container and wait for it.

        The new process joins every namespace of the container (through
        /proc/<pid>/ns of its first process) and its cgroup, and gets the same
        capabilities, no_new_privs and seccomp filter, and a session of its
        own (unless ``new_session=False``).  ``user`` (default: the
        container's) is looked up in the container's /etc/passwd.  Output is
        kept as by ``run()`` (``max_output``, ``Result.truncated``); on
        ``timeout`` the process (and its process group) is killed.
        """
        t = _timeout(timeout)
        max_output = _max_output(max_output)
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        assert self.process is not None
        c = self.cwd if cwd is None else (container_path(cwd, "cwd") if self.rootfs is not None
                                          else os.fsencode(cwd))
        join = self._join_refs()
        opts = self._spawn_options(env=env, user=user)
        root = b"/"
        # Not dumpable until execve: processes already in the container must
        # not ptrace or open /proc/<pid>/exe of a process that is still the
        # runtime (the class of CVE-2019-5736).
        ops: list[P.Op] = [P.SetDumpable(0),
                           P.RootChdir(root, c) if self.rootfs is not None else P.Chdir(path_=c)]
        stdio: dict[str, Any] = {}
        if input is not None:
            stdio["stdin"] = PIPE
        if capture_output:
            stdio["stdout"] = stdio["stderr"] = PIPE
        start = time.monotonic()
        proc = spawn(argv, join=join, cgroup=self._cgroup, ops=ops, new_session=self.new_session,
                     **stdio, **opts)

        def kill() -> None:
            # Not kill_tree(): that would end the whole container (its cgroup).
            if self.new_session:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)   # its group: a zombie's pid is not reused
                except (ProcessLookupError, PermissionError):
                    pass
            proc.kill()

        with proc:
            out, err, timed_out = _collect(proc, t, input, max_output, kill)
        ru = proc.rusage
        return Result(args=list(argv), returncode=proc.returncode if proc.returncode is not None else -9,
                      stdout=out, stderr=err, wall_time=time.monotonic() - start,
                      cpu_time=(ru.ru_utime + ru.ru_stime) if ru else 0.0,
                      peak_memory=int(ru.ru_maxrss) * 1024 if ru else None, oom_killed=False,
                      timed_out=timed_out, root_mode=self.root_mode, truncated=proc.truncated)

    def _join_refs(self) -> list[_NsRef]:
        assert self.process is not None
        pid = self.process.pid
        if not self._ns_fds:
            fds: dict[str, int] = {}
            try:
                for t in sorted(self.namespaces | {item.type for item in self._join}):
                    fds[t] = os.open(f"/proc/{pid}/ns/{t}", os.O_RDONLY | os.O_CLOEXEC)
                # The pidfd says whether those files belong to our process, not a recycled pid.
                signal.pidfd_send_signal(self.process.pidfd, 0)
            except BaseException:
                for fd in fds.values():
                    os.close(fd)
                raise
            self._ns_fds = fds
        return [_NsRef(t, fd) for t, fd in self._ns_fds.items()]

    def _close_ns_fds(self) -> None:
        for fd in self._ns_fds.values():
            os.close(fd)
        self._ns_fds = {}

    def pause(self) -> None:
        """Freeze every process of the container (needs a cgroup: ``limits=`` or ``cgroup=``)."""
        if self._cgroup is None:
            raise UnsupportedError("pause() needs a cgroup: create the Container with limits= or cgroup=")
        self._cgroup.freeze()

    def resume(self) -> None:
        """Thaw a paused container."""
        if self._cgroup is None:
            raise UnsupportedError("resume() needs a cgroup: create the Container with limits= or cgroup=")
        self._cgroup.thaw()

    def kill(self) -> None:
        """SIGKILL every process of the container (its pid 1, which takes the pid namespace along)."""
        proc = self.process
        if self._cgroup is not None:
            try:
                self._cgroup.thaw()
            except Exception:
                pass
            try:
                self._cgroup.kill()
            except Exception:
                pass
        if proc is not None:
            proc.kill_tree()

    def _close_cgroup(self) -> None:
        if self._own_cgroup and self._cgroup is not None:
            cg, self._cgroup, self._own_cgroup = self._cgroup, None, False
            cg.close()

    def detach(self) -> None:
        """Let the container outlive this object: nothing is killed or removed.

        Its first process, cgroup and mounts stay; they are someone else's to
        end (the OCI runtime's ``delete``).  The object is closed afterwards.
        """
        if self._closed:
            return
        self._closed = True
        if self.process is not None:
            self.process.detach()           # not ours to reap any more
        self._close_ns_fds()
        if self._cgroup is not None and self._own_cgroup:
            self._cgroup.detach()
        self._cgroup, self._own_cgroup = None, False

    def close(self) -> None:
        """Kill what still runs, then remove the cgroup it made and the overlay scratch.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.process is not None and self.process.returncode is None:
                self.kill()
                self.process.wait()
        finally:
            try:
                self._release_process()
                self._close_cgroup()
            finally:
                if self.rootfs is not None:
                    self.rootfs._finish()
                if self._conversion is not None:
                    self._conversion.close()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            if self.running:
                warnings.warn(f"{self!r} was not closed", ResourceWarning, source=self)
            try:
                self.close()
            except Exception:
                pass
