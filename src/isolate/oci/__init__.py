"""The OCI runtime interface: typed ``config.json`` (``spec``), its conversion to a ``Container``.

``parse()``/``load_bundle()`` read and validate a runtime-spec 1.2 config;
``spec_to_config()`` turns one into an ``isolate.ContainerConfig`` and lists
what it cannot apply yet; ``container_from_bundle()`` does both for a bundle
directory.  The ``isolate-oci`` command line
(``isolate.cli.oci``) is built on these.  Names load on first use, so the
command line does not pay for the container machinery it does not need.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LAZY = {
    **dict.fromkeys(["Spec", "parse", "load_bundle", "SPEC_VERSION"], "spec"),
    **dict.fromkeys(["Conversion", "spec_to_config", "spec_to_container_options"], "convert"),
    "container_from_bundle": "bundle",
    **dict.fromkeys(["features"], "features"),
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'isolate.oci' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .bundle import container_from_bundle  # noqa: F401
    from .convert import Conversion, spec_to_config, spec_to_container_options  # noqa: F401
    from .features import features  # noqa: F401
    from .spec import SPEC_VERSION, Spec, load_bundle, parse  # noqa: F401
