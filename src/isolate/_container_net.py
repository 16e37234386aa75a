"""A ``Container``'s network (``net="bridge"`` or a network's name) across its starts.

As root, each start makes a network namespace before the spawn (or takes
one from a ``NetnsPool``), attaches it to the network (``isolate.net.attach``:
a veth into the network's bridge, an address, routes, published ports), and
the container joins it (``NetSlot``, a ``join`` entry whose fd changes per
start).  The network's ``/etc/hosts`` and ``/etc/resolv.conf`` for the
container are bound read-only over the root's from detached mounts made
here (``RootContext.net_files``: the plan stays the cached one).  The
attachment is handed to the container's first process, so ``isolate gc``
reclaims it if this process dies first, and closed when that process is
released.

Without root the container's user and network namespaces are made at clone,
as always; while the child is held, ``isolate.net.rootless.start`` gives its
network namespace pasta or slirp4netns, and the files are bound from a
private directory of the caller's (a bind by path: a plan of its own per
start, which a rootless start's helper process dwarfs anyway).
"""

from __future__ import annotations

import os
import threading

from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .net.ports import PortMapping
    from .netpool import NetnsPool, PooledNetns

__all__ = ["ContainerNet", "NetSlot", "NET_FILES"]

#: Where a networked container's files go, relative to its root.
NET_FILES = (b"etc/hosts", b"etc/resolv.conf")


class NetSlot:
    """The network namespace a container joins, made (or taken from a pool) at each start:
    a ``join`` entry of type ``net`` whose ``fileno()`` is that start's namespace."""

    type = "net"

    def __init__(self) -> None:
        self.fd = -1

    def fileno(self) -> int:
        return self.fd

    def __repr__(self) -> str:
        return f"<isolate network namespace of a start, fd {self.fd}>"


def _new_netns() -> int:
    """A new network namespace with lo up, made by a short-lived thread (this one never
    changes namespace): an fd on it."""
    from . import _spawn

    out: list[int] = []
    err: list[BaseException] = []

    def make() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                out.append(_spawn.netns_new(home=home))
            finally:
                os.close(home)
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=make, name="isolate-netns")
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


