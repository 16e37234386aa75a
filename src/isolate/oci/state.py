"""Container state kept under the runtime's ``--root``: one directory per container.

``<root>/<id>/state.json`` holds what later commands need (the init pid and
its start time, the bundle, the config, the cgroup); ``<root>/<id>/exec.fifo``
exists while the container is created but not started.  Every command takes
an ``flock`` on the container's directory (shared to read, exclusive to
change), so concurrent calls are safe, and the status is computed from the
kernel each time (is the pid alive with the same start time, is the cgroup
frozen), so ``state`` stays true after the caller or the container dies.
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

__all__ = ["ContainerState", "StateDir", "check_id", "proc_start_time"]

OCI_VERSION = "1.2.0"
# runc's ^[\w+-\.]+$ with Go's ASCII \w (Python's \w takes any script's letters,
# and its $ a trailing newline).
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
STATE_FILE = "state.json"
FIFO = "exec.fifo"


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


@dataclass
class ContainerState:
    """What ``state.json`` holds.  ``status`` is computed, never stored (see ``StateDir.status``)."""

    id: str
    bundle: str
    pid: int
    pid_start: int
    created: str
    config: dict[str, Any]
    rootfs: str = ""
    cgroup: dict[str, Any] | None = None       # {"name", "parent", "controllers"}
    started: bool = False
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """The text of state.json."""
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_json(cls, text: str) -> ContainerState:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class StateDir:
    """``<root>/<id>``: locked, read and written by the runtime's commands."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root = os.path.abspath(root)
        self.id = check_id(container_id)
        self.path = os.path.join(self.root, self.id)
        self.fifo = os.path.join(self.path, FIFO)
        self._lock_fd = -1

    # --- creation and locking ------------------------------------------------

    def make(self) -> None:
        """Create the directory (exclusively locked); ``ConfigError`` if the id is taken."""
        # 0700, as runc's: whoever can reach exec.fifo can start the container.
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            raise ConfigError(f"container id: a container named {self.id!r} already exists") from None
        self.lock(exclusive=True)

    def lock(self, *, exclusive: bool) -> None:
        """flock the directory; ``LookupError`` if the container does not exist."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LookupError(f"container {self.id!r} does not exist") from None
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not os.path.exists(os.path.join(self.path, STATE_FILE)) and not exclusive:
            os.close(fd)
            raise LookupError(f"container {self.id!r} does not exist")
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
        """Replace state.json atomically."""
        tmp = os.path.join(self.path, STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(st.to_json())
        os.replace(tmp, os.path.join(self.path, STATE_FILE))

    def read(self) -> ContainerState:
        """state.json; ``LookupError`` if the container does not exist."""
        try:
            with open(os.path.join(self.path, STATE_FILE), encoding="utf-8") as f:
                return ContainerState.from_json(f.read())
        except FileNotFoundError:
            raise LookupError(f"container {self.id!r} does not exist") from None

    def remove(self) -> None:
        """Remove the directory and everything in it."""
        try:
            # Only files here (state.json, exec.fifo): no need for shutil and its imports.
            for name in os.listdir(self.path):
                os.unlink(os.path.join(self.path, name))
            os.rmdir(self.path)
        except OSError:
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)
        self.unlock()

    def status(self, st: ContainerState) -> str:
        """creating, created, running, paused or stopped, from the kernel's view now."""
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
                "pid": st.pid if status not in ("stopped",) else 0, "bundle": st.bundle,
                "rootfs": st.rootfs, "created": st.created, "owner": "",
                "annotations": st.annotations}


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


def list_ids(root: str) -> list[str]:
    """Container ids under ``root`` (sorted)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(root, n, STATE_FILE)))
