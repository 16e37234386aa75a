"""User and group id maps for user namespaces, and /etc/subuid parsing."""

from __future__ import annotations

import os

from ._record import dataclass
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["IdMap", "SubIdRange", "parse_subid", "subid_ranges", "subid_maps", "check_maps",
           "format_maps"]

MAX_ID = 2**32 - 1
# The kernel accepts at most 340 lines in uid_map/gid_map (user_namespaces(7)).
MAX_MAP_LINES = 340


@dataclass(frozen=True, slots=True, kw_only=True)
class IdMap:
    """One line of /proc/<pid>/uid_map: ``count`` ids from ``outside`` appear as ``inside``."""

    inside: int
    outside: int
    count: int = 1

    def __post_init__(self) -> None:
        for name in ("inside", "outside", "count"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"IdMap.{name} must be an integer, got {v!r}")
        if self.count < 1:
            raise ConfigError(f"IdMap.count must be >= 1, got {self.count!r}")
        if not 0 <= self.inside <= MAX_ID - self.count:
            raise ConfigError(f"IdMap.inside out of range: {self.inside!r} (count {self.count})")
        if not 0 <= self.outside <= MAX_ID - self.count:
            raise ConfigError(f"IdMap.outside out of range: {self.outside!r} (count {self.count})")

    def line(self) -> str:
        """The map line the kernel expects: ``inside outside count``."""
        return f"{self.inside} {self.outside} {self.count}\n"


def _overlap(a0: int, an: int, b0: int, bn: int) -> bool:
    return a0 < b0 + bn and b0 < a0 + an


def check_maps(maps: Sequence[IdMap], what: str = "uid_map") -> None:
    """Raise ``ConfigError`` if ranges overlap on either side, or there are too many."""
    if not maps:
        raise ConfigError(f"{what} must not be empty")
    if len(maps) > MAX_MAP_LINES:
        raise ConfigError(f"{what} has {len(maps)} lines; the kernel allows {MAX_MAP_LINES}")
    for i, a in enumerate(maps):
        if not isinstance(a, IdMap):
            raise ConfigError(f"{what}[{i}] must be an IdMap, got {a!r}")
        for b in maps[:i]:
            if _overlap(a.inside, a.count, b.inside, b.count):
                raise ConfigError(f"{what}: inside ranges overlap: {b!r} and {a!r}")
            if _overlap(a.outside, a.count, b.outside, b.count):
                raise ConfigError(f"{what}: outside ranges overlap: {b!r} and {a!r}")


def format_maps(maps: Iterable[IdMap]) -> bytes:
    """The text written to uid_map/gid_map in one write(2)."""
    return "".join(m.line() for m in maps).encode()


@dataclass(frozen=True, slots=True)
class SubIdRange:
    """One line of /etc/subuid or /etc/subgid: ``owner:start:count``."""

    owner: str
    start: int
    count: int


def parse_subid(text: str, *, source: str = "/etc/subuid") -> list[SubIdRange]:
    """Parse subuid/subgid text.  Blank lines and ``#`` comments are skipped."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3:
            raise ConfigError(f"{source}:{lineno}: expected owner:start:count, got {raw!r}")
        owner, start, count = parts
        try:
            s, c = int(start), int(count)
        except ValueError:
            raise ConfigError(f"{source}:{lineno}: start and count must be integers, got {raw!r}") from None
        if s < 0 or c < 1 or s + c - 1 > MAX_ID:
            raise ConfigError(f"{source}:{lineno}: range out of bounds: {raw!r}")
        out.append(SubIdRange(owner, s, c))
    return out


def subid_ranges(user: str | int | None = None, *, kind: str = "uid", path: str | None = None) -> list[SubIdRange]:
    """The subordinate id ranges of ``user`` (name or uid; default: the caller).

    Lines may name the user or its numeric id, as shadow-utils allows.
    A missing file gives an empty list.
    """
    import pwd

    if kind not in ("uid", "gid"):
        raise ConfigError(f"kind must be 'uid' or 'gid', got {kind!r}")
    path = path or f"/etc/sub{kind}"
    uid = os.getuid() if user is None else user
    names: set[str] = set()
    if isinstance(uid, int):
        names.add(str(uid))
        try:
            names.add(pwd.getpwuid(uid).pw_name)
        except KeyError:
            pass
    else:
        names.add(uid)
        try:
            names.add(str(pwd.getpwnam(uid).pw_uid))
        except KeyError:
            pass
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    return [r for r in parse_subid(text, source=path) if r.owner in names]


def _free_start(paths: Sequence[str]) -> int:
    """A start past every range ``paths`` give anyone (at least 100000), for a suggestion."""
    end = 100000
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                for r in parse_subid(f.read(), source=path):
                    end = max(end, r.start + r.count)
        except (OSError, ConfigError):
            pass
    return end


def subid_maps(*, uid: int | None = None, gid: int | None = None,
               subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> tuple[list[IdMap], list[IdMap]]:
    """The id maps of a rootless container with many ids, as podman builds them.

    Root inside is the caller (``uid``/``gid``, default: the effective ids);
    ids 1 and up inside are the caller's ranges in /etc/subuid and
    /etc/subgid, one after the other.  Such maps are written by the setuid
    ``newuidmap``/``newgidmap`` (Debian's ``uidmap`` package), which check
    them against the same files.  ``spawn``, ``run``, ``Container`` and
    ``isolate run`` use them by themselves for a caller without root whose
    process runs as a user or group other than root inside; pass them as
    ``uid_map``/``gid_map`` to have every id of the ranges in any case.

    Raises ``UnsupportedError`` naming the files, the user and the command
    that adds a range when the caller has none (or newuidmap/newgidmap is
    missing); ``ConfigError`` when a file is malformed.
    """
    import pwd
    import shutil

    from .errors import UnsupportedError

    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    uids = subid_ranges(uid, kind="uid", path=subuid)
    gids = subid_ranges(uid, kind="gid", path=subgid)
    missing = [path for path, found in ((subuid, uids), (subgid, gids)) if not found]
    if missing:
        start = _free_start([subuid, subgid])
        raise UnsupportedError(
            f"more than one id inside a user namespace needs subordinate ids, and "
            f"{' and '.join(missing)} {'give' if len(missing) > 1 else 'gives'} user {name!r} "
            f"(uid {uid}) none: as root, add a range with 'usermod --add-subuids "
            f"{start}-{start + 65535} --add-subgids {start}-{start + 65535} {name}'")
    tools = [t for t in ("newuidmap", "newgidmap") if shutil.which(t) is None
             and shutil.which(t, path="/usr/bin:/bin:/usr/sbin:/sbin") is None]
    if tools:
        raise UnsupportedError(f"{' and '.join(tools)} {'are' if len(tools) > 1 else 'is'} needed to "
                               "map more than your own id without root: install the 'uidmap' "
                               "package (apt-get install uidmap)")

    def build(own: int, ranges: list[SubIdRange], what: str) -> list[IdMap]:
        maps = [IdMap(inside=0, outside=own)]
        inside = 1
        for r in ranges[:MAX_MAP_LINES - 1]:
            count = min(r.count, MAX_ID - 1 - inside)
            if count < 1:
                break
            maps.append(IdMap(inside=inside, outside=r.start, count=count))
            inside += count
        check_maps(maps, what)
        return maps

    return build(uid, uids, subuid), build(gid, gids, subgid)
