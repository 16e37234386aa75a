"""Users and groups as a sandbox sees them: its /etc/passwd and /etc/group.

``Container(user="app")`` means the ``app`` of the container's root, not of
the host: an image's /etc/passwd is read inside the image, resolved the way
``openat2(RESOLVE_IN_ROOT)`` would (every symlink, absolute or ``..``, stays
below the image's directory; nothing is followed by the kernel), and only a
regular file is read.  ``spawn(user=...)`` without a root of its own uses
the host's databases (``pwd``/``grp``, through NSS, as ``su`` would).

The identity a user name or id gives, in every case (Docker's and runc's rules,
except that nothing defaults to group 0):

- the group: ``group=`` if given, else the user's passwd entry, else
  ``NOGROUP`` (65534) for a uid without an entry (and 0 for uid 0);
- supplementary groups: ``groups=`` if given; else none if ``group=`` was
  given; else the groups of /etc/group that list the user's name.
"""

from __future__ import annotations

import os
import stat

from ._record import dataclass
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeAlias

#: The group of a uid that has no passwd entry: the kernel's overflow gid
#: ("nogroup"/"nobody"), which by convention owns no file.  Never 0.
NOGROUP = 65534

#: Larger /etc/passwd or /etc/group files of a sandbox are refused.
MAX_DB_SIZE = 8 << 20



@dataclass(frozen=True, slots=True)
class Identity:
    """Who a sandboxed process runs as: ids, supplementary groups, and its passwd home."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str | None       # None: no passwd entry


@dataclass(frozen=True, slots=True)
class _User:
    name: str
    uid: int
    gid: int
    home: str


class FileDB:
    """/etc/passwd and /etc/group given as their contents (None: the sandbox has none)."""

    def __init__(self, passwd: bytes | None, group: bytes | None, where: str) -> None:
        self.where = where
        self._users = _parse(passwd, 7)
        self._groups = _parse(group, 4)

    def user(self, key: str | int) -> _User | None:
        """The first entry named ``key`` (a str) or with uid ``key`` (an int)."""
        for f in self._users:
            try:
                if (f[0] == key) if isinstance(key, str) else (int(f[2]) == key):
                    return _User(f[0], int(f[2]), int(f[3]), f[5])
            except ValueError:
                continue
        return None

    def group_id(self, name: str) -> int | None:
        """The gid of the first group named ``name``."""
        for f in self._groups:
            if f[0] == name:
                try:
                    return int(f[2])
                except ValueError:
                    continue
        return None

    def member_of(self, name: str) -> tuple[int, ...]:
        """The gids of every group listing ``name`` as a member, in file order."""
        out: list[int] = []
        for f in self._groups:
            if name in f[3].split(","):
                try:
                    gid = int(f[2])
                except ValueError:
                    continue
                if gid not in out:
                    out.append(gid)
        return tuple(out)

    def missing(self, what: str) -> str:
        """Where a ``what`` ("user" or "group") was looked for, for an error message."""
        name = "passwd" if what == "user" else "group"
        if not (self._users if what == "user" else self._groups):
            return f"(the sandbox's /etc/{name} is missing or empty: {self.where})"
        return f"in the sandbox's /etc/{name} ({self.where})"


class HostDB:
    """The host's users and groups through NSS (``pwd``, ``grp``)."""

    where = "the host"

    def user(self, key: str | int) -> _User | None:
        """The entry named ``key`` (a str) or with uid ``key`` (an int)."""
        import pwd

        try:
            e = pwd.getpwnam(key) if isinstance(key, str) else pwd.getpwuid(key)
        except (KeyError, OverflowError):
            return None
        return _User(e.pw_name, e.pw_uid, e.pw_gid, e.pw_dir)

    def group_id(self, name: str) -> int | None:
        """The gid of the group ``name``."""
        import grp

        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None

    def member_of(self, name: str) -> tuple[int, ...]:
        """The gids of every group listing ``name`` as a member."""
        import grp

        return tuple(dict.fromkeys(g.gr_gid for g in grp.getgrall() if name in g.gr_mem))

    def missing(self, what: str) -> str:
        """Where a ``what`` was looked for, for an error message."""
        return "on the host"


class _LazyDB:
    """A ``FileDB`` read on its first lookup: ids given in full never read a file."""

    def __init__(self, load: Callable[[], FileDB]) -> None:
        self._load: Callable[[], FileDB] | None = load
        self._db: FileDB | None = None

    def _get(self) -> FileDB:
        if self._db is None:
            assert self._load is not None
            self._db, self._load = self._load(), None
        return self._db

    def user(self, key: str | int) -> _User | None:
        """See ``FileDB.user``."""
        return self._get().user(key)

    def group_id(self, name: str) -> int | None:
        """See ``FileDB.group_id``."""
        return self._get().group_id(name)

    def member_of(self, name: str) -> tuple[int, ...]:
        """See ``FileDB.member_of``."""
        return self._get().member_of(name)

    def missing(self, what: str) -> str:
        """See ``FileDB.missing``."""
        return self._get().missing(what)


UserDB: TypeAlias = "FileDB | HostDB | _LazyDB"


def _parse(data: bytes | None, fields: int) -> list[list[str]]:
    if not data:
        return []
    out = []
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        if not line or line[0] in "#+-":
            continue
        f = line.split(":")
        if len(f) >= fields:
            out.append(f)
    return out


