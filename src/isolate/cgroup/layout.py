"""``detect()``: which cgroup hierarchies this process sees, and where it sits in them.

Reads ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` once per call.  The
parsing functions take text so they are tested without a host.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._record import dataclass, field
from ..errors import ConfigError, UnsupportedError

__all__ = ["Layout", "Hierarchy", "detect", "parse_mountinfo", "parse_proc_cgroup"]

#: Inode numbers of the initial namespaces (include/linux/proc_ns.h).
_CGROUP_NS_INIT_INO = 0xEFFFFFFB
_PID_NS_INIT_INO = 0xEFFFFFFC

#: v1 controllers isolate knows how to drive.
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                  "hugetlb", "net_cls", "net_prio")
#: v2 names for v1 controllers that were renamed.
V2_NAME = {"blkio": "io"}
#: v1 controllers whose job is done by every v2 cgroup without a controller:
#: cpu.stat (cpuacct), cgroup.freeze (freezer), BPF device programs (devices).
V2_CORE = frozenset({"cpuacct", "freezer", "devices"})


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy.

    ``mount`` is where it is mounted, ``root`` the cgroup path the mount shows
    (``/`` unless a container bind-mounted a subtree), ``controllers`` the v1
    controllers mounted there (for v2: those in the root ``cgroup.controllers``),
    ``own`` this process's cgroup path in it (from ``/proc/self/cgroup``).
    """

    version: int
    mount: str
    root: str
    controllers: frozenset[str]
    own: str

    def fs_path(self, cgroup_path: str) -> str:
        """The directory of ``cgroup_path`` (as in /proc/self/cgroup) under this mount."""
        rel = cgroup_path
        if self.root != "/" and (rel == self.root or rel.startswith(self.root + "/")):
            rel = rel[len(self.root):]
        rel = rel.lstrip("/")
        if rel.startswith(".."):
            # Outside our cgroup namespace's root: the mount root is what we can see.
            rel = ""
        return os.path.join(self.mount, rel) if rel else self.mount


@dataclass(frozen=True, slots=True)
class Layout:
    """The cgroup layout: ``kind`` is ``"v2"``, ``"hybrid"`` or ``"v1"``.

    ``v2`` is the cgroup2 hierarchy (pure v2, or ``/sys/fs/cgroup/unified`` on
    hybrid hosts), ``v1`` maps each v1 controller to its hierarchy (a named
    hierarchy, such as systemd's, by ``"name=systemd"``).
    ``cgroupns`` is true inside a non-initial cgroup namespace, ``container``
    when this process looks nested in a container (non-initial pid namespace,
    or a cgroup mount that shows only a subtree).
    """

    kind: str
    v2: Hierarchy | None
    v1: dict[str, Hierarchy] = field(default_factory=dict)
    cgroupns: bool = False
    container: bool = False

    def where(self, controller: str) -> str:
        """``"v1"`` or ``"v2"``: the hierarchy that provides ``controller`` (v1 name).

        Raises ``UnsupportedError`` naming the controller and the hierarchies looked at.
        """
        if controller in self.v1:
            return "v1"
        if self.v2 is not None and V2_NAME.get(controller, controller) in self.v2.controllers:
            return "v2"
        if controller in V2_CORE and self.v2 is not None:
            return "v2"
        looked = []
        if self.v1:
            looked.append("no cgroup v1 hierarchy mounts it")
        if self.v2 is not None:
            looked.append(f"it is not in {self.v2.mount}/cgroup.controllers")
        if not looked:
            looked.append("no cgroup filesystem is mounted")
        raise UnsupportedError(
            f"the {controller!r} cgroup controller is not available ({'; '.join(looked)}); "
            f"enable it in the kernel or mount it")

    def hierarchies(self) -> list[Hierarchy]:
        """Every v1 hierarchy once (co-mounted controllers share one), then v2."""
        seen: dict[str, Hierarchy] = {}
        for h in self.v1.values():
            seen.setdefault(h.mount, h)
        out = list(seen.values())
        if self.v2 is not None:
            out.append(self.v2)
        return out


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return s.encode().decode("unicode_escape") if "\\" in s else s


def parse_mountinfo(text: str) -> list[tuple[int, str, str, frozenset[str]]]:
    """cgroup mounts in ``mountinfo`` text: (version, mount point, root, v1 controllers)."""
    out: list[tuple[int, str, str, frozenset[str]]] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f, r = left.split(), right.split()
        if len(f) < 5 or len(r) < 3:
            continue
        fstype, opts = r[0], r[2].split(",")
        if fstype == "cgroup2":
            out.append((2, _unescape(f[4]), _unescape(f[3]), frozenset()))
        elif fstype == "cgroup":
            # A named hierarchy (name=systemd) has no controller; it is known by its name.
            ctl = frozenset(o for o in opts if o in V1_CONTROLLERS or o.startswith("name="))
            if ctl:
                out.append((1, _unescape(f[4]), _unescape(f[3]), ctl))
    return out


