"""``probe()``: what this kernel and host let isolate do, and how to enable the rest.

Each namespace type is really tried (a ``/bin/true`` spawned with it, once
per process); syscalls are called with invalid arguments, so ``ENOSYS``
tells a missing one from a present one without side effects; the rest is
read from /proc and /sys.  Nothing here changes the host.
"""

from __future__ import annotations

import errno as _errno
import os
import pwd
import re
import shutil
import stat
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import _plan as P
from . import _spawn
from .errors import IsolateError, SetupError, SpawnError, UnsupportedError
from .idmap import subid_ranges

__all__ = ["Feature", "Probe", "probe", "parse_kernel_version"]

# A generous limit, as distributions ship (Debian and Fedora default to ~ 64k).
_SUGGESTED_LIMIT = 15000

# Linux version that added each namespace type, for the reasons given.
_NS_SINCE = {"mnt": "2.4.19", "uts": "2.6.19", "ipc": "2.6.19", "pid": "2.6.24", "net": "2.6.29",
             "user": "3.8", "cgroup": "4.6", "time": "5.6"}

@dataclass(frozen=True, slots=True, kw_only=True)
class Feature:
    """One probed feature.

    ``available`` says whether isolate can use it here, ``reason`` what was
    found (and how), ``how_to_enable`` a command or step when it is missing
    (None when there is nothing to do), ``details`` the raw facts
    (sysctl values, mount points) for programs.
    """

    name: str
    available: bool
    reason: str
    how_to_enable: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """What ``probe()`` found.  Every field but ``kernel``/``machine``/``euid`` is a ``Feature``."""

    kernel: str
    machine: str
    euid: int
    namespaces: dict[str, Feature]
    userns_limits: Feature
    clone3: Feature
    clone_into_cgroup: Feature
    cgroup: Feature
    new_mount_api: Feature
    mount_setattr: Feature
    idmapped_mounts: Feature
    pidfd: Feature
    close_range: Feature
    seccomp: Feature
    newidmap: Feature
    subids: Feature

    @property
    def cgroup_layout(self) -> str:
        """``"v2"``, ``"hybrid"``, ``"v1"`` or ``"none"``."""
        return str(self.cgroup.details.get("layout", "none"))

    def features(self) -> dict[str, Feature]:
        """Every feature by key (``"namespace.net"``, ``"clone3"``, ...), in display order."""
        out = {f"namespace.{t}": f for t, f in self.namespaces.items()}
        for fl in fields(self):
            value = getattr(self, fl.name)
            if isinstance(value, Feature):
                out[fl.name] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: host facts plus ``features`` keyed as in ``features()``."""
        return {"kernel": self.kernel, "machine": self.machine, "euid": self.euid,
                "cgroup_layout": self.cgroup_layout,
                "features": {k: f.to_dict() for k, f in self.features().items()}}


# --- small parsers (pure, tested without a host) -------------------------------


def parse_kernel_version(release: str) -> tuple[int, int, int]:
    """``"6.18.44-fc-v782"`` -> ``(6, 18, 44)``; missing parts are 0, junk gives (0, 0, 0)."""
    m = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", release)
    if m is None:
        return (0, 0, 0)
    return tuple(int(g) if g else 0 for g in m.groups())  # type: ignore[return-value]


def parse_status_seccomp(status: str) -> tuple[int | None, int]:
    """From /proc/<pid>/status: (seccomp mode or None if the kernel has none, filter count)."""
    mode = None
    filters = 0
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "Seccomp":
            mode = int(value)
        elif key == "Seccomp_filters":
            filters = int(value)
    return mode, filters


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _errname(err: int) -> str:
    return _errno.errorcode.get(err, str(err))


# --- namespaces ------------------------------------------------------------------

# (pid, type) -> Feature: a fork gets its own answers.
_NS_CACHE: dict[tuple[int, str], Feature] = {}
_NS_LOCK = threading.Lock()


def _true() -> str:
    return shutil.which("true", path="/usr/bin:/bin") or "/bin/true"


def _try_spawn(namespaces: set[str]) -> int | None:
    """None if ``/bin/true`` ran in ``namespaces``, else the errno that stopped it."""
    from .process import DEVNULL, run

    try:
        r = run([_true()], namespaces=namespaces, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
    except (SpawnError, SetupError) as e:
        return e.errno or _errno.EIO
    except IsolateError:
        return _errno.EPERM
    return None if r.returncode == 0 else _errno.ECHILD


def userns_limits() -> dict[str, int | None]:
    """The sysctls that limit namespaces: ``user.max_*_namespaces`` and the userns switches."""
    out: dict[str, int | None] = {}
    for t in sorted(P.NSTYPES):
        out[f"user.max_{t}_namespaces"] = _read_int(f"/proc/sys/user/max_{t}_namespaces")
    # Debian/Ubuntu kernel patch (absent upstream: None).
    out["kernel.unprivileged_userns_clone"] = _read_int("/proc/sys/kernel/unprivileged_userns_clone")
    # Ubuntu 23.10+ AppArmor switch.
    out["kernel.apparmor_restrict_unprivileged_userns"] = _read_int(
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    return out


def _userns_blocker(limits: dict[str, int | None], euid: int) -> tuple[str, str] | None:
    """(why, how) if a sysctl forbids user namespaces for this caller, else None."""
    if limits.get("user.max_user_namespaces") == 0:
        return ("user.max_user_namespaces is 0",
                f"sysctl -w user.max_user_namespaces={_SUGGESTED_LIMIT}")
    if euid != 0 and limits.get("kernel.unprivileged_userns_clone") == 0:
        return ("kernel.unprivileged_userns_clone is 0 (unprivileged user namespaces are off)",
                "sysctl -w kernel.unprivileged_userns_clone=1")
    if euid != 0 and limits.get("kernel.apparmor_restrict_unprivileged_userns") == 1:
        return ("kernel.apparmor_restrict_unprivileged_userns is 1 (AppArmor confines "
                "unprivileged user namespaces)",
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor "
                "profile with 'userns,' for this program")
    return None


def explain_namespace_failure(t: str, err: int, limits: dict[str, int | None],
                              euid: int) -> tuple[str, str | None]:
    """(reason, how_to_enable) for a ``t`` namespace that failed with ``err``."""
    config = f"CONFIG_{t.upper()}_NS" if t != "mnt" else "namespaces"
    if err == _errno.ENOSPC:
        key = f"user.max_{t}_namespaces"
        return (f"{key} is {limits.get(key)}: the limit is reached (ENOSPC)",
                f"sysctl -w {key}={_SUGGESTED_LIMIT}")
    if err in (_errno.EPERM, _errno.EACCES):
        if t == "user":
            blocked = _userns_blocker(limits, euid)
            if blocked is not None:
                return f"refused ({_errname(err)}): {blocked[0]}", blocked[1]
            return (f"refused ({_errname(err)}), no sysctl explains it: a seccomp filter or LSM "
                    "policy (e.g. a container runtime's profile)",
                    "run outside the container, or allow clone3/unshare in its seccomp profile")
        return (f"refused ({_errname(err)}): creating a {t} namespace needs CAP_SYS_ADMIN",
                "run as root, or together with a user namespace (namespaces={'user', ...})")
    if err in (_errno.EINVAL, _errno.ENOSYS):
        since = _NS_SINCE[t]
        return (f"the kernel does not know it ({_errname(err)})",
                f"a kernel with {config}=y (Linux {since}+)" + (
                    "; time namespaces also need clone3 (seccomp may hide it)" if t == "time" else ""))
    return (f"failed: [Errno {err}] {os.strerror(err)}", None)


def _probe_namespace(t: str, limits: dict[str, int | None], euid: int) -> Feature:
    if not os.path.lexists(f"/proc/self/ns/{t}"):
        return Feature(name=f"{t} namespace", available=False,
                       reason=f"/proc/self/ns/{t} is missing: the kernel has no {t} namespaces",
                       how_to_enable=f"a kernel with CONFIG_{t.upper()}_NS=y "
                                     f"(Linux {_NS_SINCE[t]}+)")
    if euid != 0 and t != "user":
        return _probe_namespace_rootless(t, limits, euid)
    err = _try_spawn({t})
    if err is None:
        return Feature(name=f"{t} namespace", available=True,
                       reason=f"spawned /bin/true in a new {t} namespace")
    reason, how = explain_namespace_failure(t, err, limits, euid)
    if t != "user" and err in (_errno.EPERM, _errno.EACCES) and _try_spawn({"user", t}) is None:
        return Feature(name=f"{t} namespace", available=True,
                       reason=f"only together with a new user namespace ({reason})",
                       details={"needs_user_namespace": True})
    return Feature(name=f"{t} namespace", available=False, reason=reason, how_to_enable=how,
                   details={"errno": _errname(err)})


def _probe_namespace_rootless(t: str, limits: dict[str, int | None], euid: int) -> Feature:
    """A caller without root: the ``t`` namespace as it gets one, inside a new user namespace."""
    name = f"{t} namespace"
    err = _try_spawn({"user", t})
    if err is None:
        return Feature(name=name, available=True,
                       reason=f"spawned /bin/true in a new {t} namespace inside a new user namespace "
                              f"(making a {t} namespace outside one needs CAP_SYS_ADMIN: without "
                              "root isolate always makes one, as bubblewrap does)",
                       details={"needs_user_namespace": True})
    user_err = _try_spawn({"user"})
    if user_err is not None:
        reason, how = explain_namespace_failure("user", user_err, limits, euid)
        return Feature(name=name, available=False,
                       reason=f"needs a user namespace without root, which failed: {reason}",
                       how_to_enable=how, details={"errno": _errname(user_err)})
    reason, how = explain_namespace_failure(t, err, limits, euid)
    return Feature(name=name, available=False, reason=f"inside a new user namespace: {reason}",
                   how_to_enable=how, details={"errno": _errname(err)})


def namespace_feature(t: str, *, refresh: bool = False) -> Feature:
    """The probe of one namespace type, cached per process."""
    key = (os.getpid(), t)
    with _NS_LOCK:
        if not refresh and key in _NS_CACHE:
            return _NS_CACHE[key]
    f = _probe_namespace(t, userns_limits(), os.geteuid())
    with _NS_LOCK:
        _NS_CACHE[key] = f
    return f


def _limits_feature(limits: dict[str, int | None], euid: int) -> Feature:
    shown = ", ".join(f"{k.split('.', 1)[1]}={'absent' if v is None else v}"
                      for k, v in limits.items())
    blocked = _userns_blocker(limits, euid)
    if blocked is not None:
        return Feature(name="user namespace limits", available=False,
                       reason=f"{blocked[0]} ({shown})", how_to_enable=blocked[1],
                       details=dict(limits))
    zero = [k for k, v in limits.items() if k.startswith("user.max_") and v == 0]
    how = "; ".join(f"sysctl -w {k}={_SUGGESTED_LIMIT}" for k in zero) or None
    why = f" ({', '.join(zero)} 0: those types cannot be created)" if zero else ""
    return Feature(name="user namespace limits", available=True,
                   reason=f"user namespaces allowed{why}: {shown}", how_to_enable=how,
                   details=dict(limits))


# --- syscalls --------------------------------------------------------------------

def _syscall_errno(name: str, *args: int) -> int:
    """Call ``name`` with (invalid) ``args``: 0 on success, else errno."""
    from ._spawn import syscall_errno

    return syscall_errno(name, *args)


def _syscall_feature(label: str, names: list[tuple[str, tuple[int, ...]]], since: str,
                     usage: str) -> Feature:
    """Present when every syscall answers something other than ENOSYS/EPERM."""
    found: dict[str, str] = {}
    for name, args in names:
        err = _syscall_errno(name, *args)
        found[name] = "ok" if err == 0 else _errname(err)
    missing = [n for n, e in found.items() if e == "ENOSYS"]
    blocked = [n for n, e in found.items() if e == "EPERM"]
    names_s = ", ".join(found)
    if missing:
        return Feature(name=label, available=False,
                       reason=f"{', '.join(missing)} returned ENOSYS: kernel older than {since}, "
                              "or a seccomp filter hides it",
                       how_to_enable=f"Linux {since}+, and a seccomp profile that allows {names_s}",
                       details=found)
    if blocked:
        return Feature(name=label, available=False,
                       reason=f"{', '.join(blocked)} returned EPERM: blocked by a seccomp filter "
                              "or LSM",
                       how_to_enable=f"allow {names_s} in the seccomp profile", details=found)
    return Feature(name=label, available=True,
                   reason=f"{names_s} present ({usage})", details=found)


def _mount_api_feature(euid: int) -> Feature:
    """The new mount API, where isolate uses it: a caller without root only ever calls it in a
    user and mount namespace of its own, where the host's EPERM no longer applies."""
    calls = [("open_tree", (-1, 0, 0)), ("move_mount", (-1, 0, -1, 0, 0)), ("fsopen", (0, 0)),
             ("fsconfig", (-1, 0, 0, 0, 0)), ("fsmount", (-1, 0, 0))]
    host = _syscall_feature("new mount API", calls, "5.2",
                            "isolate's bind mounts use open_tree + move_mount")
    if host.available or euid == 0 or "ENOSYS" in host.details.values():
        return host
    from . import _ops as O
    from ._ops_root import RootMount
    from .process import DEVNULL, run

    # What a rootless container's root does: a tmpfs (fsopen, fsconfig, fsmount,
    # move_mount), then a bind of it (open_tree, move_mount).
    ops = [RootMount(fstype=b"tmpfs", root=b"/", target=b"tmp"), O.Bind(b"/tmp", b"/tmp")]
    try:
        run([_true()], namespaces={"user", "mnt"}, ops=ops, stdin=DEVNULL, stdout=DEVNULL,
            stderr=DEVNULL, check=True)
    except (IsolateError, OSError) as e:
        return Feature(name="new mount API", available=False,
                       reason=f"{host.reason}; in a user namespace of its own too: {e}",
                       how_to_enable=host.how_to_enable, details=host.details)
    names = ", ".join(n for n, _ in calls)
    return Feature(name="new mount API", available=True,
                   reason=f"{names} work in a user and mount namespace of its own (a tmpfs mounted "
                          "and bound there), where isolate calls them without root; outside one "
                          "they return EPERM to a caller without CAP_SYS_ADMIN",
                   details={**host.details, "in_user_namespace": "ok"})


