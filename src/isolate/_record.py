"""``@dataclass`` for isolate's models, without ``exec`` and without importing ``dataclasses``.

The standard decorator compiles five or six methods per class (an ``exec``
each, about 0.5 ms a class), and importing it pulls in ``inspect``.  A
process that starts a container defines about 120 classes: with the
standard decorator ``isolate-oci`` without its planner took 128 ms instead
of 58, and ``import isolate; isolate.spawn`` 56 ms of imports instead of 13.5
(measured on a branch that replaced this module, 2026-12-06).  This one
builds the same classes from closures: the same fields (``fields()``,
``field()`` with metadata, ``asdict()``), keyword-only fields, defaults and
default factories, ``__post_init__``, ``frozen``, ``slots``, and
``__eq__``/``__hash__``/``__repr__`` over the compared fields (a frozen,
slotted class with ``_cache_hash = True`` computes its hash once).  What it leaves
out (``order``, ``match_args``, ``InitVar``, field-order checks) the models do
not use.  Type checkers see the standard library's versions.
"""

from __future__ import annotations

import sys
from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["MISSING", "Field", "asdict", "dataclass", "field", "fields", "final", "replace"]

_CLASSVAR_PREFIXES = ("ClassVar", "typing.ClassVar", "t.ClassVar")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen instance."""


class _Field:
    """One field: what ``dataclasses.Field`` holds, for the uses here."""

    __slots__ = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare",
                 "metadata", "kw_only")

    def __init__(self, default: Any, default_factory: Any, init: bool, repr: bool, hash: bool | None,
                 compare: bool, metadata: Mapping[str, Any] | None, kw_only: Any) -> None:
        self.name = ""
        self.type: Any = None
        self.default, self.default_factory = default, default_factory
        self.init, self.repr, self.hash, self.compare = init, repr, hash, compare
        self.metadata: Mapping[str, Any] = dict(metadata or {})
        self.kw_only = kw_only

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


_MISSING = _Missing()


def _field(*, default: Any = _MISSING, default_factory: Any = _MISSING, init: bool = True,
           repr: bool = True, hash: bool | None = None, compare: bool = True,
           metadata: Mapping[str, Any] | None = None, kw_only: Any = _MISSING) -> Any:
    """``dataclasses.field``."""
    return _Field(default, default_factory, init, repr, hash, compare, metadata, kw_only)


def _fields(obj: Any) -> tuple[Any, ...]:
    """``dataclasses.fields``: the fields of a record class or instance, in order."""
    try:
        return tuple(getattr(obj, "__record_fields__").values())
    except AttributeError:
        raise TypeError(f"{obj!r} is not a record") from None


def _asdict(obj: Any) -> Any:
    """``dataclasses.asdict``: records to dicts, recursively (lists, tuples and dicts too)."""
    if hasattr(type(obj), "__record_fields__"):
        return {f.name: _asdict(getattr(obj, f.name)) for f in _fields(obj)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {_asdict(k): _asdict(v) for k, v in obj.items()}
    return obj


def _replace(obj: Any, /, **changes: Any) -> Any:
    """``dataclasses.replace``: a new record of ``obj``'s class, with ``changes``
    (validated again by ``__post_init__``)."""
    cls = type(obj)
    names, get = cls.__dict__.get("__record_init__") or _init_getter(cls)
    kw = dict(zip(names, get(obj)))
    kw.update(changes)
    return cls(**kw)


def _init_getter(cls: Any) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """The names of ``cls``'s ``__init__`` fields and a getter of their values (kept on the class)."""
    names = tuple(f.name for f in _fields(cls) if f.init)
    pair = (names, _make_values(names))
    type.__setattr__(cls, "__record_init__", pair)
    return pair


def _dataclass(cls: type[T] | None = None, /, *, frozen: bool = False, slots: bool = False,
               kw_only: bool = False) -> Any:
    """Like ``dataclasses.dataclass`` (with ``eq=True, repr=True``) for the options named."""
    def wrap(c: type[T]) -> type[T]:
        return _process(c, frozen, slots, kw_only)

    return wrap if cls is None else wrap(cls)


