"""Cgroups: one API over v1, hybrid and v2 hosts.

::

    with Cgroup.create("job-1", limits=Limits(memory_max=256 << 20, cpus=0.5, pids_max=100)) as cg:
        p = isolate.spawn(argv, cgroup=cg)      # born inside: no moment outside its limits
        p.wait()
        print(cg.stats().memory_peak)

Each controller comes from the hierarchy that has it (``detect()``): on pure
v2 one directory; on pure v1 one directory per v1 hierarchy; on a hybrid host
the v1 hierarchies, plus the unified one only for controllers that live there
(or when ``controllers`` names ``"unified"``).  ``close()`` kills what is
inside and removes every directory the group created.
"""

from __future__ import annotations

import os
import warnings

from .. import _cache, _owner
from .._record import dataclass, fields
from ..errors import CgroupError, ConfigError, UnsupportedError
from . import delegation as _delegation
from ._files import forget_parents
from .layout import Hierarchy, Layout, check_name, detect, split_parent
from .limits import (
    DEFAULT_DEVICES,
    DeviceRule,
    HugetlbLimit,
    IoThrottle,
    Limits,
    controllers_for,
    host_refusals,
    shares_to_weight,
    weight_to_shares,
)
from .v1 import V1Group
from .v2 import V2Group

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, Protocol, final

    from .._owner import Record
    from .pool import CgroupPool
else:
    from .._record import final

    Protocol = object       # CgroupDriver is for type checkers

__all__ = [
    "Cgroup",
    "CgroupStats",
    "CgroupDriver",
    "Limits",
    "DeviceRule",
    "IoThrottle",
    "HugetlbLimit",
    "DEFAULT_DEVICES",
    "Layout",
    "detect",
    "weight_to_shares",
    "shares_to_weight",
]

#: Controllers every group joins unless ``controllers=`` says otherwise: what
#: ``stats()`` reads.  On v1 each is a directory to make and remove; freezer is
#: joined lazily by ``freeze()``/``kill()``.
DEFAULT_CONTROLLERS = frozenset({"memory", "pids", "cpu", "cpuacct"})
KNOWN_CONTROLLERS = frozenset({"memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "io",
                               "devices", "freezer", "hugetlb", "net_cls", "net_prio", "unified"})


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """A snapshot of a cgroup's counters.  ``None``: the group has no such counter here.

    Units: bytes, microseconds, counts.  ``oom`` counts OOM events and
    ``oom_kill`` processes the OOM killer killed (v1 records kills only, so
    both read the kill count there).  ``psi`` maps ``cpu``/``memory``/``io``
    to ``{"some": {...}, "full": {...}}`` where the kernel reports pressure
    (v2, or the unified group on a hybrid host).
    """

    memory_current: int | None = None
    memory_peak: int | None = None
    memory_stat: dict[str, int] | None = None
    cpu_usage_usec: int | None = None
    cpu_user_usec: int | None = None
    cpu_system_usec: int | None = None
    nr_periods: int | None = None
    nr_throttled: int | None = None
    throttled_usec: int | None = None
    pids_current: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    io_read_ops: int | None = None
    io_write_ops: int | None = None
    oom: int = 0
    oom_kill: int = 0
    psi: dict[str, dict[str, dict[str, float]]] | None = None


class CgroupDriver(Protocol):
    """What a version's driver does for ``Cgroup`` (``v1.V1Group``, ``v2.V2Group``).

    ``Cgroup`` picks one or both from ``detect()``: on a hybrid host the v1
    group holds the v1 controllers and the v2 group what only the unified
    hierarchy has.  ``controllers`` are v1 names.
    """

    def apply(self, limits: Limits, controllers: set[str]) -> None:
        """Write the limits whose controller (v1 name) is in ``controllers``."""
        ...

    def attach(self, pid: int) -> None:
        """Move process ``pid`` into the group."""
        ...

    def procs(self) -> list[int]:
        """The pids of the processes in the group."""
        ...

    def stats(self, out: dict[str, object]) -> None:
        """Fill ``out`` (``CgroupStats`` field names) with what the group reports."""
        ...

    def freeze(self, timeout: float = ...) -> None:
        """Freeze every process and wait until the kernel reports them frozen."""
        ...

    def thaw(self) -> None:
        """Let the processes run again."""
        ...

    def kill(self, timeout: float = ...) -> None:
        """SIGKILL everything inside and wait until nothing is left running."""
        ...

    def remove(self) -> None:
        """Kill what is inside, close every fd, remove the group and the parents it made."""
        ...


