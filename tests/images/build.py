"""Images made by the tests: layer tars from entry lists, OCI image layouts, docker-archive tars.

A layer is a list of ``Entry``; ``layer_tar`` makes its tar (uncompressed),
``compress`` gzips or zstd-compresses it, ``write_layout`` writes an OCI
image layout (``oci:DIR:TAG`` for skopeo and umoci) holding an image made of
such layers.  ``busybox_entries`` is Debian's static busybox with a link per
applet: a small image that runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

BUSYBOX = "/bin/busybox"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = {"tar": "application/vnd.oci.image.layer.v1.tar",
             "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


@dataclass
class Entry:
    """One tar entry.  ``kind``: file, dir, symlink, hardlink, char, block, fifo.
    ``data`` for files, ``target`` for links, ``dev`` (major, minor) for devices,
    ``xattrs`` as PAX ``SCHILY.xattr.`` records."""

    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    target: str = ""
    dev: tuple[int, int] = (0, 0)
    xattrs: dict[str, str] = field(default_factory=dict)


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
          "fifo": tarfile.FIFOTYPE}


def layer_tar(entries: Sequence[Entry]) -> bytes:
    """The uncompressed tar of ``entries``, in order (PAX format, so xattrs fit)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.path)
            ti.type = _TYPES[e.kind]
            ti.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
            ti.uname = ti.gname = ""
            if e.kind in ("symlink", "hardlink"):
                ti.linkname = e.target
            if e.kind in ("char", "block"):
                ti.devmajor, ti.devminor = e.dev
            if e.xattrs:
                ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in e.xattrs.items()}
            if e.kind == "file":
                ti.size = len(e.data)
                tf.addfile(ti, io.BytesIO(e.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def compress(tar: bytes, compression: str) -> bytes:
    """``tar`` as stored in an image: ``tar`` (as is), ``gzip`` or ``zstd`` (Debian's zstd)."""
    if compression == "tar":
        return tar
    if compression == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)
    if compression == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True, check=True).stdout
    raise ValueError(f"compression: {compression!r}")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_entries(prefix: str = "") -> list[Entry]:
    """Static busybox at /bin/busybox, a symlink per applet, /etc/passwd and /etc/group."""
    data = Path(BUSYBOX).read_bytes()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    out = [Entry(prefix + "bin", "dir"), Entry(prefix + "bin/busybox", data=data, mode=0o755),
           Entry(prefix + "etc", "dir"),
           Entry(prefix + "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
                 b"guest:x:1000:1000:guest:/home/guest:/bin/sh\n"),
           Entry(prefix + "etc/group", data=b"root:x:0:\nguest:x:1000:\n"),
           Entry(prefix + "tmp", "dir", mode=0o1777)]
    out += [Entry(prefix + "bin/" + a, "symlink", target="busybox") for a in applets if a != "busybox"]
    return out


def image_config(diff_ids: Sequence[str], **config: Any) -> dict[str, Any]:
    """An OCI image config for layers ``diff_ids`` (sha256 of each uncompressed tar);
    ``config`` is its ``config`` object (Entrypoint, Cmd, Env, WorkingDir, User ...)."""
    return {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       **config},
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created_by": f"layer {i}"} for i in range(len(diff_ids))]}


def _put_blob(layout: Path, data: bytes) -> str:
    d = digest(data)
    p = layout / "blobs" / "sha256" / d[7:]
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.exists():
        p.write_bytes(data)
    return d


def write_layout(layout: str | os.PathLike[str], tag: str, layers: Sequence[Sequence[Entry] | bytes],
                 *, compression: str = "gzip", **config: Any) -> str:
    """Add an image tagged ``tag`` to the OCI image layout ``layout`` (made if missing);
    returns its manifest's digest.  Each layer is a list of entries or a ready tar."""
    root = Path(layout)
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    descs, diff_ids = [], []
    for layer in layers:
        tar = layer if isinstance(layer, bytes) else layer_tar(layer)
        blob = compress(tar, compression)
        diff_ids.append(digest(tar))
        descs.append({"mediaType": OCI_LAYER[compression], "digest": _put_blob(root, blob),
                      "size": len(blob)})
    cfg = json.dumps(image_config(diff_ids, **config), sort_keys=True).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": _put_blob(root, cfg),
                                      "size": len(cfg)},
                           "layers": descs}, sort_keys=True).encode()
    mdigest = _put_blob(root, manifest)
    index_path = root / "index.json"
    index = (json.loads(index_path.read_text()) if index_path.exists()
             else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(manifest),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index, sort_keys=True))
    return mdigest


