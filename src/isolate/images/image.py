"""``Image``: an image in the store, its config, its layers unpacked once, an OCI bundle of it.

``Image.open("alpine:3.20")`` finds a name the store has (``isolate pull``
or ``isolate load`` put it there), ``Image.open("sha256:…")`` or a unique
prefix of a manifest digest finds it by digest.  ``layers()`` unpacks each
layer the first time any image needs it (``unpack.unpack_layer``, under the
store's lock: two processes asking at once unpack it once) and returns the
directories, bottom first, to stack as overlayfs lower layers
(``RootFS.from_image``); without root, with owners shifted into the caller's
subordinate ids when it has ranges (see ``unpack``).  ``bundle(dir)`` writes an OCI runtime bundle: the
layers applied in order to ``dir/rootfs`` and a ``config.json`` from the
image's config, as ``umoci unpack`` does.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import errno
import json
import os
import re
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any, Final, Sequence

from ..errors import ImageError
from .manifest import ImageConfig, Index, Manifest, parse_config, parse_manifest, select_platform
from .reference import parse_reference
from .store import Store, chain_ids
from .unpack import IdMaps, _in_userns, _open_dirs, remove_tree, shift_maps, unpack_layer

__all__ = ["Image", "unpack_layers", "read_layered", "lookup_layered", "check_shift", "fill_rootfs",
           "fix_layer"]

class _Keep(enum.Enum):
    KEEP = "keep"


_KEEP: Final = _Keep.KEEP
_HEX_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{4,64})")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")


class Image:
    """An image of the store: its ``manifest``, ``config`` (``ImageConfig``) and layers.

    Open one with ``Image.open(reference_or_digest, store=...)``.  ``name`` is
    the reference it was opened by (None when opened by digest), ``digest``
    its manifest's digest, ``id`` the short form ``isolate images`` shows.
    """

    def __init__(self, store: Store, digest: str, name: str | None = None) -> None:
        """Prefer ``Image.open``.  ``ImageError`` when the manifest or config is bad or missing."""
        self.store = store
        self.digest = digest
        self.name = name
        doc = parse_manifest(store.read_blob(digest))
        if isinstance(doc, Index):
            # A name may point at an index (a multi-platform image): this machine's manifest.
            desc = select_platform(doc)
            if not store.has_blob(desc.digest):
                raise ImageError(f"{name or digest}: the store lacks the {desc.platform} manifest "
                                 f"{desc.digest} of the index (pull it again)")
            self.digest = desc.digest
            doc = parse_manifest(store.read_blob(desc.digest), desc.media_type)
            if not isinstance(doc, Manifest):
                raise ImageError(f"{name or digest}: the index's manifest {desc.digest} is an index")
        self.manifest: Manifest = doc
        self.config: ImageConfig = parse_config(store.read_blob(doc.config.digest))
        if len(self.config.diff_ids) != len(doc.layers):
            raise ImageError(f"{name or digest}: the config names {len(self.config.diff_ids)} layers, "
                             f"the manifest {len(doc.layers)}")

    @classmethod
    def open(cls, reference: str, *, store: Store | None = None) -> Image:
        """The image ``reference`` names in ``store`` (default: ``Store()``).

        ``reference``: a name (normalized as docker does: ``alpine`` is
        ``docker.io/library/alpine:latest``; a short name not found there is looked
        for as ``localhost/NAME``, where ``isolate load`` puts an image without a
        registry in its name), a manifest digest
        ``sha256:<hex>`` or a unique prefix of one (4 hex digits at least).
        Raises ``ImageError`` ``"<ref>: not in the store (isolate pull <ref>)"``.
        """
        store = store if store is not None else Store()
        if not isinstance(reference, str) or not reference:
            raise ImageError(f"image: {reference!r} is not a reference or a digest")
        refs = store.refs()
        m = _HEX_PREFIX.fullmatch(reference)
        if m is not None:
            hexd = m.group(1)
            digests = {d for d in refs.values() if d[7:].startswith(hexd)}
            if len(hexd) == 64 and store.has_blob("sha256:" + hexd):
                digests.add("sha256:" + hexd)
            if len(digests) == 1:
                return cls(store, digests.pop())
            if len(digests) > 1:
                raise ImageError(f"{reference}: the prefix names {len(digests)} images; give more digits")
            if reference.startswith("sha256:"):
                raise ImageError(f"{reference}: not in the store (isolate pull <name>@{reference})")
        name = str(parse_reference(reference))
        digest = refs.get(name)
        if digest is None:
            # A short name also finds an image loaded without a registry (localhost/NAME),
            # as podman's short names do.
            local = str(parse_reference(reference, default_registry="localhost"))
            name, digest = local, refs.get(local)
        if digest is None:
            raise ImageError(f"{reference}: not in the store (isolate pull {reference})")
        return cls(store, digest, name)

    def __repr__(self) -> str:
        return f"<isolate.images.Image {self.name or self.digest}>"

    def with_config(self, *, entrypoint: Sequence[str] | None | _Keep = _KEEP,
                    cmd: Sequence[str] | None | _Keep = _KEEP,
                    env: Sequence[str] | None | _Keep = _KEEP, working_dir: str | _Keep = _KEEP,
                    user: str | _Keep = _KEEP) -> Image:
        """The same image (same layers) with config fields replaced, for a root whose
        container should run otherwise: ``img.with_config(entrypoint=["/bin/sh"], cmd=None)``
        (as ``docker run --entrypoint``, which drops Cmd too).  ``env`` items are
        ``KEY=VALUE``.  ``ImageError`` for a value of the wrong type."""
        changes: dict[str, Any] = {}
        for field, value in (("entrypoint", entrypoint), ("cmd", cmd), ("env", env)):
            if value is _KEEP:
                continue
            if value is not None and (isinstance(value, str)
                                      or not all(isinstance(x, str) for x in value)):
                raise ImageError(f"with_config {field}: expected a list of strings or None, "
                                 f"got {value!r}")
            changes[field] = None if value is None else tuple(value)
        for field, text in (("working_dir", working_dir), ("user", user)):
            if text is _KEEP:
                continue
            if not isinstance(text, str):
                raise ImageError(f"with_config {field}: expected a string, got {text!r}")
            changes[field] = text
        new = copy.copy(self)
        new.config = dataclasses.replace(self.config, **changes)
        return new

    @property
    def id(self) -> str:
        """The manifest digest's first 12 hex digits (``isolate images``' IMAGE ID)."""
        return self.digest[7:19]

    @property
    def size(self) -> int:
        """The compressed size of the layers and config, in bytes (what a pull transfers)."""
        return self.manifest.config.size + sum(d.size for d in self.manifest.layers)

    @property
    def exposed_ports(self) -> tuple[str, ...]:
        """The config's ``ExposedPorts`` (``"80/tcp"`` ...)."""
        return self.config.exposed_ports

    def layer_paths(self) -> list[Path]:
        """Where the layers are (or will be) unpacked, bottom first."""
        return [self.store.layer_path(d) for d in self.config.diff_ids]

    def layers(self) -> list[Path]:
        """The directories to stack as the image's overlayfs lower layers, bottom first:
        each layer's, unpacked now if it was not yet, and above a layer that implies
        directories its metadata layer for this image (``fix_layer``), made now if it was
        not yet.

        Missing layers are unpacked under the store's lock (another process
        asking meanwhile waits, then finds them).  Without root, a caller with
        /etc/subuid and /etc/subgid ranges unpacks them with their owners
        shifted into those ids (``unpack.shift_maps``, ``Store.is_shifted``);
        one without has them dropped.  ``ImageError`` for a missing or hostile
        blob, ``DigestError`` when one does not hash to its diff_id (nothing
        is kept of it).
        """
        what = self.name or self.digest
        return _stack(self.store, self.config,
                      unpack_layers(self.store, self.manifest, self.config, what=what), what)

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """A file of the image as a container sees it (its layers merged), or None."""
        return read_layered(self.layers(), path, limit)

    def bundle(self, directory: str | os.PathLike[str]) -> Path:
        """Write an OCI runtime bundle at ``directory`` (made if missing, must be empty):
        ``rootfs/`` with the layers applied in order (whiteouts and opaque directories
        applied, not kept) and ``config.json`` (runc's default spec with the image's
        args, env, cwd and user).  Without root, layers of shifted owners are copied
        inside a user namespace of the caller's subordinate ids, owners kept (shifted),
        and config.json maps those ids (``linux.uidMappings``: 0 is the caller, 1 and up
        its ranges), as a rootless runtime then needs; remove such a bundle with
        ``unpack.remove_tree`` (the caller alone may not).  Returns the bundle's path."""
        from ..oci.features import default_spec

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if any(d.iterdir()):
            raise ImageError(f"bundle: {str(d)!r} is not empty")
        layers = self.layers()
        rootfs = d / "rootfs"
        rootfs.mkdir(mode=0o755)
        # Layers of shifted owners are read and copied inside a user namespace of the
        # same subordinate ids (the user alone may not read them), owners kept.
        maps = (shift_maps() if os.geteuid() != 0
                and any(self.store.is_shifted(x) for x in self.config.diff_ids) else None)
        try:
            if maps is not None:
                _in_userns(["bundle", str(rootfs), *map(str, layers)], maps, f"bundle {str(d)!r}")
            else:
                fill_rootfs(rootfs, layers)
            spec = default_spec(rootless=os.geteuid() != 0)
            if maps is not None:
                spec["linux"]["uidMappings"], spec["linux"]["gidMappings"] = (
                    [{"containerID": m.inside, "hostID": m.outside, "size": m.count} for m in ms]
                    for ms in maps)
            c = self.config
            proc = spec["process"]
            proc["args"] = list(c.entrypoint or ()) + list(c.cmd or ())
            proc["env"] = list(c.env) if c.env else proc.get("env", [])
            proc["cwd"] = c.working_dir or "/"
            proc["terminal"] = False
            if c.user:
                proc["user"] = _user_ids(c.user, layers)
            spec["root"] = {"path": "rootfs", "readonly": False}
            ann = {"org.opencontainers.image.ref.name": self.name or self.digest}
            spec["annotations"] = {**spec.get("annotations", {}), **ann}
            (d / "config.json").write_text(json.dumps(spec, indent=2) + "\n")
        except BaseException:
            try:
                remove_tree(rootfs, maps)
            except (OSError, ImageError):
                pass
            (d / "config.json").unlink(missing_ok=True)
            raise
        return d


