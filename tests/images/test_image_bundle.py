"""Image.bundle compared file by file with ``umoci unpack`` of the same image."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import build
from build import Entry
from isolate.images import Image, Store

pytestmark = [pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack as root")]


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``: type, mode, owner, size, content hash, link target, xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            kind = stat.S_IFMT(st.st_mode)
            digest = hashlib.sha256(Path(p).read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                x: os.getxattr(p, x) for x in os.listxattr(p) if not x.startswith("user.rootlesscontainers")}
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, digest, target,
                        sorted(xattrs.items()), st.st_rdev if stat.S_ISCHR(st.st_mode) else 0)
    return out


def test_bundle_matches_umoci(tmp_path: Path) -> None:
    layers = [
        build.busybox_entries() + [
            Entry("a", "dir", mode=0o750), Entry("a/x", data=b"x" * 5000, uid=7, gid=8),
            Entry("a/y", data=b"y"), Entry("gone", data=b"g"), Entry("keep", "dir"),
            Entry("keep/old", data=b"o"), Entry("suid", data=b"s", mode=0o4755),
            Entry("cap", data=b"c", xattrs={"user.note": "hello"}), Entry("hl", "hardlink", target="a/y"),
            Entry("null", "char", dev=(1, 3))],
        [Entry("a", "dir", mode=0o750), Entry("a/.wh..wh..opq"), Entry("a/z", data=b"z"),
         Entry(".wh.gone"), Entry("keep/new", data=b"n"), Entry("bin/added", data=os.urandom(70000))],
    ]
    layout = tmp_path / "layout"
    build.write_layout(layout, "t", layers, compression="gzip", Cmd=["/bin/sh", "-c", "true"],
                       Env=["A=b"], WorkingDir="/a", User="guest")
    store = Store(tmp_path / "store")
    build.put_image(store, "t:1", layers, Cmd=["/bin/sh", "-c", "true"], Env=["A=b"], WorkingDir="/a",
                    User="guest")
    ours = Image.open("t:1", store=store).bundle(tmp_path / "ours")
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:t", str(tmp_path / "umoci")], check=True,
                   capture_output=True)
    a, b = tree(ours / "rootfs"), tree(tmp_path / "umoci" / "rootfs")
    assert sorted(a) == sorted(b)
    diffs = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert diffs == {}
    cfg = json.loads((ours / "config.json").read_text())
    assert cfg["process"]["args"] == ["/bin/sh", "-c", "true"]
    assert cfg["process"]["cwd"] == "/a" and "A=b" in cfg["process"]["env"]
    assert cfg["process"]["user"] == {"uid": 1000, "gid": 1000}
    assert cfg["root"] == {"path": "rootfs", "readonly": False}
