"""Published ports: ``PortMapping`` and the ``--publish`` / ``publish=`` forms that make one.

``publish=[(8080, 80)]`` or ``--publish 8080:80`` (``-p``) forwards the
host's port 8080 to the container's port 80, TCP unless ``/udp`` is given;
``127.0.0.1:8080:80`` binds it to one host address only.  The forms are
podman's and docker's (without their ranges and random host ports).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, Sequence, Union

from ..errors import ConfigError

__all__ = ["PortMapping", "parse_publish", "publish_list", "PublishLike"]

Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True)
class PortMapping:
    """The host's ``host_port`` (on ``host_ip``, or on every address of the host when None)
    forwarded to the container's ``container_port``, for ``protocol`` (``tcp``/``udp``)."""

    host_port: int
    container_port: int
    protocol: Protocol = "tcp"
    host_ip: str | None = None

    def __post_init__(self) -> None:
        for what, port in (("host port", self.host_port), ("container port", self.container_port)):
            if type(port) is not int or not 1 <= port <= 65535:
                raise ConfigError(f"publish: {what} must be 1 to 65535, got {port!r}")
        if self.protocol not in ("tcp", "udp"):
            raise ConfigError(f"publish: protocol must be 'tcp' or 'udp', got {self.protocol!r}")
        if self.host_ip is not None:
            try:
                addr = ipaddress.ip_address(self.host_ip)
            except ValueError:
                raise ConfigError(f"publish: host address {self.host_ip!r} is not an IP address") from None
            if addr.version != 4:
                raise ConfigError(f"publish: host address {self.host_ip!r}: only IPv4 is published")
            object.__setattr__(self, "host_ip", str(addr))

    def __str__(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{self.host_port}:{self.container_port}/{self.protocol}"


#: What ``publish=`` takes per port: a ``PortMapping``, ``"[IP:]HOST:CONTAINER[/PROTO]"``,
#: or ``(host_port, container_port[, protocol])``.
PublishLike = Union[PortMapping, str, tuple[int, int], tuple[int, int, str]]


def parse_publish(text: str) -> PortMapping:
    """``"[IP:]HOST:CONTAINER[/tcp|/udp]"`` as a ``PortMapping``; ``ConfigError`` naming the
    text when it is not one."""
    if not isinstance(text, str):
        raise ConfigError(f"publish: expected 'HOST:CONTAINER[/PROTO]', got {text!r}")
    spec, _, proto = text.partition("/")
    parts = spec.split(":")
    if len(parts) == 3:
        ip: str | None = parts[0] or None
        ports = parts[1:]
    elif len(parts) == 2:
        ip, ports = None, parts
    else:
        raise ConfigError(f"publish: {text!r} is not [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]")
    try:
        host, inside = (int(p, 10) for p in ports)
    except ValueError:
        raise ConfigError(f"publish: {text!r}: ports must be numbers") from None
    if proto not in ("", "tcp", "udp"):
        raise ConfigError(f"publish: {text!r}: protocol must be tcp or udp, got {proto!r}")
    return PortMapping(host, inside, "udp" if proto == "udp" else "tcp", ip)


def publish_list(value: Sequence[PublishLike] | None) -> tuple[PortMapping, ...]:
    """``publish=`` checked: each item a ``PortMapping`` (from any accepted form), no host
    port given twice for the same protocol and address (``ConfigError`` naming it)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, PortMapping)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"publish must be a list of ports, got {value!r}")
    out: list[PortMapping] = []
    for item in value:
        if isinstance(item, PortMapping):
            m = item
        elif isinstance(item, str):
            m = parse_publish(item)
        elif isinstance(item, tuple) and len(item) in (2, 3):
            m = PortMapping(*item)
        else:
            raise ConfigError(f"publish: expected 'HOST:CONTAINER[/PROTO]' or (host, container"
                              f"[, proto]), got {item!r}")
        out.append(m)
    for i, m in enumerate(out):
        for other in out[:i]:
            if (other.host_port, other.protocol) == (m.host_port, m.protocol) and (
                    None in (m.host_ip, other.host_ip) or m.host_ip == other.host_ip):
                raise ConfigError(f"publish: host port {m.host_port}/{m.protocol} is given "
                                  f"twice ({other} and {m})")
    return tuple(out)
