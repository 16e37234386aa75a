"""Container networking: bridged networks with NAT, published ports and names; rootless too.

A container's network is one of:

- ``"none"`` (the default): a namespace of its own with only ``lo``;
- ``"host"``: the caller's namespace;
- ``"bridge"``: the default network, ``isolate`` (created on first use);
- the name of a network made with ``create_network`` (``isolate network create``).

A bridged container (root) gets a veth pair: ``eth0`` inside, with an
address from the network's subnet (``ipam``: leases kept on disk under a
lock, each owned by a live process, so no address is handed out twice and
a dead owner's is reclaimed), a default route through the network's
gateway (the bridge's address), and ``/etc/hosts`` (every container of the
network by name, kept current as they come and go) and ``/etc/resolv.conf``
(the host's resolvers, or ``dns=``).  Outbound traffic is masqueraded;
``publish=`` forwards host ports to it (from other hosts, from the host to
itself on any of its addresses, loopback included, and from containers of
the network: hairpin).  NAT and port forwarding are rules in one nftables
table of isolate's own (``nft``'s JSON interface); no other table is
touched.  Netlink work is pyroute2's.  Every change made to the host (the
bridge, the table, forwarding on the interfaces that need it) is written
down in ``<state>/host.json`` before it is made and undone when the last
network is removed, or by ``isolate gc``.

Without root, ``"bridge"`` gives a container outbound traffic and
published ports through pasta (Debian's ``passt``) or slirp4netns, chosen
as podman chooses (``rootless``).

The state lives under ``$ISOLATE_NET_DIR`` when set (the tests give each
of their "hosts" one), else ``/var/lib/isolate/networks`` (definitions)
and ``/run/isolate/networks`` (leases, host changes: gone at boot, as the
bridges are).

The interfaces between the parts:

``network``
    ``Network`` (name, subnet, gateway, bridge, dns), ``create_network``,
    ``get_network``, ``list_networks``, ``remove_network``, ``DEFAULT_NETWORK``.
``attach``
    ``attach(network, netns_fd, name=..., hostname=..., publish=..., dns=...)
    -> Attachment``: everything a bridged container needs, made in the
    caller's network namespace (the "host"), for the network namespace
    ``netns_fd`` (the container's, made ahead or taken from a
    ``NetnsPool``).  ``Attachment.hand_over(pid)`` makes the container's
    first process its owner (``isolate gc`` reclaims it when that process is
    gone); ``Attachment.close()`` undoes it (idempotent).
    ``attachment.make_link(network, netns_fd) -> Link`` does ahead what
    needs no name (a ``pooled`` lease owned by the caller, the veth pair,
    eth0 configured: a ``NetnsPool(network=...)``'s thread calls it) for
    ``attach(..., link=...)``; ``attachment.release_link`` gives back one
    never attached.
``rootless``
    ``start(pid, publish=..., dns=...) -> RootlessNet`` for a caller without
    root: pasta or slirp4netns for the user and network namespaces of
    ``pid`` (a held container child's).
``ports``
    ``PortMapping``, ``parse_publish``, ``publish_list``.

The root side's modules: ``network`` (definitions), ``state`` (directories,
lock, atomic writes, boot check), ``ipam`` (leases), ``host`` (the bridge,
forwarding and the ledger), ``nft`` (the table), ``attachment`` (``attach``).  Every one of
them works in the caller's network namespace; ``isolate gc`` reclaims dead
owners' leases through ``attachment.sweep``.  (The module is ``attachment``,
not ``attach``: that name is the function's.)
"""

from __future__ import annotations

from .._lazy import lazy_names

TYPE_CHECKING = False

# public name -> the module of isolate.net that defines it
_LAZY = {
    **dict.fromkeys(["PortMapping", "parse_publish"], "ports"),
    **dict.fromkeys(["DEFAULT_NETWORK", "Network", "create_network", "get_network",
                     "list_networks", "remove_network"], "network"),
    **dict.fromkeys(["Attachment", "attach"], "attachment"),
    **dict.fromkeys(["RootlessNet"], "rootless"),
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)


if TYPE_CHECKING:  # static names for type checkers (``X as X``: re-exported)
    from .attachment import Attachment as Attachment, attach as attach
    from .network import (DEFAULT_NETWORK as DEFAULT_NETWORK, Network as Network,
                          create_network as create_network, get_network as get_network,
                          list_networks as list_networks, remove_network as remove_network)
    from .ports import PortMapping as PortMapping, parse_publish as parse_publish
    from .rootless import RootlessNet as RootlessNet
