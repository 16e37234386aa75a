"""Image references: ``alpine``, ``alpine:3.20``, ``docker.io/library/alpine@sha256:…``,
``localhost:5000/x/y:tag``, normalized as docker and podman do.

A first component with a ``.`` or a ``:``, or ``localhost``, is a registry;
otherwise the image is on the default registry (``docker.io`` unless given or
set in ``$ISOLATE_DEFAULT_REGISTRY``), where a one-component name is an
official image (``library/``).  Without a tag or a digest the tag is
``latest``.  ``str()`` is the full name the store records.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import ImageError
from .store import check_digest

__all__ = ["Reference", "parse_reference", "DEFAULT_REGISTRY"]

#: Where a name without a registry is, unless ``$ISOLATE_DEFAULT_REGISTRY`` says otherwise.
DEFAULT_REGISTRY = "docker.io"
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
# The distribution spec's grammar (reference/regexp.go), in pieces.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")   # ASCII only: \w is Unicode
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*"
                   r"[a-zA-Z0-9])?))*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?")


@dataclass(frozen=True)
class Reference:
    """A normalized image reference: ``registry``/``repository``, a ``tag`` and/or a ``digest``."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def api_host(self) -> str:
        """The host the registry API answers on (Docker Hub's is registry-1.docker.io)."""
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry

    @property
    def is_local(self) -> bool:
        """Whether the registry is on this machine (plain HTTP is allowed there)."""
        host = self.registry.rsplit(":", 1)[0] if not self.registry.startswith("[") else \
            self.registry[1:self.registry.index("]")]
        return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")

    @property
    def manifest_ref(self) -> str:
        """What a manifest request names: the digest if pinned, else the tag."""
        return self.digest or self.tag


def parse_reference(text: str, *, default_registry: str | None = None) -> Reference:
    """``text`` normalized (``ImageError`` naming it when it is not a reference)."""
    if not isinstance(text, str) or not text or len(text) > 4096 or text != text.strip():
        raise ImageError(f"image reference: {text!r} is not a reference")
    rest, digest = text, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        check_digest(digest, f"image reference {text!r}: digest")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise ImageError(f"image reference {text!r}: tag {tag!r} is not a valid tag")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, remainder
        if not _HOST.fullmatch(registry):
            raise ImageError(f"image reference {text!r}: registry {registry!r} is not a host[:port]")
    else:
        registry = default_registry or os.environ.get("ISOLATE_DEFAULT_REGISTRY") or DEFAULT_REGISTRY
        path = rest
    if registry in _DOCKER_HUB:
        registry = "docker.io"
        if "/" not in path:
            path = "library/" + path
    if not _PATH.fullmatch(path) or len(path) > 255:
        raise ImageError(f"image reference {text!r}: repository {path!r} is not a valid name "
                         "(lower-case letters, digits and separators)")
    if not tag and not digest:
        tag = "latest"
    return Reference(registry, path, tag, digest)