def fill_rootfs(rootfs: Path, layers: list[Path]) -> None:
    """Apply the unpacked ``layers`` (bottom first) in order onto the empty directory
    ``rootfs``: whiteouts and opaque directories applied, owners (as root), modes, xattrs
    and times copied; its mode becomes the top layer's root's."""
    rfd = os.open(rootfs, _DIR)
    try:
        for layer in layers:
            lfd = os.open(layer, _DIR)
            links: dict[tuple[int, int], tuple[int, str]] = {}
            try:
                _apply(lfd, rfd, links)
            finally:
                os.close(lfd)
                for fd, _ in links.values():
                    os.close(fd)
        if layers:
            os.chmod(rfd, stat.S_IMODE(os.stat(layers[-1]).st_mode))
    finally:
        os.close(rfd)


def unpack_layers(store: Store, manifest: Manifest, config: ImageConfig,
                  which: Sequence[int] | None = None, *, what: str) -> list[Path]:
    """Unpack the layers ``which`` (indices, default all) of an image whose blobs are in
    ``store``, each once: a layer already unpacked (by any image) is kept.  Returns the
    directories of those layers, in the order of ``which``.

    Missing layers unpack in parallel (a thread each, up to the CPUs), each under its
    own lock (``Store.layer_lock``): another process asking for a layer meanwhile waits,
    then finds it.  A caller without root but with subordinate ids unpacks in a user
    namespace of them, owners kept and shifted (``unpack.unpack_layer``'s ``id_maps``),
    and marks each such layer (``Store.shift_marker``, written before the layer is
    renamed into place).  ``ImageError`` for a missing or hostile blob, ``DigestError``
    when one does not hash to its diff_id (nothing is kept of it); ``what`` names the
    image in errors.
    """
    indices = list(range(len(manifest.layers))) if which is None else list(which)
    paths = [store.layer_path(config.diff_ids[i]) for i in indices]
    missing = [i for i, p in zip(indices, paths) if not p.is_dir()]
    if not missing:
        return paths
    maps = shift_maps()
    _clear_tmp(store)
    if len(missing) == 1:
        _unpack_one(store, manifest, config, missing[0], maps, what)
        return paths
    import concurrent.futures

    workers = min(len(missing), os.cpu_count() or 1, 4)
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="isolate-unpack") as pool:
        futures = [pool.submit(_unpack_one, store, manifest, config, i, maps, what) for i in missing]
        for f in futures:
            f.result()
    return paths


