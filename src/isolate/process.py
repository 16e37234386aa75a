"""``spawn()``, ``run()`` and ``Process``: isolated processes from Python.

``spawn`` checks its options into a ``ProcessSpec`` and an ``Isolation``
(frozen, validated once), takes their plan from the plan cache (``_plans``:
planned and packed once per shape) and crosses into C once, with this
spawn's fds.  No Python runs in the child, so ``os.register_at_fork`` hooks
do not run there and the interpreter's state (threads, locks) does not
matter.

``run`` and ``Container.run`` wait alike (``_io.collect``): ``timeout`` is a
non-negative number of seconds; on expiry the whole process tree is killed
and the output read until then is kept; ``input`` needs stdin free;
``max_output`` bounds what is kept of each captured stream (the rest is
read and discarded, ``truncated`` says so).  They differ in shape only:
``run`` is ``subprocess.run`` (captures on request, raises
``TimeoutExpired`` carrying the output, keeps everything by default),
``Container.run`` returns a ``Result`` (captures by default, sets
``timed_out``, keeps 32 MiB of each stream by default).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Mapping

from . import _cache, _idmount, _plans
from . import _validate as V
from ._io import DEVNULL, PIPE, STDOUT, Communication, StdioSetup, collect, stdio_for
from ._ops import Console
from ._plan import NSTYPES, Op, OpSeq
from ._planner import FdLayout, Isolation, ProcessPlan, fd_layout, isolation
from ._slots import mount_fd_names, net_fd_names
from ._spawn import Spawned, execute
from .config import NAMESPACES, ProcessSpec, namespace_set
from .errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import IO, Any, Protocol, TypeAlias, final

    from typing_extensions import Unpack

    from ._plan import Plan
    from ._typing import SpawnOptions
    from .idmap import IdMap
    from .seccomp import SeccompProfile
else:
    from ._record import final

    Protocol = object       # the two protocols below are for type checkers

__all__ = ["spawn", "run", "Process", "CompletedProcess", "PIPE", "DEVNULL", "STDOUT", "NAMESPACES",
           "NamespaceLike", "CgroupTarget"]

StrPath: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"
Stdio: TypeAlias = "None | int | IO[Any]"

#: spawn()'s defaults for what a ``ProcessSpec`` defaults to a sandbox's (see ``config``).
PLAIN: dict[str, Any] = dict(capabilities=None, seccomp=None, no_new_privs=False, umask=None,
                             die_with_parent=False, new_session=None)
_NO_OPS = OpSeq(())


class NamespaceLike(Protocol):
    """What ``join=`` accepts: an open namespace (``isolate.Namespace``, ``PooledNetns``)."""

    @property
    def type(self) -> str:
        """The namespace's name in /proc/<pid>/ns (``"net"``, ``"mnt"``, ...)."""
        ...

    def fileno(self) -> int:
        """The open nsfs file descriptor (``setns`` is called on it)."""
        ...


class CgroupTarget(Protocol):
    """What ``cgroup=`` accepts (``isolate.Cgroup``)."""

    def _spawn_target(self) -> tuple[int, tuple[int, ...]]:
        """(cgroup v2 directory fd for CLONE_INTO_CGROUP or -1, cgroup.procs fds to write the pid to)."""
        ...