def put_image(store: Any, name: str | None, layers: Sequence[Sequence[Entry] | bytes], *,
              compression: str = "gzip", architecture: str | None = None, **config: Any) -> str:
    """Put an image made of ``layers`` straight into ``store`` (an ``isolate.images.Store``),
    named ``name`` (normalized) when given (``store.set_ref``); returns its manifest's digest.
    ``config``: the image config's ``config`` object (Cmd, Env ...); ``architecture``:
    this machine's by default."""
    if architecture is None:
        from isolate.images.manifest import host_platform

        architecture = host_platform().architecture
    descs, diff_ids = [], []
    for layer in layers:
        tar = layer if isinstance(layer, bytes) else layer_tar(layer)
        blob = compress(tar, compression)
        diff_ids.append(digest(tar))
        descs.append({"mediaType": OCI_LAYER[compression], "digest": store.put(blob), "size": len(blob)})
    cfg = json.dumps({**image_config(diff_ids, **config), "architecture": architecture},
                     sort_keys=True).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": store.put(cfg),
                                      "size": len(cfg)},
                           "layers": descs}, sort_keys=True).encode()
    mdigest: str = store.put(manifest)
    if name is not None:
        from isolate.images.reference import parse_reference

        store.set_ref(str(parse_reference(name)), mdigest)
    return mdigest


