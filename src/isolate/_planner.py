"""The process planner: pure functions from frozen configs to a ``Plan``.

``plan_process(spec, iso, io, host, extra)`` is everything ``spawn`` decides:
the order of the child's ops (namespaces, then the caller's mounts or a
root's ops, then the process, then credentials, then exec), the clone flags,
the id maps, and where a spawn's own fds go (``SpawnFd`` placeholders named
in ``Plan.fd_names``).  Its inputs are values (``ProcessSpec``,
``Isolation``, ``FdLayout``, ``Host``, ops), so equal inputs give an equal
plan and ``_plans`` caches it on them; nothing here opens, spawns or
mounts (a user or group name is looked up in the host's databases; so are
the /etc/subuid and /etc/subgid ranges of a caller without root whose process
needs more ids than its own).

For a caller without root, namespaces asked for without ``"user"`` get a user
namespace of their own (``implied_namespaces``, as bubblewrap does), and a
user, group or groups other than root inside take the caller's subordinate
ranges (``rootless_maps``, as rootless podman does).

Two rewrites follow the plan's shape: a joined pid namespace makes the
spawned process a fork of the child program (``fork_into_pidns``), and a new
network namespace without a new user namespace is made while the child runs
its first ops (``late_netns``).
"""

from __future__ import annotations

import os
import resource
import signal

from . import _ops as O
from . import _cache
from . import _validate as V
from ._plan import (MAX_FD_PAIRS, MS_PRIVATE, MS_REC, NSTYPES, PLAN_CLOSE_FDS, PLAN_FORK, PLAN_HOLD,
                    PLAN_NETNS_LATE, PLAN_NETNS_LO, PLAN_SETGROUPS_DENY, PLAN_TIMING, Op, Plan,
                    SpawnFd, last_cap)
from ._record import dataclass, replace
from ._slots import mount_fd_names, net_fd_names
from .config import CAP_SETS, NAMESPACES, ProcessSpec, id_maps, namespace_set
from .errors import ConfigError
from .idmap import IdMap, format_maps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, ClassVar

