"""A network namespace attached to a bridged network: ``attach`` and ``Attachment``.

``attach(network, netns_fd, name=...)`` gives the namespace ``netns_fd``
(a container's, made ahead or from a ``NetnsPool``) an address on
``network``: a lease (``ipam``), the network's bridge, rules and forwarding
(``host``, made by the first attach), a veth pair (``eth0`` inside, made in
the namespace directly; the host end on the bridge), the address, ``eth0`` up
and a default route through the gateway (set from a short-lived thread that
enters the namespace: the caller never moves), published ports (``nft``),
and the files to bind-mount as the container's ``/etc/hosts`` and
``/etc/resolv.conf``.  Everything runs in the caller's network namespace,
which is the "host", under the state lock (``state``).

The hosts files of a network (``<run>/hosts/<network>/<container>``) list
every container attached to it, by name and hostname; they are rewritten in
place (same inode: they are bind-mounted) whenever one comes or goes.

Crash consistency: a lease names its owner (the attaching process, then the
container's first process after ``hand_over``).  When that owner is gone,
``reclaim`` (run by every ``attach`` for its network, by ``remove_network``,
and by ``isolate gc`` through ``sweep``) deletes the veth, the port rules,
the hosts entry and the lease.

Ahead of a start: ``make_link`` (a ``NetnsPool(network=...)``'s thread)
leases an address for a namespace the pool keeps ready (a ``pooled``
lease, owned by the pool's process), makes its veth pair and configures
``eth0`` whole (address, route, up, sysctls).  ``attach(..., link=...)``
then only turns that lease into the container's (its name, owner and
ports) and writes the names; ``release_link`` gives back one never
attached.  ``Attachment.close_later`` lets the pool's thread close an
attachment after the start's caller is done with it; an ``attach`` that
needs its name closes it at once.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
import warnings
from typing import Any, Sequence

from .._record import dataclass
from ..errors import ConfigError, NetworkError
from . import host, ipam, state
from .network import HOSTS_HEAD, Network, check_dns, network_in, stored
from .ports import PortMapping, PublishLike, publish_list

__all__ = ["Attachment", "Link", "attach", "make_link", "reclaim", "release_link", "sweep"]

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_CLONE_NEWNET = 0x40000000


class Attachment:
    """A network namespace's place on a bridged network (see ``attach``).

    ``address`` (with the prefix), ``gateway``, ``ifname`` (``eth0``, in the
    namespace), ``host_ifname`` (the veth's host end), ``mac`` (eth0's),
    ``hosts_path`` and ``resolv_path`` (the files to bind-mount on
    ``/etc/hosts`` and ``/etc/resolv.conf``; ``resolv_path`` is None when
    there is no resolver to give), ``publish``.  ``close()`` undoes it.
    """

    def __init__(self, *, network: Network, address: ipaddress.IPv4Interface, host_ifname: str,
                 mac: str, name: str, hosts_path: str, resolv_path: str | None,
                 publish: tuple[PortMapping, ...], paths: state.Paths) -> None:
        self.network = network
        self.address = address
        self.gateway = network.gateway
        self.ifname = "eth0"
        self.host_ifname = host_ifname
        self.mac = mac
        self.name = name
        self.hosts_path = hosts_path
        self.resolv_path = resolv_path
        self.publish = publish
        self._paths = paths
        self._pid = os.getpid()
        self._closed = False
        self._handed = False

    def __repr__(self) -> str:
        return (f"<Attachment {self.name} {self.address} on {self.network.name} "
                f"({self.host_ifname}){' closed' if self._closed else ''}>")

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran."""
        return self._closed

    def hand_over(self, pid: int) -> None:
        """Make process ``pid`` (the container's first) the lease's owner: when it is gone,
        ``isolate gc`` reclaims what this attachment holds even if the caller still runs.
        ``NetworkError`` if ``pid`` is not running or the lease was reclaimed."""
        owner = ipam.me(pid)
        with state.locked(self._paths) as p:
            leases = ipam.read(p, self.network.name)
            le = leases.get(self.address.ip)
            if le is None or le.veth != self.host_ifname:
                raise NetworkError(f"network {self.network.name!r}: the lease of {self.name} "
                                   f"({self.address.ip}) is gone (reclaimed)")
            leases[self.address.ip] = _replace(le, pid=owner[0], start=owner[1], boot=owner[2],
                                               pidns=owner[3])
            ipam.write(p, self.network.name, leases)
        self._handed = True

    def close(self, *, keep_link: bool = False) -> None:
        """Undo the attachment: the veth (if still there), the lease, the port rules, this
        container's hosts entry in the others' files, its own files.  Idempotent; a forked
        child's copy does nothing.  Runs in the network namespace ``attach`` ran in
        (``NetworkError`` otherwise).

        ``keep_link``: leave the veth to the kernel, which removes it with the container's
        network namespace once that is gone (a ``Container``'s own, or a pooled one: never
        used again).  Deleting it here waits for the kernel (about 25 ms); the address it
        had is not handed out again before the others (``ipam.allocate``)."""
        if self._closed or self._pid != os.getpid():
            return
        with state.locked(self._paths) as p:
            if self._closed:
                return                 # (closed meanwhile, by another thread)
            leases = ipam.read(p, self.network.name)
            le = leases.get(self.address.ip)
            if le is not None and le.veth == self.host_ifname:
                if le.netns != host.netns_id():
                    raise NetworkError(f"{self.name}: close() must run in the network namespace "
                                       f"attach() ran in (net:[{le.netns}]), not in "
                                       f"net:[{host.netns_id()}]")
                _release(p, self.network.name, [le], leases, delete_links=not keep_link)
            # (else reclaimed already: its owner looked gone)
            self._closed = True
            key = (p.run, self.network.name, self.name)
            if _closing.get(key) is self:
                del _closing[key]

    def close_later(self) -> None:
        """Say that ``close(keep_link=True)`` will run soon, from another thread of this
        process (a ``NetnsPool``'s), off the caller's path: until then the lease, its
        name and its hosts entries stay, and an ``attach`` of this name closes it at once.
        A process killed before that leaves a lease of a dead owner: reclaimed."""
        if not self._closed and self._pid == os.getpid():
            _closing[(self._paths.run, self.network.name, self.name)] = self

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and not self._handed and self._pid == os.getpid():
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)


