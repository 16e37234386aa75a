"""Container state kept under the runtime's ``--root``: one directory per container.

``<root>/<id>/state.json`` holds what later commands need (the init pid and
its start time, the bundle, the config, the cgroup's paths);
``<root>/<id>/exec.fifo`` exists while the container is created but not
started.  The status is computed from the kernel each time (is the pid alive
with the same start time, is the cgroup frozen), so ``state`` stays true
after the caller or the container dies.

Crash consistency: a ``create`` may be killed at any moment, so

- the directory appears whole or not at all: ``create`` fills a private
  ``~<pid>.<start>.<random>`` directory (state.json with its own pid and
  start time as ``owner``) and renames it to ``<id>``; a private directory
  whose creator is dead is swept by the next ``create`` or ``delete``;
- what ``create`` makes is recorded before it is made (the cgroup paths it
  is about to create), so ``delete --force`` finds and removes it whenever
  the creator died;
- ``owner`` stays in state.json until ``create`` has finished: alive, the
  container is "creating"; dead, it was left half-made and reads as
  "stopped" (it can never start), and ``delete`` removes it.

Locking: commands that change a container take an ``flock`` on its
directory (shared for ``kill`` and ``exec``, exclusive otherwise), waiting
at most ``LOCK_TIMEOUT`` seconds; ``state`` and ``list`` take none
(state.json is replaced atomically).  A lock held by one of the container's
own processes (an fd a runtime left to a process that outlived it) is never
waited for: ``delete --force`` kills such holders, other commands say who
holds it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time

from .._record import dataclass, field, fields
from .._registry import proc_start_time
from ..errors import ConfigError, IsolateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ContainerState", "LOCK_TIMEOUT", "RuntimeError_", "StateDir", "check_id", "list_ids",
           "lock_holders", "member_pids", "owner_alive", "proc_start_time", "sweep"]

OCI_VERSION = "1.2.0"
# runc's ^[\w+-\.]+$ with Go's ASCII \w (Python's \w takes any script's letters,
# and its $ a trailing newline).
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
STATE_FILE = "state.json"
FIFO = "exec.fifo"
#: Prefix of a directory ``create`` is still filling; never a valid id (``~`` is not in _ID_CHARS).
_TMP_PREFIX = "~"
#: How long a command waits for another live command's lock on the same container.
LOCK_TIMEOUT = 30.0


class RuntimeError_(IsolateError):
    """A verb that cannot be done in the container's current state (e.g. start a running container)."""


def check_id(container_id: str) -> str:
    """Container ids as runc takes them: letters, digits, ``_+-.``, not ``.`` or ``..``."""
    if (not isinstance(container_id, str) or not container_id or not _ID_CHARS.issuperset(container_id)
            or container_id in (".", "..")):
        raise ConfigError(f"container id: invalid id format {container_id!r} "
                          "(letters, digits and _+-. only)")
    if len(container_id) > 1024:
        raise ConfigError(f"container id: longer than 1024 characters ({len(container_id)})")
    return container_id


def owner_alive(owner: dict[str, int] | None) -> bool:
    """Whether ``owner`` ({"pid", "pid_start"}) is still the same live process."""
    return owner is not None and proc_start_time(owner["pid"]) == owner["pid_start"]


