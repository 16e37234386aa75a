"""Where owner records live and whom they name: the registry directory, ``Owner``, process start times.

See ``_owner``'s docstring for the design.  Shared by the side that writes
records (``_owner``) and the side that reclaims them (``_reclaim``).
"""

from __future__ import annotations

import errno as _errno
import os

from ._record import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Kind = Literal["cgroup", "cgroup-parent", "overlay-work", "namespace-mount",
                   "namespace-file", "namespace-dir", "private-mount", "userns-range",
                   "net-lease"]
else:
    Kind = str

__all__ = ["JOURNAL", "REGISTRY", "Kind", "Owner", "boot_id", "check_private", "open_registry",
           "proc_start_time", "registry_path"]

#: Overrides the registry's location (tests); None: the default for this user.
REGISTRY: str | None = None
#: The file of records in an owner's directory (see ``_owner._Home``).
JOURNAL = "records"

_boot: str | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    """A process that made something: ``pid``, ``start`` (/proc/<pid>/stat field 22), ``boot`` id."""

    pid: int
    start: int
    boot: str

    @property
    def name(self) -> str:
        """The owner's directory name in the registry."""
        return f"{self.pid}-{self.start}-{self.boot}"

    @classmethod
    def parse(cls, name: str) -> Owner | None:
        """The owner a registry entry name stands for (a leading dot allowed), None if it is none."""
        parts = name.lstrip(".").split("-")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2]:
            return None
        return cls(int(parts[0]), int(parts[1]), parts[2])

    def running(self) -> bool:
        """Whether this process still runs (same boot, same pid, same start time)."""
        return self.boot == boot_id() and proc_start_time(self.pid) == self.start


def boot_id() -> str:
    """The kernel's boot id (``/proc/sys/kernel/random/boot_id``) without dashes."""
    global _boot
    if _boot is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:   # (no ascii codec to load)
                _boot = f.read().decode().strip().replace("-", "") or "unknown"
        except OSError:
            _boot = "unknown"
    return _boot


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


def registry_path() -> str:
    """Where this user's owner records live (see the module's docstring)."""
    if REGISTRY is not None:
        return REGISTRY
    if os.geteuid() == 0:
        return "/run/isolate/owners"
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        try:
            st = os.stat(xdg)
            if st.st_uid == os.geteuid() and not st.st_mode & 0o022:
                return os.path.join(xdg, "isolate", "owners")
        except OSError:
            pass
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"isolate-{os.geteuid()}", "owners")


def check_private(path: str) -> None:
    """``path`` is a directory of ours that nobody else can write; ``PermissionError`` otherwise."""
    import stat as _stat

    st = os.lstat(path)
    if not _stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PermissionError(_errno.EACCES, "not a directory of this user's that only it can "
                              "write (remove it, or fix its owner and mode)", path)


def open_registry(*, create: bool) -> str | None:
    """The checked registry directory (made if ``create``), None if it does not exist."""
    reg = registry_path()
    if create:
        top = os.path.dirname(reg)
        if not os.path.isdir(top):
            os.makedirs(top, mode=0o755 if os.geteuid() == 0 else 0o700, exist_ok=True)
        if os.geteuid() != 0 or REGISTRY is not None:
            check_private(top)
        try:
            os.mkdir(reg, 0o700)
        except FileExistsError:
            pass
    elif not os.path.lexists(reg):
        return None
    check_private(reg)
    return reg