_STATS_FIELDS = frozenset(f.name for f in fields(CgroupStats))
_layout_cache: Layout | None = None


def _layout() -> Layout:
    # Mounts do not change under a running program in practice; detect() is
    # the uncached form for callers who need a fresh look.
    global _layout_cache
    if _layout_cache is None:
        _layout_cache = detect()
    return _layout_cache


def _resolve(lay: Layout, controllers: frozenset[str] | None, needed: frozenset[str]
             ) -> tuple[frozenset[str], frozenset[str], tuple[Hierarchy, ...], bool]:
    """Which controllers come from v1 and which from v2, the v1 hierarchies to join, and
    whether the group has a v2 directory.  Raises as ``Cgroup.create`` documents."""
    if controllers is None:
        wanted = set(DEFAULT_CONTROLLERS)
    else:
        wanted = set(controllers)
        # "name=X": a named v1 hierarchy (no controller), such as systemd's.
        bad = {c for c in wanted - KNOWN_CONTROLLERS if not c.startswith("name=")}
        if bad:
            raise ConfigError(f"Cgroup controllers: unknown {sorted(bad)!r} "
                              f"(known: {', '.join(sorted(KNOWN_CONTROLLERS))})")
        wanted = {"blkio" if c == "io" else c for c in wanted}
    unified = "unified" in wanted
    wanted.discard("unified")
    v1_ctl: set[str] = set()
    v2_ctl: set[str] = set()
    for c in wanted | needed:
        try:
            where = lay.where(c)
        except Exception:
            if c in needed or controllers is not None:
                raise
            continue
        (v1_ctl if where == "v1" else v2_ctl).add(c)
    if lay.kind == "v2":
        unified = True
    if unified and lay.v2 is None:
        raise ConfigError("Cgroup controllers: 'unified' asked for, but no cgroup2 is mounted")
    hs: dict[str, Hierarchy] = {}
    for c in sorted(v1_ctl):
        h = lay.v1[c]
        hs.setdefault(h.mount, h)
    return frozenset(v1_ctl), frozenset(v2_ctl), tuple(hs.values()), unified


def _default_parent(h: Hierarchy) -> str:
    """The default parent in ``h``, relative to its mount.

    Root: ``<own cgroup>/isolate`` where that is writable (and, on v2, can hold
    children), else ``isolate``.  Anyone else: ``<own cgroup>/isolate``, the
    subtree delegated to it (``Cgroup.create`` checks that it is; see
    ``delegation``).
    """
    own_dir = h.fs_path(h.own)
    rel = own_dir[len(h.mount):].strip("/")
    if not _delegation.privileged():
        if (h.version == 2 and os.path.basename(rel) == _delegation.INIT_LEAF
                and _delegation.delegated_v2(os.path.dirname(own_dir))):
            # Moved into the delegated cgroup's leaf by an earlier create (delegation.move_out).
            rel = os.path.dirname(rel)
        return f"{rel}/isolate" if rel else "isolate"
    if not rel:
        return "isolate"
    if h.version == 2:
        # No internal processes on v2: our own cgroup holds us, so it cannot
        # delegate controllers to a child; only the root is exempt.
        return "isolate"
    return f"{rel}/isolate" if os.access(own_dir, os.W_OK) else "isolate"


