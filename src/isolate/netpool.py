"""``NetnsPool``: network namespaces made ahead of time, each handed out once.

A new network namespace is the most expensive namespace to create (clone3
spends about half a millisecond in ``copy_net_ns``) and to destroy (the
kernel tears it down later in a worker thread).  A pool moves both off the
spawn's critical path: a background thread creates namespaces with lo
already up, ``take()`` hands one out, and ``spawn(join=[ns])`` enters it
with one ``setns``.  A namespace is never handed out twice, so two sandboxes
never share a network stack.

Only the pool's own thread ever changes network namespace (``unshare`` then
``setns`` back), so the calling interpreter is never moved.  Creating a
network namespace needs ``CAP_SYS_ADMIN`` (root, or a process that owns its
user namespace).
"""

from __future__ import annotations

import errno as _errno
import os
import threading
import warnings
from collections import deque

from . import _spawn, _threads
from .errors import ConfigError, UnsupportedError

__all__ = ["NetnsPool", "PooledNetns"]


class PooledNetns:
    """One network namespace from a ``NetnsPool``: pass it to ``spawn(join=[...])``.

    Owns an fd on the namespace.  ``close()`` (or the ``with`` block) gives
    the fd back to the pool's thread to close off the hot path; processes
    that joined the namespace keep it alive until they exit.  It is never
    handed out again.
    """

    type = "net"

    def __init__(self, fd: int, pool: NetnsPool | None) -> None:
        self._fd = fd
        self._pool = pool

    def fileno(self) -> int:
        """The namespace fd; raises ``ValueError`` once closed."""
        if self._fd < 0:
            raise ValueError("fileno() on a closed PooledNetns")
        return self._fd

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._fd < 0

    def close(self) -> None:
        """Release the namespace fd (closed by the pool's thread when it runs).  Idempotent."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        pool, self._pool = self._pool, None
        if pool is None or not pool._discard(fd):
            os.close(fd)

    def __enter__(self) -> PooledNetns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<isolate.PooledNetns fd={self._fd}>"

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            fd, self._fd = self._fd, -1
            os.close(fd)


class NetnsPool:
    """Network namespaces created ahead of time by a background thread.

    ``size`` namespaces (each with lo up and nothing else) are kept ready;
    ``take()`` hands one out.  The thread makes replacements when a taken
    namespace is closed (typically right after the spawn that joined it), or
    at once when half the pool is gone, so that creating one rarely competes
    with the spawn it is meant to speed up.  Usable as a
    context manager; ``close()`` stops the thread and closes every fd the
    pool still holds.  The constructor waits for the first namespace, so a
    host where network namespaces cannot be created fails here:
    ``UnsupportedError`` without ``CAP_SYS_ADMIN``; ``SpawnError`` when the
    thread cannot start (the caller's cgroup at its ``pids.max``), with
    nothing left behind.

    >>> with isolate.NetnsPool(size=4) as pool, pool.take() as ns:
    ...     isolate.run(["ping", "-c1", "127.0.0.1"], join=[ns], namespaces={"pid"})
    """

    def __init__(self, size: int = 8) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
            raise ConfigError(f"NetnsPool.size must be an integer from 1 to 4096, got {size!r}")
        self._size = size
        self._cond = threading.Condition()
        self._ready: deque[int] = deque()
        self._discarded: list[int] = []
        self._closed = False
        # Whether the thread should refill now.  take() leaves refilling to the
        # namespace's close() (after the caller's spawn) unless the pool runs
        # low, so that making a namespace does not compete with the spawn it is for.
        self._refill = True
        self._error: BaseException | None = None
        self.created = 0
        """Namespaces created so far (a statistic)."""
        self._thread: threading.Thread | None = None
        thread = threading.Thread(target=self._run, name="isolate-netns-pool", daemon=True)
        try:
            _threads.start(thread, "NetnsPool")
        except BaseException:
            self._closed = True       # nothing was made: no thread, no namespace, no fd
            raise
        self._thread = thread
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self._error is not None)
            error = self._error
        if error is not None:
            self.close()
            raise error

    @property
    def size(self) -> int:
        """How many namespaces the pool keeps ready."""
        return self._size

    @property
    def ready(self) -> int:
        """How many namespaces are ready right now."""
        with self._cond:
            return len(self._ready)

    def take(self, timeout: float | None = None) -> PooledNetns:
        """Hand out a fresh network namespace, waiting for one if none is ready.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``ConfigError`` on
        a closed pool, and the creation error (``UnsupportedError`` or
        ``OSError``) if the thread could not make one.  Sandboxes started
        back to back faster than the thread makes namespaces drain the pool:
        ``take(timeout=0)`` never waits, and on ``TimeoutError`` a caller can
        let the spawn create its own (``namespaces={"net", ...}``) instead.
        """
        with self._cond:
            if not self._cond.wait_for(
                    lambda: self._ready or self._error is not None or self._closed, timeout):
                raise TimeoutError(f"no network namespace ready within {timeout} s")
            if self._closed:
                raise ConfigError("take() on a closed NetnsPool")
            if not self._ready:
                assert self._error is not None
                raise self._error
            fd = self._ready.popleft()
            if len(self._ready) <= self._size // 2:
                self._refill = True
                self._cond.notify_all()
        return PooledNetns(fd, self)

    def _discard(self, fd: int) -> bool:
        """Queue ``fd`` for the thread to close; False if the pool is closed (caller closes)."""
        with self._cond:
            if self._closed or self._thread is None or not self._thread.is_alive():
                return False
            self._discarded.append(fd)
            self._refill = True
            self._cond.notify_all()
            return True

    def _create(self, home: int) -> int:
        # The C core makes it (as it makes a spawn's), in this thread only, then returns home.
        return _spawn.netns_new(home=home)

    def _run(self) -> None:
        home = -1
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closed or self._discarded
                                        or (self._refill and len(self._ready) < self._size))
                    if self._closed:
                        return
                    discarded, self._discarded = self._discarded, []
                    need = self._refill and len(self._ready) < self._size
                    if not need:
                        self._refill = False
                for fd in discarded:
                    os.close(fd)
                if need:
                    fd = self._create(home)
                    with self._cond:
                        self.created += 1
                        self._ready.append(fd)
                        self._cond.notify_all()
        except BaseException as e:  # handed to take(): the thread has no caller of its own
            if isinstance(e, OSError) and e.errno in (_errno.EPERM, _errno.EACCES):
                e = UnsupportedError(
                    f"creating a network namespace was refused ({os.strerror(e.errno)}): "
                    "NetnsPool needs CAP_SYS_ADMIN (run as root, or inside your own user namespace)")
            with self._cond:
                self._error = e
                self._cond.notify_all()
        finally:
            if home >= 0:
                os.close(home)
            with self._cond:
                leftovers, self._discarded = self._discarded, []
            for fd in leftovers:
                os.close(fd)

    def close(self) -> None:
        """Stop the thread and close every namespace fd the pool holds.  Idempotent.

        Namespaces already taken stay usable until their own ``close()``.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._cond:
            fds = list(self._ready) + self._discarded
            self._ready.clear()
            self._discarded = []
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> NetnsPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"ready={len(self._ready)}"
        return f"<isolate.NetnsPool size={self._size} {state}>"

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
            self.close()
