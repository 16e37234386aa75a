"""``load``: images from an OCI image layout (a directory or a tar) or a ``docker save`` /
``podman save`` archive into the store.

Every blob is verified against its digest before it is stored.  Names come
from the layout's ``io.containerd.image.name`` or
``org.opencontainers.image.ref.name`` annotations (a bare tag names
``localhost/<tag>``) or docker's ``RepoTags``; ``tag`` names an image that
has none.  A docker-archive's layers are stored as they are (uncompressed
tars, or gzip) under a new OCI manifest, as podman does.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from ..errors import DigestError, ImageError
from .manifest import (Descriptor, Index, Manifest, parse_config, parse_manifest,
                       select_platform)
from .pulling import PulledImage, check_layers
from .reference import parse_reference
from .store import Store, check_digest

__all__ = ["load"]

_MAX_JSON = 4 << 20
_CHUNK = 1 << 20
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class _Source:
    """Files of a layout or archive by their relative path: a directory or a tar."""

    def __init__(self, path: Path, shown: Path) -> None:
        self.path = shown           # what errors name (the archive, not a decompressed copy)
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        self._real = path
        self._root_fd = -1
        if path.is_dir():
            # Files are opened beneath this fd (openat2 RESOLVE_IN_ROOT): a path component
            # swapped for a symlink after the check below still resolves inside the layout.
            self._root_fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            try:
                self.tar = tarfile.open(path, "r:")
            except (tarfile.TarError, OSError) as e:
                raise ImageError(f"load: {str(shown)!r} is neither a directory nor a tar archive "
                                 f"({e})") from None
            for m in self.tar.getmembers():
                self.members.setdefault(posixpath.normpath(m.name.lstrip("/")), m)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def _check(self, name: str) -> str:
        norm = posixpath.normpath(name)
        if not name or name.startswith("/") or norm.startswith("..") or "\0" in name:
            raise ImageError(f"load {str(self.path)!r}: {name!r} is not a path inside it")
        return norm

    def exists(self, name: str) -> bool:
        name = self._check(name)
        if self.tar is not None:
            return name in self.members
        return (self._real / name).exists()

    def open(self, name: str) -> tuple[IO[bytes], int]:
        """The regular file ``name`` and its size (no links followed, none let out)."""
        norm = self._check(name)
        if self.tar is not None:
            m = self.members.get(norm)
            for _ in range(8):       # docker's save links a repeated layer to its first copy
                if m is None or not (m.issym() or m.islnk()):
                    break
                target = m.linkname if m.islnk() else posixpath.join(posixpath.dirname(norm),
                                                                      m.linkname)
                norm = self._check(posixpath.normpath(target))
                m = self.members.get(norm)
            if m is None:
                raise ImageError(f"load {str(self.path)!r}: {name!r} is missing")
            if not m.isreg():
                raise ImageError(f"load {str(self.path)!r}: {name!r} is not a regular file")
            f = self.tar.extractfile(m)
            assert f is not None
            return f, m.size
        p = self._real
        for part in norm.split("/"):
            p = p / part
            if p.is_symlink():
                raise ImageError(f"load {str(self.path)!r}: {name!r} goes through a symlink")
        from .._spawn import open_in_root

        try:
            # O_NONBLOCK: a FIFO planted in the layout must not hang the open (reads of a
            # regular file ignore it).
            fd = open_in_root(self._root_fd, norm, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise ImageError(f"load {str(self.path)!r}: {name!r} is missing") from None
        except OSError as e:
            raise ImageError(f"load {str(self.path)!r}: {name!r}: {e.strerror}") from None
        f2 = os.fdopen(fd, "rb")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            f2.close()
            raise ImageError(f"load {str(self.path)!r}: {name!r} is not a regular file")
        return f2, st.st_size

    def read_json_bytes(self, name: str) -> bytes:
        f, size = self.open(name)
        with f:
            if size > _MAX_JSON:
                raise ImageError(f"load {str(self.path)!r}: {name!r} is {size} bytes, more than "
                                 f"the {_MAX_JSON} read")
            return f.read(_MAX_JSON + 1)

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read_json_bytes(name))
        except (ValueError, UnicodeDecodeError) as e:
            raise ImageError(f"load {str(self.path)!r}: {name!r} is not JSON: {e}") from None


def _ingest(store: Store, src: _Source, name: str, digest: str | None,
            size: int | None = None) -> tuple[str, int]:
    """Copy ``name`` into the store, verified against ``digest`` (hashed when None);
    returns (digest, size)."""
    if digest is not None and store.has_blob(digest):
        return digest, store.blob_path(digest).stat().st_size
    f, length = src.open(name)
    if size is not None and length != size:
        f.close()
        raise ImageError(f"load {str(src.path)!r}: {name!r} is {length} bytes, its descriptor "
                         f"says {size}")
    tmp_fd, tmp = tempfile.mkstemp(dir=store.root / "tmp", prefix="load-")
    try:
        h = hashlib.sha256()
        with f, os.fdopen(tmp_fd, "wb") as out:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        actual = "sha256:" + h.hexdigest()
        want = digest or actual
        if digest is not None and actual != digest:
            raise DigestError(f"load {str(src.path)!r}: {name!r} hashes to {actual}, not {digest}",
                              expected=digest, actual=actual)
        if not store.has_blob(want):
            store.place(tmp, want)
        return want, length
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _name(text: str, where: str) -> str:
    try:
        if "/" not in text and ":" not in text and "@" not in text:
            return str(parse_reference(f"localhost/{text}"))
        return str(parse_reference(text))
    except ImageError as e:
        raise ImageError(f"{where}: {e}") from None


def _load_oci(store: Store, src: _Source) -> list[tuple[list[str], str, Manifest]]:
    index = src.read_json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ImageError(f"load {str(src.path)!r}: index.json has no manifests list")
    out: list[tuple[list[str], str, Manifest]] = []

    def walk(desc_doc: Any, names: list[str], depth: int) -> None:
        desc = Descriptor.parse(desc_doc, "index.json manifest")
        if depth > 4:
            raise ImageError(f"load {str(src.path)!r}: indexes nested too deep")
        ann = desc.annotations or {}
        for key in (_CONTAINERD_NAME, _REF_NAME):
            if ann.get(key):
                names = [_name(ann[key], f"load {str(src.path)!r}: annotation {key}")]
                break
        data = src.read_json_bytes(f"blobs/sha256/{desc.digest[7:]}")
        doc = parse_manifest(data, desc.media_type)
        if isinstance(doc, Index):
            plat = [m for m in doc.manifests if m.platform is not None]
            chosen = select_platform(doc) if plat else doc.manifests[0]
            _ingest(store, src, f"blobs/sha256/{desc.digest[7:]}", desc.digest, desc.size)
            walk({"mediaType": chosen.media_type, "digest": chosen.digest, "size": chosen.size},
                 names, depth + 1)
            return
        for d in (doc.config, *doc.layers):
            _ingest(store, src, f"blobs/sha256/{d.digest[7:]}", d.digest, d.size)
        _ingest(store, src, f"blobs/sha256/{desc.digest[7:]}", desc.digest, desc.size)
        out.append((names, desc.digest, doc))

    for m in index["manifests"]:
        walk(m, [], 0)
    return out


def _load_docker(store: Store, src: _Source) -> list[tuple[list[str], str, Manifest]]:
    entries = src.read_json("manifest.json")
    if not isinstance(entries, list):
        raise ImageError(f"load {str(src.path)!r}: manifest.json is not a list")
    out: list[tuple[list[str], str, Manifest]] = []
    for n, e in enumerate(entries):
        where = f"load {str(src.path)!r}: manifest.json[{n}]"
        if not isinstance(e, dict) or not isinstance(e.get("Config"), str) or not isinstance(
                e.get("Layers"), list) or not all(isinstance(x, str) for x in e["Layers"]):
            raise ImageError(f"{where}: expected Config and Layers")
        tags = e.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ImageError(f"{where}.RepoTags: expected a list of strings")
        names = [_name(t, f"{where}.RepoTags") for t in tags]
        cfg_name = e["Config"]
        base = posixpath.basename(cfg_name).removesuffix(".json")
        cfg_digest = f"sha256:{base}" if len(base) == 64 else None
        if cfg_digest is not None:
            check_digest(cfg_digest, f"{where}.Config")
        cfg_digest, cfg_size = _ingest(store, src, cfg_name, cfg_digest)
        config = parse_config(store.read_blob(cfg_digest))
        if len(config.diff_ids) != len(e["Layers"]):
            raise ImageError(f"{where}: {len(e['Layers'])} layers but the config has "
                             f"{len(config.diff_ids)} diff_ids")
        layers = []
        for i, lname in enumerate(e["Layers"]):
            d, size = _ingest(store, src, lname, None)
            diff_id, media_type = _diff_id(store, d)
            if diff_id != config.diff_ids[i]:
                    raise DigestError(f"{where}: layer {lname!r} is {diff_id} uncompressed, the config's "
                                  f"diff_ids[{i}] says {config.diff_ids[i]}",
                                  expected=config.diff_ids[i], actual=diff_id)
            layers.append({"mediaType": media_type, "digest": d, "size": size})
        doc = {"schemaVersion": 2, "mediaType": _OCI_MANIFEST,
               "config": {"mediaType": _OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
               "layers": layers}
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        digest = store.put(data)
        m = parse_manifest(data)
        assert isinstance(m, Manifest)
        out.append((names, digest, m))
    return out


def _diff_id(store: Store, digest: str) -> tuple[str, str]:
    """The uncompressed tar's digest of the layer blob ``digest`` and its OCI media type."""
    path = store.blob_path(digest)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        h = hashlib.sha256()
        with gzip.open(path, "rb") as g:
            while chunk := g.read(_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest(), "application/vnd.oci.image.layer.v1.tar+gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        raise ImageError(f"layer {digest}: zstd layers in a docker archive are not supported")
    return digest, "application/vnd.oci.image.layer.v1.tar"


def _plain_tar(path: Path, store: Store) -> Iterator[Path]:
    """``path``, or a decompressed copy of it in the store's tmp/ (gzip or zstd archives)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        fd, tmp = tempfile.mkstemp(dir=store.root / "tmp", prefix="load-")
        try:
            with gzip.open(path, "rb") as g, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(g, out, _CHUNK)
            yield Path(tmp)
        finally:
            os.unlink(tmp)
    else:
        yield path


def load(path: str | os.PathLike[str], *, store: Store | None = None,
         tag: str | None = None) -> list[PulledImage]:
    """Load every image of ``path`` into ``store`` (default ``Store()``); returns one
    ``PulledImage`` per name given.

    ``path`` is an OCI image layout (a directory, or a tar of one, as
    ``podman save --format oci-archive`` writes) or a docker-archive
    (``docker save``, ``podman save``; gzip-compressed too).  Each image's
    names become store names; ``tag`` names an image without one (with a
    single image, it is added to its names).  ``ImageError`` names the file
    and what is wrong; a blob that does not match its digest is not kept.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise ImageError(f"load: {str(p)!r} does not exist")
    store = store if store is not None else Store()
    gen = _plain_tar(p, store) if p.is_file() else iter([p])
    plain = next(gen)
    src = _Source(plain, p)
    try:
        if src.exists("index.json") and src.exists("oci-layout"):
            found = _load_oci(store, src)
        elif src.exists("manifest.json"):
            found = _load_docker(store, src)
        else:
            raise ImageError(f"load: {str(p)!r} is neither an OCI image layout (oci-layout, "
                             "index.json) nor a docker archive (manifest.json)")
    finally:
        src.close()
        for _ in gen:
            pass
    if not found:
        raise ImageError(f"load: {str(p)!r} holds no image")
    extra = str(parse_reference(tag)) if tag is not None else None
    unnamed = [f for f in found if not f[0]]
    if extra is not None and len(found) > 1 and len(unnamed) != 1:
        raise ImageError(f"load: tag {tag!r} is ambiguous: {str(p)!r} has {len(found)} images, "
                         f"{len(unnamed)} of them unnamed")
    if extra is None and unnamed:
        raise ImageError(f"load: {str(p)!r} has an image without a name ({unnamed[0][1]}): "
                         "give it one with tag= (--tag)")
    images: list[PulledImage] = []
    for names, digest, manifest in found:
        if extra is not None and (not names or len(found) == 1):
            names = [*names, extra] if names and extra not in names else names or [extra]
        config = parse_config(store.read_blob(manifest.config.digest))
        check_layers(manifest, config, names[0])
        for n in names:
            store.set_ref(n, digest)
            images.append(PulledImage(n, digest, manifest, manifest.config.digest, config))
    return images