def _select(v1_hs: tuple[Hierarchy, ...], v1_ctl: set[str], v2_h: Hierarchy | None,
            v2_ctl: set[str], required: set[str], parent_of: Callable[[Hierarchy], str],
            default: bool, v2_optional: bool) -> tuple[list[Hierarchy], Hierarchy | None]:
    """The hierarchies to make the group in: those holding a ``required`` controller (each
    checked, ``CgroupDelegationError`` if this process cannot make a group there), and of the
    others those where this process can make it.  ``v1_ctl``/``v2_ctl`` lose what is left out;
    ``v2_optional``: the v2 group is not asked for by itself (a hybrid host's default)."""
    keep: list[Hierarchy] = []
    dropped: list[Hierarchy] = []
    for h in v1_hs:
        need = h.controllers & required
        if need:
            if not _delegation.privileged():
                _delegation.check(h, parent_of(h), set(need), default=default)
            keep.append(h)
        elif _delegation.usable(h, parent_of(h)):
            keep.append(h)
        else:
            dropped.append(h)
            v1_ctl -= h.controllers
    if v2_h is not None:
        need2 = required & v2_ctl
        if v2_optional and not need2 and keep and not _delegation.usable(v2_h, parent_of(v2_h)):
            v2_h = None
            v2_ctl.clear()
        elif not _delegation.privileged():
            _delegation.check(v2_h, parent_of(v2_h), required - v1_ctl, default=default)
    if not keep and v2_h is None and dropped:
        # Nothing left to make the group in: say why for the first hierarchy.
        h = dropped[0]
        _delegation.check(h, parent_of(h), set(), default=default)
    return keep, v2_h


