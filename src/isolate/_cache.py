"""The one cache: a bounded memo keyed on values, for everything isolate works out once.

Keys are tuples of frozen values (configs, ops, bytes, ints), never an
object's identity, and start with the kind of entry (``"process"``,
``"root"``, ``"seccomp"`` ...).  What uses it: the plan cache (``_plans``),
the host snapshot of ``RootFS.host()`` (``config.host_root``) and a few
probes of the host.  The oldest entry goes first once ``SIZE`` are kept.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["memo", "put", "get", "clear", "entries", "SIZE"]

#: The most entries kept; the oldest goes first.
SIZE = 256

_MEMO: dict[tuple[object, ...], Any] = {}
_LOCK = threading.Lock()


def memo(key: tuple[object, ...], make: Callable[[], T]) -> T:
    """The value cached for ``key``, made by ``make()`` the first time.

    Two threads making one value at once keep the first stored; the other's
    is dropped.  ``make`` may raise: nothing is stored then.
    """
    try:
        return _MEMO[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    value = make()
    with _LOCK:
        if key not in _MEMO:
            while len(_MEMO) >= SIZE:
                del _MEMO[next(iter(_MEMO))]
        return _MEMO.setdefault(key, value)  # type: ignore[no-any-return]


def get(key: tuple[object, ...]) -> Any:
    """The value cached for ``key``, or None."""
    return _MEMO.get(key)


def put(key: tuple[object, ...], value: Any) -> None:
    """Cache ``value`` for ``key``, replacing what was there."""
    with _LOCK:
        if key not in _MEMO:
            while len(_MEMO) >= SIZE:
                del _MEMO[next(iter(_MEMO))]
        _MEMO[key] = value


def clear() -> None:
    """Forget every entry (what an entry kept open closes with the last plan naming it)."""
    with _LOCK:
        _MEMO.clear()


def entries(kind: str) -> list[tuple[object, ...]]:
    """The keys of one kind of entry (``"process"``, ``"root"`` ...), for tests."""
    return [k for k in list(_MEMO) if k and k[0] == kind]


def size() -> int:
    """How many entries are kept."""
    return len(_MEMO)
