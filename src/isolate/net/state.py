"""Where the bridged networks' state lives, the lock over it, and crash-safe writes.

Two directories: definitions (``<dir>/networks/`` with ``$ISOLATE_NET_DIR``
set, else ``/var/lib/isolate/networks``), one ``<name>.json`` per network,
kept across boots; and runtime state (``<dir>/run/``, else
``/run/isolate/networks``): the leases (``leases/<network>/<address>``), the
ledger of host changes (``host.json``), the hosts and resolv.conf files
given to containers (``hosts/<network>/<container>``,
``resolv/<network>/<container>``).  The runtime directory names the boot it
belongs to (``boot``): state of another boot is stale (its bridges, rules
and veths went with that boot) and is dropped the first time it is locked.

Every change happens under one exclusive ``flock`` on ``<run>/lock``
(re-entrant within a process: a thread that holds it may take it again), and
every file is written to a temporary name and renamed over the old one, so a
crash leaves the old version or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
from typing import Any, Iterator

from .._registry import boot_id

__all__ = ["Paths", "locked", "paths", "read_json", "write_json", "remove"]


class Paths:
    """The state directories in use (from ``$ISOLATE_NET_DIR`` at the time of the call)."""

    __slots__ = ("defs", "run")

    def __init__(self, defs: str, run: str) -> None:
        #: The definitions' directory (kept across boots).
        self.defs = defs
        #: The runtime state's directory (leases, ledger, hosts and resolv.conf files).
        self.run = run

    @property
    def host(self) -> str:
        """The ledger of host changes."""
        return os.path.join(self.run, "host.json")

    def leases(self, network: str) -> str:
        """The directory of ``network``'s leases (a file per address)."""
        return os.path.join(self.run, "leases", network)

    def hosts(self, network: str, container: str = "") -> str:
        """The hosts file of ``container`` on ``network`` (or their directory)."""
        return os.path.join(self.run, "hosts", network, container)

    def resolv(self, network: str, container: str = "") -> str:
        """The resolv.conf of ``container`` on ``network`` (or their directory)."""
        return os.path.join(self.run, "resolv", network, container)

    def last(self, network: str) -> str:
        """The address ``network`` handed out last (IPAM goes on from the next one)."""
        return os.path.join(self.run, "last", network)

    def definition(self, network: str) -> str:
        """The definition file of ``network``."""
        return os.path.join(self.defs, f"{network}.json")


def paths() -> Paths:
    """The state directories: under ``$ISOLATE_NET_DIR`` if set, else the system's."""
    top = os.environ.get("ISOLATE_NET_DIR")
    if top:
        return Paths(os.path.join(top, "networks"), os.path.join(top, "run"))
    return Paths("/var/lib/isolate/networks", "/run/isolate/networks")


_tlock = threading.RLock()
_held: dict[str, tuple[int, int]] = {}      # run dir -> (fd, depth), while this process holds it
#: run dir -> (inode, mtime) of its boot mark when this process last found it ours: a stat
#: instead of a read at every lock (a mark written again is read again).
_checked: dict[str, tuple[int, int]] = {}


def _after_fork_in_child() -> None:
    global _tlock
    _tlock = threading.RLock()
    for fd, _ in _held.values():
        try:
            os.close(fd)       # the child holds no lock of its parent's
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def locked(p: Paths | None = None) -> Iterator[Paths]:
    """Hold the state's exclusive lock (made on first use; a stale boot's state dropped)."""
    p = p or paths()
    with _tlock:
        held = _held.get(p.run)
        if held is not None:
            _held[p.run] = (held[0], held[1] + 1)
            try:
                yield p
            finally:
                fd, depth = _held[p.run]
                _held[p.run] = (fd, depth - 1)
            return
        os.makedirs(p.run, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(p.run, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _check_boot(p)
            _held[p.run] = (fd, 1)
            try:
                yield p
            finally:
                del _held[p.run]
        finally:
            os.close(fd)


def _check_boot(p: Paths) -> None:
    """Drop runtime state written during another boot (under the lock)."""
    mark = os.path.join(p.run, "boot")
    try:
        st = os.stat(mark)
        if _checked.get(p.run) == (st.st_ino, st.st_mtime_ns):
            return
        with open(mark, encoding="ascii") as f:
            if f.read().strip() == boot_id():
                _checked[p.run] = (st.st_ino, st.st_mtime_ns)
                return
    except FileNotFoundError:
        pass
    for name in ("leases", "hosts", "resolv", "host.json"):
        path = os.path.join(p.run, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
    write_text(mark, boot_id() + "\n")


def read_json(path: str, default: Any) -> Any:
    """The JSON in ``path``, ``default`` if there is no such file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return default
    return json.loads(data.decode("utf-8"))


def write_text(path: str, text: str, *, durable: bool = False) -> None:
    """Write ``path`` atomically (a temporary file renamed over it); ``durable``: fsync too."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)


def write_json(path: str, value: Any, *, durable: bool = False, compact: bool = False) -> None:
    """Write ``value`` as JSON to ``path`` atomically (see ``write_text``); ``compact``: on one
    line (C's encoder: for files written at every container start)."""
    text = json.dumps(value) if compact else json.dumps(value, indent=1, sort_keys=True)
    write_text(path, text + "\n", durable=durable)


def remove(path: str) -> None:
    """Remove the file ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