@dataclass
class ContainerState:
    """What ``state.json`` holds.  ``status`` is computed, never stored (see ``StateDir.status``).

    ``pid`` is -1 until ``create`` has started the process.  ``owner``
    ({"pid", "pid_start"}) is the ``create`` still working on the container,
    None once it has finished.  ``cgroup["paths"]`` are the group's
    directories, recorded before ``create`` makes them.
    """

    id: str
    bundle: str
    pid: int
    pid_start: int
    created: str
    config: dict[str, Any]
    rootfs: str = ""
    cgroup: dict[str, Any] | None = None       # {"name", "parent", "controllers", "paths"}
    started: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    owner: dict[str, int] | None = None

    def to_json(self) -> str:
        """The text of state.json."""
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_json(cls, text: str) -> ContainerState:
        """Parse state.json's text (fields it does not know are ignored)."""
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class StateDir:
    """``<root>/<id>``: made, locked, read and written by the runtime's commands."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root = os.path.abspath(root)
        self.id = check_id(container_id)
        self.path = os.path.join(self.root, self.id)
        self.fifo = os.path.join(self.path, FIFO)
        self._lock_fd = -1

    # --- creation and locking ------------------------------------------------

    def begin(self, st: ContainerState) -> None:
        """Make the directory with ``st`` in it, atomically, and hold its lock (exclusive).

        ``st.owner`` should name this process.  Raises ``ConfigError`` if the
        id is taken, saying how to remove a container a dead ``create`` left.
        """
        # 0700, as runc's: whoever can reach exec.fifo can start the container.
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        sweep(self.root)
        me = os.getpid()
        tmp = os.path.join(self.root, f"{_TMP_PREFIX}{me}.{proc_start_time(me)}.{os.urandom(4).hex()}")
        os.mkdir(tmp, 0o700)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._lock_fd = fd
            fcntl.flock(fd, fcntl.LOCK_EX)      # the lock follows the directory through rename
            with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
                f.write(st.to_json())
            try:
                # A directory renamed onto an existing one replaces it only if that one is
                # empty (then it held nothing: no record, no lock worth keeping).
                os.rename(tmp, self.path)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    raise ConfigError(self._taken()) from None
                raise
        except BaseException:
            self.unlock()
            _rmtree(tmp)
            raise

    def check_free(self) -> None:
        """``ConfigError`` (see ``begin``) if the id is taken now; ``begin`` checks again, atomically."""
        if os.path.lexists(self.path):
            raise ConfigError(self._taken())

    def _taken(self) -> str:
        """The error for an id in use, with what to run when a dead ``create`` left it."""
        msg = f"container id: a container named {self.id!r} already exists"
        try:
            st = self.read()
        except LookupError:
            return f"{msg} (an unfinished state directory: `delete --force {self.id}` removes it)"
        except (OSError, ValueError, TypeError):
            return msg
        if st.owner is not None and not owner_alive(st.owner):
            return (f"{msg} (left half-made by a create, pid {st.owner['pid']}, that died: "
                    f"`delete --force {self.id}` removes it)")
        return msg

    def lock(self, *, exclusive: bool, timeout: float = LOCK_TIMEOUT, evict: bool = False) -> None:
        """flock the directory, waiting at most ``timeout`` seconds for another command.

        ``LookupError`` if the container does not exist; ``RuntimeError_``
        naming the holders when the wait ends, or at once when every holder
        is a process of the container itself (``member_pids``), which must
        never hold the runtime's lock.  ``evict`` (``delete --force``): kill
        such holders instead, and take the lock.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise LookupError(f"container {self.id!r} does not exist") from None
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            start = time.monotonic()
            look_at = start + 0.1
            delay = 0.0005
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                now = time.monotonic()
                if now >= look_at or now - start >= timeout:
                    look_at = now + 0.5
                    self._on_busy(fd, timed_out=now - start >= timeout, timeout=timeout, evict=evict)
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _on_busy(self, fd: int, *, timed_out: bool, timeout: float, evict: bool) -> None:
        """The lock is taken: evict or name holders that belong to the container; name any at the end."""
        holders = lock_holders(fd)
        try:
            st: ContainerState | None = self.read()
        except (LookupError, OSError, ValueError, TypeError):
            st = None
        inside = member_pids(st) if st is not None else set()
        if holders and set(holders) <= inside:
            if evict:
                assert st is not None
                _kill_members(st, holders)
                return
            raise RuntimeError_(f"container {self.id!r}: its own process {_describe(holders)} holds the "
                                f"runtime's lock on it (`delete --force {self.id}` removes the container)")
        if timed_out:
            who = _describe(holders) if holders else "another process"
            raise RuntimeError_(f"container {self.id!r} is busy: {who} has held its lock for more than "
                                f"{timeout:.0f} s")

    def unlock(self) -> None:
        """Release the lock (closing the directory fd); idempotent."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    # --- content ---------------------------------------------------------------

    def write(self, st: ContainerState) -> None:
        """Replace state.json atomically (the caller holds the exclusive lock)."""
        tmp = os.path.join(self.path, STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(st.to_json())
        os.replace(tmp, os.path.join(self.path, STATE_FILE))

    def read(self) -> ContainerState:
        """state.json (no lock needed: it is replaced atomically); ``LookupError`` if there is none."""
        try:
            with open(os.path.join(self.path, STATE_FILE), encoding="utf-8") as f:
                return ContainerState.from_json(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise LookupError(f"container {self.id!r} does not exist") from None

    def exists(self) -> bool:
        """Whether ``<root>/<id>`` exists (with or without a state.json)."""
        return os.path.isdir(self.path)

    def remove(self) -> None:
        """Remove the directory and everything in it, then release the lock."""
        _rmtree(self.path)
        self.unlock()

    def status(self, st: ContainerState) -> str:
        """creating, created, running, paused or stopped, from the kernel's view now."""
        if st.owner is not None:
            # A create that died left the container half-made: it can never start.
            return "creating" if owner_alive(st.owner) else "stopped"
        if st.pid <= 0:
            return "creating"
        if proc_start_time(st.pid) != st.pid_start:
            return "stopped"
        if frozen(st):
            return "paused"
        if os.path.exists(self.fifo):
            return "created"
        return "running"

    def oci_state(self, st: ContainerState, status: str | None = None) -> dict[str, Any]:
        """The state object of the runtime spec (what ``state`` prints and hooks read)."""
        status = status or self.status(st)
        return {"ociVersion": OCI_VERSION, "id": st.id, "status": status,
                "pid": st.pid if status != "stopped" and st.pid > 0 else 0, "bundle": st.bundle,
                "rootfs": st.rootfs, "created": st.created, "owner": "",
                "annotations": st.annotations}


