"""``CgroupPool``: cgroups of one shape made ahead of time and removed behind.

Making a cgroup and removing it are kernel work a spawn waits for: on a v1
host, one directory per hierarchy is created, its limits written, and later
removed, about half a millisecond for memory+pids+cpu.  A judge or CI
sandbox starts the same shape thousands of times; a pool (``isolate._pool``,
as ``NetnsPool``) moves both ends off the spawn's path.  A background thread
keeps ``size`` groups ready (created with the pool's limits), ``take()``
hands one out, and the group's ``close()`` gives it back to the thread,
which removes it (killing anything left inside first) and makes a
replacement.

A group is never handed out twice: every taken group is a fresh directory,
so its counters (memory peak, OOM events, CPU usage) describe one sandbox.
"""

from __future__ import annotations

import itertools
import os

from .._pool import Pool
from ..errors import ConfigError
from . import Cgroup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .limits import Limits

__all__ = ["CgroupPool"]

_pool_ids = itertools.count()


class CgroupPool(Pool[Cgroup]):
    """Cgroups with the same ``limits`` and ``controllers``, made by a background thread.

    ``parent``, ``limits`` and ``controllers`` are as for ``Cgroup.create``;
    groups are named ``<prefix><pid>-<pool>-<n>``.  ``take()`` returns an open
    ``Cgroup`` (every method works: ``stats()``, ``apply()``, ``kill()`` ...)
    whose ``close()`` queues its removal on the pool's thread instead of
    removing it inline.  The constructor validates the arguments and waits for
    the first group, so bad input, a refused ``mkdir`` or a thread that cannot
    start (``SpawnError``: the caller's cgroup at its ``pids.max``) fails
    here, with nothing left behind: no group, no fd.  ``close()`` (or the
    ``with`` block) stops the thread, removes every group still ready or
    queued, and raises the first removal error; groups still taken are
    removed by their own ``close()``.

    >>> with isolate.CgroupPool(limits=isolate.Limits(memory_max=256 << 20, pids_max=64)) as pool:
    ...     with pool.take() as cg:
    ...         isolate.run(["make", "test"], cgroup=cg)
    """

    name = "CgroupPool"
    what = "cgroup"

    def __init__(self, *, parent: str | os.PathLike[str] | None = None, limits: Limits | None = None,
                 controllers: Iterable[str] | None = None, size: int = 4,
                 prefix: str = "pool-") -> None:
        if not isinstance(prefix, str):
            raise ConfigError(f"CgroupPool.prefix must be a str, got {prefix!r}")
        self._limits = limits
        self._args = {"parent": parent, "limits": limits,
                      "controllers": None if controllers is None else frozenset(controllers)}
        pool_id = next(_pool_ids)
        self._names = (f"{prefix}{os.getpid()}-{pool_id}-{n}" for n in itertools.count())
        # The first group is made in the caller's thread: bad arguments raise
        # their own ConfigError/CgroupError before any thread exists.
        super().__init__(size, 1024, first_here=True)

    @property
    def limits(self) -> Limits | None:
        """The limits every group of the pool is created with."""
        return self._limits

    def take(self, timeout: float | None = None) -> Cgroup:
        """Hand out a fresh group, waiting for one if none is ready.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``ConfigError`` on a
        closed pool, and the thread's creation error if it could not make one.
        """
        cg = self._take(timeout)
        cg._pool = self
        return cg

    def _make(self) -> Cgroup:
        return Cgroup.create(next(self._names), **self._args)  # type: ignore[arg-type]

    def _dispose(self, cg: Cgroup) -> None:
        cg._teardown()

    def _discard(self, cg: Cgroup) -> bool:
        """Queue ``cg`` for removal by the thread; False if the pool is closed (caller removes)."""
        return self._give_back(cg)

    def __enter__(self) -> CgroupPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