def join_refs(join: Iterable[NamespaceLike]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The types and fds of namespaces to join, checked to be namespaces."""
    types: list[str] = []
    fds: list[int] = []
    for item in join:
        t = getattr(item, "type", None)
        if t not in NSTYPES or not hasattr(item, "fileno"):
            raise ConfigError(f"join: {item!r} is not a namespace (type {t!r})")
        types.append(t)
        fds.append(item.fileno())
    return tuple(types), tuple(fds)


def _cgroup_fds(cgroup: CgroupTarget, named: dict[str, int]) -> tuple[bool, int]:
    """Name ``cgroup``'s fds for the plan in ``named``; its shape (a v2 fd?, how many v1)."""
    target = getattr(cgroup, "_spawn_target", None)
    if target is None:
        raise ConfigError(f"cgroup must be an isolate.Cgroup, got {cgroup!r}")
    v2_fd, v1_fds = target()
    named["cgroup"] = v2_fd
    for i, fd in enumerate(v1_fds):
        named[f"cgroup tasks {i}"] = fd
    return v2_fd >= 0, len(v1_fds)


def launch(spec: ProcessSpec, iso: Isolation, *, stdin: Stdio = None, stdout: Stdio = None,
           stderr: Stdio = None, pass_fds: Sequence[int] | Mapping[int, int] = (),
           join_fds: Sequence[int] = (), cgroup: CgroupTarget | None = None,
           extra: Sequence[Op] = _NO_OPS, keep: tuple[object, ...] = (), exec_gate: int | None = None,
           console: tuple[int, tuple[int, int, bool]] | None = None, net_fds: Sequence[int] = (),
           before_release: Callable[[int], None] | None = None) -> Process:
    """Start ``spec`` with ``iso``'s namespaces (``join_fds``: the fds of ``iso.join``, in order).

    The one way every process starts (``spawn``, ``Container``, ``exec_into``).
    ``extra``: ops after the namespaces' (a container's root); ``keep``:
    owners of fds ``extra`` names; ``exec_gate``: an fd to wait on before
    execve; ``console``: (a unix socket, (rows, columns, bind /dev/console));
    ``net_fds``: the detached mounts of the root's network files, in the
    order of ``RootContext.net_files``; ``before_release(pid)``: run while the
    child is held before its first op (its id maps written), e.g. to give its
    network namespace a network.
    """
    stdio = StdioSetup()
    mounts: _idmount.Prepared | None = None
    try:
        if stdin is not None:
            stdio.setup(0, stdin, "stdin")
        if stdout is not None:
            stdio.setup(1, stdout, "stdout")
        if stderr is not None:
            stdio.setup(2, stderr, "stderr")
        # Inherited stdio needs no dup: fds 0-2 are already where they belong.
        named: dict[str, int] = {}
        maps: list[int] = []
        for dst, src in enumerate(stdio.child_fds):
            if src != dst:
                maps.append(dst)
                named[_FD_NAMES[dst]] = src
        keep_fds: tuple[int, ...] = (0, 1, 2)
        if pass_fds:
            keep_fds, more = _passed(pass_fds, named)
            maps += more
        for t, fd in zip(iso.join, join_fds):
            named["join " + t] = fd
        named.update(zip(net_fd_names(len(net_fds)), net_fds))
        shape = _cgroup_fds(cgroup, named) if cgroup is not None else None
        if exec_gate is not None:
            named["exec_gate"] = V.check_fd(exec_gate, "exec_gate")
        if console is not None:
            named["console"] = console[0]
        io = fd_layout(tuple(maps), keep_fds, shape, exec_gate is not None,
                       console[1] if console else None)
        planned, packed = _plans.packed_process(spec, iso, io, extra, keep)
        held = planned.held_maps
        before = None if held is None else (lambda pid: _write_held_maps(pid, held))
        if packed.plan.fd_names[:1] == ("mount 0",):
            # Binds the caller makes and idmaps with the held child's namespace (_idmount).
            mounts = _idmount.prepare(extra)
            assert mounts is not None
            named.update(zip(mount_fd_names(len(mounts.fds)), mounts.fds))
            before = _then(before, mounts.idmap)
        if before_release is not None:
            before = _then(before, before_release)
        fds = [named[n] for n in packed.plan.fd_names]
        spawned = execute(packed, fds, before_release=before)
    except BaseException:
        stdio.close_all()
        if mounts is not None:
            mounts.close()
        raise
    if mounts is not None:
        mounts.close()
    stdio.close_child_ends()
    return Process._from_spawned(list(spec.args), spawned, stdio, planned.tree, cgroup)


_FD_NAMES = ("fd 0", "fd 1", "fd 2")


def _then(first: Callable[[int], None] | None,
          then: Callable[[int], None]) -> Callable[[int], None]:
    """``first`` (None: nothing), then ``then``, on the held child's pid."""
    if first is None:
        return then

    def run(pid: int) -> None:
        first(pid)
        then(pid)

    return run


def _passed(pass_fds: Sequence[int] | Mapping[int, int],
            named: dict[str, int]) -> tuple[tuple[int, ...], list[int]]:
    """The fds kept (0-2 and ``pass_fds``' targets) and the targets to map (their sources
    go into ``named``)."""
    keep = [0, 1, 2]
    maps = []
    items = list(pass_fds.items()) if isinstance(pass_fds, Mapping) else [(fd, fd) for fd in pass_fds]
    for dst, src in items:
        V.check_fd(src, "pass_fds")
        if not isinstance(dst, int) or dst < 0:
            raise ConfigError(f"pass_fds: target fd must be >= 0, got {dst!r}")
        if dst in (0, 1, 2):
            raise ConfigError(f"pass_fds: fd {dst} is stdio; use stdin/stdout/stderr")
        name = f"fd {dst}"
        if name not in named:
            maps.append(dst)
        named[name] = src
        keep.append(dst)
    return tuple(keep), maps


def spawn(
    argv: Sequence[StrPath],
    *,
    stdin: Stdio = None,
    stdout: Stdio = None,
    stderr: Stdio = None,
    pass_fds: Sequence[int] | Mapping[int, int] = (),
    namespaces: Iterable[str] = (),
    join: Iterable[NamespaceLike] = (),
    env: Mapping[str, str] | Mapping[bytes, bytes] | None = None,
    cwd: StrPath | None = None,
    executable: StrPath | None = None,
    close_fds: bool = True,
    uid_map: Sequence[IdMap] | None = None,
    gid_map: Sequence[IdMap] | None = None,
    user: int | str | None = None,
    group: int | str | None = None,
    groups: Sequence[int | str] | None = None,
    hostname: str | None = None,
    domainname: str | None = None,
    cgroup: CgroupTarget | None = None,
    new_session: bool | None = None,
    process_group: bool = False,
    tty: bool = False,
    umask: int | None = None,
    rlimits: Mapping[str | int, int | tuple[int, int]] | None = None,
    capabilities: Iterable[str] | None = None,
    capability_sets: Mapping[str, Iterable[str]] | None = None,
    no_new_privs: bool = False,
    die_with_parent: bool = False,
    seccomp: bytes | SeccompProfile | None = None,
    loopback: bool = True,
    ops: Sequence[Op] = (),
    exec_gate: int | None = None,
    timings: bool = False,
) -> Process:
    """Start ``argv`` in new or joined namespaces; returns a running ``Process``.

    Options (keyword-only): ``namespaces`` (names as in /proc/<pid>/ns:
    pid, mnt, uts, ipc, net, user, cgroup, time), ``join`` (open
    ``Namespace`` objects to enter), ``env``, ``cwd``, ``executable``,
    ``stdin``/``stdout``/``stderr`` (None, PIPE, DEVNULL, STDOUT, an fd or a
    file), ``pass_fds`` (fds kept open, or a mapping child fd -> parent fd),
    ``close_fds``, ``uid_map``/``gid_map`` (``IdMap`` lists; default maps
    root inside to the caller), ``user``/``group``/``groups`` (see below),
    ``hostname``, ``domainname``, ``cgroup`` (an ``isolate.Cgroup``: the
    child is born in it), ``new_session`` (see below), ``process_group``,
    ``tty`` (stdin, a terminal no other session holds, becomes the
    controlling terminal of a new session), ``umask``, ``rlimits``
    ({"nofile": (soft, hard)}), ``capabilities`` (names to keep; all others
    are dropped from every set), ``capability_sets`` (instead: each of
    bounding, effective, permitted, inheritable, ambient given exactly, as
    OCI's process.capabilities), ``no_new_privs`` (without it, a ``seccomp``
    filter is loaded before credentials change, while the process may), ``die_with_parent``
    (SIGKILL when the spawning *thread* exits), ``seccomp`` (a BPF program
    as bytes, or a ``SeccompProfile``), ``loopback`` (bring up lo in a new
    net namespace), ``timings`` (``Process.timings``: each step's duration).
    ``ops`` (low level, not a stable interface: plan ops from
    ``isolate._ops``, run after the namespaces are set up and before
    credentials change) and ``exec_gate`` (an fd: the process waits for a
    byte on it before execve) serve the container and OCI layers.

    ``new_session``: None (the default) gives a process that creates or
    joins any namespace a session of its own, so the caller's terminal is
    never its controlling terminal (with which it could push input into the
    caller's shell with TIOCSTI); a plain spawn stays in the caller's session,
    as with ``subprocess``.  True or False decides it either way.

    ``user``, ``group``, ``groups``: ids or the host's names (pwd, grp).  A
    ``user`` in a new user namespace defaults to 0 (root of it).  When the
    ids change (the caller is root, or in a user namespace), ``group``
    defaults to the user's passwd group, and for a uid without a passwd
    entry to 65534 (the overflow group, "nogroup", which owns nothing),
    never to 0 by accident (uid 0 gets group 0); ``groups`` defaults to the
    groups /etc/group lists the user in (none for uid 0): the caller's
    supplementary groups are not kept.  (A caller without root in a new user
    namespace cannot set groups: the kernel denies it, and the caller's show
    as 65534 inside.)  A non-root ``user`` keeps no capability (effective,
    permitted, inheritable and ambient sets empty, as with runc and Docker):
    ``capabilities`` is then only its bounding set; ambient capabilities
    only through ``capability_sets``.

    Every option is checked before any process exists (``ConfigError``).
    A failure in the child raises the failing step's ``SetupError`` subclass;
    a failure on the parent side raises ``SpawnError``.  Nothing is left
    behind either way.
    """
    # Every argument but the per-spawn ones (stdio, fds, joined namespaces' objects, cgroup,
    # ops, gate) makes the ProcessSpec and the Isolation; equal arguments give equal ones,
    # so a service spawning one shape over and over checks its arguments once.
    values = locals()
    types, fds = join_refs(join) if join else ((), ())
    key = _spec_key(values, types)
    made = _cache.get(key) if key is not None else None
    if made is None:
        spec = ProcessSpec(args=argv, executable=executable, env=env, cwd=cwd, user=user, group=group,
                           groups=groups, capabilities=capabilities, capability_sets=capability_sets,
                           no_new_privs=no_new_privs, seccomp=seccomp, rlimits=rlimits, umask=umask,
                           die_with_parent=die_with_parent, new_session=new_session,
                           process_group=process_group, tty=tty, close_fds=close_fds)
        iso = isolation(namespaces=namespaces, join=types, uid_map=uid_map, gid_map=gid_map,
                        hostname=hostname, domainname=domainname, loopback=loopback, timings=timings)
        if key is not None:
            _cache.put(key, (spec, iso))
    else:
        spec, iso = made
    return launch(spec, iso, stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=pass_fds,
                  join_fds=fds, cgroup=cgroup, extra=ops if ops else _NO_OPS, exec_gate=exec_gate)


#: spawn()'s arguments that are not part of its ProcessSpec and Isolation.
_PER_SPAWN = frozenset({"stdin", "stdout", "stderr", "pass_fds", "join", "cgroup", "ops", "exec_gate"})
_SCALARS = frozenset({str, bytes, int, bool, float, type(None)})


def _frozen(value: object) -> object:
    """``value`` as a hashable key that tells apart what the checks tell apart (1, 1.0 and
    True; a list and a string); raises TypeError for what it cannot freeze."""
    t = type(value)
    if t in _SCALARS:
        return t, value
    if t is list or t is tuple:
        return t, tuple(_frozen(v) for v in value)  # type: ignore[attr-defined]
    if t is dict:
        return t, tuple((_frozen(k), _frozen(v)) for k, v in value.items())  # type: ignore[attr-defined]
    if t is set or t is frozenset:
        return t, frozenset(_frozen(v) for v in value)  # type: ignore[attr-defined]
    hash(value)   # a frozen record (IdMap, SeccompProfile): compared by value
    return t, value


def _spec_key(values: Mapping[str, object], types: tuple[str, ...]) -> tuple[object, ...] | None:
    """The cache key of a spawn's ProcessSpec and Isolation, from all of ``spawn``'s arguments
    (a new argument is in it unless named in ``_PER_SPAWN``); None if one cannot be frozen."""
    key: list[object] = ["spawn spec", types]
    scalars, per_spawn, add = _SCALARS, _PER_SPAWN, key.append
    try:
        for k, v in values.items():
            if k not in per_spawn:
                t = type(v)
                add((t, v) if t in scalars else _frozen(v))
    except TypeError:
        return None
    return tuple(key)


_ISOLATION = ("loopback", "timings", "hostname", "domainname", "uid_map", "gid_map")


def specs(argv: Sequence[StrPath], *, namespaces: Iterable[str] = (), join: Iterable[NamespaceLike] = (),
          **options: Any) -> tuple[ProcessSpec, Isolation, tuple[int, ...]]:
    """``spawn``'s options (but stdio, pass_fds, cgroup, ops and exec_gate) as its
    ``ProcessSpec`` and ``Isolation``, and the fds of the namespaces joined."""
    iso_options = {k: options.pop(k) for k in _ISOLATION if k in options}
    spec = ProcessSpec(args=argv, **{**PLAIN, **options})
    types, fds = join_refs(join)
    iso = Isolation(namespaces=namespace_set(namespaces), join=types, **iso_options)
    return spec, iso, fds


def run(
    argv: Sequence[StrPath],
    *,
    input: bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    max_output: int | None = None,
    stdin: Stdio = None,
    stdout: Stdio = None,
    stderr: Stdio = None,
    **options: Unpack[SpawnOptions],
) -> CompletedProcess:
    """Run ``argv`` isolated and wait, shaped like ``subprocess.run``.

    Takes ``spawn()``'s options, plus ``input``, ``capture_output``,
    ``timeout`` (seconds; on expiry the whole process tree is killed, then
    ``subprocess.TimeoutExpired`` is raised, carrying the output read until
    then as ``output``/``stdout`` and ``stderr``), ``check`` (raise
    ``subprocess.CalledProcessError`` on a non-zero exit) and
    ``max_output`` (bytes kept of each captured stream; the rest is read
    and discarded, so the process never blocks, and the result's
    ``truncated`` is set; None, the default, keeps everything, as
    ``subprocess`` does).  Without a pid namespace or a new session the
    command runs in a new process group, so the timeout can reach its
    children.  ``Container.run`` waits the same way (see the module's doc).
    """
    t = V.timeout(timeout)
    limit = V.max_output(max_output)
    stdin, stdout, stderr = stdio_for(input, capture_output, stdin, stdout, stderr, strict=True)
    session = options.get("new_session")
    if session is None:
        # As spawn decides it (see _planner.new_session): a sandbox gets a session of its own.
        session = bool(options.get("namespaces") or options.get("join")) and not any(
            type(op) is Console for op in options.get("ops", ()))
    if "pid" not in set(options.get("namespaces", ())) and not session:
        options.setdefault("process_group", True)
    with spawn(argv, stdin=stdin, stdout=stdout, stderr=stderr, **options) as proc:
        out, err, timed_out = collect(proc, t, input, limit, proc.kill_tree)
    if timed_out:
        raise subprocess.TimeoutExpired(proc.args, t or 0.0, output=out, stderr=err)
    assert proc.returncode is not None
    result = CompletedProcess(proc.args, proc.returncode, out, err)
    result.rusage = proc.rusage
    result.truncated = proc.truncated
    if check:
        result.check_returncode()
    return result


def build_plan(argv: Sequence[StrPath], *, fd_pairs: Sequence[tuple[int, int]] = (),
               keep_fds: Sequence[int] = (), **options: Any) -> Plan:
    """The plan ``spawn(argv, **options)`` runs, with ``fd_pairs`` (source, target) to map
    and ``keep_fds`` kept, its fds in place (for tests and tools; nothing is spawned)."""
    cgroup = options.pop("cgroup", None)
    ops = options.pop("ops", ())
    gate = options.pop("exec_gate", None)
    spec, iso, fds = specs(argv, **options)
    types = iso.join
    named = {f"join {t}": fd for t, fd in zip(types, fds)}
    shape = _cgroup_fds(cgroup, named) if cgroup is not None else None
    named.update({f"fd {dst}": src for src, dst in fd_pairs})
    if gate is not None:
        named["exec_gate"] = V.check_fd(gate, "exec_gate")
    io = FdLayout(maps=tuple(dst for _, dst in fd_pairs), keep=tuple(keep_fds), cgroup=shape,
                  exec_gate=gate is not None)
    planned: ProcessPlan = _plans.packed_process(spec, iso, io, ops)[0]
    plan = planned.plan
    return plan.bind([named[n] for n in plan.fd_names])


@final
class Process:
    """A running isolated process.  Created by ``spawn()``; no public constructor.

    Owns a pidfd (``pidfd``) and any pipe ends (``stdin``, ``stdout``,
    ``stderr``); ``close()`` or the ``with`` block releases them.  A
    ``Process`` that is dropped while running only warns (``ResourceWarning``).
    """

    args: list[Any]
    pid: int
    pidfd: int
    returncode: int | None
    rusage: resource.struct_rusage | None
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None
    #: Whether clone3(2) made the process (False: the clone(2) fallback).
    clone3: bool
    #: Phase durations in ns with ``spawn(..., timings=True)``, else None.
    timings: dict[str, int] | None
    _lock: threading.Lock
    #: Whether ``communicate()`` discarded output past its ``max_output``.
    truncated: bool
    _tree: str
    _cgroup: Any
    _comm: Communication | None
    #: Cloned by a spawn delegate (``_spawn.set_delegate``): waited for through it.
    _remote: bool

    def __init__(self) -> None:
        raise TypeError("use isolate.spawn() to create a Process")

    @classmethod
    def _from_spawned(cls, args: list[Any], s: Spawned, stdio: StdioSetup, tree: str,
                      cgroup: Any) -> Process:
        self = object.__new__(cls)
        self.args = args
        self.pid = s.pid
        self.pidfd = s.pidfd
        self._remote = s.remote
        self.clone3 = s.clone3
        self.timings = s.timings
        self.returncode = None
        self.rusage = None
        self._lock = threading.Lock()
        self._tree = tree
        self._cgroup = cgroup
        self.truncated = False
        self._comm = None
        fds = stdio.parent
        self.stdin = os.fdopen(fds[0], "wb") if fds[0] is not None else None
        self.stdout = os.fdopen(fds[1], "rb") if fds[1] is not None else None
        self.stderr = os.fdopen(fds[2], "rb") if fds[2] is not None else None
        return self

    def __repr__(self) -> str:
        return f"<isolate.Process pid={self.pid} returncode={self.returncode}>"

    def _reap(self, block: bool) -> bool:
        with self._lock:
            if self.returncode is not None:
                return True
            if self._remote:
                return self._reap_remote(block)
            try:
                pid, status, ru = os.wait4(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                # Someone else reaped it (a SIGCHLD handler or waitpid(-1)).
                self.returncode = 255
                self._close_pidfd()
                return True
            if pid == 0:
                return False
            self.returncode = os.waitstatus_to_exitcode(status)
            self.rusage = ru
            self._close_pidfd()
            return True

    def _reap_remote(self, block: bool) -> bool:
        """``_reap`` of a process a spawn delegate cloned: its pidfd says when it has ended,
        the delegate's wait gives its status (no rusage)."""
        if not block and (self.pidfd < 0 or not select.select([self.pidfd], [], [], 0)[0]):
            return False
        from ._spawn import wait_status

        try:
            status = wait_status(self.pid)
            self.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            self.returncode = 255
        self._close_pidfd()
        return True

    def _close_pidfd(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def poll(self) -> int | None:
        """The exit status if the process has ended (reaping it), else None."""
        self._reap(False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; returns ``returncode`` (negative: killed by that signal).

        Raises ``subprocess.TimeoutExpired`` if ``timeout`` seconds pass first;
        the process keeps running then.
        """
        if self.returncode is not None:
            return self.returncode
        if timeout is not None:
            deadline = time.monotonic() + timeout
            while not self._reap(False):
                remaining = deadline - time.monotonic()
                pidfd = self.pidfd
                if remaining <= 0 or pidfd < 0:
                    if self._reap(False):
                        break
                    raise subprocess.TimeoutExpired(self.args, timeout)
                select.select([pidfd], [], [], remaining)
        else:
            self._reap(True)
        assert self.returncode is not None
        return self.returncode

    async def wait_async(self) -> int:
        """Wait without blocking the event loop: the pidfd becomes readable at exit."""
        if self.returncode is not None:
            return self.returncode
        import asyncio

        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[None]" = loop.create_future()
        fd = self.pidfd
        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(fd)
        return self.wait()

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` through the pidfd: never to a recycled pid.  No-op once reaped."""
        if self.returncode is not None or self.pidfd < 0:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to the process."""
        self.send_signal(signal.SIGKILL)

    def kill_tree(self) -> None:
        """SIGKILL the process and everything it started.

        With a new pid namespace, killing its init ends every process in it;
        otherwise the process group that ``run()`` (or ``process_group=True``)
        made is killed, and the cgroup too when one was given.
        """
        if self._cgroup is not None and hasattr(self._cgroup, "kill"):
            self._cgroup.kill()
        if self._tree == "pgid" and self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.kill()

    def communicate(self, input: bytes | None = None, timeout: float | None = None, *,
                    max_output: int | None = None) -> tuple[bytes | None, bytes | None]:
        """Send ``input``, read stdout/stderr to EOF and wait, like ``Popen.communicate``.

        ``max_output``: keep at most that many bytes of each stream; the rest
        is still read (the process never blocks on a full pipe) and
        discarded, and ``truncated`` is set.  None keeps everything.  On
        ``timeout``, ``subprocess.TimeoutExpired`` carries the output read so
        far (``output``/``stdout``, ``stderr``) and the process keeps
        running; call ``communicate()`` again to go on reading.
        """
        state = self._comm
        if state is None:
            state = self._comm = Communication(self, input, V.max_output(max_output))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            state.run(deadline)
        except subprocess.TimeoutExpired:
            out, err = state.values()
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0, output=out, stderr=err) from None
        out, err = state.values()
        self.truncated = state.truncated
        state.close()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(remaining)
        return out, err

    def _drain(self) -> tuple[bytes | None, bytes | None]:
        """After the process was killed and reaped: what its pipes still hold, added to
        what ``communicate()`` read before, without blocking; closes the pipes.

        A process that escaped the kill may still hold a pipe open: only what
        is already buffered is read, never waited for.
        """
        state = self._comm
        if state is None:
            state = self._comm = Communication(self, None, None)
        state.run(None, drain=True)
        out, err = state.values()
        self.truncated = state.truncated
        state.close()
        return out, err

    def detach(self) -> None:
        """Let the process go: close the pipes and the pidfd, never reap it.

        Its exit status is left for whoever reaps it after this process is
        gone (a subreaper such as conmon or containerd's shim), as
        ``runc exec --detach`` does.
        """
        self._close_pipes()
        self._close_pidfd()

    def _close_pipes(self) -> None:
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass

    def close(self) -> None:
        """Close the pipes and the pidfd.  Idempotent; does not wait or kill."""
        self._close_pipes()
        if self.returncode is None:
            self._reap(False)
        self._close_pidfd()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the pipes, then wait for the process, as ``Popen`` does."""
        try:
            for f in (self.stdin, self.stdout, self.stderr):
                if f is not None:
                    f.close()
            if self.returncode is None:
                if exc[0] is not None:
                    self.kill_tree()
                self.wait()
        finally:
            self.close()

    def __del__(self) -> None:
        if getattr(self, "returncode", 0) is None and getattr(self, "pidfd", -1) >= 0:
            if not self._reap(False):
                warnings.warn(f"isolate.Process {self.pid} is still running", ResourceWarning,
                              source=self)
            self._close_pidfd()


class CompletedProcess(subprocess.CompletedProcess[bytes]):
    """``subprocess.CompletedProcess`` plus ``rusage`` (``resource.struct_rusage``) and
    ``truncated`` (output past ``run(max_output=...)`` was discarded)."""

    rusage: resource.struct_rusage | None = None
    truncated: bool = False




def _write_held_maps(pid: int, maps: tuple[bytes, bytes]) -> None:
    """Write a held child's uid and gid maps through newuidmap/newgidmap (see ``spawn``)."""
    _newidmap("newuidmap", pid, maps[0])
    _newidmap("newgidmap", pid, maps[1])


def _newidmap(tool: str, pid: int, text: bytes) -> None:
    """Write a multi-range map through Debian's setuid newuidmap/newgidmap."""
    import shutil

    exe = shutil.which(tool) or shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if exe is None:
        raise UnsupportedError(f"{tool} is needed to map more than your own id without root: "
                               "install the 'uidmap' package (apt-get install uidmap)")
    args = [exe, str(pid)]
    for line in text.decode().splitlines():
        args += line.split()
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise ConfigError(f"{tool} refused the map {text.decode().strip()!r}: {r.stderr.strip()} "
                          f"(see /etc/sub{tool[3:6]})")
