"""``Container``: namespaces, id maps, a cgroup, a root filesystem and a process, in one spawn.

::

    with isolate.Container(rootfs=RootFS.host(), limits=Limits(memory_max=256 << 20, pids_max=64),
                           hostname="box") as c:
        result = c.run(["make", "test"], timeout=60)
    print(result.returncode, result.peak_memory, result.oom_killed)

A ``Container`` is the lifecycle of one ``ContainerConfig`` (given, or made
from the keyword options): it makes its cgroup, starts its first process
(one plan, one C call: the root's ops from the plan cache, see ``_plans``),
waits, runs others inside (``exec_into``), pauses, kills and removes.
Nothing is mounted in the caller's namespace, so the container's mounts
vanish with its last process.  The secure defaults: every namespace (user,
pid, mnt, uts, ipc, net with only ``lo`` up, cgroup), the OCI default
capability set (none for a non-root user), ``no_new_privs``, Docker's
default seccomp profile (which also refuses TIOCSTI), a session of its own,
a hostname of its own, bounded tmpfs sizes (see ``RootFS.host``), at most
``DEFAULT_MAX_OUTPUT`` bytes of each captured stream kept, SIGKILL when the
spawning thread dies, and every fd that was not passed closed.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
import warnings

from . import _plans
from . import _validate as V
from ._enter import exec_into
from ._io import collect, stdio_for
from ._ops import Chdir
from ._plan import OpSeq
from ._planner_root import mounts_cgroupfs, root_context
from ._record import asdict, dataclass, replace
from ._resolve import Resolved, config_from_options, console_path, process_umask
from ._container_net import NET_FILES, ContainerNet
from ._userns import in_user_namespace
from .config import DEFAULT_HOSTNAME, DEFAULT_NAMESPACES, ContainerConfig, hostname_for
from .errors import ConfigError, UnsupportedError
from .process import Process, launch
from .rootfs import RootFS, container_path
from .seccomp import OCI_DEFAULT_CAPS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import IO, Any, Literal, TypeAlias

    from .cgroup import Cgroup, CgroupStats, Limits
    from .cgroup.pool import CgroupPool
    from .idmap import IdMap
    from .net.ports import PublishLike
    from .netpool import NetnsPool
    from .oci.convert import Conversion
    from .process import NamespaceLike, StrPath
    from .seccomp import SeccompProfile

__all__ = ["Container", "Result", "DEFAULT_NAMESPACES", "OCI_DEFAULT_CAPS", "DEFAULT_HOSTNAME",
           "DEFAULT_MAX_OUTPUT", "hostname_for"]

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



class Container:
    """A container: created by ``start()``/``run()``, torn down by ``close()`` or ``with``.

    Give a ``ContainerConfig`` (``Container(config, cgroup=...)``), or its
    options as keywords (every one checked here, before anything exists):
    ``rootfs`` (a ``RootFS``; default ``RootFS.host()``; None keeps the
    host's tree), ``namespaces`` (default ``DEFAULT_NAMESPACES``), ``net``
    (``"none"``: own network namespace with ``lo``; ``"host"``: the host's;
    an open network namespace such as a ``PooledNetns``: that one;
    ``"bridge"`` or a network's name: a namespace of its own per start on
    that network, see ``isolate.net``: an address, a default route,
    outbound traffic, ``publish`` (host ports forwarded to it:
    ``[(8080, 80)]``, ``["8080:80/udp"]``), ``dns`` (its resolvers; default
    the host's), its /etc/hosts and /etc/resolv.conf; as root the namespace
    comes from ``netns_pool`` when given, a ``NetnsPool``; without root
    pasta or slirp4netns give it the network),
    ``join`` (open namespaces, e.g. from ``NetnsPool``, to enter instead of
    creating; needs ``user`` left out of ``namespaces``),
    ``userns`` (how the user namespace maps ids that ``uid_map``/``gid_map``
    leave unsaid: ``"auto"``, the default, gives a root caller's container
    a block of 65536 host ids that no other live container has, from the
    ``isolate`` lines of /etc/subuid and /etc/subgid or a built-in range, so
    container root is an unprivileged host user, freed at ``close()``;
    ``"identity"``: every id to itself, container root is host root;
    ``"keep-id"``: the caller's id to itself, one line, the container
    running as it; a non-root caller's ``"auto"`` maps root inside to
    itself), ``uid_map``/``gid_map`` (explicit maps: they override
    ``userns``), ``limits`` (an
    ``isolate.cgroup.Limits``: a cgroup named ``name`` is made for the
    container, below ``cgroup_parent`` if given, else below the default
    parent: for a caller without root the cgroup delegated to it, see
    ``Cgroup.create``; ``cgroup_parent`` alone makes a group without limits)
    or ``cgroup`` (a caller-owned ``Cgroup``, or a ``CgroupPool``
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

    ``join``, ``net`` (a namespace) and ``cgroup`` are live resources the
    caller keeps open, given with a config or without one.  A ``RootFS``
    given as ``rootfs`` may still be changed before a start: each start
    builds the root it describes then.
    """


    def __init__(
        self,
        config: ContainerConfig | None = None,
        /,
        *,
        rootfs: RootFS | None | Literal["host"] = "host",
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        join: Iterable[NamespaceLike] = (),
        net: str | NamespaceLike = "none",
        publish: Sequence[PublishLike] = (),
        dns: Sequence[str] | None = None,
        netns_pool: NetnsPool | None = None,
        userns: Literal["auto", "identity", "keep-id"] = "auto",
        uid_map: Sequence[IdMap] | None = None,
        gid_map: Sequence[IdMap] | None = None,
        limits: Limits | None = None,
        cgroup: Cgroup | CgroupPool | None = None,
        cgroup_parent: str | os.PathLike[str] | None = None,
        name: str | None = None,
        hostname: str | None = "auto",
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        user: int | str | None = None,
        group: int | str | None = None,
        groups: Sequence[int | str] | None = None,
        capabilities: Iterable[str] | Literal["default"] | None = "default",
        capability_sets: Mapping[str, Iterable[str]] | None = None,
        no_new_privs: bool = True,
        seccomp: SeccompProfile | bytes | Literal["default"] | None = "default",
        rlimits: Mapping[str | int, int | tuple[int, int]] | None = None,
        umask: int | None = 0o022,
        die_with_parent: bool = True,
        pivot_root: bool | None = None,
        stage: str = "/tmp",
        make_cwd: bool = False,
        new_session: bool = True,
    ) -> None:
        self._closed = True
        joined = list(join)
        options = dict(rootfs=rootfs, namespaces=namespaces, userns=userns, uid_map=uid_map,
                       gid_map=gid_map,
                       limits=limits, name=name, hostname=hostname, env=env, cwd=cwd, user=user,
                       group=group, groups=groups, capabilities=capabilities,
                       capability_sets=capability_sets, no_new_privs=no_new_privs, seccomp=seccomp,
                       rlimits=rlimits, umask=umask, die_with_parent=die_with_parent,
                       pivot_root=pivot_root, stage=stage, make_cwd=make_cwd, new_session=new_session,
                       publish=publish, dns=dns)
        ident = None
        resolved = False
        #: Whether an image root's config fills the options (keyword options only).
        self._image_defaults = config is None
        if config is None:
            config, root, ident = config_from_options(net=net, join=joined, **options)  # type: ignore[arg-type]
            resolved = True
        else:
            if not isinstance(config, ContainerConfig):
                raise ConfigError(f"config must be a ContainerConfig, got {config!r}")
            given = sorted(k for k, v in options.items() if v is not _DEFAULTS[k] and v != _DEFAULTS[k])
            if given:
                raise ConfigError(f"give a ContainerConfig or its options, not both: {', '.join(given)}")
            if not isinstance(net, str) and getattr(net, "type", None) == "net":
                joined.append(net)
            elif net != "none":
                raise ConfigError(f"net must be a network namespace with a config (its net is "
                                  f"{config.net!r}), got {net!r}")
            root = RootFS.from_spec(config.root) if config.root is not None else None
        self._net: ContainerNet | None = None
        if config.net not in ("none", "host"):
            self._net = ContainerNet(config.net, publish=config.publish, dns=config.dns,
                                     pool=netns_pool)
            if self._net.slot is not None:
                joined.append(self._net.slot)     # made (or taken) and attached at each start
        elif netns_pool is not None:
            raise ConfigError(f"netns_pool needs a network (net='bridge' or a network's name), "
                              f"not net={config.net!r}")
        limits = config.limits
        if limits is not None and cgroup is not None:
            raise ConfigError("give limits or cgroup, not both")
        if cgroup_parent is not None:
            if cgroup is not None:
                raise ConfigError("give cgroup or cgroup_parent, not both")
            from .cgroup import _layout
            from .cgroup.layout import split_parent

            split_parent(cgroup_parent, _layout())    # ConfigError for a bad one, before anything exists
        self._cgroup_parent = cgroup_parent
        self._pool: CgroupPool | None = None
        if cgroup is not None and hasattr(cgroup, "take") and not hasattr(cgroup, "_spawn_target"):
            self._pool, cgroup = cgroup, None   # a CgroupPool: a fresh group at start
        group_limits = limits if limits is not None else getattr(self._pool or cgroup, "limits", None)
        r = Resolved(config, root, joined, group_limits, ident, resolved)
        self._r = r
        #: The host ids container root has (``userns="auto"``): ``(uid, gid)`` of its block.
        self.id_block = (r.lease.block.uid, r.lease.block.gid) if r.lease is not None else None
        self.config = config
        self.rootfs = root
        self.namespaces = r.namespaces
        self._join = r.join
        self._uid_map, self._gid_map = r.uid_map, r.gid_map
        self.limits = limits
        self._cgroup: Cgroup | None = cgroup  # type: ignore[assignment]
        self._own_cgroup = False
        self.name = config.name if config.name is not None else f"isolate-{os.getpid()}-{next(_counter)}"
        self.hostname = config.hostname
        proc = config.process
        self.new_session = bool(proc.new_session)
        self.env = dict(proc.env) if proc.env is not None else None
        self.cwd = r.cwd
        self.user, self.group, self.groups = proc.user, proc.group, proc.groups
        self.root_mode = r.root_mode
        self.capabilities = r.capabilities
        self.capability_sets = proc.capability_sets
        self.no_new_privs = proc.no_new_privs
        self.make_cwd = config.make_cwd
        self.rlimits = proc.rlimits
        self.umask = proc.umask
        self.die_with_parent = proc.die_with_parent
        self._stage = r.stage
        self.process: Process | None = None
        self._lock = threading.Lock()
        self._start_time = 0.0
        self._oom_base = 0
        self._timed_out = False
        self._ns_fds: dict[str, int] = {}
        #: ``from_bundle``: the bundle's process args, and the conversion holding its joined namespaces.
        self.args: tuple[str, ...] | None = None
        self._conversion: Conversion | None = None
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
        from .oci.convert import convert_bundle

        conv = convert_bundle(path, strict=strict)
        try:
            container = cls(conv.config, join=conv.join)
        except BaseException:
            conv.close()
            raise
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
    def cgroup(self) -> Cgroup | None:
        """The container's cgroup, or None."""
        return self._cgroup

    # --- the plan ------------------------------------------------------------

    def _root_ops(self, cwd: bytes, stdout: Stdio,
                  net_paths: tuple[str, str] | None = None) -> tuple[OpSeq, tuple[object, ...]]:
        """The ops of the container's root for a process in ``cwd`` (from the plan cache),
        and what owns the fds they name.  ``net_paths``: the network's /etc/hosts and
        /etc/resolv.conf to bind by path (a container without root)."""
        if self.rootfs is None:
            return OpSeq((Chdir(path_=cwd),)), ()
        spec = self.rootfs.spec
        if net_paths is not None:
            from .config import BindMount

            binds = tuple(BindMount(source=os.fsencode(src), target=dst, readonly=True,
                                    recursive=False, is_dir=False)
                          for src, dst in zip(net_paths, NET_FILES))
            spec = replace(spec, mounts=(*spec.mounts, *binds))
        chroot = self.root_mode == "chroot"
        stage = self._stage
        console = console_path(stdout)
        direct = not chroot and _plans.builds_in_place(spec, stage, console)
        if direct:
            new, old = stage, b"/"
        elif chroot:
            new, old = stage + b"/newroot", stage + b"/oldroot"
        else:
            new, old = b"/newroot", b"/oldroot"
        ns = self.namespaces
        # Only a cgroupfs mount shows the group's paths: without one, every group (a pool
        # hands out a new one per container) shares the plan.
        paths = (None if self._cgroup is None or not mounts_cgroupfs(spec)
                 else tuple(sorted(self._cgroup.paths.items())))
        joined = {getattr(j, "type", None) for j in self._join}
        joined_mnt = "mnt" in joined
        shared = self._r.root_unmountable and (not self.make_cwd or cwd == b".") and not joined_mnt
        # In a user namespace of its own, a joined one (a pooled network namespace's), or
        # this process's (podman rootless runs runtimes so).
        userns = "user" in ns or "user" in joined or in_user_namespace()
        ctx = root_context(new=new, old=old, stage=stage, chroot=chroot, userns=userns,
                           new_net="net" in ns, new_pid="pid" in ns, console=console, direct=direct,
                           new_ipc="ipc" in ns, new_cgroupns="cgroup" in ns, cgroup_paths=paths,
                           shared_root=shared, joined_mnt=joined_mnt, idmap=self._r.idmapped,
                           net_files=NET_FILES if self._net is not None and self._net.slot is not None
                           else ())
        umask = None if self.umask is not None else process_umask()
        return _plans.container_root(spec, ctx, cwd=cwd, make_cwd=self.make_cwd, umask=umask)

    def _ensure_cgroup(self) -> None:
        if self._cgroup is None and self._pool is not None:
            self._cgroup = self._pool.take()
            self._own_cgroup = True    # closing it hands it back to the pool
        elif self._cgroup is None and (self.limits is not None or self._cgroup_parent is not None):
            from .cgroup import Cgroup

            self._cgroup = Cgroup.create(self.name, parent=self._cgroup_parent, limits=self.limits)
            self._own_cgroup = True

    def _cwd(self, cwd: str | None) -> bytes:
        if cwd is None:
            return self.cwd
        return container_path(cwd, "cwd") if self.rootfs is not None else os.fsencode(cwd)

    # --- lifecycle -----------------------------------------------------------

    def start(self, argv: Sequence[StrPath] | None = None, *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, stdin: Stdio = None, stdout: Stdio = None,
              stderr: Stdio = None, pass_fds: Sequence[int] | Mapping[int, int] = (),
              tty: bool = False, exec_gate: int | None = None, console_socket: int | None = None,
              console_size: tuple[int, int] | None = None,
              new_session: bool | None = None) -> Process:
        """Create the container and start ``argv`` as its first process; returns the ``Process``.

        ``argv`` None: the config's ``process.args``.  ``tty``: stdin is a
        terminal, made the controlling one in a new session (it must not be
        another session's: open a pty for it).  Otherwise the process runs
        in a session of its own without a controlling terminal (no TIOCSTI
        into the caller's), unless ``new_session`` (default: the
        container's ``new_session``) is False.  ``exec_gate`` (for OCI
        create/start): an fd; the process is set up, then waits before
        execve until a byte can be read from it.  ``console_socket``: a
        connected unix socket; the process gets a terminal from the
        container's own /dev/ptmx (of ``console_size``, rows and columns) as
        stdio, and its master is sent there (SCM_RIGHTS).

        Raises ``ConfigError`` for bad input (nothing created), the failing
        step's ``SetupError`` (everything created so far is removed), or
        ``RuntimeError`` if the container is already running.
        """
        if self._closed:
            raise ConfigError("the container is closed")
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self!r} is already running")
            c = self._cwd(cwd)
            spec = self._r.spec(self._argv(argv), env=env, tty=tty, new_session=new_session)
            created_cgroup = self._cgroup is None
            if self.rootfs is not None:
                self.rootfs._prepare()
            net_fds: list[int] = []
            try:
                self._ensure_cgroup()
                net_paths = None
                held = None
                if self._net is not None:
                    net_fds = self._net.prepare(name=self.name, hostname=self.hostname,
                                                with_root=self.rootfs is not None)
                    if self._net.rootless:
                        net_paths = self._net.rootless_files() if self.rootfs is not None else None
                        net, name, host = self._net, self.name, self.hostname
                        held = (lambda pid: net.held(pid, name=name, hostname=host))
                # After the cgroup exists: RootFS.cgroupfs() binds its directories.
                ops, keep = self._root_ops(c, stdout, net_paths)
                console = None
                if console_socket is not None:
                    rows, cols = console_size or (0, 0)
                    console = (console_socket, (rows, cols, self.rootfs is not None and self.rootfs.spec.dev))
                base = self._cgroup.stats() if self._cgroup is not None else None
                self._oom_base = base.oom_kill if base is not None else 0
                self._start_time = time.monotonic()
                self._timed_out = False
                self.process = launch(spec, self._r.isolation, stdin=stdin, stdout=stdout,
                                      stderr=stderr, pass_fds=pass_fds,
                                      join_fds=[j.fileno() for j in self._join], cgroup=self._cgroup,
                                      extra=ops, keep=keep, exec_gate=exec_gate, console=console,
                                      net_fds=net_fds, before_release=held)
                if self._net is not None:
                    # (With die_with_parent the container ends with the thread that started
                    # it: this process keeps what it has on the network.)
                    self._net.started(self.process.pid, outlives_caller=not self.die_with_parent)
                if self.rootfs is not None:
                    # Its overlay stays while it runs.  A container that dies with this
                    # process is covered by this process's hold on its image layers.
                    self.rootfs._started(self.process.pid, hand_over=not self.die_with_parent)
            except BaseException:
                if self._net is not None:
                    self._net.finish()
                if self.rootfs is not None:
                    self.rootfs._abort()
                if created_cgroup and self._own_cgroup:
                    self._close_cgroup()
                raise
            finally:
                for fd in net_fds:
                    os.close(fd)
        return self.process

    def _argv(self, argv: Sequence[StrPath] | None) -> Sequence[StrPath]:
        if argv is not None:
            image = getattr(self.rootfs, "image", None)
            if image is not None and image.config.entrypoint and self._image_defaults:
                # As docker run IMAGE ARGS: the arguments replace Cmd, the Entrypoint stays.
                return [*image.config.entrypoint, *argv]
            return argv
        if self.config.process.args:
            return self.config.process.args
        if self.args:
            return self.args
        raise ConfigError("argv must not be empty (the config's process has no args)")

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
        t = V.timeout(timeout)
        max_output = V.max_output(max_output)
        proc = self.process
        if proc is None:
            raise RuntimeError(f"{self!r} was never started")
        out, err, self._timed_out = collect(proc, t, input, max_output, self.kill)
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
            st: CgroupStats | None
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

    def run(self, argv: Sequence[StrPath] | None = None, *, timeout: float | None = None,
            input: bytes | None = None, capture_output: bool = True,
            env: Mapping[str, str] | None = None, cwd: str | None = None, stdin: Stdio = None,
            stdout: Stdio = None, stderr: Stdio = None,
            pass_fds: Sequence[int] | Mapping[int, int] = (),
            max_output: int | None = DEFAULT_MAX_OUTPUT, check: bool = False) -> Result:
        """Start ``argv`` (None: the config's) in a fresh container and wait for it; returns a ``Result``.

        Waits as ``isolate.run`` does (see ``isolate.process``): ``timeout``
        in seconds, after which the container is killed, ``Result.timed_out``
        is set and the output read until then is in the result;
        ``capture_output`` (default) collects stdout and stderr, at most
        ``max_output`` bytes of each (default ``DEFAULT_MAX_OUTPUT``; None:
        everything): the rest is read and thrown away, the process never
        blocks, and ``Result.truncated`` is set.  Pass ``capture_output``
        False, or ``stdout``/``stderr``, to stream instead.  ``check``:
        raise ``subprocess.CalledProcessError`` on a non-zero exit (as
        ``isolate.run(check=True)``; not on a timeout, which the result says).
        """
        t = V.timeout(timeout)
        max_output = V.max_output(max_output)
        stdin, stdout, stderr = stdio_for(input, capture_output, stdin, stdout, stderr, strict=False)
        self.start(argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                   pass_fds=pass_fds)
        try:
            result = self.wait(t, input=input, max_output=max_output)
        finally:
            self._release_process()
        if check and not result.timed_out:
            result.check_returncode()
        return result

    def _release_process(self) -> None:
        if self.process is not None:
            self.process.close()
        self._close_ns_fds()
        if self._net is not None:
            self._net.finish()

    def exec(self, argv: Sequence[StrPath], *, timeout: float | None = None, input: bytes | None = None,
             capture_output: bool = True, env: Mapping[str, str] | None = None,
             cwd: str | None = None, user: int | str | None = None,
             max_output: int | None = DEFAULT_MAX_OUTPUT) -> Result:
        """Run ``argv`` inside the running container and wait for it.

        The new process joins every namespace of the container (through
        /proc/<pid>/ns of its first process) and its cgroup, and gets the same
        capabilities, no_new_privs and seccomp filter, and a session of its
        own (unless ``new_session=False``), as ``exec_into`` sets up every
        process entering a container.  ``user`` (default: the container's)
        is looked up in the container's /etc/passwd.  Output is kept as by
        ``run()`` (``max_output``, ``Result.truncated``); on ``timeout`` the
        process (and its process group) is killed.
        """
        t = V.timeout(timeout)
        max_output = V.max_output(max_output)
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        assert self.process is not None
        c = self._cwd(cwd)
        join = self._join_refs()
        spec = self._r.spec(argv, env=env, user=user)
        stdin, stdout, stderr = stdio_for(input, capture_output, None, None, None, strict=False)
        start = time.monotonic()
        proc = exec_into(spec, join=join, cgroup=self._cgroup, cwd=c, in_root=self.rootfs is not None,
                         stdin=stdin, stdout=stdout, stderr=stderr)

        def kill() -> None:
            # Not kill_tree(): that would end the whole container (its cgroup).
            if self.new_session:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)   # its group: a zombie's pid is not reused
                except (ProcessLookupError, PermissionError):
                    pass
            proc.kill()

        with proc:
            out, err, timed_out = collect(proc, t, input, max_output, kill)
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
            if self.rootfs is not None:
                self.rootfs._hand_over(self.process.pid)   # its image layers stay held
        self._close_ns_fds()
        if self._net is not None:
            self._net.detach(self.process.pid if self.process is not None else None)
        if self._cgroup is not None and self._own_cgroup:
            self._cgroup.detach()
        self._cgroup, self._own_cgroup = None, False
        # Its processes keep their ids: the block is taken back once none runs.
        self._r.release(processes_gone=False)

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
                self._release_ids()

    def _release_ids(self) -> None:
        # With a pid namespace of its own, every process of the container died with its
        # reaped init (the kernel reaps init last); without, some may still run.
        proc = self.process
        gone = proc is None or ("pid" in self.namespaces and proc.returncode is not None)
        self._r.release(processes_gone=gone)

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


#: The keyword options' defaults (what a ``Container`` given a config must leave them at).
_DEFAULTS: dict[str, object] = {k: v for k, v in (Container.__init__.__kwdefaults__ or {}).items()
                                if k not in ("join", "net", "cgroup", "cgroup_parent", "netns_pool")}
