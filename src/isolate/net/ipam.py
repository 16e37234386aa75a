"""Address leases: which container of a network has which address, and who owns it.

One file per network (``<run>/leases/<network>.json``, see ``state``),
read and written under the state lock: address -> ``Lease`` (the container's
name and hostname, its veth, published ports, and its owner: the process
that attached it, or the container's first process after ``hand_over``, as
pid, start time (``/proc/<pid>/stat`` field 22), boot id and pid namespace).
An address goes to one live owner at a time; a lease whose owner is gone is
reclaimed (``attachment.reclaim``: by the next ``attach`` on the network and by
``isolate gc``), with the veth, port rules and hosts entry that came with it.
New leases take the lowest free host address (never the network's own, the
gateway or the broadcast address).
"""

from __future__ import annotations

import ipaddress
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
        return {"name": self.name, "hostname": self.hostname, "pid": self.pid,
                "start": self.start, "boot": self.boot, "pidns": self.pidns,
                "netns": self.netns, "veth": self.veth, "mac": self.mac,
                "publish": [[m.host_port, m.container_port, m.protocol, m.host_ip]
                            for m in self.publish]}

    @classmethod
    def from_json(cls, address: str, d: dict[str, Any]) -> Lease:
        """A lease read back."""
        return cls(address=ipaddress.IPv4Address(address), name=str(d["name"]),
                   hostname=str(d.get("hostname") or d["name"]), pid=int(d["pid"]),
                   start=int(d["start"]), boot=str(d["boot"]), pidns=int(d.get("pidns", 0)),
                   netns=int(d.get("netns", 0)), veth=str(d.get("veth", "")),
                   mac=str(d.get("mac", "")),
                   publish=tuple(PortMapping(int(a), int(b), c, e)
                                 for a, b, c, e in d.get("publish", ())))


def pidns() -> int:
    """This process's pid namespace (inode)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def me(pid: int | None = None) -> tuple[int, int, str, int]:
    """(pid, start time, boot id, pid namespace) of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    start = proc_start_time(pid)
    if start is None:
        raise NetworkError(f"process {pid} does not exist (or is a zombie): it cannot own a lease")
    return pid, start, boot_id(), pidns()


#: path -> ((device, inode, mtime, size) of the file, its leases): a file is replaced
#: (renamed over) at each change, so an unchanged key means unchanged leases.
_cache: dict[str, tuple[tuple[int, int, int, int], dict[ipaddress.IPv4Address, Lease]]] = {}


def read(p: state.Paths, network: str) -> dict[ipaddress.IPv4Address, Lease]:
    """The leases of ``network`` (under the state lock): a new dict, the caller's to change."""
    path = p.leases(network)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _cache.pop(path, None)
        return {}
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    got = _cache.get(path)
    if got is None or got[0] != key:
        data = state.read_json(path, {})
        got = _cache[path] = (key, {ipaddress.IPv4Address(a): Lease.from_json(a, d)
                                    for a, d in data.items()})
    return dict(got[1])


def write(p: state.Paths, network: str, leases: dict[ipaddress.IPv4Address, Lease]) -> None:
    """Store the leases of ``network`` (under the state lock); no file when there are none."""
    path = p.leases(network)
    _cache.pop(path, None)
    if not leases:
        state.remove(path)
        return
    state.write_json(path, {str(a): le.to_json() for a, le in sorted(leases.items())},
                     compact=True)
    st = os.stat(path)
    _cache[path] = ((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size), dict(leases))


def allocate(net: Network, taken: dict[ipaddress.IPv4Address, Lease]) -> ipaddress.IPv4Address:
    """The lowest host address of ``net`` that is not its gateway and not in ``taken``."""
    for addr in net.subnet.hosts():
        if addr != net.gateway and addr not in taken:
            return addr
    raise NetworkError(f"network {net.name!r}: every address of {net.subnet} is in use "
                       f"({len(taken)} containers)")
