"""Reclaiming what dead owners left: read their journals, undo what they made, in order.

``gc()`` (``isolate gc``) looks at every dead owner's records;
``reclaim_once(parents)`` only at those with something directly in one of
``parents``, once per process.  See ``_owner``'s docstring for the records and
the rules (a live owner's things, a thing a live process uses, and a path
made again since are never touched).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import json
import os
import threading
import warnings

from ._record import dataclass
from ._registry import JOURNAL, Kind, Owner, boot_id, open_registry, proc_start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["Leftover", "gc", "reclaim_once", "forget"]

#: The order in which a reclaim undoes things: mounts before the files under
#: them, groups (which kills their processes) before the parents holding them.
_ORDER: tuple[Kind, ...] = ("namespace-mount", "cgroup", "overlay-work", "namespace-file",
                            "private-mount", "namespace-dir", "cgroup-parent", "userns-range")
_CGROUP_FS = frozenset({"cgroup", "cgroup2"})

_lock = threading.Lock()
_reclaimed: set[str] = set()              # directories reclaim_once looked at
_asked: set[tuple[str, ...]] = set()      # the arguments it was called with


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()      # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True, slots=True)
class Leftover:
    """Something a dead isolate process made and ``gc()`` removed (or would remove).

    ``kind``: ``"cgroup"`` (a group, with the processes still in it killed,
    and any group below it), ``"cgroup-parent"`` (a parent group it made, now
    empty), ``"overlay-work"`` (an overlay's work directory),
    ``"namespace-mount"``, ``"namespace-file"``, ``"namespace-dir"`` and
    ``"private-mount"`` (what ``Namespace.create`` made), ``"userns-range"``
    (a container's block of host ids, see ``isolate._idalloc``), ``"net-lease"`` (a
    bridged container's address with its veth, published ports and hosts entry, see
    ``isolate.net.attachment``; path ``<network>/<address> (<name>, <veth>)``).  ``pid`` and
    ``start`` name the owner that is gone.
    """

    kind: Kind
    path: str
    pid: int
    start: int

    def __str__(self) -> str:
        return f"{self.kind} {self.path} (owner pid {self.pid}, started at tick {self.start}, gone)"



class _Entry:
    """One path of a dead owner's record, and what is known of it."""

    __slots__ = ("path", "role", "ids", "probe", "mntns")

    def __init__(self, path: str, role: str) -> None:
        self.path = path
        self.role = role
        self.ids: tuple[int, int] | None = None    # (dev, ino) once made
        self.probe = ""          # ids are those of this file in the directory (cgroup: tasks)
        self.mntns = 0


class _Rec:
    """One record as read back from an owner's journal."""

    __slots__ = ("id", "kind", "entries", "holders", "owner", "keep", "raw")

    def __init__(self, id: int, owner: Owner) -> None:
        self.id = id
        self.owner = owner
        self.kind = ""
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.holders: list[tuple[int, int, int]] = []
        self.keep = False            # something could not be removed: the record stays
        self.raw: list[str] = []     # its lines, to write back if it stays


def _apply(rec: _Rec, item: dict[str, Any]) -> None:
    """Add one journal line to ``rec``; raises TypeError/ValueError for a malformed one."""
    if "kind" in item:
        rec.kind = str(item["kind"])
    elif "pending" in item:
        path, role = item["pending"]
        rec.entries.setdefault((str(path), str(role)), _Entry(str(path), str(role)))
    elif "made" in item:
        path, role, dev, ino, *probe = item["made"]
        e = rec.entries.setdefault((str(path), str(role)), _Entry(str(path), str(role)))
        e.ids = (int(dev), int(ino))
        e.probe = str(probe[0]) if probe else ""
    elif "cancel" in item:
        for key in [k for k in rec.entries if k[0] == item["cancel"]]:
            del rec.entries[key]
    elif "mount" in item:
        path, role, mntns = item["mount"]
        e = rec.entries.setdefault((str(path), str(role)), _Entry(str(path), str(role)))
        e.mntns = int(mntns)
    elif "holder" in item:
        pid, start, pidns = item["holder"]
        rec.holders.append((int(pid), int(start), int(pidns)))


def _records(home: str, owner: Owner) -> list[_Rec]:
    """The records in ``home``'s journal that were not cleared, in the order they began."""
    try:
        with open(os.path.join(home, JOURNAL), "rb") as f:
            data = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return []
    recs: dict[int, _Rec] = {}
    for line in data.splitlines(keepends=True):
        try:
            item = json.loads(line)
            rid = int(item["id"])
        except (ValueError, TypeError, KeyError):
            continue            # a line cut short by the owner's death
        if "clear" in item:
            recs.pop(rid, None)
            continue
        rec = recs.get(rid)
        if rec is None:
            rec = recs[rid] = _Rec(rid, owner)
        try:
            _apply(rec, item)
        except (TypeError, ValueError):
            continue
        rec.raw.append(line if line.endswith("\n") else line + "\n")
    return list(recs.values())


def _lock_if_dead(home: str, owner: Owner) -> int | None:
    """An fd holding the exclusive lock on a dead owner's directory, or None if it lives."""
    try:
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)          # held: the owner lives (or another gc is at it)
        return None
    if owner.running():
        # Unlocked but running: the instant between mkdir and flock (see the module).
        os.close(fd)
        return None
    return fd


