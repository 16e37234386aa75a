"""``@dataclass`` for the plan ops and the OCI spec models, without ``exec``.

The standard decorator compiles five or six methods per class; with about a
hundred classes that was most of ``isolate-oci``'s start-up (each call is a
new process).  This one builds the same classes from closures: the same
fields (``dataclasses.fields()`` and ``Field`` metadata work), keyword-only
fields, defaults and default factories, ``__post_init__``, ``frozen``,
``slots``, ``__eq__``/``__hash__``/``__repr__`` over the compared fields.
What it leaves out (``order``, ``match_args``, ``InitVar``, field-order
checks) the ops and models do not use.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["dataclass"]

T = TypeVar("T")
_FIELD = dataclasses._FIELD  # type: ignore[attr-defined]
_CLASSVAR_PREFIXES = ("ClassVar", "typing.ClassVar", "t.ClassVar")


def _dataclass(cls: type[T] | None = None, /, *, frozen: bool = False, slots: bool = False,
               kw_only: bool = False) -> Any:
    """Like ``dataclasses.dataclass`` (with ``eq=True, repr=True``) for the options named."""
    def wrap(c: type[T]) -> type[T]:
        return _process(c, frozen, slots, kw_only)

    return wrap if cls is None else wrap(cls)


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass     # the same contract, for type checkers
else:
    dataclass = _dataclass


def _is_classvar(ann: Any) -> bool:
    if isinstance(ann, str):
        return ann.startswith(_CLASSVAR_PREFIXES)
    return ann is typing.ClassVar or getattr(ann, "__origin__", None) is typing.ClassVar


def _process(cls: type[T], frozen: bool, slots: bool, kw_only: bool) -> type[T]:
    fields: dict[str, Field[Any]] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(getattr(base, "__dataclass_fields__", {}))
    own: list[str] = []
    for name, ann in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(ann):
            continue
        default = cls.__dict__.get(name, MISSING)
        f: Any = default if isinstance(default, Field) else dataclasses.field(default=default)
        f.name, f.type = name, ann
        f._field_type = _FIELD
        if f.kw_only is MISSING:
            f.kw_only = kw_only
        fields[name] = f
        own.append(name)

    body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    if slots:
        for name in own:
            body.pop(name, None)
        inherited = {s for b in cls.__mro__[1:] for s in getattr(b, "__slots__", ())}
        body["__slots__"] = tuple(n for n in own if n not in inherited)
    else:
        for name in own:
            f = fields[name]
            if f.default is not MISSING:
                body[name] = f.default
            else:
                body.pop(name, None)
    body["__dataclass_fields__"] = fields
    body["__init__"] = _make_init(fields, cls.__dict__.get("__post_init__") is not None
                                  or any("__post_init__" in b.__dict__ for b in cls.__mro__[1:]))
    compared = tuple(n for n, f in fields.items() if f.compare)
    shown = tuple(n for n, f in fields.items() if f.repr)
    body["__repr__"] = _make_repr(shown)
    body["__eq__"] = _make_eq(compared)
    if frozen:
        hashed = tuple(n for n, f in fields.items() if (f.compare if f.hash is None else f.hash))
        body["__hash__"] = _make_hash(hashed)
        body["__setattr__"] = _frozen_setattr
        body["__delattr__"] = _frozen_delattr
    else:
        body["__hash__"] = None
    meta: Any = type(cls)
    new: type[T] = meta(cls.__name__, cls.__bases__, body)
    new.__qualname__ = cls.__qualname__
    return new


def _make_init(fields: dict[str, Field[Any]], post_init: bool) -> Callable[..., None]:
    positional = [f for f in fields.values() if f.init and not f.kw_only]
    keyword = {f.name: f for f in fields.values() if f.init and f.kw_only}
    by_name = {f.name: f for f in fields.values() if f.init}
    no_init = [f for f in fields.values() if not f.init and
               (f.default is not MISSING or f.default_factory is not MISSING)]
    n_pos = len(positional)
    setter = object.__setattr__

    def value_of(f: Field[Any], cls_name: str) -> Any:
        if f.default is not MISSING:
            return f.default
        if f.default_factory is not MISSING:
            return f.default_factory()
        raise TypeError(f"{cls_name}.__init__() missing required argument: {f.name!r}")

    def __init__(self: Any, *args: Any, **kw: Any) -> None:
        if len(args) > n_pos:
            raise TypeError(f"{type(self).__name__}.__init__() takes {n_pos} positional arguments "
                            f"but {len(args)} were given")
        for i, f in enumerate(positional):
            if i < len(args):
                if f.name in kw:
                    raise TypeError(f"{type(self).__name__}.__init__() got multiple values for {f.name!r}")
                setter(self, f.name, args[i])
            elif f.name in kw:
                setter(self, f.name, kw[f.name])
            else:
                setter(self, f.name, value_of(f, type(self).__name__))
        for name, f in keyword.items():
            setter(self, name, kw[name] if name in kw else value_of(f, type(self).__name__))
        for k in kw:
            if k not in by_name:
                raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {k!r}")
        for f in no_init:
            setter(self, f.name, value_of(f, type(self).__name__))
        if post_init:
            self.__post_init__()

    return __init__


def _make_repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _make_eq(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    return __eq__


def _make_hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in names))

    return __hash__


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")