__all__ = ["Isolation", "FdLayout", "Host", "ProcessPlan", "plan_process", "fork_into_pidns",
           "late_netns", "isolation", "fd_layout", "implied_namespaces", "rootless_maps"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolation:
    """A spawn's namespaces: made (``namespaces``), joined (``join``: their types, in the
    order given), id maps, uts names; ``loopback`` brings ``lo`` up in a new network
    namespace; ``timings`` records each op's duration."""

    _cache_hash: ClassVar[bool] = True

    namespaces: frozenset[str] = frozenset()
    join: tuple[str, ...] = ()
    uid_map: Sequence[IdMap] | None = None
    gid_map: Sequence[IdMap] | None = None
    hostname: str | None = None
    domainname: str | None = None
    loopback: bool = True
    timings: bool = False

    def __post_init__(self) -> None:
        new = self.namespaces
        if type(new) is not frozenset or not new <= NAMESPACES:
            new = namespace_set(new)
            object.__setattr__(self, "namespaces", new)
        seen: set[str] = set()
        for t in self.join:
            if t in seen:
                raise ConfigError(f"join: two {t} namespaces given")
            if t in new:
                raise ConfigError(f"namespaces and join both name {t!r}")
            seen.add(t)
        if "user" in seen and new & {"time", "user"}:
            # Namespaces created after joining a user namespace must belong to it (a
            # new pid namespace does: the spawned process is forked into it).
            raise ConfigError(f"namespaces {sorted(new & {'time', 'user'})} cannot be created "
                              "inside a joined user namespace")
        maps = (id_maps(self.uid_map, "uid_map"), id_maps(self.gid_map, "gid_map"))
        if "user" not in new and (maps[0] is not None or maps[1] is not None):
            raise ConfigError("uid_map/gid_map need the 'user' namespace in namespaces")
        object.__setattr__(self, "uid_map", maps[0])
        object.__setattr__(self, "gid_map", maps[1])
        if (self.hostname is not None or self.domainname is not None) and "uts" not in new \
                and "uts" not in seen:
            raise ConfigError(f"hostname/domainname need a uts namespace (hostname={self.hostname!r})")
        if self.hostname is not None:
            h = V.fsencode(self.hostname, "hostname")
            if not 0 < len(h) <= 64:
                raise ConfigError(f"hostname must be 1 to 64 bytes, got {self.hostname!r}")
        if self.domainname is not None:
            d = V.fsencode(self.domainname, "domainname")
            if len(d) > 64:
                raise ConfigError(f"domainname must be at most 64 bytes, got {self.domainname!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FdLayout:
    """The shape of a spawn's fds, without their numbers.

    ``maps``: the child fds given a source of the spawn's (stdio that is not
    already in place, then ``pass_fds``); ``keep``: the fds the program
    keeps (0-2 and those passed); ``cgroup``: (a v2 directory fd, the number
    of v1 ``tasks`` fds) or None; ``exec_gate`` an fd to wait on before
    execve; ``console`` (rows, columns, bind /dev/console) for a terminal
    sent to a console socket.
    """

    _cache_hash: ClassVar[bool] = True

    maps: tuple[int, ...] = ()
    keep: tuple[int, ...] = (0, 1, 2)
    cgroup: tuple[bool, int] | None = None
    exec_gate: bool = False
    console: tuple[int, int, bool] | None = None

    def __post_init__(self) -> None:
        if len(self.maps) > MAX_FD_PAIRS:
            raise ConfigError(f"pass_fds: at most {MAX_FD_PAIRS} fds, got {len(self.maps)}")


@dataclass(frozen=True, slots=True)
class Host:
    """What of the caller a plan depends on: its ids, and PATH or the current directory
    where a spawn uses them (None where it does not)."""

    _cache_hash: ClassVar[bool] = True

    euid: int
    egid: int
    path: bytes | None = None
    cwd: bytes | None = None

    @classmethod
    def of(cls, spec: ProcessSpec) -> Host:
        """The caller as ``spec`` depends on it."""
        return cls(*cls.values(spec))

    @staticmethod
    def values(spec: ProcessSpec) -> tuple[int, int, bytes | None, bytes | None]:
        """(euid, egid, PATH, current directory) as ``spec`` depends on them (a cache key)."""
        path = cwd = None
        if spec.executable is None and spec.env is None and spec.args:
            a0 = spec.args[0]
            if b"/" not in (a0 if isinstance(a0, bytes) else os.fsencode(a0)):
                p = os.environ.get("PATH")
                path = os.fsencode(p) if p is not None else None
        if spec.cwd is not None:
            c = spec.cwd if isinstance(spec.cwd, bytes) else os.fsencode(spec.cwd)
            if not c.startswith(b"/"):
                cwd = os.getcwdb()
        return os.geteuid(), os.getegid(), path, cwd


def isolation(*, namespaces: Iterable[str] = (), join: tuple[str, ...] = (),
              uid_map: Sequence[IdMap] | None = None, gid_map: Sequence[IdMap] | None = None,
              hostname: str | None = None, domainname: str | None = None, loopback: bool = True,
              timings: bool = False) -> Isolation:
    """``Isolation(...)``, one object for equal arguments (a plan cache key then compares
    it by identity); values that cannot key the cache make it anew (and say what is wrong)."""
    try:
        if isinstance(namespaces, (str, bytes)):
            raise TypeError     # not a collection of names: Isolation says so
        key = ("isolation", namespaces if type(namespaces) is frozenset else frozenset(namespaces),
               join, None if uid_map is None else tuple(uid_map),
               None if gid_map is None else tuple(gid_map), hostname, domainname, bool(loopback),
               bool(timings))
        hash(key)
    except TypeError:
        return Isolation(namespaces=namespaces, join=join, uid_map=uid_map,  # type: ignore[arg-type]
                         gid_map=gid_map, hostname=hostname, domainname=domainname,
                         loopback=loopback, timings=timings)
    return _cache.memo(key, lambda: Isolation(
        namespaces=key[1], join=join, uid_map=key[3], gid_map=key[4],
        hostname=hostname, domainname=domainname, loopback=bool(loopback), timings=bool(timings)))


def fd_layout(maps: tuple[int, ...], keep: tuple[int, ...], cgroup: tuple[bool, int] | None,
              exec_gate: bool, console: tuple[int, int, bool] | None) -> FdLayout:
    """``FdLayout(...)``, one object for equal arguments (as ``isolation``)."""
    return _cache.memo(("fd layout", maps, keep, cgroup, exec_gate, console),
                       lambda: FdLayout(maps=maps, keep=keep, cgroup=cgroup, exec_gate=exec_gate,
                                        console=console))


@dataclass(frozen=True, slots=True)
class ProcessPlan:
    """A planned spawn: the ``plan``; the id maps newuidmap/newgidmap write while the
    child is held (``PLAN_HOLD``), or None; whether the process gets a session of its
    own; and what ``kill_tree`` reaches (``"pidns"``, ``"pgid"`` or ``"pid"``)."""

    plan: Plan
    held_maps: tuple[bytes, bytes] | None
    new_session: bool
    tree: str


def _candidates(argv0: bytes, spec: ProcessSpec, host: Host) -> tuple[bytes, ...]:
    if spec.executable is not None:
        return (V.fsencode(spec.executable, "executable"),)
    if b"/" in argv0:
        return (argv0,)
    path: object
    if spec.env is not None:
        path = spec.env.get("PATH", spec.env.get(b"PATH"))  # type: ignore[call-overload]
    else:
        path = host.path
    if path is None:
        path = os.defpath
    dirs = V.fsencode(path, "PATH").split(b":") or [b"."]
    return tuple((d or b".") + b"/" + argv0 for d in dirs)


def _id(value: int | str, what: str, db: str) -> int:
    if isinstance(value, int):
        return value
    import grp
    import pwd

    try:
        return pwd.getpwnam(value).pw_uid if db == "pwd" else grp.getgrnam(value).gr_gid
    except KeyError:
        raise ConfigError(f"{what}: no such {'user' if db == 'pwd' else 'group'} {value!r}") from None


def _maps_root(uid_map: Sequence[IdMap] | None, gid_map: Sequence[IdMap] | None) -> bool:
    """Whether id 0 inside is mapped for both uids and gids (None: the default map, which is)."""
    def has_zero(maps: Sequence[IdMap] | None) -> bool:
        return maps is None or any(m.inside <= 0 < m.inside + m.count for m in maps)
    return has_zero(uid_map) and has_zero(gid_map)


def implied_namespaces(new: frozenset[str], join: Iterable[str], euid: int) -> frozenset[str]:
    """The namespaces a spawn makes: ``new``, and a user namespace for a caller without root.

    Without root the kernel lets a process make the other namespaces only
    inside a user namespace it makes too (their owner, in which it is
    root), so a caller that is not root and asks for some but not for
    ``"user"`` gets one, as bubblewrap adds it: root inside mapped to the
    caller.  Not when it joins a user namespace (the new ones then belong to
    that one), nor when it joins another type than net (a process in a new
    user namespace holds no capability over those; the kernel's refusal
    says so as it did).
    """
    if euid == 0 or not new or "user" in new:
        return new
    joined = set(join)
    if not joined <= {"net"}:
        return new
    return new | {"user"}


def rootless_maps(user: int | str | None, group: int | str | None, groups: object, euid: int,
                  egid: int) -> tuple[tuple[IdMap, ...], tuple[IdMap, ...]] | None:
    """The id maps of a new user namespace of a caller without root, if one id is not enough.

    None when the process runs as root inside (``user`` and ``group`` None or
    0) and sets no supplementary ``groups``: the caller's own id, mapped to
    root, is written directly.  Otherwise the maps podman's rootless mode
    uses (``idmap.subid_maps``: root inside is the caller, 1 and up its
    /etc/subuid and /etc/subgid ranges, written by newuidmap/newgidmap), and
    ``ConfigError`` if ``user`` or ``group`` falls outside them.  Raises
    ``UnsupportedError`` (naming /etc/subuid, /etc/subgid, the user and how
    to add a range) when the caller has no ranges: before any process exists.
    """
    ids = [(value, _id(value, what, db), what, db) for value, what, db in
           ((user, "user", "pwd"), (group, "group", "grp")) if value is not None]
    if groups is None and all(n == 0 for _, n, _, _ in ids):
        return None
    from .idmap import subid_maps

    umaps, gmaps = subid_maps(uid=euid, gid=egid)
    for value, n, what, db in ids:
        maps = umaps if db == "pwd" else gmaps
        if not any(m.inside <= n < m.inside + m.count for m in maps):
            top = maps[-1].inside + maps[-1].count - 1
            raise ConfigError(f"{what} {value!r} (id {n}) is outside the ids this user may map: "
                              f"0 (itself) and 1-{top} (/etc/sub{'uid' if db == 'pwd' else 'gid'})")
    return tuple(umaps), tuple(gmaps)


def seccomp_caps(spec: ProcessSpec) -> frozenset[str]:
    """The capabilities a process of ``spec`` may keep (what a default seccomp profile allows)."""
    from .seccomp import OCI_DEFAULT_CAPS

    caps = spec.capabilities
    if caps == "default":
        return OCI_DEFAULT_CAPS
    if caps is None:
        from ._plan import CAPABILITIES

        return frozenset(CAPABILITIES)
    return frozenset(caps)


def new_session(spec: ProcessSpec, iso: Isolation, io: FdLayout, extra: Sequence[Op] = ()) -> bool:
    """Whether the process gets a session of its own.

    ``spec.new_session`` None gives one to a process that creates or joins a
    namespace (a sandbox: its caller's terminal must not be its controlling
    one), not to a plain spawn, nor to one with a console (``io.console`` or
    a ``Console`` op in ``extra``), whose setup makes the session itself
    (setsid, then its terminal).  A console never gets another.
    """
    if io.console is not None:
        return False
    if spec.new_session is None:
        return bool(iso.namespaces or iso.join) and not any(type(op) is O.Console for op in extra)
    return spec.new_session


def plan_process(spec: ProcessSpec, iso: Isolation, io: FdLayout, host: Host,
                 extra: Sequence[Op] = (), seccomp: bytes | None = None) -> ProcessPlan:
    """The plan of a spawn of ``spec``: pure, so a cache may key on its arguments.

    ``extra``: ops run after the namespaces are set up and before the
    process's own (a container's root, mounts); ``seccomp``: the filter as
    BPF when ``spec.seccomp`` is not bytes already (see ``_plans``).  Raises
    ``ConfigError`` for what only planning finds (an unknown user name, an
    empty argv).
    """
    names: list[str] = []

    def slot(name: str) -> SpawnFd:
        names.append(name)
        return SpawnFd(len(names) - 1)

    # A container's root may name mounts each spawn prepares (``RootBind.fd``,
    # ``isolate._idmount``): SpawnFd(0), SpawnFd(1), ... are theirs, then its network
    # files' (a ``RootBind`` of no source: ``RootContext.net_files``).
    per_spawn = [op for op in extra if type(getattr(op, "fd", -1)) is SpawnFd]
    nets = sum(1 for op in per_spawn if type(op) is O.RootBind and not op.source)
    names += mount_fd_names(len(per_spawn) - nets) + net_fd_names(nets)

    if not spec.args:
        raise ConfigError("argv must not be empty")
    bargv = [a if isinstance(a, bytes) else os.fsencode(a) for a in spec.args]
    envp = None
    if spec.env is not None:
        envp = [V.fsencode(k, "env key") + b"=" + V.fsencode(v, f"env[{k!r}]") for k, v in spec.env.items()]
    new = implied_namespaces(iso.namespaces, iso.join, host.euid)
    if new is not iso.namespaces:
        iso = replace(iso, namespaces=new)
    pre: list[Op] = []
    flags = PLAN_TIMING if iso.timings else 0
    joined = {t: slot(f"join {t}") for t in iso.join}
    # Root joining a user namespace and a network namespace the host made (a bridged
    # container's, for an exec into it): the network one first, while the child still
    # holds root's capabilities over it; the joined user namespace owns none of that.
    net_first = "user" in joined and "net" in joined and host.euid == 0
    if net_first:
        pre.append(O.SetNs(fd=joined["net"], nstype=NSTYPES["net"]))
    if "user" in joined:
        # Before the other joins: the user namespace owns them.
        pre.append(O.SetNs(fd=joined["user"], nstype=NSTYPES["user"]))
    # A joined pid namespace is entered by a fork of the child program (Fork,
    # after the user namespace); a joined network namespace at clone (or
    # before that fork), before any new user namespace exists.
    # Without root, a network namespace joined with a user namespace is entered
    # after it, as the others are: the caller may own both and still hold no
    # capability over the network namespace outside them (a user joining its own
    # container).  Root enters it first (``net_first``), so it may come from another owner.
    pidns_fd = joined.get("pid", -1)
    netns_fd = joined.get("net", -1) if "user" not in joined else -1
    for t, fd in joined.items():
        if t not in ("user", "pid") and (t != "net" or (netns_fd == -1 and not net_first)):
            pre.append(O.SetNs(fd=fd, nstype=NSTYPES[t]))

    cgroup_fd: int = -1
    join_fds: tuple[int, ...] = ()
    if io.cgroup is not None:
        has_v2, n_v1 = io.cgroup
        cgroup_fd = slot("cgroup") if has_v2 else -1
        join_fds = tuple(slot(f"cgroup tasks {i}") for i in range(n_v1))
    if join_fds:
        # v1 hierarchies: the child moves itself in, as its first op.
        pre.insert(0, O.CgroupJoin())

    clone_flags = 0
    fork_flags = 0
    if "user" in joined and new:
        unshare = 0
        for ns in new:
            unshare |= NSTYPES[ns]
        if "pid" in new:
            # A new pid namespace holds the children of its creator, not the creator:
            # the spawned process is forked into it, with the others (Fork).
            fork_flags = unshare
        else:
            pre.append(O.Unshare(flags=unshare))
    else:
        for ns in new:
            clone_flags |= NSTYPES[ns]
        if join_fds and "cgroup" in new:
            # A cgroup namespace is rooted where its creator stands: the child
            # creates it once it has joined its cgroup, or the container would
            # see its own group as a path below the caller's.
            clone_flags &= ~NSTYPES["cgroup"]
            pre.insert(1, O.Unshare(flags=NSTYPES["cgroup"]))

    uid_text = gid_text = None
    groups = spec.groups
    given_u, given_g = iso.uid_map, iso.gid_map
    if "user" in new:
        euid, egid = host.euid, host.egid
        if euid != 0 and given_u is None and given_g is None:
            # More ids than the caller's own come from its subordinate ranges.
            ranges = rootless_maps(spec.user, spec.group, groups, euid, egid)
            if ranges is not None:
                given_u, given_g = ranges
        umaps = list(given_u) if given_u is not None else [IdMap(inside=0, outside=euid)]
        gmaps = list(given_g) if given_g is not None else [IdMap(inside=0, outside=egid)]
        uid_text, gid_text = format_maps(umaps), format_maps(gmaps)
        if euid != 0:
            if len(umaps) > 1 or len(gmaps) > 1 or umaps[0].outside != euid or gmaps[0].outside != egid:
                # Only newuidmap/newgidmap (setuid) may write other ids; see spawn().
                flags |= PLAN_HOLD
            elif groups is None:
                # An unprivileged gid_map write requires setgroups to be denied (CVE-2014-8989).
                flags |= PLAN_SETGROUPS_DENY

    ops: list[Op] = []
    if spec.die_with_parent:
        ops.append(O.PdeathSig(signal=signal.SIGKILL))
    ops += pre
    if uid_text is not None and _maps_root(given_u, given_g):
        # Become root of the new user namespace first: until then the child keeps
        # the caller's ids, which the maps may leave out, and files it creates
        # (the staged root, mount points) would fail with EOVERFLOW.
        ops += [O.SetResGid(0, 0, 0), O.SetResUid(0, 0, 0)]
    if "mnt" in new:
        # Like unshare(1): keep the new namespace's mounts from propagating to the host.
        ops.append(O.Mount(None, b"/", None, MS_REC | MS_PRIVATE))
    if "net" in new and iso.loopback:
        ops.append(O.LoopbackUp())
    if iso.hostname is not None:
        ops.append(O.SetHostname(V.fsencode(iso.hostname, "hostname")))
    if iso.domainname is not None:
        ops.append(O.SetDomainname(V.fsencode(iso.domainname, "domainname")))
    for op in extra:
        if not isinstance(op, Op):
            raise ConfigError(f"ops: {op!r} is not a plan op")
        ops.append(op)
    if io.console is not None:
        rows, cols, bind = io.console
        ops.append(O.Console(fd=slot("console"), rows=rows, cols=cols, bind_console=bind))
    if spec.cwd is not None:
        c = V.fsencode(spec.cwd, "cwd")
        if not c.startswith(b"/"):
            c = os.path.join(host.cwd or os.getcwdb(), c)
        ops.append(O.Chdir(path_=c))
    if spec.umask is not None:
        ops.append(O.Umask(spec.umask))
    if spec.rlimits:
        from .config import rlimit_number

        inf = resource.RLIM_INFINITY
        for name, limit in spec.rlimits.items():
            pair: Any = limit       # (soft, hard), as ProcessSpec keeps every limit
            soft, hard = pair
            soft = inf if soft == inf else soft
            ops.append(O.SetRlimit(rlimit_number(name), soft % 2**64, hard % 2**64))
    session = new_session(spec, iso, io, extra)
    if session or spec.tty:
        ops.append(O.SetSid())
    elif spec.process_group:
        ops.append(O.SetPgid())
    if io.maps:
        ops.append(O.FdMap(tuple((slot(f"fd {dst}"), dst) for dst in io.maps)))
    if spec.tty:
        ops.append(O.SetCtty(fd=0))
    gate = slot("exec_gate") if io.exec_gate else None
    if spec.close_fds:
        flags |= PLAN_CLOSE_FDS
        ops.append(O.CloseFds(tuple(sorted(set(io.keep)))))
    candidates = _candidates(bargv[0], spec, host)
    prog = spec.seccomp if isinstance(spec.seccomp, bytes) else seccomp
    # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while
    # the process still has it, before credentials change (runc does the same).
    early_seccomp = prog is not None and not spec.no_new_privs
    if early_seccomp:
        if gate is not None:
            ops.append(O.ExecGate(fd=gate, candidates=candidates))
        assert prog is not None
        ops.append(O.Seccomp(prog))

    ops += _credentials(spec, iso, host, joined, flags)
    if spec.die_with_parent and ("user" in new or "user" in joined or spec.user is not None
                                 or spec.group is not None):
        # A change of the effective or filesystem uid or gid clears the parent-death signal
        # (prctl(2)): root of a user namespace mapped to other host ids, or another user.
        ops.append(O.PdeathSig(signal=signal.SIGKILL))
    if gate is not None and not early_seccomp:
        # Before the filter, which might not allow read(2).
        ops.append(O.ExecGate(fd=gate, candidates=candidates))
    if prog is not None and not early_seccomp:
        ops.append(O.Seccomp(prog))
    ops.append(O.Exec(candidates))
    if pidns_fd != -1 or fork_flags:
        ops, clone_flags, flags = fork_into_pidns(ops, pidns_fd, clone_flags | fork_flags, flags)
    elif clone_flags & NSTYPES["net"] and not clone_flags & NSTYPES["user"]:
        ops, clone_flags, flags = late_netns(ops, clone_flags, flags)

    held = (uid_text, gid_text) if flags & PLAN_HOLD else None
    assert held is None or (held[0] is not None and held[1] is not None)
    plan = Plan(ops=tuple(ops), argv=tuple(bargv), envp=None if envp is None else tuple(envp),
                clone_flags=clone_flags, flags=flags, cgroup_fd=cgroup_fd,
                uid_map=None if held else uid_text, gid_map=None if held else gid_text,
                join_fds=join_fds, netns_fd=netns_fd, fd_names=tuple(names))
    tree = "pidns" if "pid" in new else ("pgid" if spec.process_group or session else "pid")
    return ProcessPlan(plan=plan, held_maps=held, new_session=session, tree=tree)  # type: ignore[arg-type]


def _credentials(spec: ProcessSpec, iso: Isolation, host: Host, joined: dict[str, SpawnFd],
                 flags: int) -> list[Op]:
    """The credential ops: groups before gid before uid (each needs the privilege the next
    drops), the bounding set before them all, capabilities and no_new_privs after."""
    new = iso.namespaces
    ops: list[Op] = []
    caps = spec.capabilities
    if caps == "default":
        from .seccomp import OCI_DEFAULT_CAPS

        caps = OCI_DEFAULT_CAPS
    cap_keep = None if caps is None else V.cap_mask(caps)
    sets: dict[str, int] | None = None
    if spec.capability_sets is not None:
        sets = {k: V.cap_mask(spec.capability_sets.get(k, ())) for k in CAP_SETS}
        # The kernel raises only ambient capabilities that are permitted and
        # inheritable; runc skips the others with a warning, and so do we (silently).
        sets["ambient"] &= sets["permitted"] & sets["inheritable"]
        cap_keep = sets["bounding"]
    user, group, groups = spec.user, spec.group, spec.groups
    if "user" in new:
        # Mapping ids does not change the child's credentials: it still has the
        # caller's kuid, which may be unmapped.  Become root of the new namespace
        # (or the requested user), as runc does.
        user = 0 if user is None else user
        if groups is None and not flags & PLAN_SETGROUPS_DENY:
            groups = ()
    uid = None if user is None else _id(user, "user", "pwd")
    gid = None if group is None else _id(group, "group", "grp")
    if uid is not None and gid is None and (host.euid == 0 or "user" in new or "user" in joined):
        # The ids change: the group and the supplementary groups are the
        # user's (the host's passwd and group), never root's or the caller's
        # by accident; see _userdb for the rules.
        if uid == 0:
            gid = 0
            if groups is None and host.euid == 0 and "user" not in joined:
                groups = ()
        else:
            from ._userdb import HostDB, resolve

            ident = resolve(HostDB(), user, None, groups)
            gid = ident.gid
            if groups is None and ("user" in new and not flags & PLAN_SETGROUPS_DENY
                                   or host.euid == 0 and "user" not in joined and "user" not in new):
                groups = ident.groups
    if cap_keep is not None:
        last = last_cap()
        # The bounding set needs CAP_SETPCAP, which setresuid below takes away.
        full = (1 << (last + 1)) - 1
        ops.append(O.CapBound(drop=full & ~cap_keep, last_cap=last))
    if groups is not None:
        ops.append(O.SetGroups(tuple(_id(g, f"groups[{i}]", "grp") for i, g in enumerate(groups))))
    if gid is not None:
        ops.append(O.SetResGid(gid, gid, gid))
    if uid is not None:
        if sets is not None and sets["permitted"]:
            ops.append(O.KeepCaps(1))
        ops.append(O.SetResUid(uid, uid, uid))
    if sets is not None:
        # Exactly the five sets asked for (OCI process.capabilities).
        ops.append(O.CapSet(effective=sets["effective"], permitted=sets["permitted"],
                            inheritable=sets["inheritable"]))
        if sets["ambient"]:
            ops.append(O.CapAmbient(raise_=sets["ambient"], last_cap=last_cap()))
    elif cap_keep is not None:
        # Inheritable stays empty (CVE-2022-24769).  A non-root user keeps no
        # capability at all (as with runc and Docker): ``capabilities`` is its
        # bounding set, what a setuid binary could give back without
        # no_new_privs; ambient ones only through ``capability_sets``.
        keep = cap_keep if uid in (None, 0) else 0
        ops.append(O.CapSet(effective=keep, permitted=keep, inheritable=0))
    if spec.no_new_privs:
        ops.append(O.NoNewPrivs())
    return ops


def fork_into_pidns(ops: list[Op], pidns_fd: int, clone_flags: int,
                    flags: int) -> tuple[list[Op], int, int]:
    """Make the spawned process a fork of the child program (``Fork``, ``PLAN_FORK``).

    For a joined pid namespace: what runs there sees a process that enters
    at once, and it must never be a clone of the caller.  For a new pid
    namespace in a joined user namespace (a pooled one): it must belong to
    that user namespace, so it is made at the fork, after the join.  The fork comes
    first, after joining a user namespace only: the death signal, the cgroup
    join and the rest are the forked process's own.  The new namespaces are
    made at that fork.
    """
    user = [op for op in ops if type(op) is O.SetNs and op.nstype == NSTYPES["user"]]
    # A network namespace root enters before the user namespace (``net_first``) stays first.
    first_user = next((i for i, op in enumerate(ops) if any(op is u for u in user)), 0)
    lead = [op for op in ops[:first_user]
            if type(op) is O.SetNs and op.nstype == NSTYPES["net"]] + user
    rest = [op for op in ops if not any(op is u for u in lead)]
    return lead + [O.Fork(fd=pidns_fd, clone_flags=clone_flags)] + rest, 0, flags | PLAN_FORK


#: Ops whose effect does not depend on the child's network namespace: mounts
#: (but sysfs, which shows its mounter's), binds, mount points, masks, the
#: switch to the new root.
_NETNS_FREE = frozenset({O.PdeathSig, O.CgroupJoin, O.Umask, O.MountSetattr, O.Mkdir, O.Mknod,
                         O.Symlink, O.Bind, O.RootStage, O.RootMkdir, O.RootBind, O.RootMask,
                         O.RootMkdirs, O.RootBinds, O.RootMasks, O.SetHostname, O.SetDomainname,
                         O.PivotRoot, O.Chroot, O.Chdir, O.RootChdir})
_LATE_NETNS_MIN_OPS = 3


def _netns_free(op: Op) -> bool:
    t = type(op)
    if t in _NETNS_FREE:
        return True
    if t is O.Mount or t is O.RootMount:
        return getattr(op, "fstype", None) != b"sysfs"
    if isinstance(op, O.Unshare):
        return not op.flags & (NSTYPES["net"] | NSTYPES["user"])
    if isinstance(op, O.SetNs):
        return op.nstype not in (NSTYPES["net"], NSTYPES["user"])
    return False


def late_netns(ops: list[Op], clone_flags: int, flags: int) -> tuple[list[Op], int, int]:
    """Make a new network namespace during the child's first ops, not at clone.

    Setting one up costs the kernel most of a millisecond, more than every
    other namespace together.  When the plan starts with enough ops that do
    not depend on it (a container's root: mounts, binds, /dev), a thread of
    the parent makes it (lo up) while the child runs them, and ``NetnsJoin``
    enters it before the first op that does (``PLAN_NETNS_LATE``).  The child
    never reaches execve outside it (checked in C too).  Not with a new user
    namespace, which must own the network namespace.
    """
    rest = [op for op in ops if type(op) is not O.LoopbackUp]
    i = 0
    while i < len(rest) and _netns_free(rest[i]):
        i += 1
    work = sum(1 for op in rest[:i] if type(op) not in (O.PdeathSig, O.CgroupJoin, O.Umask))
    if work < _LATE_NETNS_MIN_OPS:
        return ops, clone_flags, flags
    lo = len(rest) < len(ops)
    rest.insert(i, O.NetnsJoin())
    flags |= PLAN_NETNS_LATE | (PLAN_NETNS_LO if lo else 0)
    return rest, clone_flags & ~NSTYPES["net"], flags
