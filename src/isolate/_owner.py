"""Owner records: everything isolate makes on disk or in cgroupfs names the process that made it.

A program killed with SIGKILL runs no ``close()``: the cgroups, overlay work
directories and namespace bind mounts it made would stay forever.  So before
isolate makes one of them it writes an *owner record*, and ``close()`` (or
``detach()``, which hands the thing over) deletes the record again.  A record
whose owner is gone names a leftover: ``isolate.gc()`` (``isolate gc``)
removes those, and so does the first create of every isolate process under a
directory where a dead owner left something (``reclaim_once``).

Where the records live, and why
-------------------------------
Not on the things themselves: cgroupfs takes neither extended attributes (v1)
nor files of ours; a group's name is the caller's (``Cgroup.create(name)``)
and cannot carry the owner; and the directory of an overlay layer or of a
namespace file belongs to the caller.  So the records live apart, in a
registry directory: ``/run/isolate/owners`` for root,
``$XDG_RUNTIME_DIR/isolate/owners`` or ``<tmp>/isolate-<uid>/owners`` for
other users.  It must be a directory of the caller's, not a symlink, that no
one else can write (checked before each use): a record says what to delete.
``/run`` is a tmpfs, emptied at boot when the cgroups and mounts vanish too.

Each process that makes something gets one directory there, named
``<pid>-<start>-<boot>``: its pid, its start time (field 22 of
``/proc/<pid>/stat``, clock ticks after boot) and the kernel's boot id.  It
holds a shared ``flock`` on that directory for as long as it lives, and the
lock is the test of life: the kernel drops it when the process exits, however
it exits, and a later process that got the same pid holds no lock, so pid
reuse cannot keep a dead owner's things alive or make a live owner's look
dead (neither can another pid namespace).  The directory is made under a
dot-name, locked, then renamed into place; for the instant before it is
locked, the name's pid and start time are compared with ``/proc`` instead
(a live process with that pid and another start time is not the owner).  A
forked child closes its copy of the lock's fd, so it does not keep its parent
alive in the registry.

What the process made is in one journal there (``records``): lines of JSON,
each tagged with the id of its record (one record per cgroup, per run's
overlay work directories, per namespace file), appended as the thing is made:
*pending* (about to be made) before each ``mkdir``, ``open(O_CREAT)`` or
``mount``, then *made* with the new directory's or file's device and inode,
so that a reclaim removes exactly what the dead owner made, never a
same-named thing made later by someone else (a live owner's record claiming
the path settles it too, when a file system gave the new one the freed inode
number); *clear* when it is removed or handed over.  A path left *pending* (the owner died between the two lines)
is removed only if it is empty and no live record claims it.  Two short
writes per create and one per close: a cgroup's create-and-close cycle
costs about 15 µs more (of 0.2 ms on a v1 host, spawn not counted).

The code, by idea: ``_registry`` (where records live, ``Owner``, start
times), this module (this process's directory and its records: ``record``,
``Record``, ``leave``), ``_reclaim`` (reading dead owners' journals back and
undoing what they made: ``gc``, ``reclaim_once``; imported here, so that
the rest of isolate names only ``_owner``).
"""

from __future__ import annotations

import errno as _errno
import fcntl
import json
import os
import threading
import warnings

from ._reclaim import Leftover, gc, reclaim_once
from ._registry import (JOURNAL, Kind, Owner, boot_id, open_registry, proc_start_time,
                        registry_path)

__all__ = ["JOURNAL", "Leftover", "Owner", "Record", "boot_id", "gc", "leave", "record",
           "reclaim_once", "registry_path", "proc_start_time"]


# --- this process -------------------------------------------------------------

_lock = threading.RLock()
_warned = False
#: A journal this long is rewritten with only the live records' lines, once
#: they are fewer than an eighth of it.
_COMPACT_AT = 4096


