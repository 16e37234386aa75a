"""Reading and writing cgroup files relative to an open directory fd.

Opening ``memory.max`` through the cgroup's directory fd skips the path walk
from ``/`` on every write, which matters for the create-apply-spawn-remove
cycle (see benchmarks/test_cgroup.py).
"""

from __future__ import annotations

import errno as _errno
import os
import time
from collections.abc import Callable

from .._record import dataclass, field
from ..errors import CgroupError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._owner import Record

_O_RD = os.O_RDONLY | os.O_CLOEXEC
_O_WR = os.O_WRONLY | os.O_CLOEXEC


@dataclass(slots=True)
class Dir:
    """A cgroup directory: ``path``, an optional open ``fd`` (-1: files are opened by
    path), ``hierarchy`` for messages, and the open ``cgroup.procs`` for attaching."""

    path: str
    fd: int
    hierarchy: str
    procs_fd: int = -1
    spawn_file: str = "cgroup.procs"
    extra: dict[str, int] = field(default_factory=dict)
    closed: bool = False

    def _open(self, name: str, flags: int) -> int:
        # With one or two files per v1 directory a directory fd does not pay
        # for its own open(); v2 keeps one for CLONE_INTO_CGROUP anyway.
        if self.fd >= 0:
            return os.open(name, flags, dir_fd=self.fd)
        return os.open(f"{self.path}/{name}", flags)

    def write(self, name: str, value: str | int, *, field_name: str | None = None) -> None:
        """Write ``value`` to the cgroup file ``name``.

        A missing file raises ``UnsupportedError`` naming the file and the
        hierarchy (the kernel lacks that knob); other failures ``CgroupError``.
        """
        data = str(value).encode()
        try:
            fd = self._open(name, _O_WR)
        except FileNotFoundError:
            raise UnsupportedError(
                f"{name} does not exist in {self.path} ({self.hierarchy}): this kernel or "
                f"hierarchy does not support {field_name or name}") from None
        except OSError as e:
            raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: opening {name}", os.path.join(self.path, name)) from None
        try:
            os.write(fd, data)
        except OSError as e:
            what = f" (Limits.{field_name})" if field_name else ""
            raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: writing {data.decode()!r} to {name}{what}",
                              os.path.join(self.path, name)) from None
        finally:
            os.close(fd)

    def read(self, name: str) -> str | None:
        """The content of ``name``, or None if the file does not exist."""
        try:
            fd = self._open(name, _O_RD)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: opening {name}", os.path.join(self.path, name)) from None
        try:
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode()
        except OSError as e:
            raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: reading {name}", os.path.join(self.path, name)) from None
        finally:
            os.close(fd)

    def has(self, name: str) -> bool:
        """Whether the file ``name`` exists here."""
        try:
            if self.fd >= 0:
                os.stat(name, dir_fd=self.fd)
            else:
                os.stat(f"{self.path}/{name}")
            return True
        except OSError:
            return False

    def read_int(self, name: str) -> int | None:
        """An integer file (``max`` reads as None)."""
        text = self.read(name)
        if text is None:
            return None
        text = text.strip()
        return None if text in ("", "max") else int(text)

    def read_keyed(self, name: str) -> dict[str, int] | None:
        """A flat keyed file (``key value`` per line), such as ``memory.stat``."""
        text = self.read(name)
        if text is None:
            return None
        out = {}
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            try:
                out[k] = int(v)
            except ValueError:
                continue
        return out

    def procs(self) -> list[int]:
        """The pids in ``cgroup.procs``."""
        text = self.read("cgroup.procs") or ""
        return [int(x) for x in text.split()]

    def attach(self, pid: int) -> None:
        """Move ``pid`` (a whole process, every thread) into this cgroup."""
        fd = self.procs_fd if self.spawn_file == "cgroup.procs" else -1
        try:
            if fd < 0:
                self.write("cgroup.procs", pid)
            else:
                os.pwrite(fd, str(pid).encode(), 0)
        except OSError as e:
            raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: attaching pid {pid}",
                              os.path.join(self.path, "cgroup.procs")) from None

    def close(self) -> None:
        """Close every fd this directory holds (idempotent)."""
        for fd in (self.procs_fd, self.fd, *self.extra.values()):
            if fd >= 0:
                os.close(fd)
        self.procs_fd = self.fd = -1
        self.extra.clear()
        self.closed = True


