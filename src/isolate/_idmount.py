"""Idmapped binds: a container's host binds, made in the caller and idmapped with its maps.

When a container's user namespace maps ids other than identically (container
root is not host root), a plain bind of a host directory shows its files as
``nobody`` inside and container root cannot write where host root could.
An idmapped mount (``mount_setattr(MOUNT_ATTR_IDMAP)``, Linux 5.12) shows a
file owned by host uid N as owned by N inside, and container root writes
there as the directory's owner.

The kernel lets only a holder of CAP_SYS_ADMIN in the filesystem's user
namespace (the initial one for ext4, xfs, tmpfs ...) idmap a mount, and only
a detached one (``open_tree(OPEN_TREE_CLONE)``).  The child is born in its
own user namespace and never holds that, so the caller makes the mounts
(as crun does), in two steps around the clone:

1. ``prepare``: before the spawn, a detached clone of each bind's source,
   its attributes (read-only, nosuid, ...) set.  The child inherits the fds,
   which the plan names (``RootBind.fd``, ``SpawnFd`` placeholders named
   ``mount 0``, ``mount 1``, ...); nothing else of the caller's.
2. ``Prepared.idmap(pid)``: while the child is held after its maps are
   written, each mount is idmapped with the child's own user namespace
   (``/proc/<pid>/ns/user``): no helper process and no cache of namespaces.
   The child then attaches them inside its new root (``csrc/ops_root.c``,
   targets resolved in the root as for every bind).

Where the caller cannot clone (no CAP_SYS_ADMIN: a rootless caller) the fd
is -1 and the child binds as it always did; where a filesystem refuses the
idmap (EINVAL: proc, sysfs, a FUSE or NFS mount below a recursive bind) the
bind stays a plain one, as it would be without this module.
"""

from __future__ import annotations

import errno
import os

from . import _spawn
from ._ops_root import RootBind
from ._plan import MOUNT_ATTR_RDONLY
from ._slots import SpawnFd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._plan import Op

__all__ = ["Prepared", "prepare"]

#: Errors of mount_setattr(MOUNT_ATTR_IDMAP) after which the bind stays a plain one:
#: a filesystem without idmap support or a mount the kernel will not idmap (EINVAL),
#: no privilege over the filesystem's user namespace (EPERM), no such feature (ENOSYS).
_FALLBACK = (errno.EINVAL, errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP)


class Prepared:
    """One spawn's prepared binds: their fds (-1: bound by the child as usual), owned here.

    ``idmapped`` and ``plain`` count, after ``idmap``, the mounts idmapped
    and those left plain because the filesystem or kernel refused.
    """

    __slots__ = ("fds", "_recursive", "idmapped", "plain")

    def __init__(self, fds: list[int], recursive: list[bool]) -> None:
        self.fds = fds
        self._recursive = recursive
        self.idmapped = 0
        self.plain = 0

    def idmap(self, pid: int) -> None:
        """Idmap every prepared mount with the maps of ``pid``'s user namespace (the held
        child's, its maps written); a refusal in ``_FALLBACK`` leaves that bind plain."""
        if not any(fd >= 0 for fd in self.fds):
            return
        ns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for fd, rec in zip(self.fds, self._recursive):
                if fd < 0:
                    continue
                try:
                    _spawn.mount_fd_idmap(fd, ns, recursive=rec)
                    self.idmapped += 1
                except OSError as e:
                    if e.errno not in _FALLBACK:
                        raise
                    self.plain += 1
        finally:
            os.close(ns)

    def close(self) -> None:
        """Close the fds (the child has its own copies); idempotent."""
        fds, self.fds = self.fds, []
        for fd in fds:
            if fd >= 0:
                os.close(fd)


def prepare(ops: Sequence[Op]) -> Prepared | None:
    """The detached mounts of the ``RootBind`` ops in ``ops`` that name a per-spawn fd, in
    the order of their ``SpawnFd`` index (None: there are none).

    Each source is a host path as this process sees it (the child's
    ``/oldroot/<path>`` or ``/<path>``: the same tree).  A source that cannot
    be cloned gets -1 and the child binds it itself, so a missing source
    still fails (or is skipped, if optional) with the child's usual error.
    """
    binds = sorted((op.fd.index, op) for op in ops
                   if type(op) is RootBind and type(op.fd) is SpawnFd and op.source)
    if not binds:
        return None
    fds: list[int] = []
    recursive: list[bool] = []
    try:
        for index, op in binds:
            assert index == len(fds), "prepared mounts must be numbered 0, 1, ... in order"
            attr_set = op.attr_set | (MOUNT_ATTR_RDONLY if op.readonly else 0)
            try:
                fd = _spawn.clone_tree(b"/" + op.source.lstrip(b"/"), recursive=op.recursive,
                                       attr_set=attr_set, attr_clr=op.attr_clr)
            except OSError:
                fd = -1
            fds.append(fd)
            recursive.append(op.recursive)
    except BaseException:
        Prepared(fds, recursive).close()
        raise
    return Prepared(fds, recursive)