class _Home:
    """This process's directory in the registry: the lock that says it lives, and the journal.

    The journal is one file of JSON lines, each tagged with its record's id,
    appended to through one ``O_APPEND`` fd: a create costs two writes
    and a close one (a ``clear`` line), no file of its own.  Records share it
    under ``_lock``, so lines never interleave and a compaction (a new file
    renamed over the old one) loses none.
    """

    def __init__(self, pid: int, path: str, dir_fd: int, fd: int) -> None:
        self.pid = pid
        self.path = path
        self.dir_fd = dir_fd          # holds the shared flock
        self.fd = fd                  # the journal, O_APPEND
        self.seq = 0
        self.lines = 0                # lines in the journal now
        self.live: dict[int, Record] = {}

    def append(self, text: str, count: int) -> None:
        os.write(self.fd, text.encode("utf-8", "surrogateescape"))
        self.lines += count
        if self.lines > _COMPACT_AT:
            kept = sum(len(r.lines) for r in self.live.values())
            if kept * 8 < self.lines:
                self.compact()

    def compact(self) -> None:
        """Rewrite the journal with the live records' lines only (atomically: a rename)."""
        tmp = JOURNAL + ".new"
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600, dir_fd=self.dir_fd)
        try:
            text = "".join(line for r in self.live.values() for line in r.lines)
            os.write(fd, text.encode("utf-8", "surrogateescape"))
            os.rename(tmp, JOURNAL, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(self.fd)
        self.fd = fd
        self.lines = sum(len(r.lines) for r in self.live.values())

    def close(self) -> None:
        for fd in (self.fd, self.dir_fd):
            try:
                os.close(fd)
            except OSError:
                pass


_me: _Home | None = None


def _after_fork_in_child() -> None:
    # The child is a new owner: its records go under its own pid, and the
    # parent's lock must not stay held by the child's copy of the fd.
    global _me, _lock
    _lock = threading.RLock()
    if _me is not None:
        _me.close()
        _me = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _home() -> _Home:
    """This process's directory in the registry, made and locked on first use (under ``_lock``)."""
    global _me
    pid = os.getpid()
    if _me is not None and _me.pid == pid:
        return _me
    reg = open_registry(create=True)
    assert reg is not None
    start = proc_start_time(pid)
    if start is None:
        raise OSError(_errno.ESRCH, "cannot read this process's start time", f"/proc/{pid}/stat")
    owner = Owner(pid, start, boot_id())
    final = os.path.join(reg, owner.name)
    tmp = os.path.join(reg, "." + owner.name)
    os.mkdir(tmp, 0o700)
    dir_fd = fd = -1
    try:
        dir_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(dir_fd, fcntl.LOCK_SH)
        fd = os.open(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        os.rename(tmp, final)
    except BaseException:
        for f in (fd, dir_fd):
            if f >= 0:
                os.close(f)
        try:
            os.unlink(os.path.join(tmp, JOURNAL))
        except OSError:
            pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass
        raise
    _me = _Home(pid, final, dir_fd, fd)
    return _me


def leave() -> None:
    """Remove this process's registry directory unless a record is left (gc reclaims that).

    Runs at exit (``atexit``); a program that ends with ``os._exit`` (as
    ``isolate-oci`` does, for speed) calls it first, or leaves an empty
    directory for the next reclaim to remove.  Making something afterwards
    makes a new one.
    """
    global _me
    with _lock:
        me = _me
        if me is None or me.pid != os.getpid():
            return
        _me = None
        if not me.live:
            try:
                os.unlink(JOURNAL, dir_fd=me.dir_fd)
                os.rmdir(me.path)
            except OSError:
                pass
        me.close()


import atexit  # noqa: E402  (registered after leave exists)

atexit.register(leave)


# --- records ------------------------------------------------------------------

def _q(text: str) -> str:
    """``text`` as a JSON string (surrogates of undecodable bytes kept as escapes)."""
    return json.dumps(text)


class Record:
    """The owner record of one thing this process makes; see the module's docstring.

    ``pending`` before each step that makes something, ``made`` after it
    (buffered until the next ``pending`` or ``flush``), ``clear`` once the
    thing is removed or handed over.  In a forked child every method does
    nothing: the record is its parent's.  Failing writes are ignored after one
    warning: a missing record costs a leak after a crash, never the caller's
    operation.
    """

    __slots__ = ("kind", "id", "lines", "_home", "_buf")

    def __init__(self, home: _Home | None, kind: str) -> None:
        self.kind = kind
        self._home = home
        self.id = 0
        if home is not None:
            home.seq += 1
            self.id = home.seq
        #: What was written for this record (kept for a compaction).
        self.lines: list[str] = []
        self._buf: list[str] = []

    def _write(self, new: list[str]) -> None:
        home = self._home
        if home is None or home is not _me:
            return            # no registry, a forked child's copy, or cleared
        with _lock:
            if not self.lines:
                new.insert(0, f'{{"id": {self.id}, "kind": {_q(self.kind)}}}\n')
                home.live[self.id] = self
            self.lines += new
            try:
                home.append("".join(new), len(new))
            except OSError as e:
                _warn_once(e)

    def _now(self, line: str) -> None:
        buf = self._buf
        buf.append(line)
        self._buf = []
        self._write(buf)

    def pending(self, *paths: str, role: Kind) -> None:
        """``paths`` (each a ``role``) are about to be made: written at once, with what is buffered."""
        self._now("".join(f'{{"id": {self.id}, "pending": [{_q(p)}, "{role}"]}}\n'
                          for p in paths))

    def made(self, path: str, role: Kind, st: os.stat_result | None = None, *,
             probe: str = "") -> None:
        """``path`` was made; buffered.

        ``st``: its stat, else it is taken now; or, with ``probe``, the stat
        of the file ``probe`` inside it (an fd already open costs no lookup).
        """
        if st is None:
            try:
                st = os.lstat(path)
            except OSError:
                return
        self.made_ids(path, role, st.st_dev, st.st_ino, probe=probe)

    def made_ids(self, path: str, role: Kind, dev: int, ino: int, *, probe: str = "") -> None:
        """``path`` (or the file ``probe`` in it) has device ``dev`` and inode ``ino``; buffered."""
        extra = f", {_q(probe)}" if probe else ""
        self._buf.append(f'{{"id": {self.id}, "made": [{_q(path)}, "{role}", {dev}, {ino}{extra}]}}\n')

    def cancel(self, path: str) -> None:
        """``path``, announced as pending, was not made by us (it existed, or mkdir failed)."""
        self._now(f'{{"id": {self.id}, "cancel": {_q(path)}}}\n')

    def mount(self, path: str, role: Kind) -> None:
        """A mount (``role``) is about to be made on ``path`` in this mount namespace."""
        try:
            mntns = os.stat("/proc/self/ns/mnt").st_ino
        except OSError:
            mntns = 0
        self._now(f'{{"id": {self.id}, "mount": [{_q(path)}, "{role}", {mntns}]}}\n')

    def holder(self, pid: int) -> None:
        """Process ``pid`` (a child of ours) uses the thing: not reclaimed while it runs."""
        start = proc_start_time(pid)
        if start is None:
            return
        try:
            pidns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            pidns = 0
        self._now(f'{{"id": {self.id}, "holder": [{pid}, {start}, {pidns}]}}\n')

    def flush(self) -> None:
        """Write what is buffered."""
        if self._buf:
            buf, self._buf = self._buf, []
            self._write(buf)

    def clear(self) -> None:
        """The thing is gone or handed over: the record ends.  Idempotent."""
        self._buf.clear()
        home, self._home = self._home, None
        if home is None or home is not _me or not self.lines:
            return
        with _lock:
            home.live.pop(self.id, None)
            try:
                home.append(f'{{"id": {self.id}, "clear": 1}}\n', 1)
            except OSError as e:
                _warn_once(e)
        self.lines = []


def _warn_once(e: BaseException) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"isolate: cannot keep owner records ({e}): what a killed process makes "
                      "will not be reclaimed by 'isolate gc'", RuntimeWarning, stacklevel=3)


def record(kind: str) -> Record:
    """A new owner record of this process for one thing of ``kind``.

    When the registry cannot be used (warned once), the record writes
    nothing; the caller's operation goes on.
    """
    with _lock:
        try:
            return Record(_home(), kind)
        except OSError as e:
            _warn_once(e)
            return Record(None, kind)


# --- reclaiming -----------------------------------------------------------------