#: (state's run dir, network, name) -> an attachment whose close was deferred (``close_later``).
_closing: dict[tuple[str, str, str], Attachment] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """What ``make_link`` made ahead for a network namespace: the veth pair (``veth``, its
    host end, in ``network``'s bridge; eth0 with MAC ``mac`` inside) and the ``pooled``
    lease of ``address``, which eth0 has already, with its route."""

    network: str
    veth: str
    mac: str
    address: ipaddress.IPv4Address


def _replace(le: ipam.Lease, **kw: Any) -> ipam.Lease:
    from .._record import replace

    return replace(le, **kw)


def _check_netns(fd: object, host_ns: int) -> int:
    """``fd`` if it is a network namespace other than the caller's; ``ConfigError`` if not."""
    import fcntl
    import stat

    if type(fd) is not int or fd < 0:
        raise ConfigError(f"netns_fd must be a file descriptor of a network namespace, got {fd!r}")
    try:
        st = os.fstat(fd)
        nsfs = os.stat("/proc/thread-self/ns/net").st_dev
        kind = fcntl.ioctl(fd, 0xB703) if stat.S_ISREG(st.st_mode) and st.st_dev == nsfs else 0
    except OSError as e:
        raise ConfigError(f"netns_fd {fd}: {e.strerror}") from None
    if kind != _CLONE_NEWNET:                      # NS_GET_NSTYPE, <linux/nsfs.h>
        raise ConfigError(f"netns_fd {fd} is not a network namespace")
    if st.st_ino == host_ns:
        raise ConfigError(f"netns_fd {fd} is the caller's own network namespace (the host's)")
    return fd


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{what} must be 1 to 63 of [a-zA-Z0-9_.-], starting with a letter "
                          f"or digit, got {name!r}")
    return name


# --- files given to the container ------------------------------------------------