def open_dir(path: str, hierarchy: str, *, keep_fd: bool, spawn_file: str = "cgroup.procs") -> Dir:
    """An existing cgroup directory with ``spawn_file`` open for writing.

    That fd is what the C parent writes a new child's pid to.  On v1 it is
    ``tasks``: the child has one thread then, and moving a thread skips the
    threadgroup lock that a ``cgroup.procs`` write takes, whose RCU sync
    stalls for milliseconds when cgroups are not changed back to back.
    ``keep_fd`` also keeps an fd to the directory itself (needed for
    ``CLONE_INTO_CGROUP`` and BPF attach on v2).
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if keep_fd else -1
    d = Dir(path, fd, hierarchy)
    d.spawn_file = spawn_file
    try:
        d.procs_fd = d._open(spawn_file, _O_WR)
    except OSError as e:
        d.close()
        raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: opening {spawn_file}", path) from None
    return d


#: Parent directories this process made and has not removed yet, with their
#: (device, inode) for owner records.  Groups sharing a parent each try to
#: remove it on close; the last one succeeds.
MADE: dict[str, tuple[int, int]] = {}
#: Parent directories known to exist, so that a create does not mkdir them
#: again.  Forgotten when removed, or when a create finds one gone.
KNOWN: set[str] = set()


def _claim_parent(path: str, rec: Record | None) -> None:
    """Name the parent ``path`` this process made in ``rec`` (so that its death reclaims it too)."""
    if rec is not None:
        dev, ino = MADE[path]
        rec.made_ids(path, "cgroup-parent", dev, ino)


def make_dir(path: str, created: list[str], rec: Record | None = None) -> None:
    """mkdir ``path`` if missing; record it in ``created`` if this process made it (now or before).

    ``rec``: the owner record of the group being made; a missing directory
    is named there as pending before the ``mkdir``, and as made after it.
    """
    announce = rec is not None and path not in MADE and not os.path.isdir(path)
    if announce:
        assert rec is not None
        rec.pending(path, role="cgroup-parent")
    try:
        os.mkdir(path)
    except FileExistsError:
        if path in MADE:
            created.append(path)
            _claim_parent(path, rec)
        elif announce:
            assert rec is not None
            rec.cancel(path)
        return
    except OSError as e:
        if announce:
            assert rec is not None
            rec.cancel(path)
        raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: creating a parent cgroup", path) from None
    st = os.stat(path)
    MADE[path] = (st.st_dev, st.st_ino)
    created.append(path)
    _claim_parent(path, rec)


def controllers_of(path: str) -> tuple[set[str], set[str]]:
    """A cgroup v2 directory's available controllers and those enabled for its children
    (``cgroup.controllers``, ``cgroup.subtree_control``); ``CgroupError`` naming it if unreadable."""
    try:
        with open(os.path.join(path, "cgroup.controllers")) as f:
            avail = set(f.read().split())
        with open(os.path.join(path, "cgroup.subtree_control")) as f:
            on = set(f.read().split())
    except OSError as e:
        raise CgroupError(e.errno or _errno.EIO, e.strerror, path) from None
    return avail, on


def child_path(mount: str, rel: str, name: str) -> str:
    """The path ``make_dirs(mount, rel)`` returns, with ``name`` appended."""
    if not rel:
        return f"{mount}/{name}"
    if "//" in rel or rel[0] == "/" or rel[-1] == "/":
        rel = "/".join(p for p in rel.split("/") if p)
    return f"{mount}/{rel}/{name}"


def make_dirs(mount: str, rel: str, created: list[str], rec: Record | None = None) -> str:
    """mkdir -p ``mount/rel``; appends the directories this process made to ``created``."""
    path = mount
    for part in rel.split("/"):
        if not part:
            continue
        path = f"{path}/{part}"
        if path in KNOWN:
            if path in MADE:
                created.append(path)
                _claim_parent(path, rec)
            continue
        make_dir(path, created, rec)
        KNOWN.add(path)
    return path


def forget_parents(mount: str) -> None:
    """Drop what ``KNOWN`` says about ``mount`` (someone removed a parent behind our back)."""
    for path in [p for p in KNOWN if p.startswith(mount + "/")]:
        KNOWN.discard(path)


def try_remove_dir(path: str) -> bool:
    """rmdir a cgroup once: True if it is gone, False if it still holds processes or children."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno in (_errno.EBUSY, _errno.ENOTEMPTY):
            return False
        raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: removing the cgroup", path) from None
    MADE.pop(path, None)
    KNOWN.discard(path)
    return True


