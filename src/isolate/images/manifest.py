"""Manifests, indexes and image configs: the JSON documents of the OCI image spec, checked.

Docker's schema 2 manifests and manifest lists are read as their OCI
counterparts (same shape, other media types).  Everything here comes from a
registry or an archive and is hostile: each field is type-checked and a bad
document raises ``ImageError`` naming the field and the value.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ImageError
from .store import check_digest

__all__ = [
    "Descriptor", "Manifest", "Index", "ImageConfig", "Platform",
    "parse_manifest", "parse_config", "select_platform", "host_platform",
    "MANIFEST_TYPES", "INDEX_TYPES", "LAYER_TYPES", "ACCEPT",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
#: The media types of an image manifest: OCI's and Docker's schema 2.
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
#: The media types of an index: OCI's image index and Docker's manifest list.
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                          "application/vnd.docker.container.image.v1+json"})
#: Layer media types and their compression.
LAYER_TYPES: Mapping[str, str] = {
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": "zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar": "tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
#: The Accept header of a manifest request: every type read here.
ACCEPT = ", ".join(sorted(MANIFEST_TYPES | INDEX_TYPES))


def _obj(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ImageError(f"{what}: expected an object, got {type(v).__name__}")
    return v


def _str(v: Any, what: str, *, optional: bool = False) -> str:
    if v is None and optional:
        return ""
    if not isinstance(v, str):
        raise ImageError(f"{what}: expected a string, got {v!r}"[:300])
    return v


def _strs(v: Any, what: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ImageError(f"{what}: expected a list of strings, got {v!r}"[:300])
    return tuple(v)


@dataclass(frozen=True)
class Platform:
    """``os``/``architecture``[/``variant``], as in an index's ``platform``."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``"linux/amd64"``, ``"linux/arm64/v8"`` (``ConfigError``-free: ``ImageError`` names it)."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ImageError(f"platform: {text!r} is not os/architecture[/variant]")
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    """This machine's platform in the OCI's names (``linux/amd64``, ``linux/arm64/v8`` ...)."""
    m = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)
    variant = {"arm64": "v8", "arm": "v7"}.get(arch, "")
    return Platform("linux", arch, variant)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest or index points at."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] | None = None

    @classmethod
    def parse(cls, v: Any, what: str) -> Descriptor:
        """The descriptor in the JSON value ``v``, every field checked (``what`` names it in errors)."""
        d = _obj(v, what)
        size = d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"{what}.size: expected a size in bytes, got {size!r}")
        plat = None
        if d.get("platform") is not None:
            p = _obj(d["platform"], what + ".platform")
            plat = Platform(_str(p.get("os"), what + ".platform.os"),
                            _str(p.get("architecture"), what + ".platform.architecture"),
                            _str(p.get("variant"), what + ".platform.variant", optional=True))
        ann = d.get("annotations")
        if ann is not None and (not isinstance(ann, dict)
                                or not all(isinstance(k, str) and isinstance(x, str)
                                           for k, x in ann.items())):
            raise ImageError(f"{what}.annotations: expected an object of strings")
        return cls(_str(d.get("mediaType"), what + ".mediaType"),
                   check_digest(_str(d.get("digest"), what + ".digest"), what + ".digest"),
                   size, plat, ann)


@dataclass(frozen=True)
class Manifest:
    """An image manifest: its config and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    def compression(self, i: int) -> str:
        """Layer ``i``'s compression: ``tar``, ``gzip`` or ``zstd``."""
        return LAYER_TYPES[self.layers[i].media_type]