def _rmtree(path: str) -> None:
    """Remove a state directory (only files in it: no need for shutil and its imports)."""
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def now() -> str:
    """RFC 3339 with nanoseconds, as runc writes ``created``."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 1000 % 10**6:06d}Z"


def frozen(st: ContainerState) -> bool:
    """Whether the container's cgroup is frozen (v2 cgroup.freeze / v1 freezer.state)."""
    cg = st.cgroup
    if not cg:
        return False
    for path in cg.get("paths", ()):
        for name, want in (("cgroup.freeze", "1"), ("freezer.state", "FROZEN")):
            try:
                with open(os.path.join(path, name)) as f:
                    if f.read().strip() == want:
                        return True
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
    return False


def member_pids(st: ContainerState) -> set[int]:
    """The container's processes now: those in its cgroup directories, and its first process."""
    out: set[int] = set()
    for path in (st.cgroup or {}).get("paths", ()):
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                out.update(int(p) for p in f.read().split())
        except OSError:
            continue
    if st.pid > 0 and proc_start_time(st.pid) == st.pid_start:
        out.add(st.pid)
    return out


def lock_holders(fd: int) -> list[int]:
    """Pids of the processes (other than this one) whose open file holds the flock on ``fd``'s file.

    /proc/<pid>/fdinfo/<n> lists the locks that open file owns; a process
    that only has the directory open (a command waiting for the lock) is not
    a holder.
    """
    st = os.fstat(fd)
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            names = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for name in names:
            try:
                s = os.stat(f"/proc/{entry}/fd/{name}")
                if (s.st_dev, s.st_ino) != (st.st_dev, st.st_ino):
                    continue
                with open(f"/proc/{entry}/fdinfo/{name}") as f:
                    if "\nlock:" in f.read():
                        out.append(int(entry))
                        break
            except OSError:
                continue
    return sorted(out)


def _describe(pids: list[int]) -> str:
    """``pid 12 (isolate-oci create c1)``: the pids with their command lines, for errors."""
    parts = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = ""
        parts.append(f"pid {pid} ({cmd[:80]})" if cmd else f"pid {pid}")
    return ", ".join(parts)


def thaw_paths(st: ContainerState) -> None:
    """Thaw the container's cgroup directories, if frozen (a frozen v1 task does not die of SIGKILL)."""
    for path in (st.cgroup or {}).get("paths", ()):
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(path, name), "w") as f:
                    f.write(value)
            except OSError:
                continue


def _kill_members(st: ContainerState, pids: list[int]) -> None:
    """SIGKILL ``pids`` (processes of the container) and wait, up to 10 s, until they are gone."""
    import select
    import signal

    thaw_paths(st)
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if pid not in member_pids(st):
                continue            # not the process we looked at a moment ago
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 10.0)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)


def sweep(root: str) -> None:
    """Remove the private directories of ``create`` calls that died before naming them."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(_TMP_PREFIX):
            continue
        pid, _, rest = name[len(_TMP_PREFIX):].partition(".")
        start, _, _ = rest.partition(".")
        try:
            alive = proc_start_time(int(pid)) == int(start)
        except ValueError:
            alive = False
        if not alive:
            _rmtree(os.path.join(root, name))


def list_ids(root: str) -> list[str]:
    """Container ids under ``root`` (sorted)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names
                  if not n.startswith(_TMP_PREFIX) and os.path.isfile(os.path.join(root, n, STATE_FILE)))
