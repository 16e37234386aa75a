"""The cgroup v1 driver: one directory per v1 hierarchy (memory, cpu, pids, ...).

A child spawned into the group is attached by the C parent, which writes its
pid into every hierarchy's ``tasks`` file (fds opened here once) before the
child runs anything: the child is single-threaded then, and a ``tasks``
write avoids the threadgroup lock of ``cgroup.procs`` (see ``open_dir``).  Freezing needs the freezer hierarchy; the group joins it
lazily, on the first ``freeze()`` or ``kill()``, so that the common
create-spawn-remove cycle pays for one directory fewer.
"""

from __future__ import annotations

import errno as _errno
import os
import signal
from collections.abc import Callable

from ..errors import CgroupError, UnsupportedError
from . import devices as _devices
from ._files import (
    Dir,
    child_path,
    forget_parents,
    make_dirs,
    open_dir,
    remove_dir,
    try_remove_dir,
    wait_until,
)
from .layout import Hierarchy
from .limits import Limits, weight_to_blkio, weight_to_shares

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._owner import Record

__all__ = ["V1Group"]

_TIMEOUT = 30.0
#: ``cpu.cfs_period_us`` of a new v1 cgroup (the kernel's ``default_bw_period_us()``).
_DEFAULT_CFS_PERIOD_US = 100_000


_labels: dict[tuple[str, frozenset[str]], str] = {}


def _label(h: Hierarchy) -> str:
    # Memoized: it names the hierarchy in errors, yet is built on every create.
    key = (h.mount, h.controllers)
    label = _labels.get(key)
    if label is None:
        label = _labels[key] = f"cgroup v1 {','.join(sorted(h.controllers))} hierarchy at {h.mount}"
    return label


