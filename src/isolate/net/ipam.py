"""Address leases: which container of a network has which address, and who owns it.

One file per lease (``<run>/leases/<network>/<address>``, see ``state``
and ``write``), read and written under the state lock: address -> ``Lease`` (the container's
name and hostname, its veth, published ports, and its owner: the process
that attached it, or the container's first process after ``hand_over``, as
pid, start time (``/proc/<pid>/stat`` field 22), boot id and pid namespace).
An address goes to one live owner at a time; a lease whose owner is gone is
reclaimed (``attachment.reclaim``: by the next ``attach`` on the network and by
``isolate gc``), with the veth, port rules and hosts entry that came with it.
New leases take the lowest free host address (never the network's own, the
gateway or the broadcast address).

A ``NetnsPool(network=...)`` leases ahead: each namespace it keeps ready
holds a ``pooled`` lease (no name, owned by the pool's process, so it is
reclaimed when that process dies) that ``attach`` turns into the
container's.  A pooled lease counts as taken for ``allocate`` and nothing
else: it names no one in a hosts file.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from .._record import dataclass
from .._registry import boot_id, proc_start_time
from ..errors import NetworkError
from . import state
from .network import Network
from .ports import PortMapping

__all__ = ["Lease", "allocate", "read", "write", "me"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """One container's address on a network, and the process that owns it."""

    address: ipaddress.IPv4Address
    name: str
    hostname: str
    pid: int
    start: int
    boot: str
    pidns: int
    netns: int                    # the host's network namespace (inode) the veth was made in
    veth: str
    mac: str
    publish: tuple[PortMapping, ...] = ()
    #: Held by a ``NetnsPool`` for a namespace it keeps ready (``name`` is a placeholder).
    pooled: bool = False

    def alive(self) -> bool:
        """Whether the owner still runs.  A lease made in another pid namespace counts as
        alive: its pid cannot be judged from here."""
        if self.boot != boot_id():
            return False
        if self.pidns != pidns():
            return True
        return proc_start_time(self.pid) == self.start

    def to_json(self) -> dict[str, Any]:
        """The lease as stored."""
        out = {"name": self.name, "hostname": self.hostname, "pid": self.pid,
               "start": self.start, "boot": self.boot, "pidns": self.pidns,
               "netns": self.netns, "veth": self.veth, "mac": self.mac,
               "publish": [[m.host_port, m.container_port, m.protocol, m.host_ip]
                           for m in self.publish]}
        if self.pooled:
            out["pooled"] = True
        return out

    @classmethod
    def from_json(cls, address: str, d: dict[str, Any]) -> Lease:
        """A lease read back."""
        return cls(address=ipaddress.IPv4Address(address), name=str(d["name"]),
                   hostname=str(d.get("hostname") or d["name"]), pid=int(d["pid"]),
                   start=int(d["start"]), boot=str(d["boot"]), pidns=int(d.get("pidns", 0)),
                   netns=int(d.get("netns", 0)), veth=str(d.get("veth", "")),
                   mac=str(d.get("mac", "")),
                   publish=tuple(PortMapping(int(a), int(b), c, e)
                                 for a, b, c, e in d.get("publish", ())),
                   pooled=bool(d.get("pooled", False)))


def pidns() -> int:
    """This process's pid namespace (inode)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


_me: tuple[int, int, str, int] | None = None      # this process's own (a forked child's differs)


def me(pid: int | None = None) -> tuple[int, int, str, int]:
    """(pid, start time, boot id, pid namespace) of ``pid`` (default: this process)."""
    global _me
    own = os.getpid()
    if pid is None or pid == own:
        if _me is not None and _me[0] == own:
            return _me
        pid = own
    start = proc_start_time(pid)
    if start is None:
        raise NetworkError(f"process {pid} does not exist (or is a zombie): it cannot own a lease")
    out = (pid, start, boot_id(), pidns())
    if pid == own:
        _me = out
    return out


#: lease file -> ((inode, mtime, size) of it, its lease): a lease file is made whole and
#: linked into place, or renamed over, so an unchanged key means an unchanged lease.
_cache: dict[str, tuple[tuple[int, int, int], Lease]] = {}


def read(p: state.Paths, network: str) -> dict[ipaddress.IPv4Address, Lease]:
    """The leases of ``network`` (under the state lock): a new dict, the caller's to change."""
    top = p.leases(network)
    try:
        names = os.listdir(top)
    except FileNotFoundError:
        return {}
    out: dict[ipaddress.IPv4Address, Lease] = {}
    for name in names:
        if name.startswith("."):
            continue                  # a temporary a crash left; the next write replaces it
        path = os.path.join(top, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        got = _cache.get(path)
        if got is None or got[0] != key:
            got = _cache[path] = (key, Lease.from_json(name, state.read_json(path, {})))
        out[got[1].address] = got[1]
    return out


def write(p: state.Paths, network: str, leases: dict[ipaddress.IPv4Address, Lease]) -> None:
    """Make the leases of ``network`` on disk ``leases`` (under the state lock).

    One file per lease, ``<run>/leases/<network>/<address>``: a new one is written
    whole under a temporary name and linked into place, a changed one renamed over
    the old, a gone one unlinked; only what changed is written (no rename over an
    existing file at each start: on ext4 that forces a write-out).
    """
    top = p.leases(network)
    now = read(p, network)
    for addr in now.keys() - leases.keys():
        path = os.path.join(top, str(addr))
        _cache.pop(path, None)
        state.remove(path)
    for addr, le in leases.items():
        if now.get(addr) != le:
            _store(top, le, replace=addr in now)
    if not leases:
        try:
            os.rmdir(top)
        except OSError:
            pass


def _store(top: str, le: Lease, *, replace: bool) -> None:
    os.makedirs(top, mode=0o755, exist_ok=True)
    path = os.path.join(top, str(le.address))
    tmp = os.path.join(top, f".{le.address}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, (json.dumps(le.to_json()) + "\n").encode())
        st = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.rename(tmp, path)
        else:
            os.link(tmp, path)        # EEXIST: never a lease over another's
            os.unlink(tmp)
    except BaseException:
        state.remove(tmp)
        raise
    _cache[path] = ((st.st_ino, st.st_mtime_ns, st.st_size), le)


def allocate(net: Network, taken: dict[ipaddress.IPv4Address, Lease],
             last: ipaddress.IPv4Address | None = None) -> ipaddress.IPv4Address:
    """The first host address of ``net`` after ``last`` (the one handed out before; from the
    start when None or outside it), round the subnet, that is neither its gateway nor in
    ``taken``.  Round-robin, as CNI's host-local does: an address just released is not
    handed out again before every other one has been, while the kernel may still be
    tearing down the namespace that had it (its veth answers for it until then)."""
    hosts = net.subnet.num_addresses - 2          # (a network is a /30 at the smallest)
    first = int(net.subnet.network_address) + 1
    start = 0
    if last is not None and last in net.subnet:
        start = (int(last) - first + 1) % hosts
    for i in range(hosts):
        addr = ipaddress.IPv4Address(first + (start + i) % hosts)
        if addr != net.gateway and addr not in taken:
            return addr
    raise NetworkError(f"network {net.name!r}: every address of {net.subnet} is in use "
                       f"({len(taken)} containers)")
