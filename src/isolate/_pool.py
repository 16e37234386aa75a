"""``Pool``: things of one shape made ahead by a background thread, each handed out once.

``CgroupPool`` (groups with the same limits) and ``NetnsPool`` (network
namespaces with lo up) are this one design: a thread keeps ``size`` items
ready, ``take()`` hands one out, and a taken item's ``close()`` gives it back
to the thread, which disposes of it and makes a replacement, so that neither
end competes with the spawn the item is for.  The thread refills at once when
more than half the pool is gone (or nothing is left), else when an item comes
back: a refill woken by ``take()`` itself would run during the very start the
item was taken for, competing with it for the GIL and the CPUs.  Nothing is
ever handed out twice.

The thread sleeps in read(2) on a pipe; a byte wakes it (cheaper on the
caller's side than a Condition: no lock, one write).  A pool that is not
closed when the interpreter exits is closed then, so what it made, which
the caller never saw, is removed.
"""

from __future__ import annotations

import atexit
import errno as _errno
import os
import threading
import warnings
import weakref
from collections import deque

from .errors import ConfigError, SpawnError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Generic, TypeVar

    T = TypeVar("T")

    class _Generic(Generic[T]):
        pass
else:
    T = object

    class _Generic:
        """``typing.Generic`` for type checkers only (isolate does not import typing at run time)."""

        def __class_getitem__(cls, item: object) -> type:
            return cls

__all__ = ["Pool", "start_thread"]

#: Pools not closed yet (see the module's doc).
_LIVE: weakref.WeakSet[Pool[Any]] = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    for pool in list(_LIVE):
        try:
            pool.close()
        except Exception as e:  # exiting anyway: say what is left, then go on
            warnings.warn(f"{pool!r}: {e}", ResourceWarning, stacklevel=1)


def start_thread(thread: threading.Thread, who: str) -> None:
    """``thread.start()``; ``SpawnError`` (``EAGAIN``) naming ``who`` if the thread cannot start.

    CPython turns every ``pthread_create`` failure into ``RuntimeError("can't
    start new thread")``; on Linux that is ``EAGAIN``: the caller's cgroup is
    at its ``pids.max``, or the user at ``RLIMIT_NPROC`` or the system at
    ``kernel.threads-max``.  The caller undoes what it made before raising.
    """
    try:
        thread.start()
    except RuntimeError as e:
        raise SpawnError(_errno.EAGAIN, stage=(
            f"{who}: cannot start its background thread ({e}; is this process's cgroup at its "
            "pids.max, or the user at RLIMIT_NPROC?)")) from e


