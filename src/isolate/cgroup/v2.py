"""The cgroup v2 driver: one directory in the unified hierarchy.

Used on pure v2 hosts for everything, and on hybrid hosts for what only the
unified hierarchy has (e.g. hugetlb here) or when asked for.  Processes are
born in it with ``CLONE_INTO_CGROUP`` (the directory fd from
``spawn_target``).  Freezing (``cgroup.freeze``), killing (``cgroup.kill``)
and CPU accounting (``cpu.stat``) need no controller in v2.
"""

from __future__ import annotations

import errno as _errno
import os
import signal

from ..errors import CgroupError, UnsupportedError
from . import devices as _devices
from ._files import Dir, controllers_of, make_dir, open_dir, parse_psi, remove_dir, wait_until
from .delegation import move_out, privileged
from .layout import V2_CORE, V2_NAME, Hierarchy
from .limits import Limits, shares_to_weight

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._owner import Record

__all__ = ["V2Group"]

_STAT_TIMEOUT = 30.0


def _v2(controller: str) -> str:
    return V2_NAME.get(controller, controller)


def _holds_self(path: str) -> bool:
    """Whether this process is in the v2 cgroup ``path``."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return str(os.getpid()) in f.read().split()
    except OSError:
        return False


class V2Group:
    """A cgroup in the v2 hierarchy ``h`` at ``parent/name``, with ``controllers`` enabled for it.

    ``required`` controllers raise ``UnsupportedError`` if the parent chain
    cannot provide them; the others are dropped quietly.
    """

    def __init__(self, h: Hierarchy, parent: str, name: str, controllers: set[str],
                 required: set[str], adopt: bool = False, rec: Record | None = None) -> None:
        self.h = h
        self.rec = rec          # the owner record naming what this group makes (None: adopted)
        self.created: list[str] = []    # parents made for this cgroup, then the cgroup itself
        self.leaf: str | None = None
        self.dir: Dir | None = None
        self._prog_fd = -1
        wanted = {_v2(c) for c in controllers if c not in V2_CORE}
        need = {_v2(c) for c in required if c not in V2_CORE}
        try:
            path = os.path.join(h.mount, parent, name) if parent else os.path.join(h.mount, name)
            if adopt:
                # A cgroup another process made: take it as it is.
                if not os.path.isdir(path):
                    raise CgroupError(_errno.ENOENT, "no such cgroup", path)
                with open(os.path.join(path, "cgroup.controllers")) as f:
                    self.enabled = wanted & set(f.read().split())
                self.created.append(path)
                self.leaf = path
                self.dir = open_dir(path, f"cgroup v2 at {h.mount}", keep_fd=True)
                return
            self.enabled = self._enable_chain(parent, wanted, need)
            if rec is not None:
                rec.pending(path, role="cgroup")
            try:
                try:
                    os.mkdir(path)
                except FileNotFoundError:
                    # A parent was removed meanwhile (a reclaim by another process): again.
                    self.enabled = self._enable_chain(parent, wanted, need)
                    os.mkdir(path)
            except OSError as e:
                if rec is not None:
                    rec.cancel(path)
                msg = "a cgroup of this name already exists" if e.errno == _errno.EEXIST else e.strerror
                raise CgroupError(e.errno or _errno.EIO, msg, path) from None
            self.created.append(path)
            self.leaf = path
            self.dir = open_dir(path, f"cgroup v2 at {h.mount}", keep_fd=True)
            if rec is not None:
                rec.made(path, "cgroup", os.fstat(self.dir.fd))
        except BaseException:
            self.remove()
            raise

    def _enable_chain(self, parent: str, wanted: set[str], need: set[str]) -> set[str]:
        # Each ancestor from the mount down to the parent must list a controller
        # in cgroup.subtree_control for the new cgroup to get its files.
        path = self.h.mount
        parts = [p for p in parent.split("/") if p]
        for i in range(len(parts) + 1):
            if i:
                path = os.path.join(path, parts[i - 1])
                make_dir(path, self.created, self.rec)
            if not wanted:
                continue
            avail, on = controllers_of(path)
            missing = need - avail
            if missing:
                raise UnsupportedError(
                    f"cgroup v2 controller(s) {', '.join(sorted(missing))} not available in "
                    f"{path} (not in its cgroup.controllers; enable them in the parent's "
                    f"cgroup.subtree_control)")
            wanted &= avail
            todo = wanted - on
            if todo:
                try:
                    self._enable(path, todo)
                except OSError as e:
                    if e.errno in (_errno.EACCES, _errno.EPERM, _errno.EROFS) and not todo & need:
                        # Controllers only stats() would use, not delegated here: go without.
                        wanted -= todo
                        continue
                    if e.errno == _errno.EBUSY:
                        raise CgroupError(e.errno or _errno.EIO, f"cannot enable {' '.join(sorted(todo))}: "
                                          "the cgroup has processes in it (cgroup v2 allows "
                                          "controllers only for cgroups without member "
                                          "processes); choose another parent",
                                          path) from None
                    raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: enabling {' '.join(sorted(todo))}",
                                      path) from None
        return wanted

    @staticmethod
    def _enable(path: str, todo: set[str]) -> None:
        """Enable ``todo`` in ``path``'s ``cgroup.subtree_control``.

        A caller without root whose own (delegated) cgroup holds it moves the
        cgroup's processes into a leaf first and tries again: the
        no-internal-processes rule (``delegation.move_out``).
        """
        line = " ".join(f"+{c}" for c in sorted(todo))
        try:
            with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
                f.write(line)
            return
        except OSError as e:
            if e.errno != _errno.EBUSY or privileged() or not _holds_self(path):
                raise
        move_out(path)
        with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
            f.write(line)

    # --- limits ---------------------------------------------------------

    def apply(self, limits: Limits, controllers: set[str]) -> None:
        """Write the limits whose controller (v1 name) is in ``controllers``."""
        d = self.dir
        assert d is not None
        if "memory" in controllers:
            if limits.memory_max is not None:
                d.write("memory.max", limits.memory_max, field_name="memory_max")
            if limits.memory_high is not None:
                d.write("memory.high", limits.memory_high, field_name="memory_high")
            if limits.memory_low is not None:
                d.write("memory.low", limits.memory_low, field_name="memory_low")
            swap = limits.memory_swap_max
            if limits.memory_memsw_max is not None and limits.memory_max is not None:
                swap = limits.memory_memsw_max - limits.memory_max
            if swap is not None:
                d.write("memory.swap.max", swap, field_name="memory_swap_max")
        if "cpu" in controllers:
            cpu_max = limits.cpu_max()
            if cpu_max is not None:
                d.write("cpu.max", f"{cpu_max[0]} {cpu_max[1]}", field_name="cpus")
            elif limits.cpu_period_us is not None:
                d.write("cpu.max", f"max {limits.cpu_period_us}", field_name="cpu_period_us")
            if limits.cpu_weight is not None:
                d.write("cpu.weight", limits.cpu_weight, field_name="cpu_weight")
            if limits.cpu_shares is not None:
                # runc's and crun's mapping of [2, 262144] onto [1, 10000].
                d.write("cpu.weight", shares_to_weight(limits.cpu_shares), field_name="cpu_shares")
            if limits.cpu_burst_us is not None:
                d.write("cpu.max.burst", limits.cpu_burst_us, field_name="cpu_burst_us")
            if limits.cpu_idle is not None:
                d.write("cpu.idle", int(limits.cpu_idle), field_name="cpu_idle")
        if "cpuset" in controllers:
            if limits.cpuset_cpus is not None:
                d.write("cpuset.cpus", limits.cpuset_cpus, field_name="cpuset_cpus")
            if limits.cpuset_mems is not None:
                d.write("cpuset.mems", limits.cpuset_mems, field_name="cpuset_mems")
        if "pids" in controllers and limits.pids_max is not None:
            d.write("pids.max", limits.pids_max, field_name="pids_max")
        if "blkio" in controllers:
            if limits.io_weight is not None:
                name = "io.weight" if d.has("io.weight") else "io.bfq.weight"
                d.write(name, f"default {limits.io_weight}", field_name="io_weight")
            for t in limits.io_throttle:
                keys = [f"{k}={'max' if v is None else v}" for k, v in
                        (("rbps", t.read_bps), ("wbps", t.write_bps),
                         ("riops", t.read_iops), ("wiops", t.write_iops))]
                d.write("io.max", f"{t.devno} {' '.join(keys)}", field_name="io_throttle")
        if "hugetlb" in controllers:
            for hl in limits.hugetlb:
                d.write(f"hugetlb.{hl.name}.max", hl.max, field_name="hugetlb")
        if "devices" in controllers and limits.devices is not None:
            self._set_devices(limits)
        for key, value in limits.unified:
            # Last, as runc writes them: a file named here overrides a field above.
            d.write(key, value, field_name=f"unified[{key!r}]")

    def _set_devices(self, limits: Limits) -> None:
        from .. import _bpf   # the compiled module, only where device rules are used

        d = self.dir
        assert d is not None and limits.devices is not None
        prog = _bpf.load_device_program(_devices.bpf_program(limits.devices))
        try:
            _bpf.attach_device_program(prog, d.fd, d.path)
        except BaseException:
            os.close(prog)
            raise
        if self._prog_fd >= 0:
            # The new program is attached before the old one goes: no moment without rules.
            _bpf.detach_device_program(self._prog_fd, d.fd, d.path)
            os.close(self._prog_fd)
        self._prog_fd = prog

    # --- processes --------------------------------------------------------

    def spawn_fd(self) -> int:
        """The directory fd for ``CLONE_INTO_CGROUP``."""
        assert self.dir is not None
        return self.dir.fd

    def attach(self, pid: int) -> None:
        """Move process ``pid`` here."""
        assert self.dir is not None
        self.dir.attach(pid)

    def procs(self) -> list[int]:
        """Pids of the processes in the cgroup."""
        assert self.dir is not None
        return self.dir.procs()

    def populated(self) -> bool:
        """Whether any live process is in the cgroup (``cgroup.events``)."""
        assert self.dir is not None
        events = self.dir.read_keyed("cgroup.events") or {}
        return bool(events.get("populated", 0))

    def freeze(self, timeout: float = _STAT_TIMEOUT) -> None:
        """Freeze every process and wait until the kernel reports ``frozen 1``."""
        d = self.dir
        assert d is not None
        d.write("cgroup.freeze", 1)
        wait_until(lambda: (d.read_keyed("cgroup.events") or {}).get("frozen") == 1,
                   timeout, "the cgroup to freeze", d.path)

    def thaw(self) -> None:
        """Let the processes run again."""
        assert self.dir is not None
        self.dir.write("cgroup.freeze", 0)

    def kill(self, timeout: float = _STAT_TIMEOUT) -> None:
        """SIGKILL everything inside and wait until nothing is left running."""
        d = self.dir
        assert d is not None
        if d.has("cgroup.kill"):
            d.write("cgroup.kill", 1)
        else:
            # Before 5.14: freeze so nothing can fork, signal, thaw so the signals land.
            for _ in range(100):
                if not self.populated():
                    break
                self.freeze(timeout)
                for pid in self.procs():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.thaw()
        wait_until(lambda: not self.populated(), timeout, "the cgroup's processes to exit", d.path)

    # --- stats ------------------------------------------------------------

    def stats(self, out: dict[str, object]) -> None:
        """Fill ``out`` (CgroupStats field names) with what this cgroup reports."""
        d = self.dir
        assert d is not None
        ctl = self.enabled

        def put(key: str, value: object) -> None:
            if out.get(key) is None and value is not None:
                out[key] = value

        if "memory" in ctl:
            put("memory_current", d.read_int("memory.current"))
            put("memory_peak", d.read_int("memory.peak"))
            put("memory_stat", d.read_keyed("memory.stat"))
            ev = d.read_keyed("memory.events") or {}
            put("oom", ev.get("oom"))
            put("oom_kill", ev.get("oom_kill"))
        cpu = d.read_keyed("cpu.stat") or {}
        put("cpu_usage_usec", cpu.get("usage_usec"))
        put("cpu_user_usec", cpu.get("user_usec"))
        put("cpu_system_usec", cpu.get("system_usec"))
        put("nr_periods", cpu.get("nr_periods"))
        put("nr_throttled", cpu.get("nr_throttled"))
        put("throttled_usec", cpu.get("throttled_usec"))
        if "pids" in ctl:
            put("pids_current", d.read_int("pids.current"))
        if "io" in ctl:
            totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
            for line in (d.read("io.stat") or "").splitlines():
                for pair in line.split()[1:]:
                    k, _, v = pair.partition("=")
                    if k in totals:
                        totals[k] += int(v)
            put("io_read_bytes", totals["rbytes"])
            put("io_write_bytes", totals["wbytes"])
            put("io_read_ops", totals["rios"])
            put("io_write_ops", totals["wios"])
        psi = {}
        for res in ("cpu", "memory", "io"):
            p = parse_psi(d.read(f"{res}.pressure"))
            if p is not None:
                psi[res] = p
        put("psi", psi or None)

    # --- teardown ---------------------------------------------------------

    def remove(self) -> None:
        """Kill what is inside, close every fd, rmdir the cgroup and the parents it made."""
        if self.dir is not None and not self.dir.closed:
            if self.populated():
                self.kill()
            if self._prog_fd >= 0:
                os.close(self._prog_fd)
                self._prog_fd = -1
            self.dir.close()
        for path in reversed(self.created):
            remove_dir(path, must=path == self.leaf)
        self.created.clear()
        self.leaf = None
