"""OCI images: pull from a registry, keep in a content-addressed store, run as a container's root.

``Store`` is the store (see ``isolate.images.store``).
"""

from __future__ import annotations

from .store import Store

__all__ = ["Store"]
