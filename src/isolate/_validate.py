"""Checks shared by the configs: each raises ``ConfigError`` naming the field and the value.

Every option reaches these through a config's ``__post_init__`` (see
``config.py``), before any process, mount or cgroup exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._plan import (CAPABILITIES, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC,
                    MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MOUNT_ATTR_STRICTATIME)
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    _MapBase = Mapping[Any, Any]
else:
    _MapBase = Mapping

#: ``atime=`` values and their MOUNT_ATTR_* (relatime is the kernel's default, 0).
ATIME = {"relatime": 0, "noatime": MOUNT_ATTR_NOATIME, "strictatime": MOUNT_ATTR_STRICTATIME}
ATIME_MASK = MOUNT_ATTR_NOATIME | MOUNT_ATTR_STRICTATIME


class FrozenMap(_MapBase):
    """An immutable, hashable mapping that keeps its order (a config's ``env``, ``rlimits`` ...).

    Equal to any mapping with the same items, in any order, as ``dict`` is.
    """

    __slots__ = ("_d", "_hash")

    def __init__(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = ()) -> None:
        self._d = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash(frozenset(self._d.items()))
        return h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._d == other._d
        return self._d == other

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> Any:
        return (FrozenMap, (self._d,))


def fsencode(value: Any, what: str) -> bytes:
    """``value`` (str, bytes or path) as bytes without NUL."""
    if isinstance(value, bytes):
        b = value
    elif isinstance(value, str) or hasattr(value, "__fspath__"):
        b = os.fsencode(value)
    else:
        raise ConfigError(f"{what} must be a string or path, got {value!r}")
    if b"\0" in b:
        raise ConfigError(f"{what} contains a NUL byte: {value!r}")
    return b


def nonempty_path(value: object, what: str) -> bytes:
    """``fsencode``, and not empty."""
    b = fsencode(value, what)
    if not b:
        raise ConfigError(f"{what} must be a non-empty path, got {value!r}")
    return b


def container_path(value: object, what: str) -> bytes:
    """A path inside the container: absolute, normalized, no ``..``; returned without the
    leading slash (``b"usr/bin"``; ``b"."`` for the root itself)."""
    b = nonempty_path(value, what)
    if not b.startswith(b"/"):
        raise ConfigError(f"{what} must be an absolute path inside the container, got {value!r}")
    parts = [p for p in b.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise ConfigError(f"{what} must not contain '..' (it would leave the root): {value!r}")
    return b"/".join(parts) or b"."


def check_fd(fd: object, what: str) -> int:
    """An open fd number."""
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise ConfigError(f"{what} must be a non-negative fd number, got {fd!r}")
    try:
        os.fstat(fd)
    except OSError:
        raise ConfigError(f"{what}: fd {fd} is not open") from None
    return fd


def flag(value: object, what: str) -> bool:
    """A bool, strictly (not 0 or 1)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be True or False, got {value!r}")
    return value


def mode(value: object, what: str) -> int:
    """A file mode up to 0o7777."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o7777:
        raise ConfigError(f"{what} must be an integer up to 0o7777, got {value!r}")
    return value


def size(value: object, what: str) -> str | None:
    """A tmpfs size: bytes as an int, or a string tmpfs accepts (``64m``, ``50%``)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"{what} must be a positive number of bytes, got {value!r}")
        return str(value)
    if isinstance(value, str):
        body = value[:-1] if value[-1:].lower() in ("k", "m", "g", "%") else value
        if body.isdigit() and int(body) > 0:
            return value
    raise ConfigError(f"{what} must be bytes (int) or like '64m' or '50%', got {value!r}")


def mount_attrs(what: str, *, readonly: object = False, nosuid: object = False, nodev: object = False,
                noexec: object = False, atime: object = None) -> int:
    """MOUNT_ATTR_* for the flags a caller asked for; ``what`` names the mount in errors."""
    attrs = 0
    for name, value, bit in (("readonly", readonly, MOUNT_ATTR_RDONLY),
                             ("nosuid", nosuid, MOUNT_ATTR_NOSUID),
                             ("nodev", nodev, MOUNT_ATTR_NODEV),
                             ("noexec", noexec, MOUNT_ATTR_NOEXEC)):
        if flag(value, f"{what} {name}"):
            attrs |= bit
    if atime is not None:
        if atime not in ATIME:
            raise ConfigError(f"{what} atime must be one of {', '.join(sorted(ATIME))}, got {atime!r}")
        attrs |= ATIME[atime]
    return attrs


def cap_name(value: object, what: str) -> str:
    """A capability name as the kernel headers spell it (``net_raw`` -> ``CAP_NET_RAW``)."""
    if not isinstance(value, str):
        raise ConfigError(f"{what}: {value!r} is not a capability name")
    key = value.upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    if key not in CAPABILITIES:
        raise ConfigError(f"{what}: unknown capability {value!r}")
    return key


def cap_names(values: Any, what: str) -> frozenset[str]:
    """A collection of capability names, normalized."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{what} must be a collection of capability names, got {values!r}")
    return frozenset(cap_name(v, what) for v in values)


def cap_mask(names: Iterable[str]) -> int:
    """The bit mask of normalized capability names."""
    mask = 0
    for n in names:
        mask |= 1 << CAPABILITIES[n]
    return mask


def id_value(value: object, what: str) -> int | str:
    """A uid or gid (0 to 2**32-2), or a name to look up later."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 2**32 - 1:
            raise ConfigError(f"{what} out of range: {value!r}")
        return value
    if isinstance(value, str) and value:
        return value
    raise ConfigError(f"{what} must be an id or a name, got {value!r}")


def timeout(value: object) -> float | None:
    """Seconds (a non-negative number), or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"timeout must be a non-negative number of seconds, got {value!r}")
    return float(value)


def max_output(value: object) -> int | None:
    """Bytes kept of a captured stream (None: all)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"max_output must be None or a number of bytes >= 0, got {value!r}")
    return value