if TYPE_CHECKING:
    # The same contract: type checkers see the standard library's.
    from dataclasses import MISSING as MISSING
    from dataclasses import Field as Field
    from dataclasses import asdict as asdict
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
    from dataclasses import fields as fields
    from dataclasses import replace as replace
    from typing import final as final
else:
    MISSING, Field, asdict, dataclass, field, fields = _MISSING, _Field, _asdict, _dataclass, _field, _fields
    replace = _replace

    def final(cls: Any) -> Any:
        """``typing.final``, which marks the class the same way, without importing ``typing``."""
        try:
            cls.__final__ = True
        except (AttributeError, TypeError):
            pass
        return cls


def _is_classvar(ann: Any) -> bool:
    if isinstance(ann, str):
        return ann.startswith(_CLASSVAR_PREFIXES)
    typing = sys.modules.get("typing")      # not imported: ``ann`` cannot be its ClassVar
    return typing is not None and (ann is typing.ClassVar or getattr(ann, "__origin__", None) is typing.ClassVar)


def _process(cls: type[T], frozen: bool, slots: bool, kw_only: bool) -> type[T]:
    # Every isolate-oci call builds about a hundred of these classes: keep this loop lean.
    mro = cls.__mro__[1:]
    ns = cls.__dict__
    fields: dict[str, _Field] = {}
    for base in reversed(mro):
        inherited = base.__dict__.get("__record_fields__")
        if inherited:
            fields.update(inherited)
    own: list[str] = []
    for name, ann in ns.get("__annotations__", {}).items():
        if ann.startswith(_CLASSVAR_PREFIXES) if isinstance(ann, str) else _is_classvar(ann):
            continue
        default = ns.get(name, _MISSING)
        if isinstance(default, _Field):
            f = default
        else:
            f = _Field(default, _MISSING, True, True, None, True, None, _MISSING)
        f.name, f.type = name, ann
        if f.kw_only is _MISSING:
            f.kw_only = kw_only
        fields[name] = f
        own.append(name)

    body = dict(ns)
    body.pop("__dict__", None)
    body.pop("__weakref__", None)
    if slots:
        for name in own:
            body.pop(name, None)
        inherited_slots = {s for b in mro for s in b.__dict__.get("__slots__", ())}
        body["__slots__"] = tuple(n for n in own if n not in inherited_slots)
        if frozen and ns.get("_cache_hash") and "_hash_" not in inherited_slots:
            body["__slots__"] += ("_hash_",)
    else:
        for name in own:
            f = fields[name]
            if f.default is not _MISSING:
                body[name] = f.default
            else:
                body.pop(name, None)
    compared, shown, hashed = [], [], []
    for n, f in fields.items():
        if f.compare:
            compared.append(n)
        if f.repr:
            shown.append(n)
        if f.compare if f.hash is None else f.hash:
            hashed.append(n)
    body["__record_fields__"] = fields
    body["__init__"] = _make_init(fields, getattr(cls, "__post_init__", None) is not None)
    body["__repr__"] = _make_repr(tuple(shown))
    body["__eq__"] = _make_eq(tuple(compared))
    if frozen:
        cached = slots and bool(getattr(cls, "_cache_hash", False))
        body["__hash__"] = (_make_cached_hash if cached else _make_hash)(tuple(hashed))
        body["__setattr__"] = _frozen_setattr
        body["__delattr__"] = _frozen_delattr
        # pickle and copy: the fields alone (a cached hash is this process's, under its hash
        # seed), set past the frozen __setattr__.
        body["__getstate__"] = _make_getstate(tuple(fields))
        body["__setstate__"] = _frozen_setstate
    else:
        body["__hash__"] = None
    meta: Any = type(cls)
    new: type[T] = meta(cls.__name__, cls.__bases__, body)
    new.__qualname__ = cls.__qualname__
    return new


