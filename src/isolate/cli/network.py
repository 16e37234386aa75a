"""``isolate network create|ls|inspect|rm``: bridged networks (root)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._help import HelpFormatter

EPILOG = """\
examples:
  # a network of its own (a free 10.89.N.0/24 unless --subnet is given):
  $ isolate network create --subnet 10.89.250.0/24 --dns 192.0.2.53 isolate-example
  $ isolate network ls
  $ isolate network inspect isolate-example
  # refused while a container is attached to it; the last one removed undoes
  # every change isolate made to the host's network:
  $ isolate network rm isolate-example
"""


def add_parser(sub: Any) -> None:
    """Register ``network`` with the ``isolate`` command's subparsers."""
    p = sub.add_parser(
        "network", help="manage bridged networks (create, ls, inspect, rm)",
        description="Manage the bridged networks containers attach to (root): each has a "
                    "subnet, a gateway (its bridge's address) and resolvers.  The bridge and "
                    "its NAT rules are made by the first container that attaches and stay "
                    "while the network exists.  The default network, 'isolate' "
                    "(10.88.0.0/16), is made on first use.  State: $ISOLATE_NET_DIR, else "
                    "/var/lib/isolate/networks and /run/isolate/networks.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    q = verbs.add_parser("create", help="define a network", epilog=EPILOG,
                         formatter_class=HelpFormatter,
                         description="Define network NAME.  Refused when the name exists or "
                                     "the subnet overlaps another network or an address or "
                                     "route of the host.")
    q.add_argument("--subnet", metavar="CIDR", default=None,
                   help="its IPv4 subnet (default: the first free 10.89.N.0/24)")
    q.add_argument("--gateway", metavar="IP", default=None,
                   help="the bridge's address (default: the subnet's first host address)")
    q.add_argument("--dns", metavar="IP", action="append", default=None,
                   help="a resolver its containers get (repeatable; default: the host's)")
    q.add_argument("name", metavar="NAME")
    q = verbs.add_parser("ls", help="list the networks", epilog=EPILOG,
                         formatter_class=HelpFormatter,
                         description="List the networks: NAME, SUBNET, GATEWAY, BRIDGE.")
    q.add_argument("--json", action="store_true", help="one JSON list of objects instead of a table")
    q = verbs.add_parser("inspect", help="show a network as JSON", epilog=EPILOG,
                         formatter_class=HelpFormatter,
                         description="Print each NAME's definition as one JSON list.")
    q.add_argument("names", nargs="+", metavar="NAME")
    q = verbs.add_parser("rm", help="remove networks", epilog=EPILOG,
                         formatter_class=HelpFormatter,
                         description="Remove each NAME (its bridge and rules too); refused "
                                     "for one a running container is attached to.")
    q.add_argument("names", nargs="+", metavar="NAME")


def main(args: argparse.Namespace) -> int:
    """Run ``network VERB``; returns the exit status (1 when a NAME failed)."""
    from ..errors import IsolateError
    from ..net import network as n

    try:
        if args.verb == "create":
            net = n.create_network(args.name, args.subnet, args.gateway, dns=args.dns)
            print(net.name)
            return 0
        if args.verb == "ls":
            nets = n.list_networks()
    except OSError as e:          # the state directories (not root: Permission denied)
        print(f"isolate: network {args.verb}: {e}", file=sys.stderr)
        return 1
    if args.verb == "ls":
        if args.json:
            print(json.dumps([x.to_json() for x in nets]))
            return 0
        table = [("NAME", "SUBNET", "GATEWAY", "BRIDGE")]
        table += [(x.name, str(x.subnet), str(x.gateway), x.bridge) for x in nets]
        widths = [max(len(t[i]) for t in table) for i in range(3)]
        for t in table:
            print("  ".join(t[i].ljust(widths[i]) for i in range(3)) + "  " + t[3])
        return 0
    status = 0
    out = []
    for name in args.names:
        try:
            if args.verb == "inspect":
                out.append(n.get_network(name).to_json())
            else:
                n.remove_network(name)
                print(name)
        except (IsolateError, OSError) as e:
            print(f"isolate: network {args.verb}: {e}", file=sys.stderr)
            status = 1
    if args.verb == "inspect":
        print(json.dumps(out, indent=1))
    return status
