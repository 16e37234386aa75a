"""The runtime's verbs on a running container's cgroup: ``events`` (and ``--stats``), ``update``.

Like the verbs of ``runtime``, each opens the group ``create`` recorded in
state.json (``cgroups.open_cgroup``); a container run without one (rootless,
nothing delegated) has nothing to report or update, and says so.
"""

from __future__ import annotations

import time

from ..errors import ConfigError, UnsupportedError
from .cgroups import open_cgroup
from .runtime import _load
from .state import RuntimeError_

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["events", "stats", "update"]


def stats(root: str, cid: str) -> dict[str, Any]:
    """runc's ``events --stats`` object: cpu, memory, pids and blkio counters."""
    sd, st = _load(root, cid)
    with sd:
        if sd.status(st) == "stopped":
            raise RuntimeError_("container not running")
        cg = open_cgroup(st)
        if cg is None:
            raise UnsupportedError("stats need the container's cgroup; it has none")
        try:
            s = cg.stats()
        finally:
            cg.detach()
    data = {
        "cpu": {"usage": {"total": (s.cpu_usage_usec or 0) * 1000, "user": (s.cpu_user_usec or 0) * 1000,
                          "kernel": (s.cpu_system_usec or 0) * 1000},
                "throttling": {"periods": s.nr_periods or 0, "throttledPeriods": s.nr_throttled or 0,
                               "throttledTime": (s.throttled_usec or 0) * 1000}},
        "memory": {"usage": {"usage": s.memory_current or 0, "max": s.memory_peak or 0},
                   "stats": s.memory_stat or {}},
        "pids": {"current": s.pids_current or 0},
        "blkio": {"ioServiceBytesRecursive": [
            {"op": "Read", "value": s.io_read_bytes or 0}, {"op": "Write", "value": s.io_write_bytes or 0}]},
    }
    return {"type": "stats", "id": cid, "data": data}


def events(root: str, cid: str, *, interval: float = 5.0, once: bool = False,
           out: Callable[[dict[str, Any]], None] = print) -> None:
    """Print stats every ``interval`` seconds until the container stops (``once``: one line)."""
    first = True
    while True:
        try:
            out(stats(root, cid))
        except (RuntimeError_, LookupError):
            if once or first:
                raise
            return          # the container stopped or was deleted: the stream ends
        first = False
        if once:
            return
        time.sleep(interval)


def update(root: str, cid: str, resources: dict[str, Any]) -> None:
    """Apply OCI ``linux.resources`` (a JSON object) to the running container's cgroup."""
    from . import spec as S
    from .convert import _Out, _resources

    try:
        linux = S.Linux.from_json({"resources": resources}, "linux")
    except ConfigError as e:
        raise ConfigError(f"--resources: {e}") from None
    limits = _resources(linux, _Out())
    sd, st = _load(root, cid, exclusive=True)
    with sd:
        if sd.status(st) == "stopped":
            raise RuntimeError_("container not running")
        if limits is None:
            return
        cg = open_cgroup(st)
        if cg is None:
            raise UnsupportedError("update needs the container's cgroup; it has none")
        try:
            cg.apply(limits)
        finally:
            cg.detach()