def _unpack_one(store: Store, manifest: Manifest, config: ImageConfig, i: int,
                maps: IdMaps | None, what: str) -> None:
    """Layer ``i`` of the image unpacked into the store, under its lock, unless it is there."""
    desc, diff_id = manifest.layers[i], config.diff_ids[i]
    path = store.layer_path(diff_id)
    with store.layer_lock(diff_id):
        if path.is_dir():
            return
        blob = store.blob_path(desc.digest)
        if not blob.is_file():
            raise ImageError(f"{what}: layer {i} ({desc.digest}) is not in the store "
                             "(pull the image again)")
        tmp = store.root / "tmp" / f"unpack-{diff_id[7:]}-{uuid.uuid4().hex[:12]}"
        done = unpack_layer(blob, tmp, diff_id=diff_id, compression=manifest.compression(i),
                            name=f"{i} ({diff_id[:19]})", id_maps=maps)
        _place(store, diff_id, tmp, maps, done.implied)


def _place(store: Store, key: str, tmp: Path, maps: IdMaps | None,
           implied: Sequence[str] = ()) -> None:
    """Rename the finished layer ``tmp`` into place as ``key``, its markers written first
    (whoever sees the layer sees its owners' kind and what it implies); on failure ``tmp``
    goes, and the markers unless the layer is there (another made it)."""
    marker, implied_marker = store.shift_marker(key), store.implied_marker(key)
    try:
        if maps is not None:
            marker.write_text(maps_text(maps))
        else:
            marker.unlink(missing_ok=True)
        if implied:
            implied_marker.write_text(json.dumps(list(implied)))
        else:
            implied_marker.unlink(missing_ok=True)
        os.rename(tmp, store.layer_path(key))
    except BaseException as e:
        remove_tree(tmp, maps)
        if store.layer_path(key).is_dir():
            if isinstance(e, OSError):
                return          # made meanwhile by another
        else:
            marker.unlink(missing_ok=True)
            implied_marker.unlink(missing_ok=True)
        raise