def _write_in_place(path: str, text: str) -> None:
    """Write ``path`` keeping its inode (it may be bind-mounted into a container)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _hosts_line(le: ipam.Lease) -> str:
    names = le.hostname if le.hostname == le.name else f"{le.hostname} {le.name}"
    return f"{le.address}\t{names}\n"


def _rewrite_hosts(p: state.Paths, network: str,
                   leases: dict[ipaddress.IPv4Address, ipam.Lease]) -> None:
    """Every member's hosts file written whole: localhost, itself, the others by address."""
    members = sorted((le for le in leases.values() if not le.pooled), key=lambda le: le.address)
    lines = [_hosts_line(le) for le in members]
    os.makedirs(p.hosts(network), mode=0o755, exist_ok=True)
    for i, le in enumerate(members):
        text = "".join([HOSTS_HEAD, lines[i], *lines[:i], *lines[i + 1:]])
        _write_in_place(p.hosts(network, le.name), text)


def _add_host(p: state.Paths, network: str, new: ipam.Lease,
              leases: dict[ipaddress.IPv4Address, ipam.Lease]) -> None:
    """``new`` joined: its own file written whole, its line appended to the others' (cheaper
    than rewriting them all, and a reader never sees a file cut short)."""
    others = sorted((le for le in leases.values() if le.address != new.address and not le.pooled),
                    key=lambda le: le.address)
    line = _hosts_line(new)
    os.makedirs(p.hosts(network), mode=0o755, exist_ok=True)
    _write_in_place(p.hosts(network, new.name),
                    "".join([HOSTS_HEAD, line, *(_hosts_line(le) for le in others)]))
    data = line.encode()
    for le in others:
        try:
            fd = os.open(p.hosts(network, le.name),
                         os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            _rewrite_hosts(p, network, leases)      # a file went missing: make them all again
            return
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _nameservers(path: str) -> tuple[list[str], list[str]]:
    """(nameservers, search/options lines) of a resolv.conf."""
    servers: list[str] = []
    other: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    servers.append(words[1])
                elif words and words[0] in ("search", "domain", "options"):
                    other.append(" ".join(words))
    except OSError:
        pass
    return servers, other


def _unusable(addr: str) -> bool:
    """A host resolver a container cannot reach: loopback (the host's own), or IPv6 (a
    bridged container has IPv4 only)."""
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return True
    return ip.is_loopback or ip.version == 6


def _file_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


#: (the keys of the host's two resolv.conf files, the text made of them, or None)
_resolv_cache: tuple[tuple[Any, Any], str | None] | None = None


def resolv_text(dns: Sequence[str]) -> str | None:
    """The container's resolv.conf: ``dns`` if any, else the host's IPv4 resolvers (those
    of systemd-resolved's upstream file when the host has only loopback ones, which a
    container cannot reach, as podman does); None, with a warning, when there are none
    to give.  The host's files are read again only when they change."""
    global _resolv_cache
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    key = (_file_key("/etc/resolv.conf"), _file_key("/run/systemd/resolve/resolv.conf"))
    got = _resolv_cache
    if got is None or got[0] != key:
        got = _resolv_cache = (key, _host_resolv())
    text = got[1]
    if text == "":
        warnings.warn("isolate: the host's resolvers are all on loopback (unreachable from "
                      "a container) and /run/systemd/resolve/resolv.conf names no other: "
                      "the container gets no resolv.conf (give dns=)", RuntimeWarning,
                      stacklevel=3)
    return text or None


def _host_resolv() -> str | None:
    """The host's usable resolvers as a resolv.conf; "" when they are all unreachable (a
    warning's case), None when there are none."""
    servers, other = _nameservers("/etc/resolv.conf")
    usable = [s for s in servers if not _unusable(s)]
    if not usable and servers:
        up, up_other = _nameservers("/run/systemd/resolve/resolv.conf")
        usable = [s for s in up if not _unusable(s)]
        other = up_other
        if not usable:
            return ""
    if not usable:
        return None
    return "".join(f"{line}\n" for line in other) + "".join(f"nameserver {s}\n" for s in usable)


# --- published ports --------------------------------------------------------------


def _overlap(a: PortMapping, b: PortMapping) -> bool:
    return (a.host_port, a.protocol) == (b.host_port, b.protocol) and (
        a.host_ip is None or b.host_ip is None or a.host_ip == b.host_ip)


def _check_ports(p: state.Paths, publish: tuple[PortMapping, ...]) -> None:
    """Refuse a port isolate publishes already (any network) or one in use on the host."""
    from .network import _read_all

    for net in _read_all(p).values():
        for le in ipam.read(p, net.name).values():
            for other in le.publish:
                for m in publish:
                    if _overlap(m, other) and le.alive():
                        raise NetworkError(f"publish: host port {m.host_port}/{m.protocol} is "
                                           f"published already, by {le.name} on network "
                                           f"{net.name!r}")
    for m in publish:
        kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((m.host_ip or "0.0.0.0", m.host_port))
            except OSError as e:
                if e.errno == 99 and m.host_ip:       # EADDRNOTAVAIL
                    raise NetworkError(f"publish: host address {m.host_ip} is not an address "
                                       f"of this host") from None
                raise NetworkError(f"publish: host port {m.host_port}/{m.protocol} is in use "
                                   f"on the host ({e.strerror})") from None


# --- attach -----------------------------------------------------------------------


def _setup_inside(netns_fd: int, address: ipaddress.IPv4Interface,
                  gateway: ipaddress.IPv4Address, *, up: bool = True) -> None:
    """Address, up and default route for eth0 in ``netns_fd``, and Docker's sysctls there
    (any port bound, any group pings: container root in a user namespace of its own
    holds no capability over a namespace the host made): the C core's
    ``iso_net_config``, from a thread of its own that enters the namespace (IPv4
    ioctls, about 0.3 ms).  Raises OSError naming eth0."""
    from .._spawn import net_config

    net_config(netns_fd, "eth0", str(address.ip), address.network.prefixlen, str(gateway), up=up)


def _link_names() -> tuple[str, str]:
    """A new veth name and a new (locally administered) MAC."""
    return "veth" + secrets.token_hex(4), "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


def _new_link(bridge: int, netns_fd: int, veth: str, mac: str) -> None:
    """A veth pair: its host end ``veth`` in the bridge of index ``bridge``, up, in hairpin
    mode; its other end ``eth0`` (MAC ``mac``) in ``netns_fd``."""
    with host.lock:
        r = host.ipr()
        r.link("add", ifname=veth, kind="veth", master=bridge, state="up",
               peer={"ifname": "eth0", "net_ns_fd": netns_fd, "address": mac})
        try:
            # Hairpin: with br_netfilter loaded (Docker loads it), a container's answer to
            # itself through a published port is bridged back out of the port it came in
            # by, which a bridge refuses unless told.
            r.brport("set", index=socket.if_nametoindex(veth), mode=1)
        except BaseException:
            host.delete_link(veth)
            raise


def make_link(network: str, netns_fd: int) -> Link:
    """Everything of a start on ``network`` that needs no name, ahead, for the network
    namespace ``netns_fd`` (a ``NetnsPool(network=...)``'s thread calls it): a ``pooled``
    lease of the next address, owned by this process (reclaimed once it is gone), then a
    veth pair (eth0 inside, its host end in the network's bridge, made if missing) and
    eth0 configured whole (address, default route, up, the sysctls).  ``attach(...,
    link=...)`` makes the lease the container's; ``release_link`` gives back one never
    attached (a namespace that goes takes its pair along).  ``NetworkError`` as
    ``attach``, with nothing left behind."""
    owner = ipam.me()
    netns = host.netns_id()
    _check_netns(netns_fd, netns)
    veth, mac = _link_names()
    with state.locked() as p:
        net = _network_named(p, network)
        bridge, _ = host.ensure(p, net)
        reclaim(p, only=net.name)
        leases = ipam.read(p, net.name)
        addr = _next_address(p, net, leases)
        lease = ipam.Lease(address=addr, name="(pooled)", hostname="(pooled)", pid=owner[0],
                           start=owner[1], boot=owner[2], pidns=owner[3], netns=netns,
                           veth=veth, mac=mac, pooled=True)
        leases[addr] = lease
        ipam.write(p, net.name, leases)          # before the veth: a crash leaves it reclaimable
        state.write_json(p.last(net.name), str(addr), compact=True)
    link = Link(network=net.name, veth=veth, mac=mac, address=addr)
    # Out of the state's lock, which a start's attach takes: this is what is slow.
    try:
        try:
            _new_link(bridge, netns_fd, veth, mac)
        except Exception as e:
            raise NetworkError(f"network {net.name!r}: making a veth pair: {_why(e)}") from e
        iface = ipaddress.IPv4Interface(f"{addr}/{net.subnet.prefixlen}")
        try:
            _setup_inside(netns_fd, iface, net.gateway)
        except Exception as e:
            host.delete_link(veth)
            raise NetworkError(f"network {net.name!r}: configuring eth0 ({iface}): "
                               f"{_why(e)}") from e
    except BaseException:
        release_link(link)
        raise
    return link


def release_link(link: Link) -> None:
    """Give back the pooled lease of ``link`` if it is still one (never attached); the
    veth pair goes with its namespace.  Idempotent."""
    with state.locked() as p:
        leases = ipam.read(p, link.network)
        le = leases.get(link.address)
        if le is not None and le.pooled and le.veth == link.veth:
            _release(p, link.network, [le], leases, delete_links=False)


def _network_named(p: state.Paths, network: Network | str) -> Network:
    """``network`` as stored (under the lock); the default one made on first use."""
    if not isinstance(network, Network):
        return network_in(p, network, create=True)
    net = stored(p, network.name)
    if net is None:
        raise NetworkError(f"no network named {network.name!r}")
    return net


def _next_address(p: state.Paths, net: Network,
                  leases: dict[ipaddress.IPv4Address, ipam.Lease]) -> ipaddress.IPv4Address:
    """The address to lease next on ``net``: round-robin from the one handed out last."""
    last = state.read_json(p.last(net.name), None)
    return ipam.allocate(net, leases, None if last is None else ipaddress.IPv4Address(last))


def _name_free(p: state.Paths, net: Network, name: str,
               leases: dict[ipaddress.IPv4Address, ipam.Lease]
               ) -> dict[ipaddress.IPv4Address, ipam.Lease]:
    """The leases of ``net`` once ``name`` is known free there (an attachment of this
    process's whose close is pending is closed now); ``NetworkError`` if it is taken."""
    pending = _closing.get((p.run, net.name, name))
    if pending is not None:
        pending.close(keep_link=True)
        leases = ipam.read(p, net.name)
    for le in leases.values():
        if le.name == name and not le.pooled:
            raise NetworkError(f"network {net.name!r} has a container named {name!r} "
                               f"already ({le.address})")
    return leases


def _give_files(p: state.Paths, net: Network, lease: ipam.Lease,
                leases: dict[ipaddress.IPv4Address, ipam.Lease], dns: tuple[str, ...]) -> str | None:
    """The names (``lease``'s hosts file, its line in the others') and its resolv.conf;
    the latter's path, or None when there is no resolver to give."""
    _add_host(p, net.name, lease, leases)
    text = resolv_text(dns or net.dns)
    if text is None:
        return None
    resolv = p.resolv(net.name, lease.name)
    try:
        _write_in_place(resolv, text)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(resolv), mode=0o755, exist_ok=True)
        _write_in_place(resolv, text)
    return resolv