def parse_proc_cgroup(text: str) -> tuple[str | None, dict[str, str]]:
    """``/proc/self/cgroup`` text -> (v2 path or None, {v1 controller: path})."""
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctl, path = parts
        if ctl == "":
            v2 = path
        else:
            for c in ctl.split(","):
                v1[c] = path
    return v2, v1


def build_layout(mountinfo: str, proc_cgroup: str, *, cgroupns: bool = False,
                 pidns: bool = False, read_controllers: bool = True) -> Layout:
    """The layout from ``mountinfo`` and ``/proc/self/cgroup`` text."""
    v2_path, v1_paths = parse_proc_cgroup(proc_cgroup)
    v1: dict[str, Hierarchy] = {}
    v2: Hierarchy | None = None
    subtree = False
    for version, mount, root, ctl in parse_mountinfo(mountinfo):
        if root != "/":
            subtree = True
        if version == 2:
            if v2 is not None:
                continue   # the first cgroup2 mount wins, like systemd's
            have: frozenset[str] = frozenset()
            if read_controllers:
                try:
                    have = frozenset(Path(mount, "cgroup.controllers").read_text().split())
                except OSError:
                    have = frozenset()
            v2 = Hierarchy(2, mount, root, have, v2_path or "/")
        else:
            if any(c in v1 for c in ctl):
                continue
            own = next((v1_paths[c] for c in ctl if c in v1_paths), "/")
            h = Hierarchy(1, mount, root, ctl, own)
            for c in ctl:
                v1[c] = h
    if v1 and v2 is not None:
        kind = "hybrid"
    elif v1:
        kind = "v1"
    elif v2 is not None:
        kind = "v2"
    else:
        raise UnsupportedError("no cgroup filesystem is mounted (mount cgroup2 on /sys/fs/cgroup)")
    return Layout(kind, v2, v1, cgroupns=cgroupns, container=pidns or subtree)


def _ns_is_initial(name: str, ino: int) -> bool:
    try:
        return os.stat(f"/proc/self/ns/{name}").st_ino == ino
    except OSError:
        return True


#: The text of ``/proc/<pid>/cgroup`` to take as this process's own (None: its own).  The
#: ``isolate-oci`` planner's worker runs a verb for its caller, in the caller's cgroups
#: (``isolate.oci.warm``); the caller's namespaces are the worker's.
own_cgroup: str | None = None


def detect() -> Layout:
    """The cgroup layout of this host as this process sees it.

    Raises ``UnsupportedError`` when no cgroup filesystem is mounted.
    """
    return build_layout(Path("/proc/self/mountinfo").read_text(),
                        own_cgroup if own_cgroup is not None else Path("/proc/self/cgroup").read_text(),
                        cgroupns=not _ns_is_initial("cgroup", _CGROUP_NS_INIT_INO),
                        pidns=not _ns_is_initial("pid", _PID_NS_INIT_INO))


def split_parent(parent: str | os.PathLike[str], layout: Layout) -> str:
    """Validate ``parent`` and return it as a cgroup path relative to each hierarchy's mount.

    ``parent`` is either relative (``"isolate-test-x/jobs"``: from the root of
    every hierarchy) or an absolute directory under a cgroup mount
    (``/sys/fs/cgroup/memory/isolate-test-x``: the part after the mount is
    used for every hierarchy).  ``..`` and paths outside the cgroup filesystem
    raise ``ConfigError``.
    """
    try:
        text = os.fspath(parent)
    except TypeError:
        raise ConfigError(f"Cgroup parent must be a path, got {parent!r}") from None
    if not isinstance(text, str) or not text or "\0" in text:
        raise ConfigError(f"Cgroup parent must be a non-empty path, got {parent!r}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"Cgroup parent must not contain '..': {text!r}")
    if text.startswith("/"):
        norm = "/" + "/".join(parts)
        for h in sorted(layout.hierarchies(), key=lambda h: -len(h.mount)):
            if norm == h.mount or norm.startswith(h.mount + "/"):
                return norm[len(h.mount):].strip("/")
        raise ConfigError(f"Cgroup parent {text!r} is outside the cgroup filesystem "
                          f"(mounts: {', '.join(h.mount for h in layout.hierarchies())})")
    return "/".join(parts)


def check_name(name: object) -> str:
    """A cgroup directory name: one path component; ``ConfigError`` otherwise."""
    if (not isinstance(name, str) or not name or "/" in name or "\0" in name
            or name in (".", "..") or name.startswith("cgroup.") or len(name) > 255):
        raise ConfigError(f"Cgroup name must be one path component (not '.', '..' or 'cgroup.*'), "
                          f"got {name!r}")
    return name
