"""OCI images: pull from a registry, keep in a content-addressed store, run as a container's root.

``pull(ref)`` fetches an image from a registry (and unpacks its layers),
``load(path)`` imports an OCI layout or a ``docker save`` archive,
``parse_reference`` normalizes a name as docker does (``Reference``).
``Store`` is the store (see ``isolate.images.store``); ``Image`` an image in it
(``Image.open(ref)``: its config, its layers unpacked once, ``bundle(dir)``);
``unpack_layer`` the safe layer unpacker; ``prune`` and ``remove`` what
``isolate image prune`` and ``isolate rmi`` do.  ``RootFS.from_image(ref)``
runs an image.
"""

from __future__ import annotations

from .gc import Pruned, prune, remove
from .image import Image
from .importer import load
from .pull import PulledImage, pull
from .reference import Reference, parse_reference
from .store import Store
from .unpack import unpack_layer

__all__ = ["pull", "load", "PulledImage", "Reference", "parse_reference", "Store", "Image",
           "unpack_layer", "prune", "remove", "Pruned"]
