"""Unpacking layers: hostile entries stay inside the layer, whiteouts and opaque directories
become overlayfs', metadata is kept, digests are checked."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import build
from build import Entry
from isolate.errors import DigestError, ImageError
from isolate.images import unpack_layer

# vfs_cap_data v2: cap_net_raw (bit 13) permitted, effective.
CAP_NET_RAW = bytes([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (owners, trusted xattrs)")


def unpack(tmp_path: Path, entries: list[Entry], compression: str = "gzip", *,
           diff_id: str | None = None) -> Path:
    tar = build.layer_tar(entries)
    blob = tmp_path / f"blob-{len(os.listdir(tmp_path))}"
    blob.write_bytes(build.compress(tar, compression))
    dest = tmp_path / f"layer-{len(os.listdir(tmp_path))}"
    unpack_layer(blob, dest, diff_id=diff_id or build.digest(tar), compression=compression)
    return dest


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
def test_files_dirs_links_and_metadata(tmp_path: Path, compression: str) -> None:
    layer = unpack(tmp_path, [
        Entry("etc", "dir", mode=0o750, mtime=1_600_000_000),
        Entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", mtime=1_500_000_000),
        Entry("bin/su", data=b"#!", mode=0o4755, uid=0, gid=0),
        Entry("data", data=os.urandom(3 << 20)),
        Entry("hard", "hardlink", target="etc/passwd"),
        Entry("sym", "symlink", target="/etc/passwd", mtime=1_400_000_000),
        Entry("fifo", "fifo"),
        Entry("x", data=b"x", xattrs={"user.k": "v"}),
    ], compression)
    assert (layer / "etc/passwd").read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert os.stat(layer / "etc").st_mtime == 1_600_000_000
    assert stat.S_IMODE(os.stat(layer / "etc").st_mode) == 0o750
    assert os.stat(layer / "etc/passwd").st_mtime == 1_500_000_000
    assert stat.S_IMODE(os.stat(layer / "bin/su").st_mode) == 0o4755
    assert os.stat(layer / "hard").st_ino == os.stat(layer / "etc/passwd").st_ino
    assert os.readlink(layer / "sym") == "/etc/passwd"
    assert os.lstat(layer / "sym").st_mtime == 1_400_000_000
    assert stat.S_ISFIFO(os.lstat(layer / "fifo").st_mode)
    assert os.path.getsize(layer / "data") == 3 << 20
    assert os.getxattr(layer / "x", "user.k") == b"v"


@root_only
def test_owners_devices_and_trusted_xattrs_as_root(tmp_path: Path) -> None:
    layer = unpack(tmp_path, [Entry("f", data=b"f", uid=1234, gid=5678, mode=0o2755),
                              Entry("null", "char", dev=(1, 3)),
                              Entry("t", data=b"t", xattrs={"trusted.k": "v",
                                                            "trusted.overlay.redirect": "/etc"}),
                              Entry("ping", data=b"p", mode=0o755,
                                    xattrs={"security.capability": CAP_NET_RAW.decode(
                                        "utf-8", "surrogateescape")})])
    st = os.stat(layer / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o2755)
    assert os.lstat(layer / "null").st_rdev == os.makedev(1, 3)
    assert os.getxattr(layer / "t", "trusted.k") == b"v"
    # A file capability (binary, as docker's archive/tar writes it) is kept byte for byte.
    assert os.getxattr(layer / "ping", "security.capability") == CAP_NET_RAW
    # An image must not steer overlayfs with its own markers.
    assert "trusted.overlay.redirect" not in os.listxattr(layer / "t")


def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    layer = unpack(tmp_path, [Entry("a", "dir"), Entry("a/.wh..wh..opq"), Entry("a/new", data=b"n"),
                              Entry(".wh.gone"), Entry("d/.wh.sub")])
    wh = os.lstat(layer / "gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert stat.S_ISCHR(os.lstat(layer / "d/sub").st_mode)
    assert os.getxattr(layer / "a", "user.overlay.opaque") == b"y"
    if os.geteuid() == 0:
        assert os.getxattr(layer / "a", "trusted.overlay.opaque") == b"y"
    assert not (layer / "a/.wh..wh..opq").exists()


@pytest.mark.parametrize("entries", [
    [Entry("../escape", data=b"x")],
    [Entry("a/../../escape", data=b"x")],
    [Entry("hl", "hardlink", target="../../../etc/passwd")],
])
def test_dotdot_refused_and_nothing_kept(tmp_path: Path, entries: list[Entry]) -> None:
    with pytest.raises(ImageError, match="leaves the layer"):
        unpack(tmp_path, entries)
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith("layer")]


def test_absolute_paths_and_symlinks_stay_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = unpack(tmp_path, [
        Entry("/abs", data=b"abs"),
        Entry("toroot", "symlink", target="/"),
        Entry("toroot/" + str(outside).lstrip("/") + "/via-abs", data=b"evil"),
        Entry("up", "symlink", target="../../../../.."),
        Entry("up/via-dotdot", data=b"evil"),
        Entry("dirlink", "symlink", target=str(outside)),
        Entry("dirlink/via-link", data=b"evil"),
    ])
    assert (layer / "abs").read_bytes() == b"abs"
    assert os.listdir(outside) == []
    # Written inside the layer, where the links resolve when the layer is the root.
    assert (layer / str(outside).lstrip("/") / "via-abs").read_bytes() == b"evil"
    assert (layer / "via-dotdot").read_bytes() == b"evil"
    assert (layer / str(outside).lstrip("/") / "via-link").read_bytes() == b"evil"


def test_hardlink_outside_the_layer_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="hardlink 'hl'"):
        unpack(tmp_path, [Entry("hl", "hardlink", target="/etc/passwd")])
    # Through a symlink planted first: the link resolves inside, where there is no file.
    with pytest.raises(ImageError, match="hardlink"):
        unpack(tmp_path, [Entry("etc", "symlink", target="/etc"),
                          Entry("hl", "hardlink", target="etc/passwd")])


def test_digest_mismatch_keeps_nothing(tmp_path: Path) -> None:
    with pytest.raises(DigestError) as e:
        unpack(tmp_path, [Entry("f", data=b"f")], diff_id="sha256:" + "0" * 64)
    assert e.value.expected == "sha256:" + "0" * 64
    assert not [p for p in os.listdir(tmp_path) if p.startswith("layer")]


def test_corrupt_stream(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(build.compress(build.layer_tar([Entry("f", data=os.urandom(1 << 16))]), "gzip")[:-100])
    with pytest.raises(ImageError):
        unpack_layer(blob, tmp_path / "dest", diff_id="sha256:" + "0" * 64, compression="gzip")
    assert not (tmp_path / "dest").exists()


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = unpack(tmp_path, [
        Entry("f", data=b"one"), Entry("f", data=b"two"),
        Entry("d", "dir"), Entry("d/x", data=b"x"), Entry("d", data=b"now a file"),
        Entry("s", "symlink", target=str(outside / "target")), Entry("s", data=b"not through"),
        Entry("e", data=b"e"), Entry("e", "dir"), Entry("e/y", data=b"y"),
        Entry("h", data=b"h"), Entry("h2", "hardlink", target="h"), Entry("h2", "hardlink", target="h"),
    ])
    assert (layer / "f").read_bytes() == b"two"
    assert (layer / "d").read_bytes() == b"now a file"
    assert (layer / "s").read_bytes() == b"not through" and not (outside / "target").exists()
    assert (layer / "e/y").read_bytes() == b"y"
    assert os.stat(layer / "h2").st_ino == os.stat(layer / "h").st_ino


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_multi_member_streams(tmp_path: Path, compression: str) -> None:
    # pigz and zstd -T write several members/frames: one stream, as gzip(1) and zstd(1) read it.
    tar = build.layer_tar([Entry(f"f{i}", data=os.urandom(300_000)) for i in range(8)])
    blob = tmp_path / "blob"
    half = len(tar) // 2
    blob.write_bytes(build.compress(tar[:half], compression) + build.compress(tar[half:], compression))
    unpack_layer(blob, tmp_path / "out", diff_id=build.digest(tar), compression=compression)
    assert len(os.listdir(tmp_path / "out")) == 8


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
def test_entries_across_chunk_boundaries(tmp_path: Path, compression: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of an odd size cut tar headers and long names in two: every entry is unpacked
    # all the same (a short header block read as the archive's end would drop the rest).
    import isolate.images.unpack as U

    monkeypatch.setattr(U, "_READ", 1000)
    entries = [Entry("bin", "dir")] + [Entry(f"bin/{'l' * (i % 150)}{i}", "symlink", target="x")
                                       for i in range(300)] + [Entry("last", data=b"z" * 5000)]
    layer = unpack(tmp_path, entries, compression)
    assert len(os.listdir(layer / "bin")) == 300
    assert (layer / "last").read_bytes() == b"z" * 5000


def test_entry_below_a_dangling_symlink(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="the parent of 'a/b/c' is not a directory"):
        unpack(tmp_path, [Entry("a", "symlink", target="/nonexistent"), Entry("a/b/c", data=b"c")])
    assert not [p for p in os.listdir(tmp_path) if p.startswith("layer")]
    assert not os.path.exists("/nonexistent")


def test_replacing_inside_nested_dirs_and_through_links(tmp_path: Path) -> None:
    entries = [Entry("d", "dir"), Entry("d/e", "dir"), Entry("d/e/f", data=b"1"),
               Entry("d/e/f", data=b"2"),                    # replaced below cached parents
               Entry("l", "symlink", target="d/e"), Entry("l/g", data=b"g"),
               Entry("d/e", data=b"now a file"),             # what l led to is gone
               Entry("l/h", data=b"h")]                      # l is dangling now: refused
    with pytest.raises(ImageError, match="the parent of 'l/h'"):
        unpack(tmp_path, entries)
    layer = unpack(tmp_path, entries[:-1])
    assert (layer / "d/e").read_bytes() == b"now a file"
    # More directories than the fd cache holds.
    many = [Entry(f"x{i}/y/z", data=b"z") for i in range(600)] + [Entry("x0/y/h", "hardlink", target="x599/y/z")]
    layer = unpack(tmp_path, many)
    assert os.stat(layer / "x0/y/h").st_ino == os.stat(layer / "x599/y/z").st_ino
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) < 100
