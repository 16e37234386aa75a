"""Cgroups for a caller without root: which subtree is delegated to it, and the error when none is.

An ordinary user may make cgroups only below a directory it can write: on
cgroup v2 one that systemd (``Delegate=yes``) or an administrator handed over
(the directory and its ``cgroup.procs``, ``cgroup.subtree_control`` and
``cgroup.threads`` owned by the user); on v1 a directory per hierarchy that
an administrator made and chowned.  ``Cgroup.create`` looks before it makes
anything: a hierarchy a limit needs that is not writable raises
``CgroupDelegationError``; one that only the default controllers (for
``stats()``) would have joined is left out.

cgroup v2's no-internal-processes rule: a cgroup holding processes cannot
enable controllers for its children (``EBUSY``).  A delegated scope holds the
very process that wants to make groups below it, so, as podman
(``MaybeMoveToSubCgroup``) and Docker's dind entrypoint do, every process in
it is moved into a leaf ``init`` below it first.  That leaf stays: the caller
lives there.
"""

from __future__ import annotations

import errno as _errno
import os
import pwd

from ..errors import CgroupDelegationError, CgroupError
from ._files import controllers_of
from .layout import V2_CORE, V2_NAME, Hierarchy

__all__ = ["INIT_LEAF", "privileged", "deepest_existing", "usable", "check", "delegated_v2", "move_out"]

#: The leaf the processes of a delegated v2 cgroup are moved into (podman's and Docker's name).
INIT_LEAF = "init"


#: The inode number of the initial user namespace (include/linux/proc_ns.h).
_USER_NS_INIT_INO = 0xEFFFFFFD
_privileged: dict[int, bool] = {}


def privileged() -> bool:
    """Whether this process is root of the initial user namespace: the whole cgroup tree is
    its own.  Root of another user namespace (``unshare -r``, a rootless container's
    runtime) is an ordinary user to cgroupfs, and is treated as one."""
    euid = os.geteuid()
    known = _privileged.get(euid)
    if known is None:
        try:
            initial = os.stat("/proc/self/ns/user").st_ino == _USER_NS_INIT_INO
        except OSError:
            initial = True
        known = _privileged[euid] = euid == 0 and initial
    return known


def deepest_existing(mount: str, rel: str) -> str:
    """``mount/rel`` or its deepest ancestor (not above ``mount``) that exists."""
    path = os.path.join(mount, rel) if rel else mount
    while path != mount and not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


def _writable(path: str) -> bool:
    return os.access(path, os.W_OK | os.X_OK, effective_ids=True)


def usable(h: Hierarchy, rel: str) -> bool:
    """Whether this process can make a group below ``rel`` in ``h`` (the parent, or the
    ancestor it would make the parent in, is writable).  No directory is made."""
    return _writable(deepest_existing(h.mount, rel))


def delegated_v2(path: str) -> bool:
    """Whether the v2 cgroup ``path`` is delegated to this process: owned by its euid, with
    ``cgroup.procs`` and ``cgroup.subtree_control`` writable."""
    try:
        if os.stat(path).st_uid != os.geteuid():
            return False
    except OSError:
        return False
    return all(os.access(os.path.join(path, f), os.W_OK, effective_ids=True)
               for f in ("cgroup.procs", "cgroup.subtree_control"))


def _outside_uid() -> int:
    """This process's euid as the initial user namespace sees it (who owns what it makes)."""
    euid = os.geteuid()
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, outside, count = (int(x) for x in line.split())
                if inside <= euid < inside + count:
                    return outside + euid - inside
    except (OSError, ValueError):
        pass
    return euid


def _who() -> str:
    """``uid N``, with the host's uid too inside a user namespace."""
    euid, host = os.geteuid(), _outside_uid()
    return f"uid {euid}" if host == euid else f"uid {euid} (uid {host} outside its user namespace)"