#: ``security.capability`` of ``cap_net_bind_service=ep`` (VFS_CAP_REVISION_2, little endian).
NET_BIND_CAP = "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def rich_layers(mtime: int = 1_600_000_000) -> list[list[Entry]]:
    """Three layers that use what a layer can say, for comparing unpackers.

    Layer 1: busybox and ``srv/`` with varied modes (0600, 0644, 0755, a 01777
    directory, setuid 04755, setgid 02755), owners (0, 1000:1000, 65534), relative,
    absolute and dangling symlinks, a hardlink pair, a fifo, a file with ``user.*``
    and ``security.capability`` xattrs, varied mtimes.  Layer 2: a whiteout of a
    file and of a directory, an opaque directory with new content, a file replaced
    by a directory and a directory by a file (no whiteout: the entry itself
    replaces).  Layer 3: the deleted ``srv/tool`` and ``olddir`` made again, and
    metadata-only changes of layer-1 entries (the same content, new mode, owner
    or xattrs: a layer carries the whole entry again; ``srv/hl-m`` so leaves its
    hardlink group, ``srv/hl-n`` keeps the old inode).  A hardlink entry carries its
    inode's metadata, as tar writers record it.  ``mtime``: the base of the mtimes.
    """
    t = mtime
    l1 = busybox_entries() + [
        Entry("srv", "dir", mtime=t),
        Entry("srv/secret", data=b"secret\n", mode=0o600, uid=1000, gid=1000, mtime=t + 1),
        Entry("srv/plain", data=b"plain text\n" * 100, mode=0o644, mtime=t + 2),
        Entry("srv/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755, mtime=t + 3),
        Entry("srv/suid", data=b"suid", mode=0o4755, mtime=t + 4),
        Entry("srv/sgid", data=b"sgid", mode=0o2755, gid=1000, mtime=t + 5),
        Entry("srv/nobody", data=b"nobody", mode=0o640, uid=65534, gid=65534, mtime=t + 6),
        Entry("srv/private", "dir", mode=0o700, uid=1000, gid=1000, mtime=t + 7),
        Entry("srv/private/key", data=b"k" * 3000, mode=0o400, uid=1000, gid=1000, mtime=t + 8),
        Entry("srv/shared", "dir", mode=0o1777, mtime=t + 9),
        Entry("srv/shared/note", data=b"note", mode=0o666, uid=65534, gid=65534, mtime=t + 10),
        Entry("srv/rel", "symlink", target="plain", mtime=t + 11),
        Entry("srv/abs", "symlink", target="/srv/plain", mtime=t + 12),
        Entry("srv/dangling", "symlink", target="/nowhere/at/all", uid=1000, gid=1000, mtime=t + 13),
        Entry("srv/hl-a", data=b"linked\n", mode=0o644, uid=1000, gid=1000, mtime=t + 14),
        Entry("srv/hl-b", "hardlink", target="srv/hl-a", uid=1000, gid=1000, mtime=t + 14),
        Entry("srv/hl-m", data=b"changed later\n", mtime=t + 14),
        Entry("srv/hl-n", "hardlink", target="srv/hl-m", mtime=t + 14),
        Entry("srv/fifo", "fifo", mode=0o620, mtime=t + 15),
        Entry("srv/capped", data=b"cap", mode=0o755, mtime=t + 15,
              xattrs={"security.capability": NET_BIND_CAP, "user.why": "bind port 80"}),
        Entry("srv/xattr", data=b"x" * 70_000, mode=0o755, mtime=t + 16,
              xattrs={"user.note": "hello", "user.other": "two", "security.capability": NET_BIND_CAP}),
        Entry("olddir", "dir", mtime=t + 20), Entry("olddir/deep", "dir", mtime=t + 21),
        Entry("olddir/deep/f", data=b"old"), Entry("olddir/g", data=b"g"),
        Entry("opq", "dir", mode=0o750, mtime=t + 22), Entry("opq/a", data=b"a"),
        Entry("opq/sub", "dir"), Entry("opq/sub/b", data=b"b"),
        Entry("f2d", data=b"a file, then a directory", mtime=t + 23),
        Entry("d2f", "dir", mtime=t + 24), Entry("d2f/child", data=b"child"),
        Entry("home", "dir", mode=0o750, uid=1000, gid=1000, mtime=t + 25),
    ]
    l2 = [
        Entry("srv", "dir", mtime=t + 100),
        Entry("srv/.wh.tool"),
        Entry(".wh.olddir"),
        Entry("opq", "dir", mode=0o750, mtime=t + 101), Entry("opq/.wh..wh..opq"),
        Entry("opq/new", data=b"new in an opaque directory", mtime=t + 102),
        Entry("opq/sub", "dir", mode=0o711, mtime=t + 103),
        Entry("f2d", "dir", mode=0o755, mtime=t + 104), Entry("f2d/inner", data=b"inner"),
        Entry("d2f", data=b"a directory, then a file", mode=0o600, mtime=t + 105),
        Entry("home/.profile", data=b"export A=b\n", uid=1000, gid=1000, mtime=t + 106),
        Entry("implied/deep/file", data=b"no parent entries", mtime=t + 107),
    ]
    l3 = [
        Entry("srv", "dir", mtime=t + 200),
        Entry("srv/tool", data=b"#!/bin/sh\necho tool again\n", mode=0o750, uid=1000, gid=1000,
              mtime=t + 201),
        Entry("olddir", "dir", mode=0o700, mtime=t + 202), Entry("olddir/back", data=b"back"),
        Entry("srv/plain", data=b"plain text\n" * 100, mode=0o600, uid=1000, gid=1000, mtime=t + 203),
        Entry("srv/private", "dir", mode=0o750, uid=65534, gid=65534, mtime=t + 204),
        Entry("srv/suid", data=b"suid", mode=0o6750, uid=1000, gid=1000, mtime=t + 205),
        Entry("srv/xattr", data=b"x" * 70_000, mode=0o755, mtime=t + 206,
              xattrs={"user.note": "changed"}),
        Entry("srv/hl-m", data=b"changed later\n", mode=0o600, mtime=t + 207),
    ]
    return [l1, l2, l3]


def crosslink_layers() -> list[list[Entry]]:
    """Busybox and ``data``; then ``data-link``, a hardlink (in layer 2) to layer 1's
    ``data``.  The OCI layer spec: "Extracting a layer with hardlink references to
    files outside of the layer may fail"."""
    return [busybox_entries() + [Entry("data", data=b"layer one\n")],
            [Entry("data-link", "hardlink", target="data")]]


def linkmeta_layers() -> list[list[Entry]]:
    """Busybox, ``a`` (0600, 1000:1000) and ``b``, a hardlink to it whose own entry says
    0755, 0:0 and another mtime (tar writers repeat the inode's; this one does not)."""
    return [busybox_entries() + [
        Entry("a", data=b"a", mode=0o600, uid=1000, gid=1000, mtime=1_600_000_000),
        Entry("b", "hardlink", target="a", mode=0o755, mtime=1_650_000_000)]]


def noisy(n: int, seed: int) -> bytes:
    """``n`` bytes that gzip cannot shrink much: random bytes mixed with text."""
    chunk = b"isolate layer %d " % seed
    out = bytearray()
    while len(out) < n:
        out += os.urandom(4096) + chunk * 64
    return bytes(out[:n])


def layer(name: str, size: int, seed: int) -> list[Entry]:
    return [Entry("data", "dir"), Entry(f"data/{name}", data=noisy(size, seed))]
