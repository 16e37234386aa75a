"""What ``isolate-oci`` does differently without root, as runc's rootless mode does.

Three decisions, each runc's own rule::

    default_root()              # /run/isolate-oci, or $XDG_RUNTIME_DIR/isolate-oci without root
    is_rootless("auto")         # True when not root, or root of a user namespace (podman rootless)
    in_user_namespace()         # device nodes are then bound from the host, never made

Rootless, a cgroup that cannot be made for lack of permission is not an
error: the container runs without one (and without its limits), with a
warning (``runtime.create``).  A ``cgroupsPath`` in a delegated subtree (one
the caller may write) is made and its limits applied as usual.
"""

from __future__ import annotations

import contextlib
import errno
import os
import warnings

from .._userns import in_user_namespace
from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..cgroup import Limits

__all__ = ["DEFAULT_ROOT", "default_root", "in_user_namespace", "is_rootless", "cgroup_denied", "may_setgroups",
           "without_cgroup", "lost_limits", "quiet_if", "ROOTLESS_MODES"]

#: The state root of a runtime run by root in the host's user namespace (runc: /run/runc).
DEFAULT_ROOT = "/run/isolate-oci"
#: ``--rootless``'s values.
ROOTLESS_MODES = ("true", "false", "auto")


def _xdg_runtime_dir() -> str | None:
    """``$XDG_RUNTIME_DIR`` when this runtime should use it (runc's shouldHonorXDGRuntimeDir)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if not xdg:
        return None
    if os.geteuid() != 0:
        return xdg
    # Root of a user namespace that a user made (podman unshare, podman rootless, whose
    # conmon passes no USER): that user's runtime directory, unless USER says root's.
    if in_user_namespace() and os.environ.get("USER") != "root":
        return xdg
    return None


def default_root() -> str:
    """The state root when ``--root`` is not given: ``$XDG_RUNTIME_DIR/isolate-oci`` for an
    ordinary user (runc uses ``$XDG_RUNTIME_DIR/runc``), else ``/run/isolate-oci``.

    Raises ``ConfigError`` saying what to do when neither is usable: not root,
    ``XDG_RUNTIME_DIR`` unset, and ``/run/isolate-oci`` not writable.
    """
    xdg = _xdg_runtime_dir()
    if xdg is not None:
        return os.path.join(xdg, "isolate-oci")
    if os.geteuid() != 0 and not _writable(DEFAULT_ROOT):
        raise ConfigError(f"--root: the default state root {DEFAULT_ROOT} is not writable by uid "
                          f"{os.geteuid()} and XDG_RUNTIME_DIR is not set: set XDG_RUNTIME_DIR (a "
                          f"login's /run/user/{os.geteuid()}) or pass --root DIR")
    return DEFAULT_ROOT


def _writable(path: str) -> bool:
    """Whether ``path``, or the nearest directory that would hold it, may be written."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.access(path, os.W_OK | os.X_OK)


def is_rootless(mode: str = "auto") -> bool:
    """``--rootless``: "true", "false", or "auto" (runc's rule: rootless when not root, or when
    root of a user namespace with ``XDG_RUNTIME_DIR`` set, as podman rootless runs runtimes).

    Raises ``ConfigError`` for any other value.
    """
    if mode not in ROOTLESS_MODES:
        raise ConfigError(f"--rootless: expected true, false or auto, got {mode!r}")
    if mode != "auto":
        return mode == "true"
    if os.geteuid() != 0:
        return True
    return in_user_namespace() and bool(os.environ.get("XDG_RUNTIME_DIR"))


def may_setgroups() -> bool:
    """Whether the container's processes get their supplementary groups set when the config
    asks for none (runc: only as root, where ``/proc/self/setgroups`` is not "deny")."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except FileNotFoundError:
        return True


def cgroup_denied(e: BaseException) -> bool:
    """Whether ``e`` (from making a cgroup) is a refusal for lack of permission: EACCES,
    EPERM, or EROFS (cgroupfs mounted read-only, as in a rootless container's view)."""
    return isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def quiet_if(rootless: bool, warn: Callable[[str], None]) -> Iterator[None]:
    """Rootless, Python warnings of the block (the default cgroup parent's or the owner
    registry's, not this user's) go to ``warn`` (``--log``), not to stderr: a runtime's
    caller reads its stderr as errors."""
    if not rootless:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                warn(str(w.message))


def lost_limits(limits: Limits | None) -> list[str]:
    """The ``Limits`` fields that a container run without its cgroup loses.  Device rules
    do not count: rootless, runc ignores them too (no device cgroup is delegated)."""
    if limits is None:
        return []
    from .._record import fields

    return [f.name for f in fields(limits) if f.name != "devices" and getattr(limits, f.name) != f.default]


def without_cgroup(e: OSError, limits: Limits | None) -> str:
    """The warning of a rootless ``create`` whose cgroup was refused (``e``): what is lost and
    how to get it back."""
    where = f"{e.filename}: " if e.filename else ""
    lost = lost_limits(limits)
    what = (f"linux.resources is not applied ({', '.join(lost)}: no limits)" if lost
            else "pause, resume, update and stats need one")
    return (f"rootless: no cgroup for the container ({where}{e.strerror}); it runs without one, so "
            f"{what}. A cgroup delegated to this user (writable), named in linux.cgroupsPath, "
            "gives it one")
