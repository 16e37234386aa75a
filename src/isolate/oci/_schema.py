"""The machinery behind the typed config.json models: field kinds, parsing, dumping.

Each model is a frozen dataclass whose fields carry their JSON key and a
*kind* in ``field(metadata=...)``.  One generic reader walks the JSON with
the current JSON path, so every error names where it happened
(``linux.resources.memory.limit: expected an integer, got "1g"``).  Keys a
model does not know are kept in its ``extra`` mapping and written back
unchanged, so a config.json round-trips even when it uses fields from a
newer spec or a vendor extension.
"""

from __future__ import annotations

import json

from .._record import Field, field, fields
from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, ClassVar, TypeVar

    N = TypeVar("N", bound="Node")

INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
UINT32 = (0, 2**32 - 1)
UINT16 = (0, 2**16 - 1)
# (uid_t)-1 means "unchanged" to setresuid(2): never a real id.
ID = (0, 2**32 - 2)


def show(value: Any) -> str:
    """``value`` as JSON text, shortened: how error messages quote a bad value."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(path: str, message: str) -> ConfigError:
    """A ``ConfigError`` for the JSON path ``path`` (``config.json`` at the top)."""
    return ConfigError(f"{path or 'config.json'}: {message}")


def join(path: str, key: str | int) -> str:
    """``a.b`` + ``c`` -> ``a.b.c``; ``a`` + 3 -> ``a[3]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Kind:
    """How one JSON value is read into Python and written back."""

    def parse(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value


class Str(Kind):
    """A JSON string; ``choices`` limits it, ``check`` adds a test (returns a message or None)."""

    def __init__(self, choices: frozenset[str] | None = None,
                 check: Callable[[str], str | None] | None = None) -> None:
        self.choices, self.check = choices, check

    def parse(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise fail(path, f"expected a string, got {show(value)}")
        if "\0" in value:
            raise fail(path, f"contains a NUL byte: {show(value)}")
        if self.choices is not None and value not in self.choices:
            raise fail(path, f"unknown value {show(value)} (expected one of {', '.join(sorted(self.choices))})")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise fail(path, f"{problem}, got {show(value)}")
        return value


class Bool(Kind):
    """A JSON boolean (not 0/1, not "true")."""

    def parse(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise fail(path, f"expected a boolean, got {show(value)}")
        return value


class Int(Kind):
    """A JSON integer within ``[lo, hi]`` (floats and booleans are refused, as Go's decoder does)."""

    def __init__(self, bounds: tuple[int, int] = INT64) -> None:
        self.lo, self.hi = bounds

    def parse(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(path, f"expected an integer, got {show(value)}")
        if not self.lo <= value <= self.hi:
            raise fail(path, f"expected an integer from {self.lo} to {self.hi}, got {show(value)}")
        return value


class Any_(Kind):
    """Any JSON value, kept as it is (for free-form parts such as ``intelRdt`` fields)."""

    def parse(self, value: Any, path: str) -> Any:
        return value


class ListOf(Kind):
    """A JSON array of ``item``, as a tuple."""

    def __init__(self, item: Kind) -> None:
        self.item = item

    def parse(self, value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise fail(path, f"expected an array, got {show(value)}")
        return tuple(self.item.parse(v, join(path, i)) for i, v in enumerate(value))

    def dump(self, value: Any) -> Any:
        return [self.item.dump(v) for v in value]


class MapOf(Kind):
    """A JSON object of string keys to ``item``, as a dict."""

    def __init__(self, item: Kind) -> None:
        self.item = item

    def parse(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail(path, f"expected an object, got {show(value)}")
        return {k: self.item.parse(v, join(path, k)) for k, v in value.items()}

    def dump(self, value: Any) -> Any:
        return {k: self.item.dump(v) for k, v in value.items()}


class Model(Kind):
    """A nested model class (a JSON object)."""

    def __init__(self, cls: type[Node]) -> None:
        self.cls = cls

    def parse(self, value: Any, path: str) -> Node:
        return self.cls.from_json(value, path)

    def dump(self, value: Any) -> Any:
        return value.to_dict()


def spec(key: str, kind: Kind, *, required: bool = False) -> Any:
    """A model field read from JSON ``key``; absent optional fields are ``None``."""
    meta = {"json": key, "kind": kind, "required": required}
    return field(default=None, metadata=meta)


def extra() -> Any:
    """The field that keeps unknown keys."""
    return field(default_factory=dict, metadata={"json": None}, compare=True)


class Node:
    """Base of the models: JSON in (``from_json``), JSON out (``to_dict``)."""

    __slots__ = ()
    extra: Mapping[str, Any]
    _keys_cache: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def _fields_by_key(cls) -> dict[str, Field[Any]]:
        # Per class (not inherited): each model has its own fields.
        keys: dict[str, Field[Any]] | None = cls.__dict__.get("_keys_cache")
        if keys is None:
            keys = {f.metadata["json"]: f for f in fields(cls)  # type: ignore[arg-type]
                    if f.metadata.get("json")}
            cls._keys_cache = keys
        return keys

    @classmethod
    def from_json(cls: type[N], value: Any, path: str = "") -> N:
        """Read ``value`` (a JSON object) at ``path``; ``ConfigError`` names the first bad field."""
        if not isinstance(value, dict):
            raise fail(path, f"expected an object, got {show(value)}")
        keys = cls._fields_by_key()
        kwargs: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for k, v in value.items():
            f = keys.get(k)
            if f is None:
                unknown[k] = v
            elif v is not None:
                # null is what Go writes for an unset pointer or slice: read as absent.
                kwargs[f.name] = f.metadata["kind"].parse(v, join(path, k))
        for k, f in keys.items():
            if f.metadata["required"] and f.name not in kwargs:
                raise fail(join(path, k), "is required")
        node = cls(**kwargs, extra=unknown)  # type: ignore[call-arg]
        node._check(path)
        return node

    def _check(self, path: str) -> None:
        """Rules across fields; subclasses raise ``fail(path...)``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this node: known fields that are set, then the unknown ones."""
        out: dict[str, Any] = {}
        for k, f in self._fields_by_key().items():
            v = getattr(self, f.name)
            if v is not None:
                out[k] = f.metadata["kind"].dump(v)
        out.update(self.extra)
        return out
