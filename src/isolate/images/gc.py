"""Removing images: ``remove`` (``isolate rmi``) drops names, ``prune`` (``isolate image prune``)
removes the blobs and unpacked layers that no name reaches.

A layer a running container's overlay uses is never removed: its record
(``Store.hold_layers``, made by ``RootFS.from_image`` roots for as long as
the container's first process lives) keeps it, whatever names go; the
next prune after the container exits removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ImageError
from .manifest import Manifest, parse_config, parse_manifest
from .reference import parse_reference
from .store import Store, chain_ids

__all__ = ["Pruned", "prune", "remove", "reachable"]


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed (digests, sorted) and the layers it kept because they are in use."""

    blobs: tuple[str, ...]
    layers: tuple[str, ...]
    in_use: tuple[str, ...]
    bytes_freed: int


def reachable(store: Store) -> tuple[set[str], set[str]]:
    """The blobs and the layers (diff_ids, and chain ids: metadata layers) that the store's
    names reach."""
    blobs: set[str] = set()
    diff_ids: set[str] = set()
    for name, digest in store.refs().items():
        if not store.has_blob(digest):
            continue
        blobs.add(digest)
        try:
            doc = parse_manifest(store.read_blob(digest))
        except ImageError:
            continue
        if not isinstance(doc, Manifest):
            continue
        blobs.add(doc.config.digest)
        blobs.update(d.digest for d in doc.layers)
        try:
            layers = parse_config(store.read_blob(doc.config.digest)).diff_ids
        except ImageError:
            continue
        diff_ids.update(layers)
        diff_ids.update(chain_ids(layers))
    return blobs, diff_ids


def prune(store: Store) -> Pruned:
    """Remove every blob and unpacked layer no name reaches, except layers in use."""
    import os

    freed = 0
    # No pull is between its first blob and its name meanwhile (Store.pulling).
    with store.no_pulls(), store.lock():
        blobs, diff_ids = reachable(store)
        busy = store.layers_in_use(compact=True)
        gone_blobs = [b for b in store.blobs() if b not in blobs]
        for b in gone_blobs:
            try:
                freed += os.stat(store.blob_path(b)).st_size
            except OSError:
                pass
            store.remove_blob(b)
        gone_layers = [d for d in store.layers() if d not in diff_ids and d not in busy]
        for d in gone_layers:
            store.remove_layer(d)
        kept = sorted(d for d in store.layers() if d not in diff_ids and d in busy)
    return Pruned(tuple(gone_blobs), tuple(gone_layers), tuple(kept), freed)


def remove(store: Store, reference: str) -> str:
    """Drop the name ``reference`` (normalized; or a manifest digest / unique prefix: every
    name of that image); returns the manifest digest.  Blobs and layers stay until ``prune``."""
    from .image import Image

    refs = store.refs()
    try:
        name = str(parse_reference(reference))
    except ImageError:
        name = ""
    if name in refs:
        return store.remove_ref(name)
    image = Image.open(reference, store=store)
    for n, d in refs.items():
        if d == image.digest:
            store.remove_ref(n)
    return image.digest