def _number(value: Any, what: str) -> int | None:
    """``value`` as an id if it is one (an int, or a string of digits), else None."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be an id or a name, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        n = int(value)
    elif isinstance(value, str) and value and ":" not in value and "\n" not in value:
        return None
    else:
        raise ConfigError(f"{what} must be an id or a name, got {value!r}")
    if not 0 <= n < 2**32 - 1:
        raise ConfigError(f"{what} out of range: {value!r}")
    return n


def _group(db: UserDB, value: Any, what: str) -> int:
    n = _number(value, what)
    if n is not None:
        return n
    gid = db.group_id(value)
    if gid is None:
        raise ConfigError(f"{what}: no such group {value!r} {db.missing('group')}")
    return gid


def resolve(db: UserDB, user: Any, group: Any = None,
            groups: Sequence[Any] | None = None) -> Identity:
    """The identity of ``user`` (a name or a uid; None: root) with ``group`` and ``groups``.

    The databases are read only when needed: numeric ``user``, ``group``
    and ``groups`` all given need none (``home`` is then None).  Raises
    ``ConfigError`` naming the field for an unknown name or a bad value.
    """
    entry: _User | None = None
    if user is None:
        uid = 0
    else:
        n = _number(user, "user")
        if n is None:
            entry = db.user(user)
            if entry is None:
                if user != "root":
                    raise ConfigError(f"user: no such user {user!r} {db.missing('user')}")
                uid = 0
            else:
                uid = entry.uid
        else:
            uid = n
    if entry is None and (group is None or groups is None):
        # Ids given in full (as an OCI config gives them) need no database.
        entry = db.user(uid)
    if group is not None:
        gid = _group(db, group, "group")
    elif entry is not None:
        gid = entry.gid
    else:
        gid = 0 if uid == 0 else NOGROUP
    if groups is not None:
        if isinstance(groups, (str, bytes)):
            raise ConfigError(f"groups must be a list of ids or names, got {groups!r}")
        gids = tuple(_group(db, g, f"groups[{i}]") for i, g in enumerate(groups))
        if len(gids) > 65536:
            raise ConfigError(f"groups: too many ({len(gids)})")
    elif group is not None or entry is None:
        gids = ()
    else:
        gids = db.member_of(entry.name)
    return Identity(uid=uid, gid=gid, groups=gids, home=entry.home if entry is not None else None)


def read_in_root(root: str | bytes, path: str, limit: int = MAX_DB_SIZE) -> bytes | None:
    """The regular file ``path`` of the tree at ``root``, resolved inside it; None if absent.

    Opened with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` beneath
    ``root``: a symlink in the tree, absolute or ``..``, resolves inside it,
    and a magic link (``/proc/self/fd/N``) is refused.  Raises ``ConfigError``
    for a file that is not regular or is larger than ``limit``.
    """
    from ._spawn import open_in_root

    shown = f"{os.fsdecode(root)}/{path}"
    dfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(dfd, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise ConfigError(f"{shown}: {e.strerror}") from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{shown} is not a regular file")
        data = os.read(fd, limit + 1)
        if st.st_size > limit or len(data) > limit:
            raise ConfigError(f"{shown} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)


def _host_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_DB_SIZE + 1)[:MAX_DB_SIZE]
    except OSError:
        return None


def rootfs_db(rootfs: Any) -> UserDB:
    """The databases of a sandbox with the root ``rootfs`` (a ``RootFS`` or ``RootSpec``, or None:
    the host's).

    A host root (``RootFS.host()``) has the copy of the host's /etc it was
    made with; an image directory its own files, read inside it; a file or
    directory the caller binds onto /etc/passwd, /etc/group or /etc replaces
    them, a tmpfs on /etc removes them.  Nothing is read until a lookup needs it.
    """
    if rootfs is None:
        return HostDB()
    return _LazyDB(lambda: _rootfs_files(rootfs))


def _rootfs_files(rootfs: Any) -> FileDB:
    files: dict[str, bytes | None] = {}
    spec = getattr(rootfs, "spec", rootfs)     # a RootFS or its RootSpec
    directory = spec.directory
    if getattr(spec, "layers", ()):
        from .images.image import read_layered

        where = "the image's layers"
        for name in ("passwd", "group"):
            files[name] = read_layered(list(spec.layers), f"/etc/{name}", MAX_DB_SIZE)
    elif directory is not None:
        where = f"the image {directory}"
        for name in ("passwd", "group"):
            files[name] = read_in_root(os.fsencode(directory), f"etc/{name}")
    else:
        where = "a copy of the host's"
        etc = {name: (kind, payload) for name, kind, payload in spec.host_etc}
        for name in ("passwd", "group"):
            kind, payload = etc.get(name, ("absent", b""))
            if kind == "file":
                files[name] = payload
            elif kind in ("bind", "link"):
                files[name] = _host_file(os.path.realpath(f"/etc/{name}"))
            else:
                files[name] = None
    for m in spec.mounts:
        target = getattr(m, "target", b"")
        source = getattr(m, "source", None)
        if target == b"etc":
            for name in ("passwd", "group"):
                files[name] = (None if source is None else
                               read_in_root(source, name) if getattr(m, "is_dir", False) else None)
            where = f"bound from {os.fsdecode(source)}" if source is not None else "a tmpfs"
        elif target in (b"etc/passwd", b"etc/group"):
            name = target[4:].decode()
            files[name] = None if source is None else _host_file(os.fsdecode(source))
            where = "bound into the sandbox"
    return FileDB(files["passwd"], files["group"], where)
