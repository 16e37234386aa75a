"""A made-up "host" and "upstream" in network namespaces of the test's own.

The network tests never touch the machine's network.  ``FakeHost`` makes two
network namespaces with ``ip netns add`` (names ``isolate-test-<pid>-<n>-host``
and ``-upstream``), joined by a veth pair:

    host   up0  192.0.2.1/24  (default route via 192.0.2.2; lo up)
    upstream eth0 192.0.2.2/24  (the outside world: servers run here)

(192.0.2.0/24 is TEST-NET-1, RFC 5737: never routed anywhere.)  isolate runs
*inside* the host namespace (``run``/``popen``: ``nsenter --net``), with its
network state in a directory of the test's (``$ISOLATE_NET_DIR``), so the
bridges, nftables tables and forwarding settings it makes are the fake
host's.  ``close()`` kills what the test started there (by pid) and deletes
both namespaces, which takes every interface and rule in them along.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

HOST_IP = "192.0.2.1"
UPSTREAM_IP = "192.0.2.2"
_counter = itertools.count()


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


class FakeHost:
    """A host network namespace with an upstream behind it; isolate state in ``state``."""

    def __init__(self, state: str | os.PathLike[str]) -> None:
        n = next(_counter)
        base = f"isolate-test-{os.getpid()}-{n}"
        self.host = f"{base}-host"
        self.upstream = f"{base}-upstream"
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        self._procs: list[subprocess.Popen[Any]] = []
        made: list[str] = []
        try:
            for ns in (self.host, self.upstream):
                _ip("netns", "add", ns)
                made.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            # Short names: at most 15 bytes, unique per fake host within its namespaces.
            _ip("-n", self.host, "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
                "netns", self.upstream)
            _ip("-n", self.host, "addr", "add", f"{HOST_IP}/24", "dev", "up0")
            _ip("-n", self.upstream, "addr", "add", f"{UPSTREAM_IP}/24", "dev", "eth0")
            _ip("-n", self.host, "link", "set", "up0", "up")
            _ip("-n", self.upstream, "link", "set", "eth0", "up")
            _ip("-n", self.host, "route", "add", "default", "via", UPSTREAM_IP)
        except BaseException:
            for ns in made:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            raise

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for isolate in the host: this test's isolate, its state directory."""
        import isolate

        top = str(Path(isolate.__file__).resolve().parent.parent)
        return {**os.environ, "PYTHONPATH": top, "ISOLATE_NET_DIR": str(self.state),
                **(extra or {})}

    def _argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}", "--", *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the host namespace (isolate's state: ``state``), capturing text."""
        kw.setdefault("env", self.env())
        return subprocess.run(self._argv(self.host, argv), capture_output=True, text=True,
                              timeout=timeout, **kw)

    def python(self, code: str, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` (with this isolate importable) in the host namespace."""
        return self.run([sys.executable, "-c", code, *args], timeout=timeout, **kw)

    def popen(self, argv: Sequence[str], *, upstream: bool = False, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in the host namespace (or upstream's); ``close()`` kills it."""
        kw.setdefault("env", self.env())
        p = subprocess.Popen(self._argv(self.upstream if upstream else self.host, argv), **kw)
        self._procs.append(p)
        return p

    def upstream_run(self, argv: Sequence[str], *, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the upstream namespace (the outside world), capturing text."""
        return subprocess.run(self._argv(self.upstream, argv), capture_output=True, text=True,
                              timeout=timeout, **kw)

    def ip(self, *args: str, upstream: bool = False) -> str:
        """``ip ARGS`` in the host namespace (or upstream's): its output."""
        r = subprocess.run(["ip", "-n", self.upstream if upstream else self.host, *args],
                           capture_output=True, text=True, check=True)
        return r.stdout

    def close(self) -> None:
        """Kill what was started here (by pid), then delete both namespaces."""
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()
        self._procs.clear()
        for ns in (self.host, self.upstream):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
