"""isolate's nftables table (``ip isolate``): built whole from the state, loaded in one transaction.

The table is the only one isolate touches.  Each change rebuilds it from the
networks whose bridges exist and the live leases' published ports, and loads
it with ``nft -j -f -`` as one transaction (``flush table``, the rules; with
``add table`` and the chains first when they may be missing): atomic, and
idempotent whatever rules were there.

The rules, per network (``SUBNET`` on bridge ``BR``):

- ``postrouting`` (nat): ``ip saddr SUBNET ip daddr != SUBNET masquerade``
  (outbound); ``ip saddr SUBNET ip daddr SUBNET ct status dnat masquerade``
  (hairpin: a container reaching a published port of its own network through
  the host's address gets its answer back through the host);
  ``ip saddr 127.0.0.0/8 oifname BR masquerade`` (the host reaching a
  published port on 127.0.0.1: needs ``route_localnet`` on ``BR``).
- ``forward`` (filter, policy accept): ``iifname BR accept``,
  ``oifname BR accept`` (what a drop policy added by the admin elsewhere
  would need; harmless otherwise).

Per published port (``HOST_IP``: the mapping's ``host_ip``, else any
address of the host: ``fib daddr type local``): ``prerouting`` (traffic
from outside and from containers) and ``output`` (the host's own, loopback
included) ``[ip daddr HOST_IP | fib daddr type local] PROTO dport PORT dnat
to ADDRESS:CPORT``.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any, Iterable, Sequence

from ..errors import NetworkError
from .ports import PortMapping

__all__ = ["FAMILY", "TABLE", "build", "build_ports", "load", "delete"]

#: The table's family: IPv4.
FAMILY = "ip"
#: The table's name: the only table isolate touches.
TABLE = "isolate"

_T = {"family": FAMILY, "table": TABLE}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ip(field: str) -> dict[str, Any]:
    return {"payload": {"protocol": "ip", "field": field}}


def _prefix(net: ipaddress.IPv4Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _rule(chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"add": {"rule": {**_T, "chain": chain, "expr": list(expr)}}}


def _chain(name: str, type: str, hook: str, prio: int) -> dict[str, Any]:
    return {"add": {"chain": {**_T, "name": name, "type": type, "hook": hook, "prio": prio,
                              "policy": "accept"}}}


def build(networks: Iterable[tuple[ipaddress.IPv4Network, str]],
          ports: Sequence[tuple[PortMapping, str]], *, chains: bool = True) -> dict[str, Any]:
    """The transaction that makes the table hold exactly the rules of ``networks`` (subnet,
    bridge) and ``ports`` (mapping, container address).

    ``chains``: add the table and its chains too (a no-op for those that exist, but
    about 12 ms more: nft then compares them with the kernel's); without, the
    transaction fails when the table or a chain is missing.
    """
    table = {"table": {"family": FAMILY, "name": TABLE}}
    cmds: list[dict[str, Any]] = [{"add": table}, {"flush": table}] if chains else [
        {"flush": table}]
    if chains:
        cmds += [_chain("prerouting", "nat", "prerouting", -100),
                 _chain("output", "nat", "output", -100),
                 _chain("postrouting", "nat", "postrouting", 100),
                 _chain("forward", "filter", "forward", 0)]
    for subnet, bridge in networks:
        cmds.append(_rule("postrouting", _match(_ip("saddr"), _prefix(subnet)),
                          _match(_ip("daddr"), _prefix(subnet), "!="), {"masquerade": None}))
        cmds.append(_rule("postrouting", _match(_ip("saddr"), _prefix(subnet)),
                          _match(_ip("daddr"), _prefix(subnet)),
                          _match({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None}))
        cmds.append(_rule("postrouting", _match(_ip("saddr"), _prefix(
            ipaddress.IPv4Network("127.0.0.0/8"))), _match(_meta("oifname"), bridge),
            {"masquerade": None}))
        cmds.append(_rule("forward", _match(_meta("iifname"), bridge), {"accept": None}))
        cmds.append(_rule("forward", _match(_meta("oifname"), bridge), {"accept": None}))
    cmds += _port_rules(ports)
    return {"nftables": cmds}


def _port_rules(ports: Sequence[tuple[PortMapping, str]]) -> list[dict[str, Any]]:
    cmds = []
    for m, addr in ports:
        dest = (_match(_ip("daddr"), m.host_ip) if m.host_ip else
                _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"))
        dport = _match({"payload": {"protocol": m.protocol, "field": "dport"}}, m.host_port)
        dnat = {"dnat": {"addr": addr, "port": m.container_port}}
        for chain in ("prerouting", "output"):
            cmds.append(_rule(chain, dest, dport, dnat))
    return cmds


def build_ports(ports: Sequence[tuple[PortMapping, str]]) -> dict[str, Any]:
    """The transaction that adds the rules of ``ports`` to the table as it is.

    Adding rules costs about 3 ms; removing any (a rebuild) about 15 ms more, as
    the kernel waits for readers of the old rules to be done: so a container start
    adds its ports' rules, and its end rebuilds the table.
    """
    return {"nftables": _port_rules(ports)}


def _run(doc: dict[str, Any], what: str) -> None:
    try:
        r = subprocess.run(["nft", "-j", "-f", "-"], input=json.dumps(doc), capture_output=True,
                           text=True, timeout=30)
    except FileNotFoundError:
        raise NetworkError("nftables: the 'nft' command is not installed (Debian: apt install "
                           "nftables)") from None
    if r.returncode != 0:
        msg = " ".join(r.stderr.split()) or f"exit status {r.returncode}"
        raise NetworkError(f"nftables: {what} table {FAMILY} {TABLE}: {msg}")


def load(doc: dict[str, Any]) -> None:
    """Load a transaction made by ``build``; ``NetworkError`` with nft's message if refused."""
    _run(doc, "loading")


def delete() -> None:
    """Delete the table if it exists (nothing else)."""
    table = {"table": {"family": FAMILY, "name": TABLE}}
    _run({"nftables": [{"add": table}, {"delete": table}]}, "deleting")
