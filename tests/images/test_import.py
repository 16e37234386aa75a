"""load: OCI layouts (directory and tar) and real podman save archives into the store."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools import PrivatePodman, need

from isolate.errors import DigestError, ImageError
from isolate.images.importer import load
from isolate.images.store import Store


def tar_dir(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w") as tf:
        for p in sorted(src.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return dest


def layout_index(layout: Path) -> dict[str, str]:
    idx = json.loads((layout / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in idx["manifests"]}


@pytest.mark.parametrize("as_tar", [False, True], ids=["dir", "tar"])
def test_oci_layout_loads_every_tagged_image_verified(layout: Path, tmp_path: Path,
                                                      as_tar: bool) -> None:
    store = Store(tmp_path / "store")
    src = tar_dir(layout, tmp_path / "layout.tar") if as_tar else layout
    images = load(src, store=store)
    want = layout_index(layout)
    assert store.refs() == {f"localhost/{t}:latest": d for t, d in want.items()}
    assert {i.reference: i.manifest_digest for i in images} == store.refs()
    for img in images:
        for d in [img.manifest_digest, img.config_digest, *[x.digest for x in img.manifest.layers]]:
            assert store.blob_path(d).read_bytes() == (layout / "blobs/sha256" / d[7:]).read_bytes()
    assert not list((store.root / "tmp").iterdir())


def test_a_corrupt_blob_in_a_layout_is_refused_and_not_kept(layout: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(layout, bad)
    digest = layout_index(bad)["small"]
    m = json.loads((bad / "blobs/sha256" / digest[7:]).read_text())
    victim = m["layers"][1]["digest"]
    p = bad / "blobs/sha256" / victim[7:]
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    store = Store(tmp_path / "store")
    with pytest.raises(DigestError, match=victim):
        load(bad, store=store)
    assert not store.has_blob(victim) and store.refs() == {}
    assert not list((store.root / "tmp").iterdir())


def test_a_tar_naming_paths_outside_is_refused(tmp_path: Path) -> None:
    arc = tmp_path / "evil.tar"
    with tarfile.open(arc, "w") as tf:
        body = json.dumps([{"Config": "../../etc/passwd", "RepoTags": ["x:y"],
                            "Layers": []}]).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(body)
        tf.addfile(ti, io.BytesIO(body))
    with pytest.raises(ImageError, match="'../../etc/passwd' is not a path inside it"):
        load(arc, store=Store(tmp_path / "store"))


def test_an_unnamed_image_needs_a_tag(layout: Path, tmp_path: Path) -> None:
    import shutil

    lay = tmp_path / "lay"
    shutil.copytree(layout, lay)
    idx = json.loads((lay / "index.json").read_text())
    idx["manifests"] = idx["manifests"][:1]
    del idx["manifests"][0]["annotations"]
    (lay / "index.json").write_text(json.dumps(idx))
    store = Store(tmp_path / "store")
    with pytest.raises(ImageError, match="has an image without a name .*tag="):
        load(lay, store=store)
    [img] = load(lay, store=store, tag="example.com/named:1")
    assert store.refs() == {"example.com/named:1": img.manifest_digest}


@pytest.fixture
def podman() -> Iterator[PrivatePodman]:
    """podman with a store, configuration and network directory of its own (the host's
    storage, networks and blob cache are untouched)."""
    import shutil
    import tempfile

    need("podman")
    root = Path(tempfile.mkdtemp(prefix="iso-pm-", dir="/tmp"))  # runroot: under 50 characters
    shutil.rmtree(root)
    root.mkdir()
    p = PrivatePodman(root, driver="vfs")
    yield p
    p.close()


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_archive_loads(layout: Path, tmp_path: Path, podman: PrivatePodman,
                                   fmt: str) -> None:
    podman("pull", "-q", f"oci:{layout}:small")
    ids = podman("images", "-q", "--no-trunc").split()
    assert len(ids) == 1
    podman("tag", ids[0], "example.com/team/small:1")
    arc = tmp_path / "saved.tar"
    podman("save", "-q", "--format", fmt, "-o", str(arc), "example.com/team/small:1")
    store = Store(tmp_path / "store")
    images = load(arc, store=store)
    names = [i.reference for i in images]
    assert "example.com/team/small:1" in names
    img = images[names.index("example.com/team/small:1")]
    assert img.config_digest == ids[0]
    assert len(img.manifest.layers) == len(img.config.diff_ids) == 3
    assert img.config.cmd == ("/bin/sh",)
    for d in [img.manifest_digest, img.config_digest, *[x.digest for x in img.manifest.layers]]:
        assert store.has_blob(d)
    if fmt == "docker-archive":         # docker save | gzip, as podman load takes it too
        import gzip

        gz = tmp_path / "saved.tar.gz"
        gz.write_bytes(gzip.compress(arc.read_bytes(), compresslevel=1))
        again = load(gz, store=Store(tmp_path / "store2"))
        assert [(i.reference, i.manifest_digest) for i in again] == [
            (i.reference, i.manifest_digest) for i in images]
        assert not list((tmp_path / "store2" / "tmp").iterdir())


def test_a_docker_archive_layer_linked_to_another_inside_it(tmp_path: Path) -> None:
    """docker save writes a repeated layer as a symlink to its first copy; links stay inside."""
    import hashlib

    import build

    tar = build.layer_tar([build.Entry("f", data=b"same")])
    diff = "sha256:" + hashlib.sha256(tar).hexdigest()
    cfg = json.dumps(build.image_config([diff, diff])).encode()
    arc = tmp_path / "saved.tar"

    def add(tf: tarfile.TarFile, name: str, data: bytes | None = None, link: str = "") -> None:
        ti = tarfile.TarInfo(name)
        if link:
            ti.type, ti.linkname = tarfile.SYMTYPE, link
            tf.addfile(ti)
        else:
            ti.size = len(data or b"")
            tf.addfile(ti, io.BytesIO(data or b""))

    with tarfile.open(arc, "w") as tf:
        add(tf, "a/layer.tar", tar)
        add(tf, "b/layer.tar", link="../a/layer.tar")
        add(tf, "c/layer.tar", link="../../etc/passwd")
        add(tf, hashlib.sha256(cfg).hexdigest() + ".json", cfg)
        manifest = [{"Config": hashlib.sha256(cfg).hexdigest() + ".json", "RepoTags": ["x:1"],
                     "Layers": ["a/layer.tar", "b/layer.tar"]}]
        add(tf, "manifest.json", json.dumps(manifest).encode())
    store = Store(tmp_path / "s")
    [img] = load(arc, store=store)
    assert img.reference == "docker.io/library/x:1"
    assert [x.digest for x in img.manifest.layers] == [diff, diff]
    manifest[0]["Layers"] = ["a/layer.tar", "c/layer.tar"]
    bad = tmp_path / "bad.tar"
    with tarfile.open(arc) as src, tarfile.open(bad, "w") as tf:
        for m in src.getmembers():
            if m.name == "manifest.json":
                add(tf, "manifest.json", json.dumps(manifest).encode())
            elif m.isreg():
                tf.addfile(m, src.extractfile(m))
            else:
                tf.addfile(m)
    with pytest.raises(ImageError, match="'../etc/passwd' is not a path inside it"):
        load(bad, store=Store(tmp_path / "s2"))


_FLIPPER = """
import os, sys, time
d, real, link_to, stop = sys.argv[1:]
end = time.monotonic() + 20
while not os.path.exists(stop) and time.monotonic() < end:
    os.rename(d, real)          # the directory goes away ...
    os.symlink(link_to, d)      # ... a symlink to outside the layout takes its name ...
    os.unlink(d)
    os.rename(real, d)          # ... and the directory comes back