class V1Group:
    """One cgroup in each of ``hierarchies``, at ``parent_of(h)/name``.

    ``freezer`` is the freezer hierarchy to join lazily, or None.
    """

    def __init__(self, hierarchies: list[Hierarchy], parent_of: Callable[[Hierarchy], str],
                 name: str, freezer: Hierarchy | None, adopt: bool = False,
                 rec: Record | None = None) -> None:
        self.name = name
        self.adopt = adopt      # join existing directories (made by another process)
        #: The owner record naming every directory this group makes (None: adopted).
        self.rec = rec
        self.parent_of = parent_of
        self.created: list[str] = []
        self.leaves: set[str] = set()
        self.dirs: list[Dir] = []
        self.mounts: list[str] = []
        self.by_ctl: dict[str, Dir] = {}
        self.freezer_h = freezer
        #: Why there is no freezer hierarchy to join although one is mounted (None: not mounted).
        self.no_freezer: str | None = None
        self._announced: set[str] = set()
        if rec is not None:
            # One write names every directory about to be made (the lazy freezer's later).
            leaves = [child_path(h.mount, parent_of(h), name) for h in hierarchies]
            # (make_dirs builds the same paths; one that differs is announced by _make)
            rec.pending(*leaves, role="cgroup")
            self._announced.update(leaves)
        #: Just made and no limit written yet, so every knob holds a new
        #: cgroup's default (``Cgroup.create`` clears it after its own write).
        self.fresh = True
        try:
            for h in hierarchies:
                self._join(h)
        except BaseException:
            if adopt:
                # Another's group, partly missing: let go of it, never kill or remove it.
                for d in self.dirs:
                    d.close()
            else:
                self.remove()
            raise

    def _join(self, h: Hierarchy) -> Dir:
        parent = self.parent_of(h)
        if self.adopt:
            path = os.path.join(h.mount, parent, self.name) if parent else os.path.join(h.mount, self.name)
            if not os.path.isdir(path):
                raise CgroupError(_errno.ENOENT, "no such cgroup", path)
            self.created.append(path)
            self.leaves.add(path)
        else:
            path = self._make(h, parent)
        d = open_dir(path, _label(h), keep_fd=False, spawn_file="tasks")
        if self.rec is not None and not self.adopt:
            # The open tasks file stands for the directory: no second path lookup.
            self.rec.made(path, "cgroup", os.fstat(d.procs_fd), probe="tasks")
        self.dirs.append(d)
        self.mounts.append(h.mount)
        for c in h.controllers:
            self.by_ctl[c] = d
        return d

    def _make(self, h: Hierarchy, parent: str) -> str:
        """mkdir the group (and missing parents) in hierarchy ``h``; returns its path."""
        start = len(self.created)
        rec = self.rec
        parent_path = make_dirs(h.mount, parent, self.created, rec)
        path = f"{parent_path}/{self.name}"
        if rec is not None and path not in self._announced:
            rec.pending(path, role="cgroup")
        try:
            try:
                os.mkdir(path)
            except FileNotFoundError:
                # A parent we knew of was removed by someone else: make it again.
                forget_parents(h.mount)
                parent_path = make_dirs(h.mount, parent, self.created, rec)
                os.mkdir(path)
        except FileExistsError:
            if rec is not None:
                rec.cancel(path)
            raise CgroupError(_errno.EEXIST, "a cgroup of this name already exists", path) from None
        except OSError as e:
            raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: creating the cgroup", path) from None
        self.created.append(path)
        self.leaves.add(path)
        if "cpuset" in h.controllers:
            # A new v1 cpuset starts with no CPUs and no nodes, and a process
            # cannot join it until both are set: inherit the parent's.
            for new in self.created[start:]:
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(new, f), "r+") as fh:
                        if not fh.read().strip():
                            with open(os.path.join(os.path.dirname(new), f)) as up:
                                fh.write(up.read().strip() or "\n")
        return path

    # --- limits ---------------------------------------------------------

    def _dir(self, controller: str) -> Dir:
        return self.by_ctl[controller]

    def apply(self, limits: Limits, controllers: set[str]) -> None:
        """Write the limits whose controller is in ``controllers`` (converted to v1 units)."""
        try:
            self._apply(limits, controllers)
        finally:
            self.fresh = False

    def _apply(self, limits: Limits, controllers: set[str]) -> None:
        if "memory" in controllers and "memory" in self.by_ctl:
            self._apply_memory(self._dir("memory"), limits)
        if "cpu" in controllers and "cpu" in self.by_ctl:
            d = self._dir("cpu")
            cpu_max = limits.cpu_max()
            if cpu_max is not None:
                # A new v1 cpu cgroup starts at the kernel's default period:
                # writing it again would cost an open and a write per create.
                if not (self.fresh and cpu_max[1] == _DEFAULT_CFS_PERIOD_US):
                    d.write("cpu.cfs_period_us", cpu_max[1], field_name="cpu_period_us")
                d.write("cpu.cfs_quota_us", cpu_max[0], field_name="cpus")
            elif limits.cpu_period_us is not None:
                d.write("cpu.cfs_period_us", limits.cpu_period_us, field_name="cpu_period_us")
            if limits.cpu_weight is not None:
                d.write("cpu.shares", weight_to_shares(limits.cpu_weight), field_name="cpu_weight")
            if limits.cpu_shares is not None:
                # As given, as runc writes it: no round trip through a v2 weight.
                d.write("cpu.shares", limits.cpu_shares, field_name="cpu_shares")
            if limits.cpu_burst_us is not None:
                d.write("cpu.cfs_burst_us", limits.cpu_burst_us, field_name="cpu_burst_us")
            if limits.cpu_idle is not None:
                d.write("cpu.idle", int(limits.cpu_idle), field_name="cpu_idle")
            # The period first (runc's order): a runtime is checked against it.
            if limits.cpu_rt_period_us is not None:
                d.write("cpu.rt_period_us", limits.cpu_rt_period_us, field_name="cpu_rt_period_us")
            if limits.cpu_rt_runtime_us is not None:
                d.write("cpu.rt_runtime_us", limits.cpu_rt_runtime_us, field_name="cpu_rt_runtime_us")
        if "cpuset" in controllers and "cpuset" in self.by_ctl:
            d = self._dir("cpuset")
            if limits.cpuset_mems is not None:
                d.write("cpuset.mems", limits.cpuset_mems, field_name="cpuset_mems")
            if limits.cpuset_cpus is not None:
                d.write("cpuset.cpus", limits.cpuset_cpus, field_name="cpuset_cpus")
        if "pids" in controllers and "pids" in self.by_ctl and limits.pids_max is not None:
            self._dir("pids").write("pids.max", limits.pids_max, field_name="pids_max")
        if "blkio" in controllers and "blkio" in self.by_ctl:
            d = self._dir("blkio")
            if limits.io_weight is not None:
                name = "blkio.weight" if d.has("blkio.weight") else "blkio.bfq.weight"
                d.write(name, weight_to_blkio(limits.io_weight), field_name="io_weight")
            for t in limits.io_throttle:
                for key, value in (("read_bps", t.read_bps), ("write_bps", t.write_bps),
                                   ("read_iops", t.read_iops), ("write_iops", t.write_iops)):
                    if value is not None:
                        d.write(f"blkio.throttle.{key}_device", f"{t.devno} {value}",
                                field_name="io_throttle")
        if "devices" in controllers and "devices" in self.by_ctl and limits.devices is not None:
            d = self._dir("devices")
            for fname, line in _devices.v1_lines(limits.devices):
                d.write(fname, line, field_name="devices")
        if "net_cls" in controllers and "net_cls" in self.by_ctl and limits.net_cls_classid is not None:
            self._dir("net_cls").write("net_cls.classid", limits.net_cls_classid, field_name="net_cls_classid")
        if "net_prio" in controllers and "net_prio" in self.by_ctl:
            for ifname, prio in limits.net_prio_ifpriomap:
                self._dir("net_prio").write("net_prio.ifpriomap", f"{ifname} {prio}",
                                            field_name="net_prio_ifpriomap")
        if "hugetlb" in controllers and "hugetlb" in self.by_ctl:
            for hl in limits.hugetlb:
                self._dir("hugetlb").write(f"hugetlb.{hl.name}.limit_in_bytes", hl.max,
                                           field_name="hugetlb")

    @staticmethod
    def _apply_memory(d: Dir, limits: Limits) -> None:
        memsw = limits.memory_memsw_max
        if memsw is None and limits.memory_swap_max is not None and limits.memory_max is not None:
            memsw = limits.memory_max + limits.memory_swap_max
        if limits.memory_max is not None:
            try:
                d.write("memory.limit_in_bytes", limits.memory_max, field_name="memory_max")
            except CgroupError as e:
                # The kernel keeps limit <= memsw: raise memsw first when growing.
                if e.errno != _errno.EINVAL or memsw is None:
                    raise
                d.write("memory.memsw.limit_in_bytes", memsw, field_name="memory_memsw_max")
                d.write("memory.limit_in_bytes", limits.memory_max, field_name="memory_max")
        if memsw is not None:
            if not d.has("memory.memsw.limit_in_bytes"):
                raise UnsupportedError(
                    f"memory.memsw.limit_in_bytes does not exist in {d.path} ({d.hierarchy}): "
                    "swap accounting is off (boot with swapaccount=1) - needed for "
                    "memory_swap_max / memory_memsw_max")
            d.write("memory.memsw.limit_in_bytes", memsw, field_name="memory_memsw_max")
        if limits.memory_high is not None:
            d.write("memory.soft_limit_in_bytes", limits.memory_high, field_name="memory_high")
        if limits.memory_low is not None:
            d.write("memory.soft_limit_in_bytes", limits.memory_low, field_name="memory_low")
        if limits.memory_swappiness is not None:
            d.write("memory.swappiness", limits.memory_swappiness, field_name="memory_swappiness")
        if limits.memory_oom_kill_disable:
            d.write("memory.oom_control", 1, field_name="memory_oom_kill_disable")

    # --- processes --------------------------------------------------------

    def procs_fds(self) -> tuple[int, ...]:
        """The open ``tasks`` fds a new child writes ``0`` to, moving itself in (``CgroupJoin``)."""
        return tuple(d.procs_fd for d in self.dirs)

    def attach(self, pid: int) -> None:
        """Move process ``pid`` into every hierarchy of the group."""
        for d in self.dirs:
            d.attach(pid)

    def procs(self) -> list[int]:
        """Pids in the group (read from its first hierarchy)."""
        return self.dirs[0].procs() if self.dirs else []

    def _freezer(self) -> Dir | None:
        if "freezer" in self.by_ctl:
            return self.by_ctl["freezer"]
        if self.freezer_h is None:
            return None
        d = self._join(self.freezer_h)
        if self.rec is not None:
            self.rec.flush()
        # Processes already running are moved in; a fork racing with the move
        # is caught on the next pass (fork and migration exclude each other).
        for _ in range(1000):
            inside = set(d.procs())
            todo = [p for p in self.procs() if p not in inside]
            if not todo:
                break
            for pid in todo:
                try:
                    d.attach(pid)
                except CgroupError as e:
                    if e.errno != _errno.ESRCH:
                        raise
        return d

    def freeze(self, timeout: float = _TIMEOUT) -> None:
        """Freeze every process (joining the freezer hierarchy first if needed)."""
        d = self._freezer()
        if d is None:
            raise UnsupportedError(self.no_freezer or "the 'freezer' cgroup controller is not mounted "
                                   "(no cgroup v1 freezer hierarchy and no cgroup v2 here)")
        d.write("freezer.state", "FROZEN")
        wait_until(lambda: (d.read("freezer.state") or "").strip() == "FROZEN", timeout,
                   "the cgroup to freeze", d.path)

    def thaw(self) -> None:
        """Let the processes run again."""
        d = self.by_ctl.get("freezer")
        if d is not None:
            d.write("freezer.state", "THAWED")

    def kill(self, timeout: float = _TIMEOUT) -> None:
        """SIGKILL everything: freeze, signal every pid, thaw, repeat until empty."""
        have_freezer = self.freezer_h is not None or "freezer" in self.by_ctl
        where = self.dirs[0].path if self.dirs else ""
        for _ in range(100):
            if not self.procs():
                return
            if have_freezer:
                try:
                    self.freeze(timeout=1.0)
                except CgroupError as e:
                    # A task already exiting can hold the v1 freezer in FREEZING;
                    # SIGKILL still reaches everything that can fork.
                    if e.errno != _errno.ETIMEDOUT:
                        raise
            for pid in self.procs():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if have_freezer:
                self.thaw()
            # Let the signals land before looking for survivors (children
            # forked before the freeze took hold).
            try:
                wait_until(lambda: not self.procs(), 1.0, "the cgroup's processes to exit", where)
                return
            except CgroupError as e:
                if e.errno != _errno.ETIMEDOUT:
                    raise
        wait_until(lambda: not self.procs(), timeout, "the cgroup's processes to exit", where)

    # --- stats ------------------------------------------------------------

    def stats(self, out: dict[str, object]) -> None:
        """Fill ``out`` (CgroupStats field names) from the v1 hierarchies."""
        def put(key: str, value: object) -> None:
            if out.get(key) is None and value is not None:
                out[key] = value

        m = self.by_ctl.get("memory")
        if m is not None:
            put("memory_current", m.read_int("memory.usage_in_bytes"))
            put("memory_peak", m.read_int("memory.max_usage_in_bytes"))
            put("memory_stat", m.read_keyed("memory.stat"))
            oom = (m.read_keyed("memory.oom_control") or {}).get("oom_kill")
            # v1 counts kills only; an OOM that killed nothing is not recorded.
            put("oom", oom)
            put("oom_kill", oom)
        a = self.by_ctl.get("cpuacct")
        if a is not None:
            usage = a.read_int("cpuacct.usage")
            put("cpu_usage_usec", None if usage is None else usage // 1000)
            user, system = a.read_int("cpuacct.usage_user"), a.read_int("cpuacct.usage_sys")
            put("cpu_user_usec", None if user is None else user // 1000)
            put("cpu_system_usec", None if system is None else system // 1000)
        c = self.by_ctl.get("cpu")
        if c is not None:
            st = c.read_keyed("cpu.stat") or {}
            put("nr_periods", st.get("nr_periods"))
            put("nr_throttled", st.get("nr_throttled"))
            t = st.get("throttled_time")
            put("throttled_usec", None if t is None else t // 1000)
        p = self.by_ctl.get("pids")
        if p is not None:
            put("pids_current", p.read_int("pids.current"))
        b = self.by_ctl.get("blkio")
        if b is not None:
            for fname, rkey, wkey in (
                    ("blkio.throttle.io_service_bytes_recursive", "io_read_bytes", "io_write_bytes"),
                    ("blkio.throttle.io_serviced_recursive", "io_read_ops", "io_write_ops")):
                r = w = 0
                for line in (b.read(fname) or "").splitlines():
                    f = line.split()
                    if len(f) == 3 and f[1] == "Read":
                        r += int(f[2])
                    elif len(f) == 3 and f[1] == "Write":
                        w += int(f[2])
                put(rkey, r)
                put(wkey, w)

    # --- teardown ---------------------------------------------------------

    def remove(self) -> None:
        """Kill what is inside, close the fds, rmdir every directory this group made."""
        gone = ""
        try:
            if self.dirs and not self.dirs[0].closed:
                # Usually the group is empty by now, and one rmdir both checks
                # that and removes the first directory: cheaper than reading
                # the pid list first.  Processes are attached to every
                # hierarchy at once, so the first one being empty means the
                # others are too.
                first = self.dirs[0].path
                if try_remove_dir(first):
                    gone = first
                elif self.procs():
                    self.kill()
        finally:
            # Also when killing failed: the group is closed either way.
            for d in self.dirs:
                d.close()
        for path in reversed(self.created):
            if path != gone:
                remove_dir(path, must=path in self.leaves)
        self.created.clear()
        self.leaves.clear()
