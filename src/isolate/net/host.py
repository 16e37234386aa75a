"""Changes to the host's network, written down before they are made and undone at the end.

What a bridged network needs of the host (the caller's network namespace):

- its bridge (``Network.bridge``), with the gateway address, up, and on it
  ``forwarding`` (IPv4 routes what arrives on an interface only when that
  interface's ``forwarding`` is 1) and ``route_localnet`` (so the host may
  reach a published port on 127.0.0.1: the DNAT'd packet leaves through the
  bridge with a loopback source until it is masqueraded);
- ``forwarding`` on the interfaces of the default routes (answers and
  published-port traffic arrive there).  The global ``net.ipv4.ip_forward``
  is left alone: per-interface forwarding is all the kernel looks at;
- isolate's nftables table (``nft``).

Each change goes into the ledger ``<run>/host.json`` (with the value it
replaces) *before* it is made, so a crash in between still leaves it
recorded.  A bridge stays while its network exists (a container start makes
none); ``drop_network`` removes one, and when no bridge is left
``undo_all`` restores every recorded setting and deletes the table.  The
ledger also names the network namespace it is about (its inode): a process
in another namespace cannot undo or extend it.

Netlink is pyroute2's: one ``IPRoute`` per process and network namespace
(``ipr()``), used under a lock (pyroute2 objects are not thread-safe).
"""

from __future__ import annotations

import ipaddress
import os
import threading
from typing import TYPE_CHECKING, Any

from ..errors import NetworkError
from . import nft, state

if TYPE_CHECKING:
    from .network import Network
    from .ports import PortMapping

#: pyroute2's ``IPRoute`` (pyroute2 has no type information).
IPRoute = Any

__all__ = ["bridges", "delete_link", "drop_bridge", "drop_network", "ensure", "ipr", "link_exists", "netns_id", "rebuild_table",
           "undo_all", "uplinks"]

_ipr: dict[tuple[int, int], Any] = {}     # (pid, netns) -> IPRoute
lock = threading.RLock()


def netns_id() -> int:
    """The calling thread's network namespace (inode)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def ipr() -> IPRoute:
    """This process's ``IPRoute`` for the calling thread's network namespace (made on first use).

    Use it under ``lock``.
    """
    key = (os.getpid(), netns_id())
    got = _ipr.get(key)
    if got is None:
        from pyroute2 import IPRoute as make  # type: ignore[import-untyped]

        for k in [k for k in _ipr if k[0] != key[0]]:
            del _ipr[k]            # a forked child's copies of its parent's sockets
        got = _ipr[key] = make()
    return got


def netlink_error() -> type[Exception]:
    """pyroute2's ``NetlinkError`` (``.code``: the errno)."""
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    return NetlinkError  # type: ignore[no-any-return]


def link_index(ifname: str) -> int | None:
    """The index of interface ``ifname`` in the calling thread's namespace, None if there is
    none (an ioctl: no netlink round trip)."""
    import socket

    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def link_exists(ifname: str) -> bool:
    """Whether the caller's namespace has an interface ``ifname``."""
    return link_index(ifname) is not None


def delete_link(ifname: str) -> bool:
    """Delete interface ``ifname`` if it exists; True if it did."""
    NetlinkError = netlink_error()
    with lock:
        try:
            ipr().link("del", ifname=ifname)
        except NetlinkError as e:
            if getattr(e, "code", None) == 19:
                return False
            raise
    return True


def _sysctl(ifname: str, key: str) -> str:
    return f"/proc/sys/net/ipv4/conf/{ifname}/{key}"


def read_sysctl(path: str) -> str:
    """The value of the sysctl file ``path``."""
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def write_sysctl(path: str, value: str) -> None:
    """Set the sysctl file ``path`` to ``value``."""
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def uplinks() -> list[str]:
    """The interfaces of the caller's IPv4 default routes (main table)."""
    out: list[str] = []
    with lock:
        r = ipr()
        for route in r.route("dump", family=2, table=254):
            if route["dst_len"] != 0:
                continue
            oifs = [route.get_attr("RTA_OIF")]
            mp = route.get_attr("RTA_MULTIPATH")
            if mp:
                oifs += [hop["oif"] for hop in mp]
            for oif in oifs:
                if oif:
                    name = r.link("get", index=int(oif))[0].get_attr("IFLA_IFNAME")
                    if name not in out:
                        out.append(str(name))
    return out


# --- the ledger -------------------------------------------------------------------


def _load(p: state.Paths) -> dict[str, Any]:
    led: dict[str, Any] = state.read_json(p.host, {"netns": 0, "changes": []})
    ns = netns_id()
    if led["changes"] and led["netns"] not in (0, ns):
        raise NetworkError(f"the network state in {p.run} belongs to network namespace "
                           f"net:[{led['netns']}], and this process is in net:[{ns}]: use "
                           f"another ISOLATE_NET_DIR there")
    led["netns"] = ns
    return led


def _save(p: state.Paths, led: dict[str, Any]) -> None:
    if led["changes"]:
        state.write_json(p.host, led)
    else:
        state.remove(p.host)