class _Mounts:
    """/proc/self/mountinfo as (mount point -> [(device, fstype)], stacked in order)."""

    def __init__(self) -> None:
        self.at: dict[str, list[tuple[str, str]]] = {}
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            text = ""
        import re

        for line in text.splitlines():
            left, sep, right = line.partition(" - ")
            fields = left.split()
            if not sep or len(fields) < 5:
                continue
            # mountinfo escapes space, tab, newline and backslash as \ooo.
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            self.at.setdefault(mp, []).append((fields[2], right.split()[0] if right else ""))

    def top(self, path: str) -> tuple[str, str] | None:
        """(device, fstype) of the topmost mount on ``path``, None if nothing is mounted there."""
        stack = self.at.get(path)
        return stack[-1] if stack else None

    def fstype_of(self, path: str) -> str:
        """The filesystem type of the mount holding ``path``."""
        p = path
        while True:
            top = self.top(p)
            if top is not None:
                return top[1]
            if p in ("/", ""):
                return ""
            p = os.path.dirname(p)

    def device_under(self, path: str) -> str:
        """The device of the mount that ``path`` sits on, below any mount on ``path`` itself."""
        parent = os.path.dirname(path)
        while True:
            top = self.top(parent)
            if top is not None:
                return top[0]
            if parent in ("/", ""):
                return ""
            parent = os.path.dirname(parent)