def _stack(store: Store, config: ImageConfig, paths: list[Path], what: str) -> list[Path]:
    """The unpacked layers ``paths`` (all of the image's, bottom first) with, above each one
    that implies directories, its metadata layer for this image (made here if missing, under
    its lock; left out when it holds nothing: no lower layer has those directories)."""
    out: list[Path] = []
    chains: list[str] = []
    for i, (diff_id, path) in enumerate(zip(config.diff_ids, paths)):
        out.append(path)
        implied = store.implied(diff_id) if i else []
        if not implied:
            continue
        chains = chains or chain_ids(config.diff_ids)
        fix = store.layer_path(chains[i])
        if not fix.is_dir():
            maps = shift_maps() if store.is_shifted(diff_id) else None
            with store.layer_lock(chains[i]):
                if not fix.is_dir():
                    tmp = store.root / "tmp" / f"unpack-{chains[i][7:]}-{uuid.uuid4().hex[:12]}"
                    try:
                        if maps is not None:
                            _in_userns(["fix", str(tmp), str(path), json.dumps(implied),
                                        *map(str, out[:-1])], maps, f"{what}: layer {i}")
                        else:
                            fix_layer(tmp, path, implied, out[:-1])
                    except BaseException:
                        remove_tree(tmp, maps)
                        raise
                    _place(store, chains[i], tmp, maps)
        with os.scandir(fix) as entries:
            if next(entries, None) is not None:
                out.append(fix)
    return out