def _clone3_feature(version: tuple[int, int, int]) -> Feature:
    if _spawn.clone3_available():
        return Feature(name="clone3", available=True,
                       reason="clone3(2) present (Linux 5.3+): pidfd at birth, time namespaces, "
                              "CLONE_INTO_CGROUP")
    why = ("kernel older than 5.3" if version < (5, 3, 0) else
           f"kernel {'.'.join(map(str, version))} has it, so a seccomp filter returns ENOSYS")
    return Feature(name="clone3", available=False,
                   reason=f"clone3(2) returns ENOSYS ({why}); isolate falls back to clone(2): "
                          "no time namespaces, no CLONE_INTO_CGROUP",
                   how_to_enable="Linux 5.3+, and a seccomp profile that allows clone3")


def _cgroup_feature() -> tuple[Feature, Any]:
    try:
        from .cgroup.layout import detect

        layout = detect()
    except UnsupportedError as e:
        return Feature(name="cgroup layout", available=False, reason=str(e),
                       how_to_enable="mount cgroup2 on /sys/fs/cgroup",
                       details={"layout": "none"}), None
    v1 = sorted({h.mount for h in layout.v1.values()})
    parts = []
    if layout.v1:
        parts.append(f"v1 controllers {', '.join(sorted(layout.v1))} "
                     f"({len(v1)} hierarchies under {os.path.commonpath(v1)})")
    if layout.v2 is not None:
        ctl = ", ".join(sorted(layout.v2.controllers)) or "none"
        parts.append(f"cgroup2 at {layout.v2.mount} (controllers: {ctl})")
    how = None
    if layout.kind != "v2":
        how = ("boot with systemd.unified_cgroup_hierarchy=1 (or cgroup_no_v1=all) for a pure "
               "cgroup v2 layout")
    details = {"layout": layout.kind,
               "v2_mount": layout.v2.mount if layout.v2 else None,
               "v2_controllers": sorted(layout.v2.controllers) if layout.v2 else [],
               "v1_controllers": {c: h.mount for c, h in sorted(layout.v1.items())}}
    return Feature(name="cgroup layout", available=True,
                   reason=f"{layout.kind}: " + "; ".join(parts), how_to_enable=how,
                   details=details), layout


