"""``CgroupPool``: cgroups of one shape made ahead of time and removed behind.

Making a cgroup and removing it are kernel work a spawn waits for: on a v1
host, one directory per hierarchy is created, its limits written, and later
removed, about half a millisecond for memory+pids+cpu.  A judge or CI
sandbox starts the same shape thousands of times; a pool moves both ends off
the spawn's path.  A background thread keeps ``size`` groups ready (created
with the pool's limits), ``take()`` hands one out, and the group's
``close()`` gives it back to the thread, which removes it (killing anything
left inside first) and makes a replacement.

A group is never handed out twice: every taken group is a fresh directory,
so its counters (memory peak, OOM events, CPU usage) describe one sandbox.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import warnings
import weakref
from collections import deque

from .. import _threads
from ..errors import ConfigError
from . import Cgroup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .limits import Limits

__all__ = ["CgroupPool"]

_pool_ids = itertools.count()
#: Pools not closed yet: an interpreter that exits (an uncaught exception, sys.exit) with
#: one open still removes the groups it made, which the caller never saw.
_LIVE: weakref.WeakSet[CgroupPool] = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    for pool in list(_LIVE):
        try:
            pool.close()
        except Exception as e:  # exiting anyway: say what is left, then go on
            warnings.warn(f"{pool!r}: {e}", ResourceWarning, stacklevel=1)


class CgroupPool:
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

    def __init__(self, *, parent: str | os.PathLike[str] | None = None, limits: Limits | None = None,
                 controllers: Iterable[str] | None = None, size: int = 4,
                 prefix: str = "pool-") -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1024:
            raise ConfigError(f"CgroupPool.size must be an integer from 1 to 1024, got {size!r}")
        if not isinstance(prefix, str):
            raise ConfigError(f"CgroupPool.prefix must be a str, got {prefix!r}")
        self._size = size
        self._limits = limits
        self._args = {"parent": parent, "limits": limits,
                      "controllers": None if controllers is None else frozenset(controllers)}
        pool_id = next(_pool_ids)
        self._names = (f"{prefix}{os.getpid()}-{pool_id}-{n}" for n in itertools.count())
        self._cond = threading.Condition()   # take() waits on it when nothing is ready
        self._ready: deque[Cgroup] = deque()
        self._discarded: deque[Cgroup] = deque()
        self._failed: list[tuple[Cgroup, BaseException]] = []
        self._closed = True   # until the thread runs: a failed constructor has nothing to close
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        # The thread sleeps in read(2) on this pipe; a byte wakes it.  Cheaper
        # than a Condition on the caller's side: no lock, one write.
        self._wake_lock = threading.Lock()
        self._wake_r = self._wake_w = -1
        self.created = 0
        """Groups created so far (a statistic)."""
        # The first group is made here, in the caller's thread: bad arguments
        # raise their own ConfigError/CgroupError before any thread exists.
        first = self._create()
        # All or nothing from here: a pipe or a thread that cannot be made
        # (the caller's cgroup at pids.max) leaves no group and no fd.
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            os.set_blocking(self._wake_r, True)
            self._ready.append(first)
            self._closed = False
            thread = threading.Thread(target=self._run, name="isolate-cgroup-pool", daemon=True)
            _threads.start(thread, "CgroupPool")
        except BaseException:
            self._closed = True
            self._ready.clear()
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
            try:
                first._teardown()
            except Exception as cleanup:   # the first error matters more; say what is left
                warnings.warn(f"CgroupPool: removing {first!r} after a failed start: {cleanup}",
                              ResourceWarning, stacklevel=2)
            raise
        self._thread = thread
        _LIVE.add(self)

    @property
    def limits(self) -> Limits | None:
        """The limits every group of the pool is created with."""
        return self._limits

    @property
    def size(self) -> int:
        """How many groups the pool keeps ready."""
        return self._size

    @property
    def ready(self) -> int:
        """How many groups are ready right now."""
        return len(self._ready)

    def _wake(self) -> None:
        # Under the lock close() takes to close the pipe: a write racing with
        # close() must never reach another file that reused the fd number.
        with self._wake_lock:
            if self._wake_w < 0:
                return
            try:
                os.write(self._wake_w, b"w")
            except BlockingIOError:   # the pipe is full of wake-ups already
                pass

    def take(self, timeout: float | None = None) -> Cgroup:
        """Hand out a fresh group, waiting for one if none is ready.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``ConfigError`` on a
        closed pool, and the thread's creation error if it could not make one.
        """
        if self._closed:
            raise ConfigError("take() on a closed CgroupPool")
        try:
            cg = self._ready.popleft()   # deque operations are atomic: no lock on the fast path
        except IndexError:
            self._wake()
            with self._cond:
                if not self._cond.wait_for(
                        lambda: self._ready or self._error is not None or self._closed, timeout):
                    raise TimeoutError(f"no cgroup ready within {timeout} s") from None
                if self._closed:
                    raise ConfigError("take() on a closed CgroupPool") from None
                if not self._ready:
                    assert self._error is not None
                    raise self._error from None
                cg = self._ready.popleft()
        if len(self._ready) <= self._size // 2:
            # Refilling waits for a group's close() (after the caller's spawn)
            # unless the pool runs low.
            self._wake()
        cg._pool = self
        return cg

    def _create(self) -> Cgroup:
        cg = Cgroup.create(next(self._names), **self._args)  # type: ignore[arg-type]
        self.created += 1
        return cg

    def _discard(self, cg: Cgroup) -> bool:
        """Queue ``cg`` for removal by the thread; False if the pool is closed (caller removes)."""
        thread = self._thread
        if self._closed or thread is None or not thread.is_alive():
            return False
        self._discarded.append(cg)
        if self._closed:
            # close() ran meanwhile: it removes the group unless it drained the queue before
            # our append, in which case the group is still there for the caller to remove.
            try:
                self._discarded.remove(cg)
            except ValueError:
                return True
            return False
        self._wake()
        return True

    def _remove(self, cg: Cgroup) -> None:
        try:
            cg._teardown()
        except Exception as e:   # kept for close() to retry and report
            self._failed.append((cg, e))

    def _run(self) -> None:
        try:
            while not self._closed:
                os.read(self._wake_r, 512)
                # Replace first: the next take() may be waiting for it.
                while not self._closed and len(self._ready) < self._size:
                    self._ready.append(self._create())
                    with self._cond:
                        self._cond.notify_all()
                while not self._closed and self._discarded:
                    self._remove(self._discarded.popleft())
        except BaseException as e:  # handed to take(): the thread has no caller of its own
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread and remove every group it holds or was given back.  Idempotent.

        Raises the first error met removing a group (each one is tried).
        """
        thread = getattr(self, "_thread", None)
        if thread is None:
            return
        _LIVE.discard(self)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake()
        if thread is not threading.current_thread():
            thread.join()
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        self._thread = None
        groups = [cg for cg, _ in self._failed]
        self._failed = []
        for q in (self._ready, self._discarded):
            while q:
                groups.append(q.popleft())
        errors: list[BaseException] = []
        for cg in groups:
            try:
                cg._teardown()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> CgroupPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"ready={len(self._ready)}"
        return f"<isolate.CgroupPool size={self._size} {state}>"

    def __del__(self) -> None:
        if getattr(self, "_thread", None) is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self.close()