class _Reclaimer:
    """Undoes dead owners' records, in ``_ORDER``; ``dry_run`` only lists."""

    def __init__(self, dry_run: bool, live: set[str]) -> None:
        self.dry_run = dry_run
        self.live = live              # paths that live owners' records claim
        self.found: list[Leftover] = []
        self.gone: set[str] = set()   # paths removed (or, in a dry run, that would be)
        self.done: set[tuple[str, str]] = set()     # (role, path) of those
        self.mounts = _Mounts()
        try:
            self.mntns = os.stat("/proc/self/ns/mnt").st_ino
            self.pidns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            self.mntns = self.pidns = 0
        self.errors: list[str] = []

    def note(self, rec: _Rec, e: _Entry) -> None:
        kind = _ORDER[_ORDER.index(e.role)]     # the role as its Kind (undo checked it is one)
        self.found.append(Leftover(kind=kind, path=e.path, pid=rec.owner.pid,
                                   start=rec.owner.start))
        self.gone.add(e.path)
        self.done.add((e.role, e.path))

    def held(self, rec: _Rec) -> bool:
        """Whether a process using the thing (a container on an overlay) still runs."""
        for pid, start, pidns in rec.holders:
            if pidns != self.pidns:
                return True           # not ours to judge from here: leave it
            if rec.owner.boot == boot_id() and proc_start_time(pid) == start:
                return True
        return False

    def same(self, e: _Entry) -> bool | None:
        """The path is still what the owner made: True; gone or another: False; unknown: None."""
        try:
            st = os.lstat(os.path.join(e.path, e.probe) if e.ids and e.probe else e.path)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        if e.ids is None:
            return None
        return (st.st_dev, st.st_ino) == e.ids

    def undo(self, rec: _Rec, e: _Entry) -> None:
        """Remove one entry's path if it is still the owner's; sets ``rec.keep`` when it cannot."""
        if (e.role, e.path) in self.done:
            return                    # named by another record of the same owner
        if e.path in self.live and e.role != "cgroup-parent":
            return                    # a live owner made it again since: theirs now
        try:
            getattr(self, "_undo_" + e.role.replace("-", "_"))(rec, e)
        except OSError as err:
            rec.keep = True
            self.errors.append(f"{e.role} {e.path}: {err.strerror or err}")

    # Each _undo_<role> removes or leaves; a removal is noted.

    def _claimed(self, e: _Entry) -> bool:
        return e.path in self.live

    def _undo_cgroup(self, rec: _Rec, e: _Entry) -> None:
        if self.mounts.fstype_of(e.path) not in _CGROUP_FS:
            return                    # not a cgroup (any more): never touch it
        same = self.same(e)
        if same is False:
            return
        if same is None:
            # Pending: ours only if empty and unclaimed; rmdir itself checks emptiness.
            if not os.path.isdir(e.path) or self._claimed(e):
                return
            if self.dry_run:
                if not _has_subdirs(e.path, self.gone) and not _cgroup_busy(e.path):
                    self.note(rec, e)
                return
            try:
                os.rmdir(e.path)
            except OSError as err:
                if err.errno in (_errno.EBUSY, _errno.ENOTEMPTY, _errno.ENOENT):
                    return
                raise
            self.note(rec, e)
            return
        if any(p == e.path or p.startswith(e.path + "/") for p in self.live):
            rec.keep = True           # a live owner made a group inside: leave the tree
            return
        if not self.dry_run:
            from .cgroup._files import remove_tree

            remove_tree(e.path)
        self.note(rec, e)

    def _undo_cgroup_parent(self, rec: _Rec, e: _Entry) -> None:
        if self.mounts.fstype_of(e.path) not in _CGROUP_FS or self.same(e) is False:
            return
        if self._claimed(e) and e.ids is None:
            return
        if self.dry_run:
            if (os.path.isdir(e.path) and not _has_subdirs(e.path, self.gone)
                    and not _cgroup_busy(e.path)):
                self.note(rec, e)
            return
        try:
            os.rmdir(e.path)       # only when empty: others may use it now
        except OSError:
            return
        self.note(rec, e)

    def _undo_overlay_work(self, rec: _Rec, e: _Entry) -> None:
        same = self.same(e)
        if same is False:
            return
        if same is None:
            if self._claimed(e) or not os.path.isdir(e.path) or os.listdir(e.path):
                return
            if not self.dry_run:
                os.rmdir(e.path)
            self.note(rec, e)
            return
        if not self.dry_run:
            import shutil

            def fail(_f: Any, path: str, exc: Any) -> None:
                err = exc[1] if isinstance(exc, tuple) else exc
                if not isinstance(err, FileNotFoundError):
                    raise err

            shutil.rmtree(e.path, onerror=fail)
        self.note(rec, e)

    def _mount_gone(self, rec: _Rec, e: _Entry, want: str | None) -> None:
        if e.mntns != self.mntns:
            rec.keep = True           # made in another mount namespace: not reachable from here
            return
        top = self.mounts.top(e.path)
        if top is None:
            return
        dev, fstype = top
        if want is not None and fstype != want:
            return
        if want is None and dev != self.mounts.device_under(e.path):
            return                    # not a bind of the directory onto itself
        if not self.dry_run:
            from ._spawn import umount

            # <sys/mount.h>: MNT_DETACH 2, UMOUNT_NOFOLLOW 8.  The private self-bind
            # gets a plain umount: a lazy one would take what others mounted inside.
            umount(e.path, (2 | 8) if want is not None else 8)
        self.mounts.at[e.path].pop()      # (a dry run too: what is below counts as bare)
        self.note(rec, e)

    def _undo_namespace_mount(self, rec: _Rec, e: _Entry) -> None:
        self._mount_gone(rec, e, "nsfs")

    def _undo_private_mount(self, rec: _Rec, e: _Entry) -> None:
        self._mount_gone(rec, e, None)

    def _undo_namespace_file(self, rec: _Rec, e: _Entry) -> None:
        if self.dry_run and ("namespace-mount", e.path) in self.done:
            self.note(rec, e)         # under the mount a real run removes: not visible now
            return
        if self.mounts.top(e.path) is not None:
            rec.keep = True           # still mounted on (e.g. in another namespace's view)
            return
        same = self.same(e)
        if same is False:
            return
        if same is None:
            try:
                st = os.lstat(e.path)
            except OSError:
                return
            import stat as _stat

            if self._claimed(e) or not _stat.S_ISREG(st.st_mode) or st.st_size:
                return
        if not self.dry_run:
            os.unlink(e.path)
        self.note(rec, e)

    def _undo_namespace_dir(self, rec: _Rec, e: _Entry) -> None:
        same = self.same(e)
        if same is False or (same is None and self._claimed(e)):
            return
        if not os.path.isdir(e.path) or os.listdir(e.path):
            if same:
                rec.keep = True
            return
        if not self.dry_run:
            os.rmdir(e.path)
        self.note(rec, e)

    def _undo_userns_range(self, rec: _Rec, e: _Entry) -> None:
        if e.ids is None:
            return                    # pending: the file was never made (its allocation holds the lock)
        from . import _idalloc

        done = _idalloc.reclaim_path(e.path, e.ids[0], e.ids[1], rec.owner.name, self.dry_run)
        if done is False:
            rec.keep = True           # a process still runs with its ids: a later gc takes it
        elif done:
            self.note(rec, e)


