"""OCI images: pull from a registry, keep in a content-addressed store, run as a container's root.

``Store`` is the store (see ``isolate.images.store``); ``Image`` an image in it
(``Image.open(ref)``: its config, its layers unpacked once, ``bundle(dir)``);
``unpack_layer`` the safe layer unpacker; ``prune`` and ``remove`` what
``isolate image prune`` and ``isolate rmi`` do.  ``RootFS.from_image(ref)``
runs an image.
"""

from __future__ import annotations

from .gc import Pruned, prune, remove
from .image import Image
from .store import Store
from .unpack import unpack_layer

__all__ = ["Store", "Image", "unpack_layer", "prune", "remove", "Pruned"]