def attach(network: Network | str, netns_fd: int, *, name: str, hostname: str | None = None,
           publish: Sequence[PublishLike] = (), dns: Sequence[str] | None = None,
           link: Link | None = None) -> Attachment:
    """Put the network namespace ``netns_fd`` on ``network`` (a ``Network`` or a name;
    ``"bridge"`` and ``DEFAULT_NETWORK`` make the default network on first use).

    ``name``: the container's name on the network (unique there: others reach
    it by it), ``hostname`` its other name; ``publish``: host ports forwarded
    to it (``PortMapping`` or the forms of ``ports``); ``dns``: its resolvers
    (default: the network's, else the host's).  Runs in the caller's network
    namespace (the host); needs root.  The caller owns the result until
    ``hand_over``; ``close()`` undoes it.  Raises ``ConfigError`` for bad
    input, ``NetworkError`` (one line, nothing left behind) for an unknown
    network, a name taken on it, a port published already or in use, or a
    failing step.  ``link``: what ``make_link`` made for ``netns_fd`` on this
    network (its veth pair, eth0 configured, the pooled lease): the lease
    becomes the container's, and nothing else is made.  Containers of the
    network resolve the new one by name when this returns.
    """
    _check_name(name, "container name")
    hostname = name if hostname is None else _check_name(hostname, "hostname")
    ports = publish_list(publish)
    want_dns = check_dns(dns)
    owner = ipam.me()
    netns = host.netns_id()
    _check_netns(netns_fd, netns)
    if link is not None:
        return _attach_pooled(network, link, name=name, hostname=hostname, ports=ports,
                              dns=want_dns, owner=owner)
    with state.locked() as p:
        net = _network_named(p, network)        # as stored, whatever the caller's copy says
        reclaim(p, only=None if ports else net.name)
        leases = _name_free(p, net, name, ipam.read(p, net.name))
        if ports:
            _check_ports(p, ports)
        addr = _next_address(p, net, leases)
        veth, mac = _link_names()
        lease = ipam.Lease(address=addr, name=name, hostname=hostname, pid=owner[0],
                           start=owner[1], boot=owner[2], pidns=owner[3], netns=netns,
                           veth=veth, mac=mac, publish=ports)
        leases[addr] = lease
        ipam.write(p, net.name, leases)          # before the veth: a crash leaves it reclaimable
        made = False
        try:
            bridge, made = host.ensure(p, net)
            iface = ipaddress.IPv4Interface(f"{addr}/{net.subnet.prefixlen}")
            try:
                _new_link(bridge, netns_fd, veth, mac)
            except Exception as e:
                raise NetworkError(f"network {net.name!r}: making veth {veth} for {name}: "
                                   f"{_why(e)}") from e
            try:
                _setup_inside(netns_fd, iface, net.gateway)
            except Exception as e:
                raise NetworkError(f"network {net.name!r}: configuring eth0 of {name} "
                                   f"({iface}): {_why(e)}") from e
            state.write_json(p.last(net.name), str(addr), compact=True)
            if ports and not made:            # (made: ensure loaded the table, ports and all)
                host.add_ports(p, [(m, str(addr)) for m in ports])
            resolv = _give_files(p, net, lease, leases, want_dns)
        except BaseException:
            _undo(p, net, lease, made=made)
            raise
    return Attachment(network=net, address=iface, host_ifname=veth, mac=mac, name=name,
                      hosts_path=p.hosts(net.name, name), resolv_path=resolv, publish=ports,
                      paths=p)