def _has_subdirs(path: str, gone: set[str]) -> bool:
    """Whether ``path`` has a subdirectory that is not in ``gone`` (a dry run's removals)."""
    try:
        with os.scandir(path) as it:
            return any(d.is_dir(follow_symlinks=False) and d.path not in gone for d in it)
    except OSError:
        return False


def _cgroup_busy(path: str) -> bool:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return bool(f.read().strip())
    except OSError:
        return False


def _under(rec: _Rec, parents: set[str]) -> bool:
    return any(os.path.dirname(e.path) in parents for e in rec.entries.values())


def _rewrite(home: str, fd: int, kept: list[_Rec]) -> None:
    """A dead owner's directory after a reclaim: removed if nothing is ``kept``, else its journal
    holds only what is."""
    if kept:
        tmp = JOURNAL + ".new"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600,
                          dir_fd=fd), "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("".join(line for r in kept for line in r.raw))
        os.rename(tmp, JOURNAL, src_dir_fd=fd, dst_dir_fd=fd)
        return
    for name in os.listdir(fd):
        try:
            os.unlink(name, dir_fd=fd)
        except OSError:
            pass
    try:
        os.rmdir(home)
    except OSError:
        pass


def _my_home(reg: str) -> str | None:
    """This process's own directory in the registry ``reg`` (if it made one): never reclaimed."""
    pid = os.getpid()
    start = proc_start_time(pid)
    return None if start is None else os.path.join(reg, Owner(pid, start, boot_id()).name)


def _reclaim(parents: set[str] | None, dry_run: bool) -> tuple[list[Leftover], list[str]]:
    """Reclaim dead owners' records (only those with a path directly in ``parents``, if given)."""
    reg = open_registry(create=False)
    if reg is None:
        return [], []
    me = _my_home(reg)
    dead: list[tuple[str, int, list[_Rec]]] = []
    live_homes: list[tuple[str, Owner]] = []
    try:
        try:
            names = os.listdir(reg)
        except FileNotFoundError:
            return [], []
        for name in sorted(names):
            owner = Owner.parse(name)
            if owner is None:
                continue
            home = os.path.join(reg, name)
            if home == me:
                live_homes.append((home, owner))
                continue
            fd = _lock_if_dead(home, owner)
            if fd is None:
                live_homes.append((home, owner))
                continue
            recs = _records(home, owner)
            dead.append((home, fd, recs))
        todo = [r for _, _, recs in dead for r in recs if parents is None or _under(r, parents)]
        live: set[str] = set()
        if todo:
            for home, owner in live_homes:
                for r in _records(home, owner):
                    live.update(e.path for e in r.entries.values())
        rc = _Reclaimer(dry_run, live)
        # Records some process of theirs still uses (a running container) are left whole.
        todo = [r for r in todo if not rc.held(r)]
        entries = [(r, e) for r in todo for e in r.entries.values()]
        rank: dict[str, int] = {role: i for i, role in enumerate(_ORDER)}
        entries.sort(key=lambda re: (rank.get(re[1].role, len(_ORDER)), -re[1].path.count("/")))
        for r, e in entries:
            if e.role in rank:
                rc.undo(r, e)
            else:
                r.keep = True         # written by a newer isolate: leave it to that one
        if not dry_run:
            done = {id(r) for r in todo if not r.keep}
            for home, fd, recs in dead:
                _rewrite(home, fd, [r for r in recs if id(r) not in done])
        return rc.found, rc.errors
    finally:
        for _, fd, _ in dead:
            os.close(fd)