def _user() -> str:
    uid = _outside_uid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _hint(h: Hierarchy, v2: bool) -> str:
    user = _user()
    if v2:
        sub = f"{h.mount}/{user}"
        return ("get one: start isolate in a delegated scope (systemd-run --user --scope "
                "-p Delegate=yes isolate run ...; isolate then uses that scope), or have an "
                f"administrator run 'mkdir {sub} && chown {user} {sub} {sub}/cgroup.procs "
                f"{sub}/cgroup.subtree_control {sub}/cgroup.threads' (with the controllers enabled "
                f"in the parent's cgroup.subtree_control) and pass --cgroup-parent {user} "
                "(parent= in Python), or start isolate from inside that cgroup")
    return ("get one: have an administrator run 'mkdir /sys/fs/cgroup/<hierarchy>/"
            f"{user} && chown -R {user} /sys/fs/cgroup/<hierarchy>/{user}' for each hierarchy a "
            f"limit needs, then pass --cgroup-parent {user} (parent= in Python), or start "
            "isolate from inside those cgroups (systemd does not delegate cgroup v1 to users)")


def check(h: Hierarchy, rel: str, controllers: set[str], *, default: bool) -> None:
    """Raise ``CgroupDelegationError`` unless this process can make a group with
    ``controllers`` (v1 names) below ``rel`` in ``h``.  Nothing is made.

    ``default``: ``rel`` is the default parent (below this process's own cgroup),
    not one the caller named.
    """
    target = deepest_existing(h.mount, rel)
    v2 = h.version == 2
    what = "/".join(sorted(controllers))
    label = (f"cgroup v2 hierarchy at {h.mount}" if v2
             else f"cgroup v1 {','.join(sorted(h.controllers))} hierarchy at {h.mount}")
    whose = "this process's own cgroup" if default else "the cgroup parent"
    want = os.path.join(h.mount, rel) if rel else h.mount
    problem = None
    if not _writable(target):
        problem = f"{target} is not writable by {_who()}"
    elif v2:
        need = {V2_NAME.get(c, c) for c in controllers if c not in V2_CORE}
        avail, on = controllers_of(target)
        missing = need - avail
        own = h.fs_path(h.own)
        common = os.path.commonpath([own, want])
        if not os.access(os.path.join(common, "cgroup.procs"), os.W_OK, effective_ids=True):
            # The kernel moves a process (clone3 into a cgroup too) only for a writer of
            # cgroup.procs in the nearest cgroup above both ends (cgroup-v2.rst, "Delegation Containment").
            problem = (f"{common}/cgroup.procs is not writable by {_who()}: on cgroup v2 "
                       "a process may move only within a subtree delegated to it, and "
                       f"{common} is the nearest cgroup above both this process's ({own}) "
                       f"and {want}; start isolate from inside the delegated subtree")
        elif missing:
            problem = (f"the {', '.join(sorted(missing))} controller(s) are not delegated to "
                       f"{target} (not in its cgroup.controllers)")
        elif need - on and not os.access(os.path.join(target, "cgroup.subtree_control"), os.W_OK,
                                         effective_ids=True):
            problem = (f"{target}/cgroup.subtree_control is not writable by {_who()} "
                       f"(needed to enable {', '.join(sorted(need - on))})")
    if problem is None:
        return
    needs = f"a {what} limit needs" if controllers else "a cgroup needs"
    raise CgroupDelegationError(
        _errno.EACCES,
        f"{needs} a cgroup delegated to this user: cannot make one below {want} ({whose}, "
        f"in the {label}): {problem}; {_hint(h, v2)}", target)


def move_out(path: str) -> str:
    """Move every process in the v2 cgroup ``path`` into its leaf ``init`` (made if missing),
    so that ``path`` may enable controllers for its children; returns the leaf.

    Repeats until ``path`` is empty: a process forked during the move is caught on the next pass.
    """
    leaf = os.path.join(path, INIT_LEAF)
    try:
        os.mkdir(leaf)
    except FileExistsError:
        pass
    except OSError as e:
        raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: creating the leaf for this "
                          "cgroup's processes", leaf) from None
    procs = os.path.join(path, "cgroup.procs")
    for _ in range(100):
        with open(procs) as f:
            pids = f.read().split()
        if not pids:
            return leaf
        for pid in pids:
            try:
                with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except ProcessLookupError:
                continue
            except OSError as e:
                raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: moving pid {pid} into "
                                  f"{leaf} (cgroup v2 allows controllers only for cgroups "
                                  "without processes)", os.path.join(leaf, "cgroup.procs")) from None
    raise CgroupError(_errno.EBUSY, "processes keep appearing in the cgroup", path)