def _make_init(fields: dict[str, _Field], post_init: bool) -> Callable[..., None]:
    positional = [f for f in fields.values() if f.init and not f.kw_only]
    keyword = [f for f in fields.values() if f.init and f.kw_only]
    pos_names = tuple(f.name for f in positional)
    # (name, default, default_factory) for every __init__ argument, positional ones first,
    # then those not in __init__ that have a value.
    plan = tuple((f.name, f.default, f.default_factory) for f in positional + keyword)
    no_init = tuple((f.name, f.default, f.default_factory) for f in fields.values() if not f.init and
                    (f.default is not _MISSING or f.default_factory is not _MISSING))
    n_pos = len(positional)
    setter = object.__setattr__
    missing = _MISSING
    # Every field given, all by position or all by keyword (Result, the plan
    # ops): set them in one loop; anything else takes the general path.
    everything = pos_names if not keyword and not no_init and n_pos == len(fields) else None
    all_names = frozenset(pos_names)
    # Every field given by keyword (ProcessSpec from spawn(), each on every call).
    by_keyword = tuple(p[0] for p in plan) if not no_init and len(plan) == len(fields) else None
    n_plan = len(plan)

    def __init__(self: Any, *args: Any, **kw: Any) -> None:
        if by_keyword is not None and not args and len(kw) == n_plan:
            try:
                for name in by_keyword:
                    setter(self, name, kw[name])
            except KeyError:
                pass            # another name: the general path says which
            else:
                if post_init:
                    self.__post_init__()
                return
        if everything is not None:
            if not args and kw.keys() == all_names:
                for name in everything:
                    setter(self, name, kw[name])
                if post_init:
                    self.__post_init__()
                return
            if not kw and len(args) == n_pos:
                for name, value in zip(everything, args):
                    setter(self, name, value)
                if post_init:
                    self.__post_init__()
                return
        if args:
            if len(args) > n_pos:
                raise TypeError(f"{type(self).__name__}.__init__() takes {n_pos} positional arguments "
                                f"but {len(args)} were given")
            for name in pos_names[:len(args)]:
                if name in kw:
                    raise TypeError(f"{type(self).__name__}.__init__() got multiple values for {name!r}")
            kw = {**dict(zip(pos_names, args)), **kw}
        used = 0
        for name, default, factory in plan:
            if name in kw:
                setter(self, name, kw[name])
                used += 1
            elif default is not missing:
                setter(self, name, default)
            elif factory is not missing:
                setter(self, name, factory())
            else:
                raise TypeError(f"{type(self).__name__}.__init__() missing required argument: {name!r}")
        if used != len(kw):
            names = {p[0] for p in plan}
            k = next(k for k in kw if k not in names)
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {k!r}")
        for name, default, factory in no_init:
            setter(self, name, default if default is not missing else factory())
        if post_init:
            self.__post_init__()

    return __init__


def _make_repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _make_values(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of ``names``' values of an instance, read in C."""
    if not names:
        return lambda self: ()
    get = attrgetter(*names)
    if len(names) == 1:
        return lambda self: (get(self),)
    return get


def _make_eq(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    values = _make_values(names)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return values(self) == values(other)

    return __eq__


def _make_cached_hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    """``__hash__`` computed once per instance (``_cache_hash = True``): for records that key
    caches and hold many values, whose fields are immutable."""
    values = _make_values(names)
    setter = object.__setattr__

    def __hash__(self: Any) -> int:
        try:
            return self._hash_  # type: ignore[no-any-return]
        except AttributeError:
            h = hash(values(self))
            setter(self, "_hash_", h)
            return h

    return __hash__


def _make_hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    values = _make_values(names)

    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _make_getstate(names: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    def __getstate__(self: Any) -> dict[str, Any]:
        return {n: getattr(self, n) for n in names}

    return __getstate__


def _frozen_setstate(self: Any, state: Mapping[str, Any]) -> None:
    for name, value in state.items():
        object.__setattr__(self, name, value)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")
