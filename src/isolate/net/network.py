"""Bridged networks: ``Network``, made, looked up, listed and removed by name.

A network is a definition (``<defs>/<name>.json``, see ``state``): an IPv4
subnet, the gateway (the bridge's address), the bridge's interface name and
the resolvers its containers get.  Its host side (the bridge, its rules in
isolate's nftables table, forwarding) is made by the first ``attach`` and
stays while the network exists, so later containers cost no bridge set-up;
``remove_network`` takes it down, and removing the last network undoes every
change isolate made to the host (``host``).  The default network
``isolate`` (10.88.0.0/16, bridge ``isolate0``) is made on first use;
others get a free /24 of 10.89.0.0/16 unless given a subnet, as podman does.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import time
from typing import Any, Sequence

from .._record import dataclass
from ..errors import ConfigError, NetworkError
from . import state

__all__ = ["DEFAULT_NETWORK", "DEFAULT_SUBNET", "Network", "create_network", "get_network",
           "list_networks", "network_in", "remove_network", "stored"]

#: The network ``net="bridge"`` means, made on first use.
DEFAULT_NETWORK = "isolate"
#: Its subnet (podman's default network is 10.88.0.0/16 too).
DEFAULT_SUBNET = ipaddress.IPv4Network("10.88.0.0/16")
#: Where other networks' subnets are taken from when none is given: 10.89.N.0/24.
_POOL = ipaddress.IPv4Network("10.89.0.0/16")
#: The lines every container's /etc/hosts starts with.
HOSTS_HEAD = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

#: Subnets no network may overlap.
_SPECIAL = [(ipaddress.IPv4Network(n), what) for n, what in [
    ("0.0.0.0/8", "'this' network"), ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"), ("224.0.0.0/3", "multicast and reserved")]]

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
#: Names with a meaning of their own for ``Container(net=...)``.
_RESERVED = frozenset({"none", "host", "bridge", "private", "pasta", "slirp4netns"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """A bridged network: its ``subnet``, ``gateway`` (the ``bridge``'s address), resolvers.

    ``dns``: the nameservers its containers get (empty: the host's).
    ``created``: when it was defined (seconds since the epoch).
    """

    name: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    bridge: str
    dns: tuple[str, ...] = ()
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The definition as stored (and as ``isolate network inspect`` prints it)."""
        return {"name": self.name, "subnet": str(self.subnet), "gateway": str(self.gateway),
                "bridge": self.bridge, "dns": list(self.dns), "created": self.created}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        """A definition read back."""
        return cls(name=str(data["name"]), subnet=ipaddress.IPv4Network(data["subnet"]),
                   gateway=ipaddress.IPv4Address(data["gateway"]), bridge=str(data["bridge"]),
                   dns=tuple(str(d) for d in data.get("dns", ())),
                   created=float(data.get("created", 0.0)))


def check_name(name: object) -> str:
    """``name`` if it is a valid network name; ``ConfigError`` naming it otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"network name must be 1 to 63 of [a-zA-Z0-9_.-], starting with a "
                          f"letter or digit, got {name!r}")
    if name in _RESERVED:
        raise ConfigError(f"network name {name!r} is reserved (it has a meaning of its own "
                          f"for net=)")
    return name


def _bridge_name(name: str) -> str:
    if name == DEFAULT_NETWORK:
        return "isolate0"
    if len(name) <= 11:               # "iso-" + 11: the 15 bytes an interface name may have
        return f"iso-{name}"
    return "iso-" + hashlib.sha256(name.encode()).hexdigest()[:11]


def check_dns(dns: object, what: str = "dns", *, version: int | None = None) -> tuple[str, ...]:
    """``dns`` (a list of IP addresses; of IP ``version`` only, if given) normalized;
    ``ConfigError`` naming a bad one."""
    if dns is None:
        return ()
    if isinstance(dns, (str, bytes)) or not hasattr(dns, "__iter__"):
        raise ConfigError(f"{what} must be a list of IP addresses, got {dns!r}")
    kind = "IP" if version is None else f"IPv{version}"
    out = []
    for d in dns:
        try:
            addr = ipaddress.ip_address(d)
        except (ValueError, TypeError):
            addr = None
        if addr is None or version not in (None, addr.version):
            raise ConfigError(f"{what}: {d!r} is not an {kind} address") from None
        out.append(str(addr))
    return tuple(out)


def canonical(name: str) -> str:
    """A network's name as stored: ``"bridge"`` names the default network."""
    return DEFAULT_NETWORK if name == "bridge" else name


def _parse_subnet(subnet: object) -> ipaddress.IPv4Network:
    if isinstance(subnet, ipaddress.IPv4Network):
        net = subnet
    else:
        try:
            net = ipaddress.IPv4Network(str(subnet))
        except ValueError as e:
            if isinstance(subnet, str):
                try:
                    loose = ipaddress.ip_network(subnet, strict=False)
                except ValueError:
                    loose = None
                if isinstance(loose, ipaddress.IPv4Network):
                    raise ConfigError(f"subnet {subnet!r} has host bits set (did you mean "
                                      f"{loose}?)") from None
            raise ConfigError(f"subnet {subnet!r} is not an IPv4 network (CIDR, e.g. "
                              f"10.89.5.0/24): {e}") from None
    if net.prefixlen > 30:
        raise ConfigError(f"subnet {str(subnet)!r} is too small: a network needs at least a /30")
    for special, what in _SPECIAL:
        if net.overlaps(special):
            raise ConfigError(f"subnet {net} overlaps {special} ({what})")
    return net


def _read_all(p: state.Paths) -> dict[str, Network]:
    import os

    out: dict[str, Network] = {}
    try:
        names = sorted(os.listdir(p.defs))
    except FileNotFoundError:
        return out
    for n in names:
        if n.endswith(".json") and not n.startswith("."):
            data = state.read_json(os.path.join(p.defs, n), None)
            if data is not None:
                net = Network.from_json(data)
                out[net.name] = net
    return out


def _host_overlap(subnet: ipaddress.IPv4Network, skip: frozenset[str]) -> str | None:
    """What of the caller's network namespace overlaps ``subnet`` (an address or a route), or
    None; interfaces in ``skip`` (isolate's bridges) do not count."""
    from . import host

    ipr = host.ipr()
    names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME"))
             for link in ipr.link("dump")}
    for a in ipr.addr("dump", family=2):
        dev = names.get(int(a["index"]), "?")
        if dev in skip:
            continue
        iface = ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        if iface.network.overlaps(subnet):
            return f"address {iface} of {dev}"
    for r in ipr.route("dump", family=2, table=254):
        if r["dst_len"] == 0:
            continue                   # the default route reaches everything: not a conflict
        dst = ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False)
        dev = names.get(int(r.get_attr("RTA_OIF") or 0), "?")
        if dev not in skip and dst.overlaps(subnet):
            return f"route {dst} (dev {dev})"
    return None


