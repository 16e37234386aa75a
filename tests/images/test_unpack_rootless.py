"""Unpacking without root: owners dropped, modes kept, user.* xattrs and user.overlay.opaque
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
