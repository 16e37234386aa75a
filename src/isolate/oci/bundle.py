"""``container_from_bundle``: the ``Container`` an OCI bundle describes."""

from __future__ import annotations

import os

from ..container import Container
from .convert import Conversion, convert_bundle

__all__ = ["container_from_bundle"]


def container_from_bundle(path: str | os.PathLike[str], *, strict: bool = False) -> tuple[Container, Conversion]:
    """A ``Container`` for the bundle at ``path``, and the ``Conversion`` (its ``args`` to run).

    ``strict=True`` raises ``UnsupportedError`` listing every field that
    would not be applied.  The caller closes both (the ``Conversion`` holds
    the namespaces being joined).
    """
    conv = convert_bundle(path, strict=strict)
    try:
        return Container(conv.config, join=conv.join), conv
    except BaseException:
        conv.close()
        raise