class _OwnCgroup:
    """The cgroup2 directory this process is in, as a ``spawn(cgroup=)`` target."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def _spawn_target(self) -> tuple[int, tuple[int, ...]]:
        return self.fd, ()


def _clone_into_cgroup_feature(version: tuple[int, int, int], clone3: Feature,
                               layout: Any) -> Feature:
    name = "CLONE_INTO_CGROUP"
    if version < (5, 7, 0):
        return Feature(name=name, available=False,
                       reason=f"kernel {'.'.join(map(str, version))} is older than 5.7",
                       how_to_enable="Linux 5.7+ (isolate writes cgroup.procs instead)")
    if not clone3.available:
        return Feature(name=name, available=False, reason="needs clone3, which is unavailable",
                       how_to_enable=clone3.how_to_enable)
    if layout is None or layout.v2 is None:
        return Feature(name=name, available=False,
                       reason="no cgroup2 hierarchy is mounted (it only works with cgroup v2)",
                       how_to_enable="mount -t cgroup2 none /sys/fs/cgroup/unified, or boot "
                                     "with systemd.unified_cgroup_hierarchy=1")
    own = layout.v2.fs_path(layout.v2.own)
    try:
        fd = os.open(own, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return Feature(name=name, available=True,
                       reason=f"kernel 5.7+ with cgroup2 at {layout.v2.mount}; not tried "
                              f"({own}: {e.strerror})")
    try:
        from .process import DEVNULL, run

        # Born into the cgroup this process is already in: nothing moves.
        run([_true()], cgroup=_OwnCgroup(fd), stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
    except (SpawnError, SetupError) as e:
        if e.errno in (_errno.EACCES, _errno.EPERM):
            return Feature(name=name, available=True,
                           reason=f"kernel 5.7+ with cgroup2 at {layout.v2.mount}; this user may "
                                  f"not move processes into {own} ({_errname(e.errno)})")
        return Feature(name=name, available=False,
                       reason=f"clone3 into {own} failed: {e}",
                       how_to_enable="Linux 5.7+ with cgroup2", details={"errno": e.errno})
    finally:
        os.close(fd)
    return Feature(name=name, available=True,
                   reason=f"spawned /bin/true with clone3(CLONE_INTO_CGROUP) into {own}")


# Filesystems that take idmapped mounts, and the Linux version that added each.
IDMAP_FILESYSTEMS = {"ext4": (5, 12, 0), "xfs": (5, 12, 0), "vfat": (5, 12, 0),
                     "btrfs": (5, 15, 0), "overlay": (5, 19, 0), "f2fs": (5, 18, 0),
                     "erofs": (6, 2, 0), "tmpfs": (6, 3, 0)}


def _idmapped_feature(version: tuple[int, int, int], setattr_f: Feature, euid: int = 0) -> Feature:
    fs = {name: version >= since for name, since in IDMAP_FILESYSTEMS.items()}
    vs = ".".join(map(str, version))
    if euid != 0 and version >= (5, 12, 0) and setattr_f.available:
        # mount_setattr(MOUNT_ATTR_IDMAP) needs CAP_SYS_ADMIN over the filesystem's
        # superblock: the host's filesystems belong to the initial user namespace.
        return Feature(name="idmapped mounts", available=False,
                       reason=f"kernel {vs} has them, but only for CAP_SYS_ADMIN in the user "
                              "namespace that mounted the filesystem: a caller without root may "
                              "not idmap the host's (EPERM); none is needed, as root inside is "
                              "this user",
                       how_to_enable="run as root", details={"filesystems": fs})
    if version < (5, 12, 0) or not setattr_f.available:
        why = (f"kernel {vs} is older than 5.12" if version < (5, 12, 0)
               else "mount_setattr is unavailable")
        return Feature(name="idmapped mounts", available=False, reason=why,
                       how_to_enable="Linux 5.12+ (tmpfs needs 6.3+)", details={"filesystems": fs})
    yes = ", ".join(n for n, ok in fs.items() if ok)
    no = ", ".join(f"{n} ({'.'.join(map(str, IDMAP_FILESYSTEMS[n][:2]))}+)"
                   for n, ok in fs.items() if not ok)
    return Feature(name="idmapped mounts", available=True,
                   reason=f"kernel {vs} >= 5.12 with mount_setattr(MOUNT_ATTR_IDMAP): {yes}"
                          + (f"; not yet {no}" if no else "")
                          + " (from the kernel version, not tried)",
                   how_to_enable=None if not no else "a newer kernel for the others",
                   details={"filesystems": fs})


def _pidfd_feature() -> Feature:
    try:
        fd = os.pidfd_open(os.getpid())
    except AttributeError:
        err = _syscall_errno("pidfd_open", os.getpid(), 0)
        if err == 0:
            return Feature(name="pidfd", available=True, reason="pidfd_open(2) present (5.3+)")
        return Feature(name="pidfd", available=False,
                       reason=f"pidfd_open: {_errname(err)}",
                       how_to_enable="Linux 5.3+")
    except OSError as e:
        return Feature(name="pidfd", available=False,
                       reason=f"pidfd_open(2) failed with {_errname(e.errno or 0)}: "
                              "kernel older than 5.3, or a seccomp filter",
                       how_to_enable="Linux 5.3+, and a seccomp profile that allows pidfd_open")
    os.close(fd)
    return Feature(name="pidfd", available=True,
                   reason="pidfd_open(2) works (5.3+): signals and waits never hit a reused pid")


def _seccomp_feature() -> Feature:
    mode, filters = parse_status_seccomp(_read("/proc/self/status") or "")
    actions = _read("/proc/sys/kernel/seccomp/actions_avail")
    if mode is None:
        return Feature(name="seccomp", available=False, reason="the kernel has no seccomp",
                       how_to_enable="a kernel with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y")
    if actions is None:
        return Feature(name="seccomp", available=False,
                       reason="no /proc/sys/kernel/seccomp/actions_avail: no seccomp filters",
                       how_to_enable="a kernel with CONFIG_SECCOMP_FILTER=y")
    state = {0: "this process has no filter", 1: "this process is in strict mode",
             2: f"this process already runs under {filters} filter(s); new ones stack"}[mode]
    return Feature(name="seccomp", available=True,
                   reason=f"seccomp filters supported (actions: {actions}); {state}",
                   details={"mode": mode, "filters": filters, "actions": actions.split()})


def _newidmap_feature() -> Feature:
    found: dict[str, str] = {}
    bad = []
    for tool in ("newuidmap", "newgidmap"):
        path = shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin") or shutil.which(tool)
        if path is None:
            bad.append(f"{tool} is missing")
            continue
        st = os.stat(path)
        caps = False
        try:
            caps = bool(os.getxattr(path, "security.capability"))
        except OSError:
            pass
        if st.st_mode & stat.S_ISUID and st.st_uid == 0:
            found[tool] = f"{path} (setuid root)"
        elif caps:
            found[tool] = f"{path} (file capabilities)"
        else:
            bad.append(f"{path} is neither setuid root nor has file capabilities")
    if bad:
        return Feature(name="newuidmap/newgidmap", available=False,
                       reason="; ".join(bad) + ": unprivileged callers can map only their own id",
                       how_to_enable="apt-get install uidmap (dnf install shadow-utils)",
                       details=found)
    return Feature(name="newuidmap/newgidmap", available=True,
                   reason=", ".join(found.values()) + ": multi-range id maps without root",
                   details=found)


def _subids_feature(euid: int) -> Feature:
    try:
        user = pwd.getpwuid(euid).pw_name
    except KeyError:
        user = str(euid)
    try:
        uids = subid_ranges(euid, kind="uid")
        gids = subid_ranges(euid, kind="gid")
    except IsolateError as e:
        return Feature(name="subordinate ids", available=False, reason=str(e),
                       how_to_enable="fix the syntax of /etc/subuid and /etc/subgid")
    def fmt(rs: list[Any]) -> str:
        return ", ".join(f"{r.start}-{r.start + r.count - 1}" for r in rs) or "none"

    details = {"user": user, "subuid": [(r.start, r.count) for r in uids],
               "subgid": [(r.start, r.count) for r in gids]}
    reason = f"/etc/subuid for {user}: {fmt(uids)}; /etc/subgid: {fmt(gids)}"
    if uids and gids:
        return Feature(name="subordinate ids", available=True, reason=reason, details=details)
    if euid == 0:
        return Feature(name="subordinate ids", available=True,
                       reason=reason + " (root writes any id map directly and needs none)",
                       details=details)
    return Feature(name="subordinate ids", available=False, reason=reason,
                   how_to_enable=f"usermod --add-subuids 100000-165535 --add-subgids "
                                 f"100000-165535 {user}", details=details)


def probe(*, refresh: bool = False) -> Probe:
    """Probe this kernel and host.  Namespace tries are cached per process (``refresh`` redoes them).

    Never raises for a missing feature: each ``Feature`` says what was
    found and how to enable it.
    """
    uname = os.uname()
    version = parse_kernel_version(uname.release)
    euid = os.geteuid()
    limits = userns_limits()
    namespaces = {t: namespace_feature(t, refresh=refresh)
                  for t in ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time")}
    clone3 = _clone3_feature(version)
    cgroup, layout = _cgroup_feature()
    setattr_f = _syscall_feature("mount_setattr", [("mount_setattr", (-1, 0, 0, 0, 0))], "5.12",
                                 "recursive read-only binds, idmapped mounts")
    return Probe(
        kernel=uname.release,
        machine=uname.machine,
        euid=euid,
        namespaces=namespaces,
        userns_limits=_limits_feature(limits, euid),
        clone3=clone3,
        clone_into_cgroup=_clone_into_cgroup_feature(version, clone3, layout),
        cgroup=cgroup,
        new_mount_api=_mount_api_feature(euid),
        mount_setattr=setattr_f,
        idmapped_mounts=_idmapped_feature(version, setattr_f, euid),
        pidfd=_pidfd_feature(),
        # first > last: EINVAL where it exists, and no descriptor is touched.
        close_range=_syscall_feature("close_range", [("close_range", (1, 0, 0))], "5.9",
                                     "closes every other fd in the child in one call"),
        seccomp=_seccomp_feature(),
        newidmap=_newidmap_feature(),
        subids=_subids_feature(euid),
    )


def format_table(result: Probe, *, width: int = 100) -> str:
    """``result`` as the human-readable table ``isolate probe`` prints."""
    import textwrap

    lines = [f"isolate probe: Linux {result.kernel} ({result.machine}), euid {result.euid}, "
             f"cgroup layout {result.cgroup_layout}", ""]
    rows = [(f.name, "yes" if f.available else "NO", f) for f in result.features().values()]
    w = max(len(r[0]) for r in rows)
    indent = " " * (w + 7)
    lines.append(f"{'FEATURE'.ljust(w)}  OK   REASON")
    for name, ok, f in rows:
        text = textwrap.wrap(f.reason, max(40, width - len(indent))) or [""]
        lines.append(f"{name.ljust(w)}  {ok.ljust(3)}  {text[0]}")
        lines += [indent + t for t in text[1:]]
        if f.how_to_enable:
            how = textwrap.wrap("how to enable: " + f.how_to_enable, max(40, width - len(indent)))
            lines += [indent + t for t in how]
    return "\n".join(lines) + "\n"