def forget() -> None:
    """Have ``reclaim_once`` look at every directory again, as in a new process (the OCI
    planner's forks are processes of their own to the host: each reclaims for itself)."""
    with _lock:
        _asked.clear()
        _reclaimed.clear()


def reclaim_once(parents: Iterable[str]) -> bool:
    """Before this process first makes something in one of ``parents``: reclaim what dead owners left there.

    Each directory is looked at once per process.  Never raises: a failure is
    a warning, and the caller's create goes on.  True if anything was removed.
    """
    key = tuple(parents)
    if key in _asked:
        return False          # the common case: a parent this process made things in before
    with _lock:
        _asked.add(key)
        todo = {os.path.normpath(p) for p in key} - _reclaimed
        if not todo:
            return False
        _reclaimed.update(todo)
    try:
        found, errors = _reclaim(todo, dry_run=False)
    except Exception as e:  # reclaiming is a courtesy to the host: never fail the caller for it
        warnings.warn(f"isolate: reclaiming what dead processes left in {sorted(todo)}: {e}",
                      RuntimeWarning, stacklevel=3)
        return False
    for err in errors:
        warnings.warn(f"isolate: cannot reclaim {err}", RuntimeWarning, stacklevel=3)
    return bool(found)


def gc(*, dry_run: bool = False) -> list[Leftover]:
    """Remove everything isolate processes that are gone left behind; returns what was removed.

    Looks at the owner records of this user (root: ``/run/isolate/owners``;
    see ``registry_path``): a record whose owner process has exited (killed,
    crashed, or ended without ``close()``) names a cgroup (its remaining
    processes are killed, then it and any group below it are removed), a
    parent cgroup it made (removed if empty), an overlay work directory,
    a namespace file with its bind mount, or (root) a container's block of
    host ids once no process runs with them, and (root) a bridged container's address lease
    with its veth, port rules and hosts entry (then bridges of networks removed since, and
    every host change once no network is left).  A live owner's things are never
    touched, nor a thing a live process still uses (a container running on
    an overlay), nor anything handed over with ``detach()``.  Only what the
    dead owner made is removed: each path is compared with the device and
    inode recorded when it was made.  An overlay's upper layer is the
    caller's data and stays.

    ``dry_run``: remove nothing, return what would be removed.  Things that
    cannot be removed now (still busy) are left with their record for a later
    ``gc`` and named in a ``RuntimeWarning``.  Raises ``PermissionError`` if
    the registry is not this user's own directory.
    """
    found, errors = _reclaim(None, dry_run)
    if os.geteuid() == 0:
        # Blocks of ids closed containers released while processes might still use
        # them, or whose owner left no record: taken back once no process does.
        from . import _idalloc

        named = {f.path for f in found if f.kind == "userns-range"}
        for path, owner_text in _idalloc.sweep(dry_run=dry_run):
            if path in named:
                continue        # a dry run found it through its owner's record already
            owner = Owner.parse(owner_text)
            found.append(Leftover(kind="userns-range", path=path,
                                  pid=owner.pid if owner else 0, start=owner.start if owner else 0))
        found += _net_sweep(dry_run)
    for err in errors:
        warnings.warn(f"isolate gc: cannot remove {err}", RuntimeWarning, stacklevel=2)
    return found


def _net_sweep(dry_run: bool) -> list[Leftover]:
    """Bridged networks' leases whose owner is gone, with their veths, port rules and hosts
    entries (``isolate.net.attachment.sweep``); a failure there is a warning."""
    try:
        from .net.attachment import sweep
        from .net.state import paths

        if not os.path.isdir(paths().run):
            return []           # no bridged network was ever used: pyroute2 is not even loaded
        return [Leftover(kind="net-lease", path=f"{net}/{le.address} ({le.name}, {le.veth})",
                         pid=le.pid, start=le.start) for net, le in sweep(dry_run=dry_run)]
    except Exception as e:  # a broken network state must not stop the rest of gc
        warnings.warn(f"isolate gc: bridged networks: {e}", RuntimeWarning, stacklevel=3)
        return []
