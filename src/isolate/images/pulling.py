"""``pull``: an image from a registry into the store.

The manifest (an index picks the platform's), the config and every layer
blob are fetched and verified; layers download in parallel, and a blob
already in the store is not fetched again (images that share layers share
their blobs).  The name is recorded last (``Store.set_ref``), so a pull
that fails or is killed leaves no name pointing at a partial image; its
downloaded blobs stay (verified), and its partial ones are resumed by the
next pull.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from ..errors import ImageError
from .manifest import (Descriptor, ImageConfig, Index, Manifest, Platform, parse_config,
                       parse_manifest, select_platform)
from .progress import Progress
from .reference import Reference, parse_reference
from .registry import Cancelled, RegistryClient
from .store import Store

__all__ = ["PulledImage", "pull", "MAX_CONFIG"]

#: The largest image config read.
MAX_CONFIG = 16 << 20


@dataclass(frozen=True)
class PulledImage:
    """An image in the store: its name, its platform manifest and its config."""

    #: The name under ``Store.refs()`` (``str(parse_reference(...))``).
    reference: str
    #: The platform manifest's digest (an index, when there was one, is stored too).
    manifest_digest: str
    manifest: Manifest
    config_digest: str
    config: ImageConfig


def _checked_manifest(data: bytes, media_type: str, what: str) -> Manifest | Index:
    try:
        return parse_manifest(data, media_type or None)
    except ImageError as e:
        raise ImageError(f"{what}: {e}") from None


def image_from_blobs(store: Store, reference: str, manifest_digest: str) -> PulledImage:
    """The ``PulledImage`` of a manifest and config already in ``store``."""
    manifest = _checked_manifest(store.read_blob(manifest_digest), "", reference)
    if not isinstance(manifest, Manifest):
        raise ImageError(f"{reference}: {manifest_digest} is an index, not an image manifest")
    config = parse_config(store.read_blob(manifest.config.digest))
    return PulledImage(reference, manifest_digest, manifest, manifest.config.digest, config)


def check_layers(manifest: Manifest, config: ImageConfig, what: str) -> None:
    """``ImageError`` unless the manifest's layers and the config's diff_ids pair up."""
    if len(manifest.layers) != len(config.diff_ids):
        raise ImageError(f"{what}: the manifest has {len(manifest.layers)} layers but the config "
                         f"{len(config.diff_ids)} diff_ids")


def pull(reference: str, *, store: Store | None = None, platform: str | None = None,
         insecure: bool = False, cert_dir: str | os.PathLike[str] | None = None,
         auth_file: str | os.PathLike[str] | None = None,
         credentials: tuple[str, str] | None = None, jobs: int | None = None,
         progress: bool | None = None,
         on_layer: Callable[[int, Descriptor], None] | None = None,
         timeout: float = 30.0, retries: int = 4, unpack: bool = True) -> PulledImage:
    """Pull ``reference`` (``alpine:3.20``, ``localhost:5000/x@sha256:...``) into ``store``
    (default ``Store()``); returns what was stored.

    ``platform`` ("os/arch[/variant]") picks from an index (default: this
    machine's).  ``insecure`` allows plain HTTP and unverified TLS (podman's
    ``--tls-verify=false``); a registry on this machine may always use plain
    HTTP.  ``cert_dir`` holds the registry's CA certificates (``*.crt``),
    else ``/etc/containers/certs.d/HOST`` and ``/etc/docker/certs.d/HOST``
    are read.  ``credentials`` (user, password), else ``auth_file`` and the
    usual credential files (``isolate.images.auth``).  ``jobs`` layers
    download at once, in the manifest's order (default 4; 1 from a registry on
    this host, whose downloads share the CPU with the unpacking rather than add
    bandwidth: one at a time, each layer unpacks while the next downloads).
    ``progress`` shows bars on stderr (default: when it is a terminal).
    ``on_layer(i, descriptor)`` is called once per layer, from
    any of the download threads and possibly at the same time, as soon as
    layer ``i``'s blob is in the store; an exception it raises stops the
    pull and is raised by it.  ``unpack`` (default) unpacks each layer into
    the store as soon as it is there, while the others download (as ``podman
    pull`` does; else the first container of the image unpacks them).  A
    ``prune`` meanwhile waits for the pull.  ``timeout`` bounds each connect, read and
    write (seconds); connection errors, 429 and 5xx are retried ``retries``
    times.  Raises ``ImageError`` (``DigestError`` for content that does not
    match its digest) naming the reference.
    """
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool)
                             or not 1 <= jobs <= 64):
        raise ImageError(f"jobs: {jobs!r} is not a number of downloads from 1 to 64")
    ref = parse_reference(reference)
    if jobs is None:
        jobs = 1 if ref.is_local else 4
    want = Platform.parse(platform) if platform is not None else None
    name = str(ref)
    store = store if store is not None else Store()
    with store.pulling():
        return _pull(ref, want, store, progress, insecure, cert_dir, credentials, auth_file,
                     timeout, retries, jobs, on_layer, unpack)


def _pull(ref: Reference, want: Platform | None, store: Store, progress: bool | None,
          insecure: bool, cert_dir: str | os.PathLike[str] | None,
          credentials: tuple[str, str] | None, auth_file: str | os.PathLike[str] | None,
          timeout: float, retries: int, jobs: int,
          on_layer: Callable[[int, Descriptor], None] | None, unpack: bool) -> PulledImage:
    name = str(ref)
    bars = Progress(progress)
    with RegistryClient(ref.registry, insecure=insecure, cert_dir=cert_dir, credentials=credentials,
                        auth_file=auth_file, timeout=timeout, retries=retries) as client:
        data, media_type, digest = client.get_manifest(ref.repository, ref.manifest_ref, name)
        doc = _checked_manifest(data, media_type, name)
        index_data: bytes | None = None
        if isinstance(doc, Index):
            index_data = data
            desc = select_platform(doc, want)
            data, media_type, digest = client.get_manifest(ref.repository, desc.digest, name)
            if len(data) != desc.size:
                raise ImageError(f"{name}: manifest {desc.digest} is {len(data)} bytes, the index "
                                 f"says {desc.size}")
            doc = _checked_manifest(data, media_type or desc.media_type, name)
            if not isinstance(doc, Manifest):
                raise ImageError(f"{name}: the index's entry {desc.digest} for {desc.platform} is "
                                 "an index again, not an image manifest")
        manifest = doc
        if manifest.config.size > MAX_CONFIG:
            raise ImageError(f"{name}: the config is {manifest.config.size} bytes, more than the "
                             f"{MAX_CONFIG} read")
        client.fetch_blob(ref.repository, manifest.config, store, name)
        config = parse_config(store.read_blob(manifest.config.digest))
        check_layers(manifest, config, name)
        unpacker = _Unpacker(store, manifest, config, name) if unpack else None
        each = on_layer
        if unpacker is not None:
            def each(i: int, desc: Descriptor) -> None:
                if on_layer is not None:
                    on_layer(i, desc)
                unpacker.add(i)
        try:
            _fetch_layers(client, ref.repository, manifest, store, name, jobs, bars, each)
        except BaseException:
            if unpacker is not None:
                unpacker.stop()
            raise
        finally:
            bars.close()
        if unpacker is not None:
            unpacker.finish()
    if index_data is not None:
        store.put(index_data)
    store.put(data, digest)
    store.set_ref(name, digest)
    return PulledImage(name, digest, manifest, manifest.config.digest, config)


class _Unpacker:
    """Unpacks layers as their blobs arrive (``add``), in threads of their own (two: an
    unpack is a decompressing and a writing thread already), each layer under its own
    lock (``unpack_layers``); ``finish`` waits and raises the first error."""

    def __init__(self, store: Store, manifest: Manifest, config: ImageConfig, name: str) -> None:
        self._args = (store, manifest, config)
        self._name = name
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._run, name="isolate-pull-unpack", daemon=True)
                         for _ in range(min(2, len(manifest.layers)) or 1)]
        for t in self._threads:
            t.start()

    def add(self, i: int) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(i)

    def _run(self) -> None:
        from .image import unpack_layers

        while (i := self._queue.get()) is not None:
            if self._error is None:
                try:
                    unpack_layers(*self._args, [i], what=self._name)
                except BaseException as e:
                    self._error = self._error or e

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def finish(self) -> None:
        self.stop()
        if self._error is not None:
            raise self._error


def _fetch_layers(client: RegistryClient, repository: str, manifest: Manifest, store: Store,
                  name: str, jobs: int, bars: Progress,
                  on_layer: Callable[[int, Descriptor], None] | None) -> None:
    """Every layer blob into ``store``, ``jobs`` at a time; ``on_layer`` once per layer index."""
    by_digest: dict[str, list[int]] = {}
    for i, layer in enumerate(manifest.layers):
        prev = by_digest.setdefault(layer.digest, [])
        if prev and manifest.layers[prev[0]].size != layer.size:
            raise ImageError(f"{name}: layers {prev[0]} and {i} have digest {layer.digest} but "
                             "different sizes")
        prev.append(i)
    cancel = threading.Event()

    def one(digest: str) -> None:
        layer = manifest.layers[by_digest[digest][0]]
        if not store.has_blob(digest):
            short = digest[7:19]
            client.fetch_blob(repository, layer, store, name, cancel=cancel,
                              progress=bars.bar(digest, layer.size, short))
        for i in by_digest[digest]:
            if cancel.is_set():
                raise Cancelled(digest)
            if on_layer is not None:
                on_layer(i, manifest.layers[i])

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs,
                                               thread_name_prefix="isolate-pull") as pool:
        futures = [pool.submit(one, d) for d in by_digest]
        error: BaseException | None = None
        try:
            for fut in concurrent.futures.as_completed(futures):
                exc = fut.exception()
                if exc is not None and not isinstance(exc, Cancelled):
                    error = exc
                    break
        except BaseException as e:       # KeyboardInterrupt while waiting: stop the threads too
            error = e
        if error is not None:
            cancel.set()
            for fut in futures:
                fut.cancel()
    if error is not None:
        raise error
