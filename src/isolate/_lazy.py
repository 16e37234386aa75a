"""Names a package loads on first use: its ``__getattr__`` and ``__dir__`` (PEP 562).

A package lists ``{public name: module}`` and binds::

    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)

so ``import isolate`` (or ``isolate.images``, ``isolate.oci``) costs only what
is used: a command line pays for none of the machinery it does not need (this
module imports nothing itself, not even ``typing``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, MutableMapping, Sequence

__all__ = ["lazy_names"]


def lazy_names(package: str, table: Mapping[str, str], namespace: MutableMapping[str, Any],
               public: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the names of ``table``."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
