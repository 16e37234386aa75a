"""Helpers for code run *inside* a fake host (``FakeHost.python``): namespaces, servers, clients.

A "container" here is a network namespace made in the fake host's Python
process (``container()``: an fd, the way a ``NetnsPool`` hands one out).
Sockets opened from a thread that entered a namespace stay in it, so one
process plays every part: ``serve`` answers each TCP connection or UDP
datagram with the address it came from, ``ask`` connects and returns that
answer.  ``run_in`` runs a real program (busybox) in a namespace.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from typing import Any, Callable

CLONE_NEWNET = 0x40000000
_home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def container() -> int:
    """A new network namespace (lo up): an fd on it."""
    from isolate._spawn import netns_new

    return netns_new(home=_home)


def ns_path(fd: int) -> str:
    """A path that opens the namespace ``fd`` (for nsenter)."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def upstream() -> int:
    """The fake host's upstream namespace: an fd on it (its name is in $UPSTREAM)."""
    return os.open(f"/run/netns/{os.environ['UPSTREAM']}", os.O_RDONLY | os.O_CLOEXEC)


def in_ns(fd: int | None, fn: Callable[[], Any]) -> Any:
    """``fn()`` called from a thread in the network namespace ``fd`` (None: this one)."""
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            if fd is not None:
                from isolate._spawn import setns

                setns(fd, CLONE_NEWNET)
            out.append(fn())
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


def serve(fd: int | None, port: int, proto: str = "tcp", tag: str = "") -> None:
    """Answer on ``port`` in namespace ``fd`` with ``tag`` and the peer's address, forever
    (a daemon thread)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        if proto == "tcp":
            s.listen(16)
        return s

    s = in_ns(fd, make)

    def loop() -> None:
        while True:
            if proto == "tcp":
                c, peer = s.accept()
                with c:
                    c.sendall(f"{tag}{peer[0]}".encode())
            else:
                data, peer = s.recvfrom(100)
                s.sendto(f"{tag}{peer[0]}".encode(), peer)

    threading.Thread(target=loop, daemon=True).start()


def ask(fd: int | None, ip: str, port: int, proto: str = "tcp", timeout: float = 3) -> str:
    """What the server at ``ip``:``port`` answers, asked from namespace ``fd``; raises
    OSError (timeout, refused) when nothing does."""
    def go() -> str:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.settimeout(timeout)
            if proto == "tcp":
                s.connect((ip, port))
                return s.recv(100).decode()
            s.sendto(b"?", (ip, port))
            return s.recv(100).decode()

    return str(in_ns(fd, go))


def reachable(fd: int | None, ip: str, port: int, proto: str = "tcp") -> str | None:
    """``ask``'s answer, or None when nothing answers within a second."""
    try:
        return ask(fd, ip, port, proto, timeout=1)
    except OSError:
        return None


def run_in(fd: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run in network namespace ``fd`` (nsenter), capturing text."""
    return subprocess.run(["nsenter", f"--net={ns_path(fd)}", "--", *argv], capture_output=True,
                          text=True, timeout=30)


def links() -> list[str]:
    """The fake host's interface names (not /sys/class/net: that is the machine's sysfs)."""
    r = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return sorted(line.split(": ")[1].split("@")[0] for line in r.stdout.splitlines())


def ruleset() -> str:
    """``nft list ruleset`` of the fake host."""
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                          check=True).stdout


def state_files() -> dict[str, str]:
    """Every file of the network state ($ISOLATE_NET_DIR) but the lock and boot mark, with
    its content."""
    top = os.environ["ISOLATE_NET_DIR"]
    out = {}
    for d, _, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            if f not in ("lock", "boot"):
                with open(p) as fh:
                    out[os.path.relpath(p, top)] = fh.read()
    return out


def sysctls() -> dict[str, str]:
    """Every IPv4 forwarding and route_localnet setting of the fake host, and ip_forward."""
    out = {}
    base = "/proc/sys/net/ipv4/conf"
    for dev in os.listdir(base):
        for key in ("forwarding", "route_localnet"):
            with open(f"{base}/{dev}/{key}") as f:
                out[f"{dev}/{key}"] = f.read().strip()
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        out["ip_forward"] = f.read().strip()
    return out


def snapshot() -> tuple[list[str], str, dict[str, str], dict[str, str]]:
    """What a refused call must leave as it was: links, rules, state files, sysctls."""
    return links(), ruleset(), state_files(), sysctls()