def fix_layer(dest: Path, layer: Path, implied: Sequence[str], lowers: list[Path]) -> None:
    """Make ``dest`` (new) the metadata layer of the unpacked ``layer`` over ``lowers`` (the
    directories stacked below it, bottom first): each directory the layer ``implied`` that
    the merged lowers have as a directory, with their owner, mode, xattrs and times, and its
    parents with the layer's own (all of them directories of the layer); empty when there
    are none.  Stacked right above the layer, it shows those directories as the lower layers
    had them, and the layer's contents in them.  A directory below an opaque directory of
    the layer has nothing below it to take."""
    lfd = os.open(layer, _DIR)
    try:
        below: dict[str, str] = {}
        for path in implied:
            parts = path.split("/")
            if any(_opaque_at(lfd, parts[:k]) for k in range(len(parts))):
                continue
            st, where = _lookup(lowers, parts)
            if st is not None and where is not None and stat.S_ISDIR(st.st_mode):
                below[path] = where
        dirs = set(below)
        for path in below:
            parts = path.split("/")
            dirs.update("/".join(parts[:k]) for k in range(1, len(parts)))
        os.mkdir(dest, 0o755)
        dfd = os.open(dest, _DIR)
        try:
            for path in sorted(dirs, key=lambda p: p.count("/")):
                up, _, name = path.rpartition("/")
                pfd = _open_dirs(dfd, up.split("/") if up else [])
                assert pfd is not None
                try:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                finally:
                    os.close(pfd)
            # Deepest first: a directory's times are set after its contents are made.
            for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
                src = (os.open(below[path], _DIR) if path in below
                       else _open_dirs(lfd, path.split("/")))
                if src is None:
                    raise ImageError(f"layer {str(layer)!r}: {path!r} is no longer a directory")
                dst = _open_dirs(dfd, path.split("/"))
                assert dst is not None
                try:
                    _copy_meta(src, dst, os.fstat(src))
                finally:
                    os.close(src)
                    os.close(dst)
            _copy_meta(lfd, dfd, os.fstat(lfd))
        finally:
            os.close(dfd)
    finally:
        os.close(lfd)


def _opaque_at(root: int, parts: list[str]) -> bool:
    fd = _open_dirs(root, parts)
    if fd is None:
        return False
    try:
        return _opaque(fd)
    finally:
        os.close(fd)


def maps_text(maps: IdMaps) -> str:
    """Id maps as a shift marker holds them: ``uid|gid inside outside count`` lines."""
    return "".join(f"{kind} {m.inside} {m.outside} {m.count}\n"
                   for kind, ms in zip(("uid", "gid"), maps) for m in ms)


def check_shift(image: Image) -> None:
    """``ImageError`` when a layer of ``image`` keeps owners shifted with other subordinate
    ids than the caller's now (its /etc/subuid or /etc/subgid ranges changed since the
    unpack: the files would show as nobody inside)."""
    if os.geteuid() == 0:
        return
    now: str | None = None
    for diff_id in image.config.diff_ids:
        try:
            was = image.store.shift_marker(diff_id).read_text()
        except FileNotFoundError:
            continue
        if now is None:
            maps = shift_maps()
            now = maps_text(maps) if maps is not None else ""
        if was != now:
            raise ImageError(f"{image.name or image.digest}: layer {diff_id[:19]} was unpacked with "
                             f"other subordinate ids ({' '.join(was.split())}) than this user's "
                             f"now ({' '.join(now.split()) or 'none'}): as root, remove "
                             f"{str(image.store.layer_path(diff_id).parent)}/* (the layers are "
                             "unpacked again from the store's blobs)")