def create_network(name: str, subnet: str | ipaddress.IPv4Network | None = None,
                   gateway: str | ipaddress.IPv4Address | None = None, *,
                   dns: Sequence[str] | None = None) -> Network:
    """Define a bridged network ``name`` (its bridge is made by the first ``attach``).

    ``subnet``: an IPv4 network (default: the first free 10.89.N.0/24);
    ``gateway``: the bridge's address in it (default: its first host
    address); ``dns``: the resolvers its containers get (default: the
    host's).  Raises ``ConfigError`` for malformed input and
    ``NetworkError`` when the name exists or the subnet overlaps another
    isolate network or an address or route of the caller's network
    namespace; nothing is left behind either way.
    """
    check_name(name)
    nets_dns = check_dns(dns)
    net = None if subnet is None else _parse_subnet(subnet)
    with state.locked() as p:
        have = _read_all(p)
        if name in have:
            raise NetworkError(f"network {name!r} exists already (subnet {have[name].subnet})")
        return _create(p, name, net, gateway, nets_dns, have)


def _create(p: state.Paths, name: str, net: ipaddress.IPv4Network | None,
            gateway: str | ipaddress.IPv4Address | None, dns: tuple[str, ...],
            have: dict[str, Network]) -> Network:
    bridges = frozenset(n.bridge for n in have.values())
    if net is None:
        net = _free_subnet(have, bridges)
    else:
        for other in have.values():
            if other.subnet.overlaps(net):
                raise NetworkError(f"subnet {net} overlaps network {other.name!r} "
                                   f"({other.subnet})")
        clash = _host_overlap(net, bridges)
        if clash is not None:
            raise NetworkError(f"subnet {net} overlaps the host's {clash}")
    if gateway is None:
        gw = net.network_address + 1
    else:
        try:
            gw = ipaddress.IPv4Address(str(gateway))
        except ValueError:
            raise ConfigError(f"gateway {str(gateway)!r} is not an IPv4 address") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise ConfigError(f"gateway {gw} is not a host address of subnet {net}")
    bridge = _bridge_name(name)
    if bridge in bridges:
        raise NetworkError(f"network {name!r}: bridge name {bridge} is taken by another network")
    from . import host

    if host.link_exists(bridge):
        raise NetworkError(f"network {name!r}: an interface named {bridge} exists already on "
                           f"the host (not isolate's)")
    network = Network(name=name, subnet=net, gateway=gw, bridge=bridge, dns=dns,
                      created=round(time.time(), 3))
    state.write_json(p.definition(name), network.to_json(), durable=True)
    return network


