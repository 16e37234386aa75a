"""Unpacking without root and without subordinate ids (``nobody`` has no /etc/subuid
range; test_rootless_store.py has a user with ranges): owners dropped, modes kept, user.* xattrs and user.overlay.opaque
only, device nodes skipped with a warning; and such a layer still runs in a container."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

import build
from build import Entry

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="drops to nobody from root"),
              pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")]
NOBODY = 65534
SCRIPT = """
import json, sys, warnings
from isolate.images import unpack_layer
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    unpack_layer(sys.argv[1], sys.argv[2], diff_id=sys.argv[3], compression="zstd")
print(json.dumps([str(x.message) for x in w]))
"""


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="isolate-test-rootless-"))
    os.chmod(d, 0o755)
    os.chown(d, NOBODY, NOBODY)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_unpack_as_nobody(nobody_dir: Path) -> None:
    tar = build.layer_tar([
        Entry("f", data=b"f", uid=0, gid=0, mode=0o4755, xattrs={"user.k": "v", "trusted.t": "x"}),
        Entry("ro", "dir", mode=0o555), Entry("ro/inside", data=b"i"),
        Entry("null", "char", dev=(1, 3)),
        Entry("a", "dir"), Entry("a/.wh..wh..opq"), Entry(".wh.gone")])
    blob = nobody_dir / "blob"
    blob.write_bytes(build.compress(tar, "zstd"))
    out = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          sys.executable, "-c", SCRIPT, str(blob), str(nobody_dir / "layer"),
                          build.digest(tar)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    warned = json.loads(out.stdout)
    assert len(warned) == 1 and "device node" in warned[0] and "null" in warned[0]
    layer = nobody_dir / "layer"
    st = os.stat(layer / "f")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert os.listxattr(layer / "f") == ["user.k"]
    assert stat.S_IMODE(os.stat(layer / "ro").st_mode) == 0o555
    assert (layer / "ro/inside").read_bytes() == b"i"
    assert not (layer / "null").exists()
    assert os.getxattr(layer / "a", "user.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(layer / "a")
    assert os.lstat(layer / "gone").st_rdev == 0 and stat.S_ISCHR(os.lstat(layer / "gone").st_mode)


RUN = """
import sys
sys.path.insert(0, sys.argv[2])
import build
from build import Entry
from isolate.images import Store
from isolate import Container, RootFS
store = Store(sys.argv[1] + "/store")
l1 = build.busybox_entries() + [Entry("a", "dir"), Entry("a/lower", data=b"l"), Entry("gone", data=b"g")]
l2 = [Entry("a", "dir"), Entry("a/.wh..wh..opq"), Entry("a/upper", data=b"u"), Entry(".wh.gone")]
build.put_image(store, "t:1", [l1, l2],
                Cmd=["/bin/sh", "-c", "ls /a; test -e /gone || echo nogone; echo w > /a/new; cat /a/new"])
with Container(rootfs=RootFS.from_image("t:1", store=store)) as c:
    r = c.run(timeout=20)
sys.stdout.buffer.write(r.stdout)
sys.exit(r.returncode)
"""


def test_container_from_an_image_without_root(nobody_dir: Path) -> None:
    # A user's own store: layers unpacked as that user (user.overlay.opaque), mounted in
    # its user namespace with userxattr.
    out = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          sys.executable, "-c", RUN, str(nobody_dir), os.path.dirname(build.__file__)],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "upper\nnogone\nw\n"), out.stderr