class ContainerNet:
    """The network of a ``Container``: ``network`` (``"bridge"`` or a name), its ``publish``
    ports and ``dns`` resolvers; ``pool`` (root) gives the namespaces."""

    def __init__(self, network: str, *, publish: Sequence[PortMapping] = (),
                 dns: Sequence[str] | None = None, pool: NetnsPool | None = None) -> None:
        self.rootless = os.geteuid() != 0
        if pool is not None:
            from .netpool import NetnsPool

            if not isinstance(pool, NetnsPool):
                raise ConfigError(f"netns_pool must be a NetnsPool, got {pool!r}")
            if self.rootless:
                raise ConfigError("netns_pool: a container without root gets its network from "
                                  "pasta or slirp4netns, in a namespace made at its start")
            from .net.network import canonical

            if pool.network is not None and canonical(pool.network) != canonical(network):
                raise ConfigError(f"netns_pool: the pool's namespaces are made for network "
                                  f"{pool.network!r}, not {network!r}")
        self.network = network
        self.publish = tuple(publish)
        self.dns = None if dns is None else tuple(dns)
        self._pool = pool
        #: Root: the namespace each start joins (None without root: made at clone).
        self.slot = None if self.rootless else NetSlot()
        self._ns: Any = None           # this start's namespace (a PooledNetns, or an fd)
        self._attached: Any = None     # this start's Attachment / RootlessNet
        self._files: str | None = None  # rootless: the private directory of its files


    def prepare(self, *, name: str, hostname: str | None, with_root: bool) -> list[int]:
        """Before a start as root: the namespace made (or taken) and attached; returns the
        detached mounts of the network files for ``launch(net_fds=...)`` (none without a
        root), the caller's to close once the child has them."""
        self.finish()
        if self.slot is None:
            return []
        from . import _spawn
        from .net import attach

        try:
            link = None
            if self._pool is not None:
                self._ns = self._pool.take()
                fd, link = self._ns.fileno(), self._ns.link
            else:
                self._ns = fd = _new_netns()
            self.slot.fd = fd
            self._attached = att = attach(self.network, fd, name=name, hostname=hostname,
                                          publish=self.publish, dns=self.dns, link=link)
            if not with_root:
                return []
            fds: list[int] = []
            try:
                from ._plan import (MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
                                    MOUNT_ATTR_RDONLY)

                attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC
                # No resolver to give (the host's are all on loopback): an empty resolv.conf,
                # /dev/null's (so no host resolver is named that the container cannot reach).
                for path in (att.hosts_path, att.resolv_path or os.devnull):
                    fds.append(_spawn.clone_tree(os.fsencode(path), recursive=False,
                                                 attr_set=attrs | (0 if path == os.devnull
                                                                   else MOUNT_ATTR_NODEV)))
            except BaseException:
                for f in fds:
                    os.close(f)
                raise
            return fds
        except BaseException:
            self.finish()
            raise

    def rootless_files(self) -> tuple[str, str] | None:
        """Without root: the host paths to bind at /etc/hosts and /etc/resolv.conf (made
        empty here, filled by ``held``), or None as root."""
        if not self.rootless:
            return None
        import tempfile  # only without root, with a network: not on a plain container's start

        self.finish()
        d = tempfile.mkdtemp(prefix="isolate-net-")
        self._files = d
        paths = (os.path.join(d, "hosts"), os.path.join(d, "resolv.conf"))
        for p in paths:
            with open(p, "wb"):
                pass
            os.chmod(p, 0o644)
        os.chmod(d, 0o755)
        return paths

    def held(self, pid: int, *, name: str, hostname: str | None) -> None:
        """Without root, while the child ``pid`` is held: pasta or slirp4netns for its
        namespaces, and its files written."""
        from .net import rootless

        self._attached = net = rootless.start(pid, publish=self.publish, dns=self.dns)
        if self._files is not None:
            from .net.network import HOSTS_HEAD

            with open(os.path.join(self._files, "hosts"), "w") as f:
                f.write(f"{HOSTS_HEAD}{net.address.ip}\t{hostname or name}\n")
            with open(os.path.join(self._files, "resolv.conf"), "wb") as f:
                f.write(net.resolv_conf())

    def started(self, pid: int, *, outlives_caller: bool = True) -> None:
        """The container's first process ``pid`` owns the attachment from now on, when it
        may outlive this process (else this process keeps it: ``isolate gc`` reclaims it
        once both are gone, which is the same moment)."""
        if not outlives_caller:
            return
        hand_over = getattr(self._attached, "hand_over", None)
        if hand_over is not None:
            from .errors import NetworkError

            try:
                hand_over(pid)
            except NetworkError:
                if os.path.exists(f"/proc/{pid}/exe"):
                    raise
                # Done already (a zombie): the caller keeps it and closes it when it reaps.

    def finish(self) -> None:
        """Undo this start's network (the attachment, the namespace's fd, the files); idempotent."""
        att, self._attached = self._attached, None
        ns, self._ns = self._ns, None
        files, self._files = self._files, None
        try:
            if att is not None:
                # The namespace (our own, or a pooled one: never handed out again) dies with
                # the container and takes the veth along, off this thread's path.
                if self.rootless:
                    att.close()
                elif ns is not None and not isinstance(ns, int):
                    pooled: PooledNetns = ns
                    ns = None
                    pooled._close_with(att)    # the pool's thread closes both, off this path
                else:
                    att.close(keep_link=True)
        finally:
            if self.slot is not None:
                self.slot.fd = -1
            if isinstance(ns, int):
                os.close(ns)
            elif ns is not None:
                ns.close()
            if files is not None:
                import shutil

                shutil.rmtree(files, ignore_errors=True)

    def detach(self, pid: int | None) -> None:
        """The container (first process ``pid``) lives on without us: its attachment stays,
        handed to it (``isolate gc`` reclaims it once that is gone); our fds go."""
        if pid is not None:
            self.started(pid)
        self._attached = None
        self._files = None      # (its files stay while it may read them)
        self.finish()