def _attach_pooled(network: Network | str, link: Link, *, name: str, hostname: str,
                   ports: tuple[PortMapping, ...], dns: tuple[str, ...],
                   owner: tuple[int, int, str, int]) -> Attachment:
    """``attach`` with a ``make_link``'s ``link``: its pooled lease becomes the container's."""
    with state.locked() as p:
        net = _network_named(p, network)
        if net.name != link.network:
            raise ConfigError(f"link: made for network {link.network!r}, not {net.name!r}")
        reclaim(p, only=None if ports else net.name)
        leases = _name_free(p, net, name, ipam.read(p, net.name))
        pooled = leases.get(link.address)
        if pooled is None or not pooled.pooled or pooled.veth != link.veth:
            raise NetworkError(f"network {net.name!r}: the pooled lease of {link.address} "
                               f"({link.veth}) is gone")
        if ports:
            _check_ports(p, ports)
        lease = _replace(pooled, name=name, hostname=hostname, pid=owner[0], start=owner[1],
                         boot=owner[2], pidns=owner[3], publish=ports, pooled=False)
        leases[link.address] = lease
        ipam.write(p, net.name, leases)
        try:
            if ports:
                host.add_ports(p, [(m, str(link.address)) for m in ports])
            resolv = _give_files(p, net, lease, leases, dns)
        except BaseException:
            _undo(p, net, lease, made=False)
            raise
    iface = ipaddress.IPv4Interface(f"{link.address}/{net.subnet.prefixlen}")
    return Attachment(network=net, address=iface, host_ifname=link.veth, mac=link.mac,
                      name=name, hosts_path=p.hosts(net.name, name), resolv_path=resolv,
                      publish=ports, paths=p)


