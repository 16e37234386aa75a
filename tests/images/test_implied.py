"""A directory a layer implies (entries below it, no entry of its own) shows the metadata the
layers below give it, as the OCI layer spec and umoci have it, per image: a layer shared by
images with different lower layers is unpacked once, and each image gets a metadata layer of
its own (named by the layer's chain id) above it.  Seen from inside a container, through the
overlay the kernel makes of the stacked layers."""

from __future__ import annotations

import json
import os

import pytest

import build
from build import Entry
from isolate import Container, RootFS
from isolate.images import Image, Store, prune, remove
from isolate.images.store import chain_ids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers as root")

T1, T2 = 1_500_000_000, 1_550_000_000


def show(store: Store, ref: str, *paths: str) -> list[str]:
    """``mode uid gid mtime`` of each of ``paths``, as a container of ``ref`` sees them."""
    with Container(rootfs=RootFS.from_image(ref, store=store)) as c:
        r = c.run(["/bin/stat", "-c", "%a %u %g %Y", *paths], timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().splitlines()


def test_a_shared_layer_shows_each_image_its_own_lower_directories(store: Store) -> None:
    # One top layer, two bases that disagree on home/ and srv/ (both three levels deep).
    top = [Entry("home/.profile", data=b"p"), Entry("srv/www/html/index", data=b"i")]
    a = build.busybox_entries() + [
        Entry("home", "dir", mode=0o750, uid=1000, gid=1000, mtime=T1),
        Entry("srv", "dir", mode=0o711, uid=5, gid=6, mtime=T1),
        Entry("srv/www", "dir", mode=0o2775, uid=33, gid=33, mtime=T1),
        Entry("srv/www/html", "dir", mode=0o755, uid=33, gid=34, mtime=T1)]
    b = build.busybox_entries() + [
        Entry("home", "dir", mode=0o700, uid=2000, gid=2001, mtime=T2),
        Entry("srv", "dir", mode=0o755, mtime=T2),
        Entry("srv/www", "dir", mode=0o750, uid=7, gid=8, mtime=T2),
        Entry("srv/www/html", "dir", mode=0o1777, mtime=T2)]
    build.put_image(store, "a:1", [a, top], Cmd=["/bin/sh"])
    build.put_image(store, "b:1", [b, top], Cmd=["/bin/sh"])
    paths = ("/home", "/srv", "/srv/www", "/srv/www/html")
    assert show(store, "a:1", *paths) == [f"750 1000 1000 {T1}", f"711 5 6 {T1}",
                                          f"2775 33 33 {T1}", f"755 33 34 {T1}"]
    assert show(store, "b:1", *paths) == [f"700 2000 2001 {T2}", f"755 0 0 {T2}",
                                          f"750 7 8 {T2}", f"1777 0 0 {T2}"]
    # The top layer is unpacked once; each image has its own metadata layer above it.
    ia, ib = Image.open("a:1", store=store), Image.open("b:1", store=store)
    la, lb = ia.layers(), ib.layers()
    assert la[1] == lb[1] == store.layer_path(ia.config.diff_ids[1])
    assert la[2] == store.layer_path(chain_ids(ia.config.diff_ids)[1]) != lb[2]
    assert json.loads(store.implied_marker(ia.config.diff_ids[1]).read_text()) == [
        "home", "srv", "srv/www", "srv/www/html"]
    # The bundle, which applies the layers to one tree, agrees.
    ia.bundle(store.root / "bundle-a")
    st = os.stat(store.root / "bundle-a/rootfs/srv/www")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime)) == (0o2775, 33, 33, T1)


def test_what_the_lower_layers_do_not_have_as_a_directory_is_not_taken(store: Store) -> None:
    # Lower: a symlink to a host directory of its own metadata (/tmp: 1777), a symlink
    # above a directory, a file, a whiteout of a directory, and an opaque directory.
    low = build.busybox_entries() + [
        Entry("t", "symlink", target="/tmp"), Entry("u", "symlink", target="/"),
        Entry("f", data=b"file"),
        Entry("gone", "dir", mode=0o700, uid=9, gid=9), Entry("o", "dir"),
        Entry("o/d", "dir", mode=0o700, uid=9, gid=9, mtime=T1),
        Entry("kept", "dir", mode=0o711, uid=9, gid=9, mtime=T1)]
    mid = [Entry(".wh.gone")]
    top = [Entry("t/x", data=b"x"), Entry("u/tmp/x", data=b"x"), Entry("f/x", data=b"x"),
           Entry("gone/x", data=b"x"), Entry("o", "dir", mode=0o751, mtime=T2),
           Entry("o/.wh..wh..opq"), Entry("o/d/x", data=b"x"), Entry("kept/x", data=b"x")]
    build.put_image(store, "t:1", [low, mid, top], Cmd=["/bin/sh"])
    out = show(store, "t:1", "/t", "/u", "/u/tmp", "/f", "/gone", "/o", "/o/d", "/kept")
    modes = [line.split()[:3] for line in out]
    # Nothing followed the symlinks (/tmp is 1777), nor took a file's, a whited-out
    # directory's, or (below the layer's own opaque /o) the hidden lower /o/d's metadata.
    assert modes[:7] == [["755", "0", "0"]] * 5 + [["751", "0", "0"], ["755", "0", "0"]]
    assert out[7] == f"711 9 9 {T1}"      # while a plain lower directory still counts


def test_prune_removes_an_image_s_metadata_layers_with_it(store: Store) -> None:
    base = build.busybox_entries() + [Entry("home", "dir", mode=0o750, uid=1000, gid=1000)]
    build.put_image(store, "t:1", [base, [Entry("home/f", data=b"f")]], Cmd=["/bin/sh"])
    image = Image.open("t:1", store=store)
    fix = store.layer_path(chain_ids(image.config.diff_ids)[1])
    assert image.layers()[-1] == fix
    before = set(os.listdir(store.root / "layers/sha256"))
    assert prune(store).layers == ()               # reachable: kept
    assert set(os.listdir(store.root / "layers/sha256")) == before
    remove(store, "t:1")
    assert sorted(prune(store).layers) == sorted([*image.config.diff_ids, chain_ids(
        image.config.diff_ids)[1]])
    assert os.listdir(store.root / "layers/sha256") == []     # markers gone with their layers
