"""``Limits`` and the rule types it holds: one set of units for every cgroup version.

Callers write bytes, microseconds, CPUs and v2-style weights; the drivers
convert (``cpu_weight`` becomes ``cpu.shares`` on v1 as crun documents it,
``memory_max`` becomes ``memory.limit_in_bytes``, ``IoThrottle`` becomes
``blkio.throttle.*`` or ``io.max``).  Everything is validated in
``__post_init__``: a bad value raises ``ConfigError`` naming the field and the
value, before any cgroup exists.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .._record import dataclass, field
from ..errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .layout import Layout

__all__ = [
    "Limits",
    "DeviceRule",
    "IoThrottle",
    "HugetlbLimit",
    "DEFAULT_DEVICES",
    "weight_to_shares",
    "shares_to_weight",
    "parse_cpulist",
    "controllers_for",
    "host_refusals",
]

#: Default ``cpu.cfs_period_us`` / ``cpu.max`` period when only ``cpus`` is given.
DEFAULT_PERIOD_US = 100_000

_U64_MAX = (1 << 64) - 1


def _check_int(owner: str, name: str, value: object, *, lo: int = 0, hi: int = _U64_MAX) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{owner}.{name} must be between {lo} and {hi}, got {value!r}")


def parse_cpulist(text: str, *, what: str = "cpulist") -> frozenset[int]:
    """Parse a kernel cpu/node list such as ``"0-3,6"``; ``ConfigError`` if malformed."""
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string like '0-3,6', got {text!r}")
    out: set[int] = set()
    body = text.strip()
    if not body:
        return frozenset()
    for part in body.split(","):
        lo_s, sep, hi_s = part.strip().partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ConfigError(f"{what} is not a cpu list like '0-3,6': {text!r}") from None
        if lo < 0 or hi < lo:
            raise ConfigError(f"{what} has a bad range {part!r} in {text!r}")
        out.update(range(lo, hi + 1))
    return frozenset(out)


def _host_list(path: str) -> frozenset[int] | None:
    try:
        return parse_cpulist(Path(path).read_text())
    except (OSError, ConfigError):
        return None


def weight_to_shares(weight: int) -> int:
    """cgroup v2 ``cpu.weight`` [1, 10000] to v1 ``cpu.shares`` [2, 262144] (crun's formula)."""
    return 2 + ((weight - 1) * 262142) // 9999


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` [2, 262144] to v2 ``cpu.weight`` [1, 10000] (crun's formula)."""
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_blkio(weight: int) -> int:
    """v2 ``io.weight`` [1, 10000] to v1 ``blkio.weight`` [10, 1000], linearly."""
    return 10 + ((weight - 1) * 990) // 9999


def _device_number(owner: str, name: str, device: str | tuple[int, int], *, block: bool) -> tuple[int, int]:
    """``"8:0"``, ``(8, 0)`` or a device node path -> (major, minor); ConfigError otherwise."""
    if isinstance(device, tuple):
        if len(device) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                    for x in device):
            return device[0], device[1]
        raise ConfigError(f"{owner}.{name} must be (major, minor), got {device!r}")
    if not isinstance(device, str):
        raise ConfigError(f"{owner}.{name} must be 'MAJOR:MINOR' or a device path, got {device!r}")
    if not device.startswith("/"):
        major, sep, minor = device.partition(":")
        if sep and major.isdigit() and minor.isdigit():
            return int(major), int(minor)
        raise ConfigError(f"{owner}.{name} must be 'MAJOR:MINOR' or a device path, got {device!r}")
    try:
        st = os.stat(device)
    except OSError as e:
        raise ConfigError(f"{owner}.{name}: unknown device {device!r} ({e.strerror})") from None
    want = stat.S_ISBLK if block else (lambda m: stat.S_ISBLK(m) or stat.S_ISCHR(m))
    if not want(st.st_mode):
        kind = "block device" if block else "device node"
        raise ConfigError(f"{owner}.{name}: {device!r} is not a {kind}")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRule:
    """One device-access rule, as in OCI ``linux.resources.devices``.

    ``type`` is ``"a"`` (all), ``"b"`` (block) or ``"c"`` (char); ``major`` and
    ``minor`` are numbers or ``None`` for any; ``access`` is a subset of
    ``"rwm"`` (read, write, mknod).  Rules apply in order after an implicit
    deny-all, and a later matching rule wins.
    """

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def __post_init__(self) -> None:
        if not isinstance(self.allow, bool):
            raise ConfigError(f"DeviceRule.allow must be a bool, got {self.allow!r}")
        if self.type not in ("a", "b", "c"):
            raise ConfigError(f"DeviceRule.type must be 'a', 'b' or 'c', got {self.type!r}")
        _check_int("DeviceRule", "major", self.major, hi=(1 << 32) - 1)
        _check_int("DeviceRule", "minor", self.minor, hi=(1 << 32) - 1)
        if (not isinstance(self.access, str) or not self.access
                or set(self.access) - set("rwm") or len(set(self.access)) != len(self.access)):
            raise ConfigError(f"DeviceRule.access must be a non-empty subset of 'rwm', got {self.access!r}")
        if self.type == "a" and (self.major is not None or self.minor is not None):
            raise ConfigError(f"DeviceRule of type 'a' matches every device; got major={self.major!r}, "
                              f"minor={self.minor!r}")

    @classmethod
    def for_path(cls, path: str, *, allow: bool = True, access: str = "rwm") -> DeviceRule:
        """The rule for an existing device node; ``ConfigError`` if ``path`` is not one."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise ConfigError(f"DeviceRule path: unknown device {path!r} ({e.strerror})") from None
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            raise ConfigError(f"DeviceRule path: {path!r} is not a device node")
        return cls(allow=allow, type=kind, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                   access=access)

    @classmethod
    def parse(cls, text: str, *, allow: bool = True) -> DeviceRule:
        """Parse v1 syntax: ``"c 1:3 rwm"``, ``"b *:* m"``, ``"a"``."""
        parts = text.split() if isinstance(text, str) else []
        if not parts:
            raise ConfigError(f"DeviceRule: cannot parse {text!r}")
        if parts == ["a"]:
            return cls(allow=allow)
        if len(parts) != 3:
            raise ConfigError(f"DeviceRule: cannot parse {text!r} (want 'TYPE MAJOR:MINOR ACCESS')")
        major_s, sep, minor_s = parts[1].partition(":")

        def num(s: str) -> int | None:
            if s == "*":
                return None
            if not s.isdigit():
                raise ConfigError(f"DeviceRule: bad device number {s!r} in {text!r}")
            return int(s)

        if not sep:
            raise ConfigError(f"DeviceRule: cannot parse {text!r} (want 'TYPE MAJOR:MINOR ACCESS')")
        return cls(allow=allow, type=parts[0], major=num(major_s), minor=num(minor_s), access=parts[2])

    def v1_line(self) -> str:
        """The line for ``devices.allow`` / ``devices.deny``."""
        if self.type == "a":
            return "a"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def _allow(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> DeviceRule:
    return DeviceRule(allow=True, type=kind, major=major, minor=minor, access=access)


#: The OCI runtime-spec default devices (null, zero, full, random, urandom,
#: tty, console, ptmx, the pts), plus mknod of any node, as runc and crun allow.
DEFAULT_DEVICES: tuple[DeviceRule, ...] = (
    _allow("c", None, None, "m"),
    _allow("b", None, None, "m"),
    _allow("c", 1, 3),      # /dev/null
    _allow("c", 1, 5),      # /dev/zero
    _allow("c", 1, 7),      # /dev/full
    _allow("c", 1, 8),      # /dev/random
    _allow("c", 1, 9),      # /dev/urandom
    _allow("c", 5, 0),      # /dev/tty
    _allow("c", 5, 1),      # /dev/console
    _allow("c", 5, 2),      # /dev/ptmx
    _allow("c", 136, None),  # /dev/pts/*
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IoThrottle:
    """Per-device I/O limits: bytes and operations per second (``None``: unlimited).

    ``device`` is ``"MAJOR:MINOR"``, ``(major, minor)`` or the path of a block
    device node.  v1 writes ``blkio.throttle.*_device``; v2 writes ``io.max``.
    """

    device: str | tuple[int, int]
    read_bps: int | None = None
    write_bps: int | None = None
    read_iops: int | None = None
    write_iops: int | None = None
    number: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "number",
                           _device_number("IoThrottle", "device", self.device, block=True))
        for name in ("read_bps", "write_bps", "read_iops", "write_iops"):
            _check_int("IoThrottle", name, getattr(self, name), lo=1)

    @property
    def devno(self) -> str:
        """``"MAJOR:MINOR"``."""
        return f"{self.number[0]}:{self.number[1]}"


_HUGE_SUFFIX = {"KB": 10, "MB": 20, "GB": 30}


def _hugepage_name(size: int) -> str:
    # hugetlb file names: hugetlb.2MB.limit_in_bytes, hugetlb.1GB.max
    for suffix, shift in (("GB", 30), ("MB", 20), ("KB", 10)):
        if size % (1 << shift) == 0:
            return f"{size >> shift}{suffix}"
    raise ConfigError(f"HugetlbLimit.page_size: {size!r} is not a multiple of 1 KiB")


@dataclass(frozen=True, slots=True, kw_only=True)
class HugetlbLimit:
    """A limit in bytes on huge pages of one size (``page_size`` in bytes, or ``"2MB"``)."""

    page_size: int | str
    max: int
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = self.page_size
        if isinstance(size, str):
            unit = size[-2:].upper()
            if unit not in _HUGE_SUFFIX or not size[:-2].isdigit():
                raise ConfigError(f"HugetlbLimit.page_size must be bytes or like '2MB', got {size!r}")
            size = int(size[:-2]) << _HUGE_SUFFIX[unit]
        _check_int("HugetlbLimit", "page_size", size, lo=1)
        _check_int("HugetlbLimit", "max", self.max)
        assert isinstance(size, int)
        host = Path(f"/sys/kernel/mm/hugepages/hugepages-{size >> 10}kB")
        if not host.is_dir():
            raise ConfigError(f"HugetlbLimit.page_size: this host has no {self.page_size!r} huge pages "
                              f"(no {host})")
        object.__setattr__(self, "name", _hugepage_name(size))


def _check_bool(name: str, value: object, *, optional: bool) -> None:
    if (value is None and optional) or isinstance(value, bool):
        return
    raise ConfigError(f"Limits.{name} must be a bool, got {value!r}")


def _check_pairs(name: str, value: object, kind: type) -> None:
    if not isinstance(value, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], kind)
            and not isinstance(p[1], bool) for p in value):
        raise ConfigError(f"Limits.{name} must be a tuple of (str, {kind.__name__}) pairs, got {value!r}")
    keys = [p[0] for p in value]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"Limits.{name} names a key twice: {value!r}")


#: v2 controller names (the prefix of a file name) to the v1 names Limits uses.
_V1_NAME = {"io": "blkio"}


def unified_controller(key: str) -> str | None:
    """The controller (v1 name) of the v2 file ``key`` (``"memory.high"`` -> ``"memory"``);
    None for the core ``cgroup.*`` files.  ``ConfigError`` for a name that is not a
    cgroup file name (runc's rule: ``<controller>.<file>``, no ``/``)."""
    if (not isinstance(key, str) or "/" in key or "\0" in key or key.count(".") < 1
            or key.startswith(".") or key.endswith(".")):
        raise ConfigError(f"Limits.unified: {key!r} is not a cgroup v2 file name like 'memory.high'")
    ctl = key.split(".", 1)[0]
    if ctl == "cgroup":
        # Limits only: cgroup.procs, cgroup.kill... would act on processes, not set a limit.
        if key not in ("cgroup.max.depth", "cgroup.max.descendants"):
            raise ConfigError(f"Limits.unified: {key!r} is not a limit (of the core files only "
                              "cgroup.max.depth and cgroup.max.descendants are)")
        return None
    return _V1_NAME.get(ctl, ctl)


def _tuple_of(owner: str, name: str, value: object, kind: type) -> None:
    if value is None:
        return
    if not isinstance(value, tuple) or not all(isinstance(v, kind) for v in value):
        raise ConfigError(f"{owner}.{name} must be a tuple of {kind.__name__}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Resource limits for a cgroup, in one set of units for v1 and v2.

    ``None`` leaves a limit as the kernel's default.  Units: bytes for
    memory, CPUs (a float) or microseconds for quota/period, v2 weights
    (1-10000) for ``cpu_weight`` and ``io_weight``, counts for ``pids_max``.

    - ``memory_max``: hard limit (``memory.max`` / ``memory.limit_in_bytes``).
    - ``memory_high``: throttling threshold (``memory.high``; v1 has none and
      gets ``memory.soft_limit_in_bytes``, which only guides reclaim).
    - ``memory_swap_max``: swap alone (``memory.swap.max``; on v1 memsw is set
      to ``memory_max + memory_swap_max``, so ``memory_max`` is required).
    - ``memory_memsw_max``: memory plus swap (v1 ``memory.memsw.limit_in_bytes``;
      on v2 ``memory.swap.max = memsw - memory_max``).
    - ``cpus`` (e.g. 0.5) or ``cpu_quota_us``/``cpu_period_us``: bandwidth.
    - ``cpuset_cpus``/``cpuset_mems``: lists such as ``"0-1"``, checked against the host.
    - ``io_throttle``: ``IoThrottle`` per device; ``devices``: ``DeviceRule``s
      applied after a deny-all (``DEFAULT_DEVICES`` is the OCI default list);
      ``hugetlb``: ``HugetlbLimit`` per page size.
    - ``cpu_shares``: v1 ``cpu.shares`` (2-262144), written as given on v1 and
      converted to ``cpu.weight`` on v2 (``shares_to_weight``, runc's and crun's
      formula); give it or ``cpu_weight``, not both.
    - ``cpu_idle``: ``cpu.idle`` (v2, and v1 where the kernel has the file);
      ``cpu_burst_us``: ``cpu.max.burst`` / v1 ``cpu.cfs_burst_us``.
    - ``cpu_rt_period_us``/``cpu_rt_runtime_us``: v1 ``cpu.rt_period_us`` /
      ``cpu.rt_runtime_us`` (-1: unlimited); cgroup v2 has none.
    - ``memory_low``: ``memory.low`` (v1: ``memory.soft_limit_in_bytes``, so
      not together with ``memory_high`` there); ``memory_swappiness`` (0-100)
      and ``memory_oom_kill_disable``: v1 ``memory.swappiness`` /
      ``memory.oom_control``; cgroup v2 has neither.
    - ``net_cls_classid``: v1 ``net_cls.classid``; ``net_prio_ifpriomap``:
      (interface, priority) pairs for v1 ``net_prio.ifpriomap``; v2 has neither.
    - ``unified``: (file, value) pairs written as given in the group's v2
      directory after everything else (``"memory.high"``, ``"cpu.weight"``...).

    What the host cannot apply (``host_refusals``) raises ``UnsupportedError``
    from ``Cgroup.create`` before any directory is made.
    """

    memory_max: int | None = None
    memory_high: int | None = None
    memory_swap_max: int | None = None
    memory_memsw_max: int | None = None
    cpus: float | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    cpu_weight: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_max: int | None = None
    io_weight: int | None = None
    io_throttle: tuple[IoThrottle, ...] = ()
    devices: tuple[DeviceRule, ...] | None = None
    hugetlb: tuple[HugetlbLimit, ...] = ()
    cpu_shares: int | None = None
    cpu_idle: bool | None = None
    cpu_burst_us: int | None = None
    cpu_rt_period_us: int | None = None
    cpu_rt_runtime_us: int | None = None
    memory_low: int | None = None
    memory_swappiness: int | None = None
    memory_oom_kill_disable: bool = False
    net_cls_classid: int | None = None
    net_prio_ifpriomap: tuple[tuple[str, int], ...] = ()
    unified: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("memory_max", "memory_high", "memory_swap_max", "memory_memsw_max"):
            _check_int("Limits", name, getattr(self, name))
        if self.memory_memsw_max is not None and self.memory_swap_max is not None:
            raise ConfigError("Limits: give memory_swap_max or memory_memsw_max, not both "
                              f"(got {self.memory_swap_max!r} and {self.memory_memsw_max!r})")
        if self.memory_memsw_max is not None:
            if self.memory_max is None:
                raise ConfigError(f"Limits.memory_memsw_max={self.memory_memsw_max!r} needs memory_max")
            if self.memory_memsw_max < self.memory_max:
                raise ConfigError(f"Limits.memory_memsw_max={self.memory_memsw_max!r} is below "
                                  f"memory_max={self.memory_max!r}")
        if self.memory_swap_max is not None and self.memory_max is None:
            raise ConfigError(f"Limits.memory_swap_max={self.memory_swap_max!r} needs memory_max "
                              "(v1 limits memory+swap together)")
        if self.cpus is not None:
            if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)):
                raise ConfigError(f"Limits.cpus must be a number of CPUs, got {self.cpus!r}")
            if not 0.001 <= self.cpus <= 4096 or self.cpus != self.cpus:
                raise ConfigError(f"Limits.cpus must be between 0.001 and 4096, got {self.cpus!r}")
            if self.cpu_quota_us is not None:
                raise ConfigError(f"Limits: give cpus or cpu_quota_us, not both "
                                  f"(got {self.cpus!r} and {self.cpu_quota_us!r})")
        _check_int("Limits", "cpu_quota_us", self.cpu_quota_us, lo=1000)
        _check_int("Limits", "cpu_period_us", self.cpu_period_us, lo=1000, hi=1_000_000)
        _check_int("Limits", "cpu_weight", self.cpu_weight, lo=1, hi=10000)
        # The kernel clamps cpu.shares into [2, 262144]; runc refuses values outside it.
        _check_int("Limits", "cpu_shares", self.cpu_shares, lo=2, hi=262144)
        if self.cpu_shares is not None and self.cpu_weight is not None:
            raise ConfigError(f"Limits: give cpu_shares or cpu_weight, not both "
                              f"(got {self.cpu_shares!r} and {self.cpu_weight!r})")
        _check_bool("cpu_idle", self.cpu_idle, optional=True)
        _check_bool("memory_oom_kill_disable", self.memory_oom_kill_disable, optional=False)
        _check_int("Limits", "cpu_burst_us", self.cpu_burst_us)
        _check_int("Limits", "cpu_rt_period_us", self.cpu_rt_period_us, lo=1, hi=(1 << 63) // 1000)
        _check_int("Limits", "cpu_rt_runtime_us", self.cpu_rt_runtime_us, lo=-1, hi=(1 << 63) // 1000)
        if (self.cpu_rt_runtime_us is not None and self.cpu_rt_period_us is not None
                and self.cpu_rt_runtime_us > self.cpu_rt_period_us):
            raise ConfigError(f"Limits.cpu_rt_runtime_us={self.cpu_rt_runtime_us!r} is above "
                              f"cpu_rt_period_us={self.cpu_rt_period_us!r}")
        _check_int("Limits", "memory_low", self.memory_low)
        _check_int("Limits", "memory_swappiness", self.memory_swappiness, hi=100)
        _check_int("Limits", "net_cls_classid", self.net_cls_classid, hi=(1 << 32) - 1)
        _check_pairs("net_prio_ifpriomap", self.net_prio_ifpriomap, int)
        for name, prio in self.net_prio_ifpriomap:
            if not name or len(name) > 15 or any(c in name for c in "/ \t\n:"):
                raise ConfigError(f"Limits.net_prio_ifpriomap: bad interface name {name!r}")
            _check_int("Limits", "net_prio_ifpriomap", prio, hi=(1 << 32) - 1)
        _check_pairs("unified", self.unified, str)
        for key, value in self.unified:
            unified_controller(key)
            if "\n" in value:
                raise ConfigError(f"Limits.unified[{key!r}]: one line only, got {value!r}")
        _check_int("Limits", "io_weight", self.io_weight, lo=1, hi=10000)
        # 0 would refuse the sandbox its first process.
        _check_int("Limits", "pids_max", self.pids_max, lo=1, hi=(1 << 22))
        for name, host in (("cpuset_cpus", "/sys/devices/system/cpu/online"),
                           ("cpuset_mems", "/sys/devices/system/node/online")):
            value = getattr(self, name)
            if value is None:
                continue
            wanted = parse_cpulist(value, what=f"Limits.{name}")
            if not wanted:
                raise ConfigError(f"Limits.{name} is empty: {value!r}")
            have = _host_list(host)
            if have is None and name == "cpuset_mems":
                have = frozenset({0})   # no NUMA support: one node
            if have is not None and not wanted <= have:
                raise ConfigError(f"Limits.{name}={value!r} is outside the host's "
                                  f"{'CPUs' if name == 'cpuset_cpus' else 'memory nodes'} "
                                  f"({Path(host).read_text().strip() if Path(host).exists() else '0'})")
        _tuple_of("Limits", "io_throttle", self.io_throttle, IoThrottle)
        _tuple_of("Limits", "devices", self.devices, DeviceRule)
        _tuple_of("Limits", "hugetlb", self.hugetlb, HugetlbLimit)
        seen = [t.number for t in self.io_throttle]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"Limits.io_throttle names a device twice: {self.io_throttle!r}")

    def cpu_max(self) -> tuple[int, int] | None:
        """(quota_us, period_us) or None when no bandwidth limit is set."""
        period = self.cpu_period_us if self.cpu_period_us is not None else DEFAULT_PERIOD_US
        if self.cpus is not None:
            return max(1000, round(self.cpus * period)), period
        if self.cpu_quota_us is not None:
            return self.cpu_quota_us, period
        return None


def controllers_for(limits: Limits | None) -> set[str]:
    """The controllers (by v1 name) that ``limits`` needs."""
    if limits is None:
        return set()
    out: set[str] = set()
    if any(getattr(limits, n) is not None for n in
           ("memory_max", "memory_high", "memory_swap_max", "memory_memsw_max", "memory_low",
            "memory_swappiness")) or limits.memory_oom_kill_disable:
        out.add("memory")
    if any(getattr(limits, n) is not None for n in
           ("cpus", "cpu_quota_us", "cpu_weight", "cpu_period_us", "cpu_shares", "cpu_idle",
            "cpu_burst_us", "cpu_rt_period_us", "cpu_rt_runtime_us")):
        out.add("cpu")
    if limits.net_cls_classid is not None:
        out.add("net_cls")
    if limits.net_prio_ifpriomap:
        out.add("net_prio")
    for key, _ in limits.unified:
        ctl = unified_controller(key)
        if ctl is not None:
            out.add(ctl)
    if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
        out.add("cpuset")
    if limits.pids_max is not None:
        out.add("pids")
    if limits.io_weight is not None or limits.io_throttle:
        out.add("blkio")
    if limits.devices is not None:
        out.add("devices")
    if limits.hugetlb:
        out.add("hugetlb")
    return out


def host_refusals(limits: Limits | None, layout: Layout) -> list[tuple[str, str]]:
    """(field, why) for each field of ``limits`` that ``layout``'s hierarchies cannot apply.

    The fields a cgroup version lacks (realtime CPU, swappiness, the OOM-killer
    switch and the network controllers have no v2 file; ``unified`` needs a v2
    directory), and v1 files this kernel does not have.  ``Cgroup.create``
    raises on the first before making anything; the OCI runtime names the
    config's field for each.
    """
    if limits is None:
        return []
    out: list[tuple[str, str]] = []

    def where(ctl: str) -> str | None:
        try:
            return layout.where(ctl)
        except UnsupportedError:
            return None

    cpu, mem = where("cpu"), where("memory")
    for name, file in (("cpu_rt_period_us", "cpu.rt_period_us"), ("cpu_rt_runtime_us", "cpu.rt_runtime_us"),
                       ("cpu_idle", "cpu.idle"), ("cpu_burst_us", "cpu.cfs_burst_us")):
        if getattr(limits, name) is None or cpu is None:
            continue
        if cpu == "v2":
            if name.startswith("cpu_rt"):
                out.append((name, "cgroup v2 has no realtime CPU bandwidth (no cpu.rt_* files)"))
        elif not os.path.exists(os.path.join(layout.v1["cpu"].mount, file)):
            out.append((name, f"this kernel's cgroup v1 cpu controller has no {file}"))
    if mem == "v2":
        if limits.memory_swappiness is not None:
            out.append(("memory_swappiness", "cgroup v2 has no per-cgroup swappiness"))
        if limits.memory_oom_kill_disable:
            out.append(("memory_oom_kill_disable", "cgroup v2 cannot disable the OOM killer (no oom_control)"))
    elif mem == "v1" and limits.memory_low is not None and limits.memory_high is not None:
        out.append(("memory_low", "on cgroup v1 memory_low and memory_high are both "
                    "memory.soft_limit_in_bytes: give one"))
    for name, ctl, file in (("net_cls_classid", "net_cls", "net_cls.classid"),
                            ("net_prio_ifpriomap", "net_prio", "net_prio.ifpriomap")):
        if getattr(limits, name) and where(ctl) != "v1":
            out.append((name, f"no cgroup v1 {ctl} hierarchy is mounted (cgroup v2 has no {file})"))
    if limits.unified:
        if layout.v2 is None:
            out.append(("unified", "no cgroup v2 hierarchy is mounted"))
        else:
            for key, _ in limits.unified:
                owner = unified_controller(key)
                if owner is not None and where(owner) != "v2":
                    out.append(("unified", f"{key!r}: the {owner} controller is not in the cgroup v2 "
                                f"hierarchy ({layout.v2.mount}/cgroup.controllers)"))
    return out
