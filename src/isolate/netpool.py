"""``NetnsPool``: network namespaces made ahead of time, each handed out once.

A new network namespace is the most expensive namespace to create (clone3
spends about half a millisecond in ``copy_net_ns``) and to destroy (the
kernel tears it down later in a worker thread).  A pool moves both off the
spawn's critical path: a background thread creates namespaces with lo
already up, ``take()`` hands one out, and ``spawn(join=[ns])`` enters it
with one ``setns``.  A namespace is never handed out twice, so two sandboxes
never share a network stack.

The pool is ``isolate._pool``'s, as ``CgroupPool``'s.  Only the pool's own
thread ever changes network namespace (``unshare`` then
``setns`` back), so the calling interpreter is never moved.  Creating a
network namespace needs ``CAP_SYS_ADMIN`` (root, or a process that owns its
user namespace).
"""

from __future__ import annotations

import errno as _errno
import os
import warnings

from . import _spawn
from ._pool import Pool
from .errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .net.attachment import Attachment, Link

    #: What the pool's thread holds for a namespace: its fd, and what ``make_link`` made for
    #: it (ready) or the attachment to close (given back).
    _Item = tuple[int, "Link | Attachment | None"]

__all__ = ["NetnsPool", "PooledNetns"]


class PooledNetns:
    """One network namespace from a ``NetnsPool``: pass it to ``spawn(join=[...])``.

    Owns an fd on the namespace.  ``close()`` (or the ``with`` block) gives
    the fd back to the pool's thread to close off the hot path; processes
    that joined the namespace keep it alive until they exit.  It is never
    handed out again.  A pool of a network's: what was made for the
    namespace ahead (``link``) is undone with it unless it was attached.
    """

    type = "net"

    def __init__(self, fd: int, pool: NetnsPool | None, link: Link | None = None) -> None:
        self._fd = fd
        self._pool = pool
        #: A pool of a network's: what ``isolate.net.attachment.make_link`` made for the
        #: namespace (veth pair, eth0 configured, its address's pooled lease), for
        #: ``isolate.net.attach(..., link=...)``; else None.
        self.link = link
        self._then: Attachment | None = None

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
        """Release the namespace fd (closed by the pool's thread when it runs), and what was
        made for it unless it was attached.  Idempotent."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        pool, self._pool = self._pool, None
        then, self._then = self._then, None
        item: _Item = (fd, then if then is not None else self.link)
        if pool is None or not pool._give_back(item):
            try:
                _dispose(item)
            except BaseException:
                os.close(fd)
                raise

    def _close_with(self, attachment: Attachment) -> None:
        """``close()``, the pool's thread closing ``attachment`` (this namespace's) first,
        off the caller's path (``Attachment.close_later``); at once if the pool is closed."""
        if self._fd >= 0 and self._pool is not None:
            attachment.close_later()
            self._then = attachment
        else:
            attachment.close(keep_link=True)
        self.close()

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


def _dispose(item: _Item) -> None:
    """Close a namespace's fd after what came with it: the attachment (the namespace takes
    its veth along), or the pooled lease of a ``link`` never attached.  If undoing that
    raises, the fd stays open (the pool's ``close()`` retries the item)."""
    fd, then = item
    if then is not None:
        from .net.attachment import Link, release_link

        if isinstance(then, Link):
            release_link(then)
        else:
            then.close(keep_link=True)
    os.close(fd)


class NetnsPool(Pool["_Item"]):
    """Network namespaces created ahead of time by a background thread.

    ``size`` namespaces (each with lo up and nothing else) are kept ready;
    ``take()`` hands one out.  With ``network`` (``"bridge"`` or a network's
    name, see ``isolate.net``), each also has everything of a start on that
    network that needs no name: an address leased for it (owned by this
    process: ``isolate gc`` reclaims it once this process is gone, and no one
    else is given it meanwhile), its veth pair (``eth0`` inside, the other end
    in the network's bridge) and ``eth0`` configured (address, default
    route, up).  A ``Container(net=network, netns_pool=pool)`` start then
    only makes the lease the container's and writes the names, and its
    ``close()`` leaves the rest of the undoing (lease, names, namespace) to
    the pool's thread; a namespace that is never used gives its address back
    and takes its pair along when it goes.  The thread makes replacements when a taken
    namespace is closed (typically right after the spawn that joined it), or
    at once when more than half the pool is gone (or none is left), so that
    creating one rarely competes with the spawn it is meant to speed up.  Usable as a
    context manager; ``close()`` stops the thread and closes every fd the
    pool still holds.  The constructor waits for the first namespace, so a
    host where network namespaces cannot be created fails here:
    ``UnsupportedError`` without ``CAP_SYS_ADMIN``; ``SpawnError`` when the
    thread cannot start (the caller's cgroup at its ``pids.max``), with
    nothing left behind.

    >>> with isolate.NetnsPool(size=4) as pool, pool.take() as ns:
    ...     isolate.run(["ping", "-c1", "127.0.0.1"], join=[ns], namespaces={"pid"})
    """

    name = "NetnsPool"
    what = "network namespace"

    def __init__(self, size: int = 8, *, network: str | None = None) -> None:
        self._home = -1
        if network is not None:
            from .config import check_net

            if check_net(network) in ("none", "host"):
                raise ConfigError(f"NetnsPool: network must be 'bridge' or a network's name, "
                                  f"got {network!r}")
        #: The network whose veth pairs the namespaces have (None: lo only).
        self.network = network
        # The first namespace comes from the pool's thread, the only one that
        # changes network namespace.
        super().__init__(size, 4096, first_here=False)

    def take(self, timeout: float | None = None) -> PooledNetns:
        """Hand out a fresh network namespace, waiting for one if none is ready.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``ConfigError`` on
        a closed pool, and the creation error (``UnsupportedError`` or
        ``OSError``) if the thread could not make one.  Sandboxes started
        back to back faster than the thread makes namespaces drain the pool:
        ``take(timeout=0)`` never waits, and on ``TimeoutError`` a caller can
        let the spawn create its own (``namespaces={"net", ...}``) instead.
        """
        fd, link = self._take(timeout)
        if link is not None:
            from .net.attachment import Link

            assert isinstance(link, Link)      # (a ready one holds what make_link made)
        return PooledNetns(fd, self, link)

    def _thread_enter(self) -> None:
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def _thread_exit(self) -> None:
        home, self._home = self._home, -1
        if home >= 0:
            os.close(home)

    def _make(self) -> _Item:
        # The C core makes it (as it makes a spawn's), in this thread only, then returns home.
        fd = _spawn.netns_new(home=self._home)
        if self.network is None:
            return fd, None
        try:
            from .net.attachment import make_link

            return fd, make_link(self.network, fd)
        except BaseException:
            os.close(fd)
            raise

    def _dispose(self, item: _Item) -> None:
        _dispose(item)

    def _thread_error(self, e: BaseException) -> BaseException:
        if isinstance(e, OSError) and e.errno in (_errno.EPERM, _errno.EACCES):
            return UnsupportedError(
                f"creating a network namespace was refused ({os.strerror(e.errno)}): "
                "NetnsPool needs CAP_SYS_ADMIN (run as root, or inside your own user namespace)")
        return e

    def __enter__(self) -> NetnsPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