class Pool(_Generic[T]):
    """The machinery of a pool of ``T``; a subclass says how one is made and disposed of.

    ``_make()`` runs in the pool's thread (and, with ``first_here``, once in
    the constructor's, so that bad arguments raise there); ``_dispose(item)``
    in the pool's thread, or in ``close()``, and may raise (the item is
    retried at ``close()``, which raises the first error).  ``_thread_enter``
    and ``_thread_exit`` bracket the thread's life; ``_thread_error`` turns
    what the thread raised into what ``take()`` and the constructor raise.
    """

    name: ClassVar[str] = "Pool"
    what: ClassVar[str] = "item"

    def __init__(self, size: int, max_size: int, *, first_here: bool) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= max_size:
            raise ConfigError(f"{self.name}.size must be an integer from 1 to {max_size}, got {size!r}")
        self._size = size
        self._cond = threading.Condition()   # take() waits on it when nothing is ready
        self._ready: deque[T] = deque()
        self._returned: deque[T] = deque()
        self._failed: list[tuple[T, BaseException]] = []
        self._closed = True   # until the thread runs: a failed constructor has nothing to close
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._wake_lock = threading.Lock()
        self._wake_r = self._wake_w = -1
        self.created = 0
        """How many were made so far (a statistic)."""
        first = self._make_counted() if first_here else None
        # All or nothing from here: a pipe or a thread that cannot be made
        # (the caller's cgroup at pids.max) leaves nothing behind.
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            os.set_blocking(self._wake_r, True)
            if first is not None:
                self._ready.append(first)
            self._closed = False
            thread = threading.Thread(target=self._run, name=f"isolate-{self.name}", daemon=True)
            start_thread(thread, self.name)
        except BaseException:
            self._closed = True
            self._ready.clear()
            self._close_pipe()
            if first is not None:
                try:
                    self._dispose(first)
                except Exception as cleanup:   # the first error matters more; say what is left
                    warnings.warn(f"{self.name}: disposing of {first!r} after a failed start: "
                                  f"{cleanup}", ResourceWarning, stacklevel=3)
            raise
        self._thread = thread
        _LIVE.add(self)
        if first is None:
            # The first one comes from the thread: wait for it, or for its error.
            self._wake()
            with self._cond:
                self._cond.wait_for(lambda: self._ready or self._error is not None)
                error = self._error
            if error is not None:
                self.close()
                raise error

    # --- what a subclass provides -------------------------------------------------------

    def _make(self) -> T:
        raise NotImplementedError

    def _dispose(self, item: T) -> None:
        raise NotImplementedError

    def _thread_enter(self) -> None:
        """Runs first in the pool's thread."""

    def _thread_exit(self) -> None:
        """Runs last in the pool's thread, whatever happened."""

    def _thread_error(self, e: BaseException) -> BaseException:
        return e

    # --- the pool -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many the pool keeps ready."""
        return self._size

    @property
    def ready(self) -> int:
        """How many are ready right now."""
        return len(self._ready)

    def _make_counted(self) -> T:
        item = self._make()
        self.created += 1
        return item

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

    def _close_pipe(self) -> None:
        with self._wake_lock:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    def _take(self, timeout: float | None) -> T:
        """Hand out a fresh one, waiting for one if none is ready.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``ConfigError`` on a
        closed pool, and the thread's error if it could not make one.
        """
        if self._closed:
            raise ConfigError(f"take() on a closed {self.name}")
        try:
            item = self._ready.popleft()   # deque operations are atomic: no lock on the fast path
        except IndexError:
            self._wake()
            with self._cond:
                if not self._cond.wait_for(
                        lambda: self._ready or self._error is not None or self._closed, timeout):
                    raise TimeoutError(f"no {self.what} ready within {timeout} s") from None
                if self._closed:
                    raise ConfigError(f"take() on a closed {self.name}") from None
                if not self._ready:
                    assert self._error is not None
                    raise self._error from None
                item = self._ready.popleft()
        left = len(self._ready)
        if not left or left < self._size // 2:
            # Refilling waits for an item's close() (after the caller's spawn) unless the
            # pool runs low: made now, the next one would compete with this spawn.
            self._wake()
        return item

    def _give_back(self, item: T) -> bool:
        """Queue ``item`` for the thread to dispose of; False if the pool is closed (the
        caller disposes of it)."""
        thread = self._thread
        if self._closed or thread is None or not thread.is_alive():
            return False
        self._returned.append(item)
        if self._closed:
            # close() ran meanwhile: it disposes of the item unless it drained the queue
            # before our append, in which case the item is still the caller's.
            try:
                self._returned.remove(item)
            except ValueError:
                return True
            return False
        self._wake()
        return True

    def _dispose_noting(self, item: T) -> None:
        try:
            self._dispose(item)
        except Exception as e:   # kept for close() to retry and report
            self._failed.append((item, e))

    def _run(self) -> None:
        try:
            self._thread_enter()
            while not self._closed:
                os.read(self._wake_r, 512)
                # What came back goes first (a NetnsPool's holds a container's address and
                # name until then), unless nothing is ready: the next take() may be waiting.
                while not self._closed and self._ready and self._returned:
                    self._dispose_noting(self._returned.popleft())
                while not self._closed and len(self._ready) < self._size:
                    self._ready.append(self._make_counted())
                    with self._cond:
                        self._cond.notify_all()
                while not self._closed and self._returned:
                    self._dispose_noting(self._returned.popleft())
        except BaseException as e:  # handed to take(): the thread has no caller of its own
            with self._cond:
                self._error = self._thread_error(e)
                self._cond.notify_all()
        finally:
            self._thread_exit()

    def close(self) -> None:
        """Stop the thread and dispose of everything ready or given back.  Idempotent.

        What is still taken is disposed of by its own ``close()``.  Raises the
        first error met (each one is tried).
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
        self._close_pipe()
        self._thread = None
        items = [item for item, _ in self._failed]
        self._failed = []
        for q in (self._ready, self._returned):
            while q:
                items.append(q.popleft())
        errors: list[BaseException] = []
        for item in items:
            try:
                self._dispose(item)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"ready={len(self._ready)}"
        return f"<isolate.{self.name} size={self._size} {state}>"

    def __del__(self) -> None:
        if getattr(self, "_thread", None) is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self.close()