def _clear_tmp(store: Store) -> None:
    """Dead unpacks' staging directories (``unpack-<layer>-…`` whose layer lock is free: a
    live unpack holds it) and removed layers left behind (under the store's lock, which a
    prune removing layers holds), and shift markers of layers that are not there (under
    their layer's lock).  Without
    root, what the user's subordinate ids own there (a shifted unpack) is removed inside a
    user namespace of them (``unpack.remove_tree``)."""
    tmp = store.root / "tmp"

    def remove(name: str) -> None:
        try:
            remove_tree(tmp / name)
        except (OSError, ImageError):
            pass

    names = os.listdir(tmp)
    for name in names:
        m = _UNPACK_DIR.fullmatch(name)
        if m is not None:
            with store.layer_lock("sha256:" + m.group(1), wait=False) as free:
                if free:
                    remove(name)
        elif name.startswith("unpack-"):
            remove(name)             # no live unpack has another name
    if any(n.startswith("removed-") for n in names):
        with store.lock():
            for name in os.listdir(tmp):
                if name.startswith("removed-"):
                    remove(name)
    layers = store.root / "layers" / "sha256"
    for name in os.listdir(layers):
        key, dot, _ = name.partition(".")
        if dot and _HEX64.fullmatch(key) and not os.path.isdir(layers / key):
            # Under the layer's lock: an unpack writes its markers before the layer appears.
            with store.layer_lock("sha256:" + key, wait=False) as free:
                if free and not os.path.isdir(layers / key):
                    (layers / name).unlink(missing_ok=True)


_UNPACK_DIR = re.compile(r"unpack-([0-9a-f]{64})-[0-9a-f]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _user_ids(user: str, layers: list[Path]) -> dict[str, Any]:
    """An image's ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``) as OCI ids."""
    name, _, group = user.partition(":")

    def lookup(db: str, key: str, field: int) -> int:
        if key.isdigit():
            return int(key)
        data = read_layered(layers, f"/etc/{db}") or b""
        for line in data.decode("utf-8", "replace").splitlines():
            f = line.split(":")
            if len(f) > 3 and f[0] == key and f[field].isdigit():
                return int(f[field])
        raise ImageError(f"image config.config.User: {key!r} is not in the image's /etc/{db}")

    uid = lookup("passwd", name, 2)
    if group:
        gid = lookup("group", group, 2)
    elif name.isdigit():
        gid = 0
        data = read_layered(layers, "/etc/passwd") or b""
        for line in data.decode("utf-8", "replace").splitlines():
            f = line.split(":")
            if len(f) > 3 and f[2] == name and f[3].isdigit():
                gid = int(f[3])
                break
    else:
        gid = lookup("passwd", name, 3)
    return {"uid": uid, "gid": gid}


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(fd: int) -> bool:
    for attr in ("user.overlay.opaque", "trusted.overlay.opaque"):
        try:
            if os.getxattr(fd, attr) == b"y":
                return True
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return False


def _remove(pfd: int, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=pfd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(name, _DIR, dir_fd=pfd)
        try:
            for n in os.listdir(fd):
                _remove(fd, n)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=pfd)
    else:
        os.unlink(name, dir_fd=pfd)


def _copy_meta(src: int | str, dst: int | str, st: os.stat_result, *, dir_fd: int | None = None,
               symlink: bool = False) -> None:
    """Owner, mode, xattrs (not overlay's) and times of ``st`` onto ``dst`` (an fd, or a name
    in ``dir_fd``)."""
    root = os.geteuid() == 0
    if isinstance(dst, int):
        if root:
            os.fchown(dst, st.st_uid, st.st_gid)
        os.fchmod(dst, stat.S_IMODE(st.st_mode))
        assert isinstance(src, int)
        for x in os.listxattr(src):
            if not x.startswith(_OVERLAY_XATTRS):
                os.setxattr(dst, x, os.getxattr(src, x))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    if root:
        os.chown(dst, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    if not symlink:
        os.chmod(dst, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)


def _apply(lfd: int, rfd: int, links: dict[tuple[int, int], tuple[int, str]]) -> None:
    """Apply the unpacked layer directory ``lfd`` onto the merged tree ``rfd`` (both open
    directories): whiteouts remove, opaque directories replace, the rest is copied.  Nothing
    is ever followed: every name is opened beneath its parent's fd with O_NOFOLLOW."""
    if _opaque(lfd):
        for n in os.listdir(rfd):
            _remove(rfd, n)
    for entry in os.scandir(lfd):
        name = entry.name
        st = entry.stat(follow_symlinks=False)
        if _whiteout(st):
            _remove(rfd, name)
            continue
        try:
            cur: os.stat_result | None = os.lstat(name, dir_fd=rfd)
        except FileNotFoundError:
            cur = None
        if stat.S_ISDIR(st.st_mode):
            if cur is not None and not stat.S_ISDIR(cur.st_mode):
                _remove(rfd, name)
                cur = None
            if cur is None:
                os.mkdir(name, 0o700, dir_fd=rfd)
            sub_l = os.open(name, _DIR, dir_fd=lfd)
            sub_r = os.open(name, _DIR, dir_fd=rfd)
            try:
                _apply(sub_l, sub_r, links)
                _copy_meta(sub_l, sub_r, st)
            finally:
                os.close(sub_l)
                os.close(sub_r)
            continue
        if cur is not None:
            _remove(rfd, name)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            first_fd, first_name = links[key]
            os.link(first_name, name, src_dir_fd=first_fd, dst_dir_fd=rfd, follow_symlinks=False)
            continue
        if stat.S_ISREG(st.st_mode):
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=lfd)
            try:
                dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o600, dir_fd=rfd)
                try:
                    left = st.st_size
                    while left > 0:
                        copied = os.copy_file_range(src, dst, min(left, 1 << 30))
                        if copied == 0:
                            break
                        left -= copied
                    _copy_meta(src, dst, st)
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=lfd), name, dir_fd=rfd)
            _copy_meta(name, name, st, dir_fd=rfd, symlink=True)
        else:
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=rfd)
            _copy_meta(name, name, st, dir_fd=rfd)
        if st.st_nlink > 1:
            links[key] = (os.dup(rfd), name)