"""


def test_a_directory_swapped_for_a_symlink_mid_load_never_lets_an_outside_file_in(
        tmp_path: Path) -> None:
    """A docker-archive directory whose layer's directory another process keeps swapping
    for a symlink to a directory outside (a race between the check of the path and its
    open): the file outside is never read into the store, whatever the timing."""
    import hashlib
    import sys
    import time

    import build

    secret = b"NOT-FOR-THE-STORE " * 64
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "layer.tar").write_bytes(secret)
    tar = build.layer_tar([build.Entry("f", data=b"fine")])
    cfg = json.dumps(build.image_config(["sha256:" + hashlib.sha256(tar).hexdigest()])).encode()
    layout = tmp_path / "layout"
    (layout / "d").mkdir(parents=True)
    (layout / "d" / "layer.tar").write_bytes(tar)
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    (layout / cfg_name).write_bytes(cfg)
    (layout / "manifest.json").write_text(json.dumps(
        [{"Config": cfg_name, "RepoTags": ["x:1"], "Layers": ["d/layer.tar"]}]))
    stop = tmp_path / "stop"
    flipper = subprocess.Popen([sys.executable, "-c", _FLIPPER, str(layout / "d"),
                                str(layout / "d.real"), str(outside), str(stop)])
    store = Store(tmp_path / "store")
    loaded = 0
    try:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                load(layout, store=store)
                loaded += 1
            except ImageError:      # "goes through a symlink", "missing": refused, fine
                pass
    finally:
        stop.touch()
        flipper.wait(timeout=30)
    blobs = list((tmp_path / "store" / "blobs" / "sha256").iterdir())
    assert not [b for b in blobs if b.read_bytes() == secret]
    assert loaded > 0               # the race was run against loads that work


def test_a_fifo_in_a_layout_directory_is_refused_without_hanging(tmp_path: Path) -> None:
    """A FIFO where a layer should be: one clear error, not an open that waits for a writer."""
    import hashlib
    import os
    import threading

    import build

    tar = build.layer_tar([build.Entry("f", data=b"fine")])
    cfg = json.dumps(build.image_config(["sha256:" + hashlib.sha256(tar).hexdigest()])).encode()
    layout = tmp_path / "layout"
    layout.mkdir()
    os.mkfifo(layout / "layer.tar")
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    (layout / cfg_name).write_bytes(cfg)
    (layout / "manifest.json").write_text(json.dumps(
        [{"Config": cfg_name, "RepoTags": ["x:1"], "Layers": ["layer.tar"]}]))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            load(layout, store=Store(tmp_path / "store"))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=10)
    if t.is_alive():                # the old open: unblock it before failing
        fd = os.open(layout / "layer.tar", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(timeout=20)
        pytest.fail("load waited on a FIFO in the layout")
    assert len(errors) == 1 and isinstance(errors[0], ImageError)
    assert "'layer.tar' is not a regular file" in str(errors[0])
