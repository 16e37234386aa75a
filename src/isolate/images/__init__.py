"""OCI images: pull from a registry, keep in a content-addressed store, run as a container's root.

``pull(ref)`` fetches an image from a registry (and unpacks its layers),
``load(path)`` imports an OCI layout or a ``docker save`` archive,
``parse_reference`` normalizes a name as docker does (``Reference``).
``Store`` is the store (see ``isolate.images.store``); ``Image`` an image in it
(``Image.open(ref)``: its config, its layers unpacked once, ``bundle(dir)``);
``unpack_layer`` the safe layer unpacker; ``prune`` and ``remove`` what
``isolate image prune`` and ``isolate rmi`` do.  ``RootFS.from_image(ref)``
runs an image.  Each name is imported when first used (``isolate pull``
does not pay for the unpacker's imports, nor a container for the HTTP client's).
"""

from __future__ import annotations

from .._lazy import lazy_names

TYPE_CHECKING = False

# public name -> the module of isolate.images that defines it
_LAZY = {
    **dict.fromkeys(["pull", "PulledImage"], "pulling"),
    "load": "importer",
    **dict.fromkeys(["Reference", "parse_reference"], "reference"),
    "Store": "store",
    "Image": "image",
    "unpack_layer": "unpack",
    **dict.fromkeys(["prune", "remove", "Pruned"], "gc"),
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), __all__)


if TYPE_CHECKING:  # static names for type checkers (``X as X``: re-exported)
    from .gc import Pruned as Pruned, prune as prune, remove as remove
    from .image import Image as Image
    from .importer import load as load
    from .pulling import PulledImage as PulledImage, pull as pull
    from .reference import Reference as Reference, parse_reference as parse_reference
    from .store import Store as Store
    from .unpack import unpack_layer as unpack_layer
