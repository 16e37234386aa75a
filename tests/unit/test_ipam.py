"""IPAM's choice of address: round-robin over the subnet, as CNI's host-local."""

from __future__ import annotations

import ipaddress

import pytest

from isolate.errors import NetworkError
from isolate.net.ipam import allocate
from isolate.net.network import Network

A = ipaddress.IPv4Address


def net(cidr: str) -> Network:
    subnet = ipaddress.IPv4Network(cidr)
    return Network(name="t", subnet=subnet, gateway=next(subnet.hosts()), bridge="iso-t",
                   dns=(), created=0)


def test_the_address_after_the_last_one_handed_out_never_the_gateway() -> None:
    n = net("10.89.0.0/29")                     # hosts .1 (gateway) to .6
    assert allocate(n, {}) == A("10.89.0.2")
    assert allocate(n, {}, A("10.89.0.2")) == A("10.89.0.3")
    # An address just released is not the next one, even though it is free again.
    assert allocate(n, {A("10.89.0.4"): None}, A("10.89.0.3")) == A("10.89.0.5")  # type: ignore[dict-item]
    # Round the subnet, past the gateway.
    assert allocate(n, {}, A("10.89.0.6")) == A("10.89.0.2")
    assert allocate(n, {}, A("192.0.2.9")) == A("10.89.0.2")    # another subnet's: from the start


def test_a_full_subnet_is_one_clear_line() -> None:
    n = net("10.89.0.0/30")                     # one address besides the gateway
    with pytest.raises(NetworkError, match=r"every address of 10.89.0.0/30 is in use \(1 "):
        allocate(n, {A("10.89.0.2"): None})  # type: ignore[dict-item]