def _undo(p: state.Paths, net: Network, lease: ipam.Lease, *, made: bool) -> None:
    """Undo a failed attach's ``lease`` (under the lock); the host side too when ``made``
    for it and nothing else uses it.  A failure to undo is a warning: the first error is
    the one to report, and ``isolate gc`` retries."""
    try:
        rest = ipam.read(p, net.name)
        _release(p, net.name, [lease], rest)
        if made and not rest:
            host.drop_network(p, net)   # made for this attach only: not left half-used
    except Exception as e:
        warnings.warn(f"isolate: undoing a failed attach of {lease.name}: {e} (isolate gc "
                      f"retries)", RuntimeWarning, stacklevel=3)


def _why(e: BaseException) -> str:
    """An error's reason in one line (pyroute2's NetlinkError carries the errno as .code)."""
    code = getattr(e, "code", None)
    if isinstance(code, int) and code > 0 and not isinstance(e, OSError):
        return os.strerror(code)
    if isinstance(e, OSError) and e.errno and e.strerror:
        return e.strerror
    return " ".join(str(e).split()) or type(e).__name__


def _release(p: state.Paths, network: str, gone: Sequence[ipam.Lease],
             leases: dict[ipaddress.IPv4Address, ipam.Lease], *,
             delete_links: bool = True) -> None:
    """Remove ``gone`` leases and what came with them (under the lock); their veths too,
    unless not ``delete_links`` (their namespaces take them along)."""
    for le in gone:
        if delete_links:
            host.delete_link(le.veth)
        leases.pop(le.address, None)
        if not le.pooled:             # (a pooled lease has no files, and is named in none)
            state.remove(p.hosts(network, le.name))
            state.remove(p.resolv(network, le.name))
    ipam.write(p, network, leases)
    if any(le.publish for le in gone):
        host.rebuild_table(p)
    if leases and not all(le.pooled for le in gone):
        _rewrite_hosts(p, network, leases)


