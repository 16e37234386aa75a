"""Where an OCI container's cgroup is: placed at ``create``, opened again by every later verb.

``create`` records in state.json the directories it is about to make
(``planned_paths``) before it makes them; every verb after it opens the
group from those paths (``open_cgroup``), never from its own cgroup, so a
``ps`` or ``delete`` run from elsewhere finds the same group.
"""

from __future__ import annotations

import os

from ..errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from ..cgroup import Cgroup
    from .state import ContainerState

__all__ = ["cgroup_place", "controllers", "planned_paths", "cgroup_at", "open_cgroup"]


def cgroup_place(cgroups_path: str | None, cid: str) -> tuple[str | None, str]:
    """(parent, name) for ``linux.cgroupsPath``; runc's cgroupfs rules, systemd's form refused."""
    if not cgroups_path:
        return None, cid            # isolate's default parent, named after the container
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        raise UnsupportedError(f"linux.cgroupsPath: {cgroups_path!r} is a systemd slice path; the "
                               "systemd cgroup driver is not supported (use a cgroupfs path)")
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ConfigError(f"linux.cgroupsPath: invalid path {cgroups_path!r}")
    return "/".join(parts[:-1]) or ".", parts[-1]      # ".": the top of each hierarchy


def controllers(limits: Any) -> list[str]:
    from ..cgroup import DEFAULT_CONTROLLERS, KNOWN_CONTROLLERS, _layout
    from ..cgroup.limits import controllers_for

    wanted = set(DEFAULT_CONTROLLERS) | set(controllers_for(limits))
    # Every v1 controller the host has, as runc does: the container is then in a
    # cgroup of its own in each hierarchy (freezer for pause/resume, devices,
    # cpuset, blkio...), never in the runtime's.
    lay = _layout()
    # Named hierarchies too (name=systemd), and on a hybrid host the unified one: runc
    # puts the container in a group of its own in every hierarchy, so that
    # /proc/<pid>/cgroup names the container's group on every line.
    wanted |= {c for c in lay.v1 if c in KNOWN_CONTROLLERS or c.startswith("name=")}
    if lay.kind == "hybrid":
        wanted.add("unified")
    return sorted(wanted)


def planned_paths(name: str, parent: str | None, controllers: Iterable[str], limits: Any) -> list[str]:
    """The directories ``Cgroup.create(name, parent=, controllers=, limits=)`` is about to make.

    Recorded in state.json before they exist, so that whatever a killed
    ``create`` made is found by ``delete --force``.  The default parent
    depends on this process's own cgroup in each hierarchy, which is why the
    paths are recorded rather than recomputed by later commands.
    """
    from ..cgroup import _default_parent, _layout, _resolve
    from ..cgroup.layout import split_parent
    from ..cgroup.limits import controllers_for

    lay = _layout()
    _, v2_ctl, v1_hs, unified = _resolve(lay, frozenset(controllers), frozenset(controllers_for(limits)))
    rel = None if parent is None else split_parent(parent, lay)
    hierarchies = list(v1_hs)
    if (unified or v2_ctl) and lay.v2 is not None:
        hierarchies.append(lay.v2)
    return sorted(os.path.join(h.mount, _default_parent(h) if rel is None else rel, name)
                  for h in hierarchies)


def cgroup_at(paths: Sequence[str], controllers: Iterable[str]) -> Cgroup | None:
    """The cgroup whose directories are ``paths`` (as ``create`` recorded them), or None if none is left.

    Opened from the paths themselves, whatever cgroup this process is in:
    each hierarchy is described to ``Cgroup.open`` as rooted at the
    directory that holds the group.  Directories already gone are left out,
    so a group half made or half removed still opens.
    """
    from ..cgroup import Cgroup, Layout, _layout
    from ..cgroup.layout import Hierarchy

    lay = _layout()
    mounts = sorted(lay.hierarchies(), key=lambda h: -len(h.mount))
    v1: dict[str, Hierarchy] = {}
    v2: Hierarchy | None = None
    names: set[str] = set()
    for path in paths:
        h = next((h for h in mounts if path.startswith(h.mount + "/")), None)
        if h is None or not os.path.isdir(path):
            continue
        at = Hierarchy(h.version, os.path.dirname(path), "/", h.controllers, "/")
        names.add(os.path.basename(path))
        if h.version == 2:
            v2 = at
        else:
            v1.update(dict.fromkeys(h.controllers, at))
    if not names:
        return None
    if len(names) > 1:
        raise ConfigError(f"state.json: the container's cgroup paths name different groups: {sorted(paths)!r}")
    kind = "hybrid" if v1 and v2 is not None else "v1" if v1 else "v2"
    here = Layout(kind, v2, v1)
    wanted = []
    for c in controllers:
        try:
            here.where(c)
        except UnsupportedError:
            continue
        wanted.append(c)
    if kind == "hybrid":
        wanted.append("unified")
    return Cgroup.open(names.pop(), parent=".", controllers=wanted, layout=here)


def open_cgroup(st: ContainerState) -> Cgroup | None:
    """The container's cgroup (made by ``create``), or None if it has none (left)."""
    cg = st.cgroup
    if not cg:
        return None
    if "paths" in cg:
        return cgroup_at(cg["paths"], cg["controllers"])
    from ..cgroup import Cgroup

    # state.json of an older isolate-oci, without the paths.
    return Cgroup.open(cg["name"], parent=cg["parent"], controllers=cg["controllers"])