@final
class Cgroup:
    """A cgroup this process created; a context manager that removes it on exit.

    Make one with ``Cgroup.create``.  ``path`` is the v2 directory when the
    group has one, else the v1 directory of its first hierarchy; ``paths``
    maps every hierarchy's mount point to the group's directory there.
    """

    __slots__ = ("name", "layout", "limits", "controllers", "_v1", "_v2", "_closed",
                 "_v1_ctl", "_v2_ctl", "_pool", "_rec", "__weakref__")

    #: The group's name under its parent.
    name: str
    #: The host's cgroup hierarchies the group was made in (``detect()``).
    layout: Layout
    #: The limits written when the group was made (None: none).
    limits: Limits | None
    #: The controllers the group has (v1 names).
    controllers: frozenset[str]
    _v1_ctl: set[str]
    _v2_ctl: set[str]

    def __init__(self, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("use Cgroup.create()")
        self._closed = True
        self._v1: V1Group | None = None
        self._v2: V2Group | None = None
        self._pool: CgroupPool | None = None   # set by CgroupPool.take(): close() hands back
        self._rec: Record | None = None         # the owner record (None: opened, not made)

    @classmethod
    def open(cls, name: str, *, parent: str | os.PathLike[str] | None = None,
             controllers: Iterable[str] | None = None, layout: Layout | None = None) -> Cgroup:
        """The existing cgroup ``name`` under ``parent``, made earlier (perhaps by another process).

        Arguments as for ``create``; nothing is created, and ``close()``
        removes only the group itself (not its parents).  Raises
        ``CgroupError`` (ENOENT) if a hierarchy lacks the directory.
        """
        return cls.create(name, parent=parent, controllers=controllers, layout=layout, _adopt=True)

    def detach(self) -> None:
        """Forget the group without removing it: it outlives this object (see ``open``).

        The group is handed over: its owner record goes too (see ``disown``),
        so ``isolate.gc()`` never reclaims it.
        """
        self.disown()
        for group in (self._v2, self._v1):
            if group is not None:
                for d in getattr(group, "dirs", None) or [getattr(group, "dir", None)]:
                    if d is not None and not d.closed:
                        d.close()
        self._closed = True

    def disown(self) -> None:
        """Hand the group over while keeping this object usable: delete its owner record.

        A group this process made is reclaimed by ``isolate.gc()`` (and by the
        next isolate process making a group beside it) once this process is
        gone without ``close()``.  A caller that records the group elsewhere
        and removes it itself later (the OCI runtime's ``state.json``, read
        by ``delete``) calls this as soon as that record is written; from
        then on the group is the caller's alone.  ``close()`` still removes
        it.  Idempotent; ``detach()`` does it too.
        """
        rec, self._rec = self._rec, None
        if rec is not None:
            rec.clear()

    @classmethod
    def create(cls, name: str, *, parent: str | os.PathLike[str] | None = None,
               limits: Limits | None = None, controllers: Iterable[str] | None = None,
               layout: Layout | None = None, _adopt: bool = False) -> Cgroup:
        """Create cgroup ``name`` under ``parent`` and apply ``limits``.

        ``parent``: a cgroup path relative to each hierarchy's root
        (``"isolate-test-x/jobs"``) or an absolute directory under a cgroup
        mount; default ``isolate/`` under this process's own cgroup: for root
        where that is writable (else under the root), for anyone else always,
        as the cgroup delegated to them (see ``isolate.cgroup.delegation``;
        on v2 the processes of that cgroup are moved into its leaf ``init``
        first).  Missing parents are created (and removed again by
        ``close()`` when empty).  ``controllers``: the controllers to join
        (v1 names; ``"unified"`` adds the v2 group on a hybrid host); default
        what ``limits`` needs, plus those of ``DEFAULT_CONTROLLERS`` (read by
        ``stats()``) in each hierarchy where this process can make the group.
        Raises ``ConfigError`` for bad input before anything is created,
        ``UnsupportedError`` when a needed controller is missing (naming it
        and the hierarchy), ``CgroupDelegationError`` (before anything is
        created) when this process is not root and a hierarchy it needs is
        not delegated to it, ``CgroupError`` when the kernel refuses.
        """
        check_name(name)
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigError(f"Cgroup limits must be an isolate.Limits, got {limits!r}")
        lay = layout if layout is not None else _layout()
        rel_parent = None if parent is None else split_parent(parent, lay)
        needed = frozenset(controllers_for(limits))
        if not _adopt:
            refused = host_refusals(limits, lay)
            if refused:
                raise UnsupportedError("Limits." + "; Limits.".join(f"{f}: {why}" for f, why in refused))
        if controllers is None:
            wanted_key: frozenset[str] | None = None
        else:
            if isinstance(controllers, str):
                raise ConfigError(f"Cgroup controllers must be a collection of names, got {controllers!r}")
            wanted_key = frozenset(controllers)
        # The same arguments resolve the same way against an equal layout: services
        # create groups of one shape over and over (the one cache, keyed on values).
        key = ("cgroup plan", lay.kind, lay.v2, frozenset(lay.v1.items()), wanted_key, needed)
        v1_ctl_f, v2_ctl_f, v1_hs, unified = _cache.memo(
            key, lambda: _resolve(lay, wanted_key, needed))
        v1_ctl = set(v1_ctl_f)
        v2_ctl = set(v2_ctl_f)

        def parent_of(h: Hierarchy) -> str:
            return rel_parent if rel_parent is not None else _default_parent(h)

        self = cls(_token=_TOKEN)
        self.name = name
        self.layout = lay
        self.limits = limits
        self._v1_ctl = v1_ctl
        self._v2_ctl = v2_ctl
        self.controllers = frozenset(v1_ctl | v2_ctl)
        v2_h = lay.v2 if (unified or v2_ctl) and lay.v2 is not None else None
        hs_v1 = list(v1_hs)
        if not _adopt:
            # Only what a limit needs must be had; the default extras only where they can be.
            required = set(needed) if controllers is None else v1_ctl | v2_ctl
            hs_v1, v2_h = _select(v1_hs, v1_ctl, v2_h, v2_ctl, required, parent_of,
                                  rel_parent is None, controllers is None and lay.kind != "v2")
            self.controllers = frozenset(v1_ctl | v2_ctl)
        lazy_freezer = lay.v1.get("freezer") if v2_h is None else None
        no_freezer = None
        if not _adopt:
            if lazy_freezer is not None and not _delegation.usable(lazy_freezer, parent_of(lazy_freezer)):
                no_freezer = (f"the cgroup v1 freezer hierarchy at {lazy_freezer.mount} has no "
                              f"place for this group: "
                              f"{_delegation.deepest_existing(lazy_freezer.mount, parent_of(lazy_freezer))}"
                              f" is not writable by uid {os.geteuid()} (freeze() and pause() need "
                              "it delegated too, as the hierarchies of the limits are)")
                lazy_freezer = None
        rec = None
        if not _adopt:
            hs = [*(hs_v1 if v1_ctl else ()), *((v2_h,) if v2_h is not None else ())]
            if _owner.reclaim_once([f"{h.mount}/{parent_of(h)}" for h in hs]):
                for h in hs:
                    forget_parents(h.mount)   # a reclaim may have removed a parent we knew
            rec = self._rec = _owner.record("cgroup")
        try:
            if v1_ctl:
                self._v1 = V1Group(hs_v1, parent_of, name, lazy_freezer, adopt=_adopt,
                                   rec=rec)
                self._v1.no_freezer = no_freezer
            if v2_h is not None:
                self._v2 = V2Group(v2_h, parent_of(v2_h), name, v2_ctl, v2_ctl & needed,
                                   adopt=_adopt, rec=rec)
            if rec is not None:
                rec.flush()
            self._closed = False
            if limits is not None:
                # Validated above and every needed controller joined: write
                # without apply()'s checks.
                self._write_limits(limits)
            if self._v1 is not None:
                # Only create()'s own write may assume the kernel's defaults.
                self._v1.fresh = False
        except BaseException:
            self._teardown()
            raise
        return self

    # --- properties -------------------------------------------------------

    @property
    def path(self) -> str:
        """The v2 directory if the group has one, else its first v1 directory."""
        if self._v2 is not None and self._v2.leaf is not None:
            return self._v2.leaf
        if self._v1 is not None and self._v1.dirs:
            return self._v1.dirs[0].path
        raise CgroupError(9, "the cgroup is closed", self.name)

    @property
    def paths(self) -> dict[str, str]:
        """Every hierarchy's mount point -> this group's directory there."""
        out: dict[str, str] = {}
        if self._v1 is not None:
            for mount, d in zip(self._v1.mounts, self._v1.dirs):
                out[mount] = d.path
        if self._v2 is not None and self._v2.leaf is not None:
            out[self._v2.h.mount] = self._v2.leaf
        return out

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise CgroupError(9, "the cgroup is closed", self.name)

    # --- operations -------------------------------------------------------

    def apply(self, limits: Limits) -> None:
        """Write ``limits`` (fields left ``None`` keep their current value).

        A limit whose controller the group did not join raises
        ``UnsupportedError`` from ``Layout.where`` or ``ConfigError``.
        """
        self._check_open()
        if not isinstance(limits, Limits):
            raise ConfigError(f"Cgroup.apply needs an isolate.Limits, got {limits!r}")
        missing = controllers_for(limits) - self.controllers
        if missing:
            raise ConfigError(f"Cgroup {self.name!r} did not join {', '.join(sorted(missing))}: "
                              "name them in Cgroup.create(controllers=...) or limits=")
        refused = host_refusals(limits, self.layout)
        if refused:
            raise UnsupportedError("Limits." + "; Limits.".join(f"{f}: {why}" for f, why in refused))
        self._write_limits(limits)

    def _write_limits(self, limits: Limits) -> None:
        if limits.unified and self._v2 is None:
            raise UnsupportedError("Limits.unified: the group has no cgroup v2 directory "
                                   "(name 'unified' in Cgroup.create(controllers=...))")
        if self._v1 is not None:
            self._v1.apply(limits, self._v1_ctl)
        if self._v2 is not None:
            self._v2.apply(limits, self._v2_ctl)

    def attach(self, pid: int) -> None:
        """Move the running process ``pid`` (all its threads) into the group."""
        self._check_open()
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ConfigError(f"Cgroup.attach pid must be a positive int, got {pid!r}")
        if self._v2 is not None:
            self._v2.attach(pid)
        if self._v1 is not None:
            self._v1.attach(pid)

    def _spawn_target(self) -> tuple[int, tuple[int, ...]]:
        """(v2 directory fd for CLONE_INTO_CGROUP or -1, v1 ``tasks`` fds the child joins through) for ``isolate.spawn``."""
        self._check_open()
        v2_fd = self._v2.spawn_fd() if self._v2 is not None else -1
        fds = self._v1.procs_fds() if self._v1 is not None else ()
        return v2_fd, fds

    def procs(self) -> list[int]:
        """Pids of the processes in the group."""
        self._check_open()
        if self._v2 is not None:
            return self._v2.procs()
        assert self._v1 is not None
        return self._v1.procs()

    def stats(self) -> CgroupStats:
        """Read the group's counters now (see ``CgroupStats``)."""
        self._check_open()
        out: dict[str, Any] = {}
        if self._v1 is not None:
            self._v1.stats(out)
        if self._v2 is not None:
            self._v2.stats(out)
        return CgroupStats(**{k: v for k, v in out.items() if k in _STATS_FIELDS and v is not None})

    def freeze(self) -> None:
        """Stop every process in the group; returns once the kernel reports them frozen."""
        self._check_open()
        if self._v2 is not None and not self._v1_freezer():
            self._v2.freeze()
        else:
            # A group in the v1 freezer hierarchy uses it, on a hybrid host too (as runc
            # does): tools reading freezer.state see the group frozen.
            assert self._v1 is not None
            self._v1.freeze()

    def thaw(self) -> None:
        """Let a frozen group run again."""
        self._check_open()
        if self._v2 is not None:
            self._v2.thaw()
        if self._v1 is not None:
            self._v1.thaw()

    def _v1_freezer(self) -> bool:
        """Whether the group is in a v1 freezer hierarchy."""
        return self._v1 is not None and "freezer" in self._v1.by_ctl

    def kill(self) -> None:
        """SIGKILL every process in the group and wait until none is left running.

        v2: ``cgroup.kill``.  v1: freeze, signal every pid, thaw, repeat, so a
        fork bomb cannot outrun it.  Zombies stay until their parent reaps them.
        """
        self._check_open()
        if self._v2 is not None and not self._v1_freezer():
            self._v2.kill()
        else:
            # In a v1 freezer (a hybrid host's OCI container): a task frozen there
            # acts on SIGKILL only once thawed, which v1's loop does.
            assert self._v1 is not None
            self._v1.kill()

    def _teardown(self) -> None:
        """Remove every directory; the owner record goes once all of them are gone."""
        errors: list[BaseException] = []
        groups: tuple[CgroupDriver | None, ...] = (self._v2, self._v1)
        for group in groups:
            if group is None:
                continue
            try:
                group.remove()
            except Exception as e:    # remove the other hierarchy's directories regardless
                errors.append(e)
        self._closed = True
        if errors:
            # What is left stays recorded: reclaimed once this process is gone.
            if self._rec is not None:
                self._rec.flush()
            raise errors[0]
        self.disown()

    def close(self) -> None:
        """Kill what is inside, then remove every directory the group created.  Idempotent.

        A group from ``CgroupPool.take()`` is handed to the pool's thread,
        which does this off the caller's path (``CgroupPool.close()`` waits for it).
        """
        if self._closed:
            return
        pool, self._pool = self._pool, None
        self._closed = True
        if pool is not None and pool._discard(self):
            return
        self._teardown()

    remove = close

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed cgroup {self.name!r}: use 'with Cgroup.create(...)' or "
                          "close()", ResourceWarning, stacklevel=2, source=self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.path
        return f"<Cgroup {self.name!r} {state}>"


_TOKEN = object()