def _free_subnet(have: dict[str, Network], bridges: frozenset[str]) -> ipaddress.IPv4Network:
    for cand in _POOL.subnets(new_prefix=24):
        if any(n.subnet.overlaps(cand) for n in have.values()):
            continue
        if _host_overlap(cand, bridges) is None:
            return cand
    raise NetworkError(f"no free /24 left in {_POOL} for a new network: give one with subnet=")


def get_network(name: str, *, create: bool = False) -> Network:
    """The network ``name``; ``NetworkError`` if there is none.

    ``create``: make the default network (``DEFAULT_NETWORK``) if it does not
    exist yet (only that one: others are made with ``create_network``).
    """
    with state.locked() as p:
        return network_in(p, name, create=create)


def stored(p: state.Paths, name: str) -> Network | None:
    """The definition of network ``name`` (its stored name) under ``p``, or None (under
    the caller's lock)."""
    data = state.read_json(p.definition(name), None) if _NAME.fullmatch(name) else None
    return None if data is None else Network.from_json(data)


def network_in(p: state.Paths, name: str, *, create: bool = False) -> Network:
    """``get_network`` for a caller holding the state's lock (``p``)."""
    name = canonical(name)
    net = stored(p, name)
    if net is not None:
        return net
    if create and name == DEFAULT_NETWORK:
        return _create(p, name, DEFAULT_SUBNET, None, (), _read_all(p))
    raise NetworkError(f"no network named {name!r} (isolate network ls lists them)")


def list_networks() -> list[Network]:
    """Every defined network, by name."""
    with state.locked() as p:
        return list(_read_all(p).values())


def remove_network(name: str) -> None:
    """Remove network ``name``: its bridge and rules, then its definition.

    Refused (``NetworkError``) for an unknown network and for one a live
    container is attached to (naming it); what dead ones left is reclaimed
    first.  Removing the last network undoes every host change isolate made
    (``host``).
    """
    from . import attachment, host, ipam

    name = canonical(name)
    with state.locked() as p:
        net = stored(p, name)
        if net is None:
            raise NetworkError(f"no network named {name!r}")
        attachment.reclaim(p, only=name)
        live = ipam.read(p, name)
        if live:
            who = ", ".join(sorted({f"a NetnsPool of process {le.pid}" if le.pooled else le.name
                                    for le in live.values()}))
            raise NetworkError(f"network {name!r} is in use by {who}")
        host.drop_network(p, net)
        state.remove(p.definition(name))
        import shutil

        for d in (p.leases(name), p.hosts(name), p.resolv(name)):
            shutil.rmtree(d, ignore_errors=True)
        state.remove(p.last(name))
        try:
            os.rmdir(os.path.dirname(p.last(name)))
        except OSError:
            pass          # another network's is there, or none was
        if not _read_all(p):
            host.undo_all(p)