def _set(p: state.Paths, led: dict[str, Any], path: str, value: str, *, device: str = "") -> None:
    """Set a sysctl, recorded first with the value it had (once: the first value is kept)."""
    old = read_sysctl(path)
    if old == value:
        return
    if not any(c["kind"] == "sysctl" and c["path"] == path for c in led["changes"]):
        led["changes"].append({"kind": "sysctl", "path": path, "previous": old, "device": device})
        _save(p, led)
    write_sysctl(path, value)


def bridges(p: state.Paths) -> dict[str, str]:
    """Bridges in the ledger: network name -> bridge."""
    led = state.read_json(p.host, {"changes": []})
    return {c["network"]: c["ifname"] for c in led["changes"] if c["kind"] == "bridge"}


def ensure(p: state.Paths, net: Network) -> tuple[int, bool]:
    """The host side of ``net`` exists (under the state lock): (bridge index, made now).

    Making it loads the table too, with the rules of the leases written so far.
    """
    NetlinkError = netlink_error()
    led = _load(p)
    mine = any(c["kind"] == "bridge" and c["ifname"] == net.bridge for c in led["changes"])
    index = link_index(net.bridge)
    if mine and index is not None:
        return index, False
    if index is not None:
        raise NetworkError(f"network {net.name!r}: an interface named {net.bridge} exists on "
                           f"the host and is not isolate's")
    if not mine:
        led["changes"].append({"kind": "bridge", "ifname": net.bridge, "network": net.name})
        _save(p, led)
    try:
        with lock:
            r = ipr()
            r.link("add", ifname=net.bridge, kind="bridge")
            index = int(r.link("get", ifname=net.bridge)[0]["index"])
            r.addr("add", index=index, address=str(net.gateway), prefixlen=net.subnet.prefixlen)
            r.link("set", index=index, state="up")
        _set(p, led, _sysctl(net.bridge, "forwarding"), "1", device=net.bridge)
        _set(p, led, _sysctl(net.bridge, "route_localnet"), "1", device=net.bridge)
        for dev in uplinks():
            _set(p, led, _sysctl(dev, "forwarding"), "1")
        if not any(c["kind"] == "table" for c in led["changes"]):
            led["changes"].append({"kind": "table", "family": nft.FAMILY, "name": nft.TABLE})
            _save(p, led)
        rebuild_table(p)
    except (NetlinkError, OSError) as e:
        drop_network(p, net)
        raise NetworkError(f"network {net.name!r}: setting up bridge {net.bridge}: {e}") from e
    except BaseException:
        drop_network(p, net)
        raise
    return index, True


def rebuild_table(p: state.Paths) -> None:
    """Load isolate's table as the state says it should be (under the state lock): its
    rules only, or (when that fails: the table or a chain is missing) chains and all."""
    from . import ipam
    from .network import Network

    led = _load(p)
    if not any(c["kind"] == "table" for c in led["changes"]):
        return
    nets: list[tuple[ipaddress.IPv4Network, str]] = []
    ports = []
    for c in led["changes"]:
        if c["kind"] != "bridge":
            continue
        data = state.read_json(p.definition(c["network"]), None)
        if data is None:
            continue
        net = Network.from_json(data)
        nets.append((net.subnet, net.bridge))
        for addr, lease in sorted(ipam.read(p, net.name).items()):
            ports += [(m, str(addr)) for m in lease.publish]
    try:
        nft.load(nft.build(nets, ports, chains=False))
    except NetworkError:
        nft.load(nft.build(nets, ports))


def add_ports(p: state.Paths, ports: list[tuple[PortMapping, str]]) -> None:
    """Add the rules of ``ports`` (mapping, container address) to the table (under the
    state lock); the whole table is rebuilt when that fails (table or chain missing)."""
    try:
        nft.load(nft.build_ports(ports))
    except NetworkError:
        rebuild_table(p)


def drop_network(p: state.Paths, net: Network) -> None:
    """Delete ``net``'s bridge and rules if isolate made them; everything when it was the last."""
    drop_bridge(p, net.name, net.bridge)


def drop_bridge(p: state.Paths, network: str, bridge: str) -> None:
    """Delete the bridge of ``network`` if the ledger has it; every change when it was the last."""
    led = _load(p)
    entry = [c for c in led["changes"] if c["kind"] == "bridge" and c["network"] == network]
    if not entry:
        return
    delete_link(bridge)
    led["changes"] = [c for c in led["changes"]
                      if c not in entry and not (c["kind"] == "sysctl"
                                                 and c.get("device") == bridge)]
    _save(p, led)
    if not any(c["kind"] == "bridge" for c in led["changes"]):
        undo_all(p)
    else:
        rebuild_table(p)


def undo_all(p: state.Paths) -> None:
    """Undo every recorded change, newest first: table, bridges, settings (under the lock)."""
    led = _load(p)
    errors: list[str] = []
    for c in reversed(list(led["changes"])):
        try:
            if c["kind"] == "table":
                nft.delete()
            elif c["kind"] == "bridge":
                delete_link(c["ifname"])
            elif c["kind"] == "sysctl":
                if os.path.exists(c["path"]):
                    write_sysctl(c["path"], c["previous"])
        except (OSError, NetworkError) as e:
            errors.append(f"{c['kind']} {c.get('path') or c.get('ifname') or c.get('name')}: {e}")
            continue
        led["changes"].remove(c)
        _save(p, led)
    if errors:
        raise NetworkError("undoing host changes: " + "; ".join(errors))