def reclaim(p: state.Paths, *, only: str | None = None,
            dry_run: bool = False) -> list[tuple[str, ipam.Lease]]:
    """Release the leases whose owner is gone (of network ``only``, or of all), under the
    lock; returns (network, lease) of each.  Leases made in another network namespace
    are left: their veth cannot be reached from here."""
    found: list[tuple[str, ipam.Lease]] = []
    if only is not None:
        names = [only]
    else:
        try:
            names = sorted(os.listdir(os.path.join(p.run, "leases")))
        except FileNotFoundError:
            names = []
    netns = host.netns_id()
    for network in names:
        leases = ipam.read(p, network)
        dead = [le for le in leases.values() if le.netns == netns and not le.alive()]
        if not dead:
            continue
        found += [(network, le) for le in dead]
        if not dry_run:
            _release(p, network, dead, leases)
    return found


def sweep(*, dry_run: bool = False) -> list[tuple[str, ipam.Lease]]:
    """``isolate gc``'s part: reclaim every dead owner's lease (``reclaim``), then take down
    bridges whose network no longer exists, and undo every host change when no network is
    left.  Returns the leases reclaimed (or, ``dry_run``, that would be)."""
    p = state.paths()
    if not os.path.isdir(p.run):
        return []
    with state.locked(p):
        found = reclaim(p, dry_run=dry_run)
        if dry_run:
            return found
        from .network import _read_all

        nets = _read_all(p)
        for netname, bridge in host.bridges(p).items():
            if netname not in nets:
                host.drop_bridge(p, netname, bridge)
        if os.path.exists(p.host) and (not nets or not host.bridges(p)):
            host.undo_all(p)          # (no bridge left: what a crash mid-undo left)
    return found
