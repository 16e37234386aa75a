"""A tmpfs's ``copy_up`` (an OCI mount's ``tmpcopyup``): a detached tmpfs filled here.

The parent reads the image, which is hostile: the covered directory is
resolved inside the image (openat2 RESOLVE_IN_ROOT, as runc's securejoin:
a symlink or ``..`` never leads out), and its contents are walked through
directory fds with O_NOFOLLOW: symlinks are copied as symlinks, regular
files by content, directories recursively; a device node, fifo or socket
is refused (runc 1.1.5's copy fails on them); owner and mode kept (the tmpfs's root takes
the directory's mode, its owner stays root, as runc's copy).  The copy is bounded
(``MAX_ENTRIES``, ``MAX_BYTES``, ``MAX_DEPTH``): past a bound the start is
refused with a ``ConfigError`` naming the mount, and nothing is left.
"""

from __future__ import annotations

import errno
import os
import stat

from . import _spawn
from ._plan import MOUNT_ATTR_RDONLY
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from .config import TmpfsMount

__all__ = ["copy_up", "MAX_ENTRIES", "MAX_BYTES", "MAX_DEPTH"]

#: Most entries (files, directories, links...) one copy-up copies.
MAX_ENTRIES = 65536
#: Most bytes of file contents one copy-up copies.
MAX_BYTES = 256 << 20
#: Deepest directory nesting one copy-up follows (each level holds two fds).
MAX_DEPTH = 64

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class _Over(Exception):
    pass


class _Special(Exception):
    pass


_KINDS = {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo",
          stat.S_IFSOCK: "socket"}


class _Budget:
    __slots__ = ("entries", "bytes")

    def __init__(self) -> None:
        self.entries = MAX_ENTRIES
        self.bytes = MAX_BYTES

    def entry(self) -> None:
        self.entries -= 1
        if self.entries < 0:
            raise _Over(f"more than {MAX_ENTRIES} entries")


def copy_up(directory: Path, m: TmpfsMount) -> int:
    """A detached tmpfs made as ``m`` asks, holding a copy of ``m.target`` in the image
    ``directory``: its fd (O_CLOEXEC, the caller's to close).  Raises ``ConfigError``."""
    where = f"tmpfs on /{m.target.decode(errors='replace')} (copy_up)"
    fd = _spawn.detached_tmpfs(m.mode, m.size, m.source, m.attrs & ~MOUNT_ATTR_RDONLY)
    try:
        root = os.open(os.fspath(directory), _DIR)
        try:
            try:
                # Symlinks and ".." resolved inside the image (runc's securejoin).
                src = _spawn.open_in_root(root, m.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
                src = -1       # missing or not a directory: nothing to copy (the mount says)
            if src >= 0:
                try:
                    _copy_dir(src, fd, _Budget(), 0)
                    # The root takes the directory's mode (not its owner), as runc's copy.
                    top = os.open(".", _DIR, dir_fd=fd)
                    try:
                        os.fchmod(top, stat.S_IMODE(os.fstat(src).st_mode))
                    finally:
                        os.close(top)
                finally:
                    os.close(src)
        finally:
            os.close(root)
        if m.attrs & MOUNT_ATTR_RDONLY:
            _spawn.mount_fd_setattr(fd, MOUNT_ATTR_RDONLY)
    except _Over as e:
        os.close(fd)
        raise ConfigError(f"{where}: the directory it covers in the image holds {e}: refused") from None
    except _Special as e:
        os.close(fd)
        raise ConfigError(f"{where}: the directory it covers in the image holds {e} (runc refuses "
                          f"it too)") from None
    except OSError as e:
        os.close(fd)
        raise ConfigError(f"{where}: cannot copy the image's directory: {e}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_dir(src: int, dst: int, budget: _Budget, depth: int) -> None:
    """Copy the entries of the directory ``src`` into ``dst`` (both fds), never following one."""
    if depth > MAX_DEPTH:
        raise _Over(f"directories nested deeper than {MAX_DEPTH}")
    with os.scandir(src) as it:
        entries = [e.name for e in it]
    for name in entries:
        budget.entry()
        st = os.lstat(name, dir_fd=src)
        kind = stat.S_IFMT(st.st_mode)
        perms = stat.S_IMODE(st.st_mode)
        if kind == stat.S_IFDIR:
            os.mkdir(name, 0o700, dir_fd=dst)
            s = os.open(name, _DIR, dir_fd=src)
            try:
                d = os.open(name, _DIR, dir_fd=dst)
                try:
                    if os.fstat(s).st_ino != st.st_ino:
                        raise OSError(f"{name!r} changed while copied")
                    _copy_dir(s, d, budget, depth + 1)
                    os.fchown(d, st.st_uid, st.st_gid)
                    os.fchmod(d, perms)
                finally:
                    os.close(d)
            finally:
                os.close(s)
        elif kind == stat.S_IFLNK:
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        elif kind == stat.S_IFREG:
            _copy_file(src, dst, name, st, budget)
        else:
            # Devices, fifos, sockets: refused, as runc 1.1.5's copy fails on them.
            raise _Special(f"{name!r} is a {_KINDS.get(kind, 'special file')}, which is not copied")


def _copy_file(src: int, dst: int, name: str, st: os.stat_result, budget: _Budget) -> None:
    s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src)
    try:
        got = os.fstat(s)
        if not stat.S_ISREG(got.st_mode) or got.st_ino != st.st_ino:
            raise OSError(f"{name!r} changed while copied")
        if got.st_size > budget.bytes:
            raise _Over(f"more than {MAX_BYTES} bytes of files")
        d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                    dir_fd=dst)
        try:
            while True:
                # At most what the budget allows, plus one byte to see a file that grew.
                n = os.read(s, min(_CHUNK, budget.bytes + 1))
                if not n:
                    break
                budget.bytes -= len(n)
                if budget.bytes < 0:
                    raise _Over(f"more than {MAX_BYTES} bytes of files")
                view = memoryview(n)
                while view:
                    view = view[os.write(d, view):]
            os.fchown(d, st.st_uid, st.st_gid)
            os.fchmod(d, stat.S_IMODE(st.st_mode))    # after chown, which clears set-id bits
        finally:
            os.close(d)
    finally:
        os.close(s)
