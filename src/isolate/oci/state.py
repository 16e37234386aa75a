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

Every command takes an ``flock`` on the container's directory (shared to
read, exclusive to change), so concurrent calls are safe.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from .. import _json as json
from .._record import dataclass, field, fields
from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ContainerState", "StateDir", "check_id", "list_ids", "owner_alive", "proc_start_time",
           "sweep", "thaw_paths"]

OCI_VERSION = "1.2.0"
# runc's ^[\w+-\.]+$ with Go's ASCII \w (Python's \w takes any script's letters,
# and its $ a trailing newline).
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
STATE_FILE = "state.json"
FIFO = "exec.fifo"
#: Prefix of a directory ``create`` is still filling; never a valid id (``~`` is not in _ID_CHARS).
_TMP_PREFIX = "~"


def check_id(container_id: str) -> str:
    """Container ids as runc takes them: letters, digits, ``_+-.``, not ``.`` or ``..``."""
    if (not isinstance(container_id, str) or not container_id or not _ID_CHARS.issuperset(container_id)
            or container_id in (".", "..")):
        raise ConfigError(f"container id: invalid id format {container_id!r} "
                          "(letters, digits and _+-. only)")
    if len(container_id) > 1024:
        raise ConfigError(f"container id: longer than 1024 characters ({len(container_id)})")
    return container_id


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or None if the pid is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


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

    def lock(self, *, exclusive: bool) -> None:
        """flock the directory; ``LookupError`` if the container does not exist."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise LookupError(f"container {self.id!r} does not exist") from None
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        self._lock_fd = fd

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
        """state.json; ``LookupError`` if there is none."""
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


def thaw_paths(st: ContainerState) -> None:
    """Thaw the container's cgroup directories, if frozen (a frozen v1 task does not die of SIGKILL)."""
    for path in (st.cgroup or {}).get("paths", ()):
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(path, name), "w") as f:
                    f.write(value)
            except OSError:
                continue


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