def remove_dir(path: str, *, must: bool, timeout: float = 10.0) -> None:
    """rmdir a cgroup; retries while the kernel still counts exiting tasks.

    ``must=False`` (a parent others may share) gives up silently when it is busy.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            os.rmdir(path)
            MADE.pop(path, None)
            KNOWN.discard(path)
            return
        except FileNotFoundError:
            MADE.pop(path, None)
            KNOWN.discard(path)
            return
        except OSError as e:
            if e.errno not in (_errno.EBUSY, _errno.ENOTEMPTY):
                raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: removing the cgroup", path) from None
            if not must:
                return
            if time.monotonic() > deadline:
                raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: the cgroup is still in use after "
                                           f"{timeout:.0f} s", path) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def remove_tree(path: str, *, timeout: float = 10.0) -> None:
    """Kill every process in the cgroup ``path`` and below it, then remove them all, deepest first.

    For groups whose owner is gone (``isolate.gc``): there is no ``Cgroup``
    object, only the directory.  Each group is thawed first (a frozen task
    ignores SIGKILL until thawed: v1 ``freezer.state``, v2 ``cgroup.freeze``),
    then emptied with ``cgroup.kill`` where the kernel has it, else SIGKILL to
    every pid in ``cgroup.procs``, again until none is left (a fork racing
    the kill is caught on the next pass).  Raises ``CgroupError`` if a group
    is still busy after ``timeout`` seconds.
    """
    dirs = [root for root, _, _ in os.walk(path)]     # parents before children
    for d in dirs:
        for name, value in (("freezer.state", b"THAWED"), ("cgroup.freeze", b"0")):
            try:
                fd = os.open(os.path.join(d, name), _O_WR)   # no O_CREAT: absent means no freezer
            except FileNotFoundError:
                continue
            except OSError as e:
                raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: thawing", d) from None
            try:
                os.write(fd, value)
            except OSError as e:
                raise CgroupError(e.errno or _errno.EIO, f"{e.strerror}: thawing", d) from None
            finally:
                os.close(fd)
    deadline = time.monotonic() + timeout
    for d in reversed(dirs):
        dd = Dir(d, -1, "")
        if dd.has("cgroup.kill"):
            dd.write("cgroup.kill", 1)
        delay = 0.0005
        while True:
            try:
                pids = dd.procs()
            except CgroupError as e:
                if e.errno == _errno.ENOENT:
                    break
                raise
            if not pids:
                break
            if os.getpid() in pids:
                raise CgroupError(_errno.EBUSY, "not emptying a cgroup this process is in", d)
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                break                 # remove_dir says what is still there
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        remove_dir(d, must=True, timeout=max(0.0, deadline - time.monotonic()))


def parse_psi(text: str | None) -> dict[str, dict[str, float]] | None:
    """``some avg10=0.00 ... total=0`` lines -> {"some": {...}, "full": {...}}."""
    if text is None:
        return None
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        out[kind] = {k: float(v) for k, _, v in (p.partition("=") for p in pairs)}
    return out


def wait_until(check: Callable[[], bool], timeout: float, what: str, path: str) -> None:
    """Poll ``check`` with a growing sleep; ``CgroupError(ETIMEDOUT)`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while not check():
        if time.monotonic() > deadline:
            raise CgroupError(_errno.ETIMEDOUT, f"timed out waiting for {what}", path)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