@dataclass(frozen=True)
class Index:
    """An image index (manifest list): one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """A manifest or index from its bytes; ``media_type`` is the one the registry named
    (Content-Type), used when the document names none.  Unknown types raise ``ImageError``."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"manifest: not JSON: {e}") from None
    d = _obj(doc, "manifest")
    mt = d.get("mediaType") or media_type
    if d.get("schemaVersion") != 2:
        raise ImageError(f"manifest.schemaVersion: {d.get('schemaVersion')!r} is not supported "
                         "(only schema 2: Docker schema 1 images are deprecated; re-push them)")
    if mt is None:
        mt = OCI_INDEX if "manifests" in d else OCI_MANIFEST
    mt = _str(mt, "manifest.mediaType")
    if mt in INDEX_TYPES:
        ms = d.get("manifests")
        if not isinstance(ms, list):
            raise ImageError("index.manifests: expected a list")
        return Index(mt, tuple(Descriptor.parse(m, f"index.manifests[{i}]") for i, m in enumerate(ms)))
    if mt not in MANIFEST_TYPES:
        raise ImageError(f"manifest.mediaType: {mt!r} is not an image manifest or index this "
                         f"runtime reads ({', '.join(sorted(MANIFEST_TYPES | INDEX_TYPES))})")
    config = Descriptor.parse(d.get("config"), "manifest.config")
    if config.media_type not in CONFIG_TYPES:
        raise ImageError(f"manifest.config.mediaType: {config.media_type!r} is not an image config")
    ls = d.get("layers")
    if not isinstance(ls, list):
        raise ImageError("manifest.layers: expected a list")
    layers = tuple(Descriptor.parse(x, f"manifest.layers[{i}]") for i, x in enumerate(ls))
    for i, layer in enumerate(layers):
        if layer.media_type not in LAYER_TYPES:
            raise ImageError(f"manifest.layers[{i}].mediaType: {layer.media_type!r} is not a "
                             "layer type this runtime unpacks")
    return Manifest(mt, config, layers)


def select_platform(index: Index, want: Platform | None = None) -> Descriptor:
    """The index's manifest for ``want`` (default: this machine); a variant-less entry
    matches any variant.  ``ImageError`` lists what the index has."""
    want = want or host_platform()
    exact = [m for m in index.manifests if m.platform is not None and m.media_type in MANIFEST_TYPES
             and m.platform.os == want.os and m.platform.architecture == want.architecture]
    for m in exact:
        assert m.platform is not None
        if m.platform.variant == want.variant:
            return m
    for m in exact:
        assert m.platform is not None
        if not m.platform.variant or not want.variant:
            return m
    have = sorted({str(m.platform) for m in index.manifests if m.platform is not None})
    raise ImageError(f"no manifest for {want} in the index (it has: {', '.join(have) or 'none'})")


@dataclass(frozen=True)
class ImageConfig:
    """What an image config says about running it, and its layers' diff_ids."""

    diff_ids: tuple[str, ...]
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: Mapping[str, str] | None = None
    os: str = "linux"
    architecture: str = ""


def parse_config(data: bytes) -> ImageConfig:
    """An image config from its bytes (``ImageError`` naming a bad field)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"image config: not JSON: {e}") from None
    d = _obj(doc, "image config")
    rootfs = _obj(d.get("rootfs"), "image config.rootfs")
    diff_ids = _strs(rootfs.get("diff_ids"), "image config.rootfs.diff_ids") or ()
    for i, x in enumerate(diff_ids):
        check_digest(x, f"image config.rootfs.diff_ids[{i}]")
    c = d.get("config")
    c = _obj({} if c is None else c, "image config.config")
    ports = c.get("ExposedPorts") or {}
    labels = c.get("Labels")
    if not isinstance(ports, dict):
        raise ImageError("image config.config.ExposedPorts: expected an object")
    if labels is not None and (not isinstance(labels, dict)
                               or not all(isinstance(v, str) for v in labels.values())):
        raise ImageError("image config.config.Labels: expected an object of strings")
    return ImageConfig(
        diff_ids=diff_ids,
        entrypoint=_strs(c.get("Entrypoint"), "image config.config.Entrypoint"),
        cmd=_strs(c.get("Cmd"), "image config.config.Cmd"),
        env=_strs(c.get("Env"), "image config.config.Env"),
        working_dir=_str(c.get("WorkingDir"), "image config.config.WorkingDir", optional=True),
        user=_str(c.get("User"), "image config.config.User", optional=True),
        exposed_ports=tuple(sorted(str(p) for p in ports)),
        labels=labels,
        os=_str(d.get("os"), "image config.os", optional=True) or "linux",
        architecture=_str(d.get("architecture"), "image config.architecture", optional=True),
    )
