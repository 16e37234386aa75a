"""The OCI runtime interface: typed ``config.json`` (``spec``), its conversion to a ``Container``.

``parse()``/``load_bundle()`` read and validate a runtime-spec 1.2 config;
``spec_to_config()`` turns one into an ``isolate.ContainerConfig`` and lists
what it cannot apply yet; ``container_from_bundle()`` does both for a bundle
directory.  The ``isolate-oci`` command line
(``isolate.cli.oci``) is built on these.  Names load on first use, so the
command line does not pay for the container machinery it does not need.
"""

from __future__ import annotations

from .._lazy import lazy_names

TYPE_CHECKING = False

_LAZY = {
    **dict.fromkeys(["Spec", "parse", "load_bundle", "SPEC_VERSION"], "spec"),
    **dict.fromkeys(["Conversion", "spec_to_config", "spec_to_container_options"], "convert"),
    "container_from_bundle": "bundle",
    **dict.fromkeys(["features"], "features"),
}
__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)


if TYPE_CHECKING:
    from .bundle import container_from_bundle  # noqa: F401
    from .convert import Conversion, spec_to_config, spec_to_container_options  # noqa: F401
    from .features import features  # noqa: F401
    from .spec import SPEC_VERSION, Spec, load_bundle, parse  # noqa: F401