def read_layered(layers: list[Path], path: str, limit: int = 1 << 20) -> bytes | None:
    """The regular file ``path`` as overlayfs shows ``layers`` (bottom first) merged, or None.

    Each component is looked up from the top layer down (a whiteout or an
    opaque directory stops the search); symlinks are followed inside the
    merged tree (absolute ones from its root, ``..`` never above it), 40 at most.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    hops = 0
    resolved: list[str] = []
    while parts:
        name = parts.pop(0)
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        cand = resolved + [name]
        st, where = _lookup(layers, cand)
        if st is None or where is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(where)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved = cand
        if parts and not stat.S_ISDIR(st.st_mode):
            return None
        if not parts:
            if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                return None
            fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                return f.read(limit + 1)[:limit]
    return None


def lookup_layered(layers: list[Path], path: str) -> Path | None:
    """Where the entry ``path`` (not followed if a symlink; its parents must be plain
    directories) of the merged ``layers`` is, or None when the merge has no such entry."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    st, where = _lookup(layers, parts)
    return Path(where) if st is not None and where is not None else None


def _lookup(layers: list[Path], parts: list[str]) -> tuple[os.stat_result | None, str | None]:
    """The top-most entry at ``parts`` in ``layers`` (its parents already resolved to
    directories), honouring whiteouts and opaque directories on the way."""
    for layer in reversed(layers):
        p = os.path.join(layer, *parts)
        # A parent in this layer that is a whiteout, a non-directory or opaque hides the lower ones.
        blocked = False
        for i in range(1, len(parts)):
            q = os.path.join(layer, *parts[:i])
            try:
                qs = os.lstat(q)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(qs.st_mode):
                return None, None
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None:
            if _whiteout(st):
                return None, None
            return st, p
        for i in range(1, len(parts)):
            q = os.path.join(layer, *parts[:i])
            if os.path.isdir(q) and not os.path.islink(q):
                fd = os.open(q, _DIR)
                try:
                    blocked = blocked or _opaque(fd)
                finally:
                    os.close(fd)
        if blocked:
            return None, None
    return None, None
