"""A user's own image store without root: with /etc/subuid and /etc/subgid ranges the
layers keep their owners, shifted into the user's subordinate ids (as rootless podman's),
a container of the image sees the image's owners, and rmi + prune remove it all; without
ranges the owners are dropped and the image still runs.

Each test runs the real thing as the ordinary users tests/rootless.py makes (the session's
``rootless``, with ranges; ``no_ranges``, without) and checks the store from outside, as root.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import build
from registry import Registry, push

pytestmark = [pytest.mark.root, pytest.mark.userns]

def image_layers() -> list[list[build.Entry]]:
    """The test image: files of uid/gid 1000 (a 0750 home, a 0555 directory), a setuid-root
    binary, a device node, then a layer with an opaque directory, a whiteout and a file in
    the 0555 directory without an entry for it (which keeps its lower owner and mode)."""
    from build import Entry

    l1 = build.busybox_entries() + [
        Entry("home", "dir"), Entry("home/guest", "dir", uid=1000, gid=1000, mode=0o750),
        Entry("home/guest/f", data=b"x", uid=1000, gid=1000, mode=0o640),
        Entry("ro", "dir", uid=1000, gid=1000, mode=0o555),
        Entry("ro/inside", data=b"i", uid=1000, gid=1000, mode=0o600),
        Entry("bin/suid", data=b"s", uid=0, gid=0, mode=0o4755),
        Entry("dev", "dir"), Entry("dev/null0", "char", dev=(1, 3)),
        Entry("a", "dir"), Entry("a/lower", data=b"l"), Entry("gone", data=b"g")]
    l2 = [Entry("a", "dir"), Entry("a/.wh..wh..opq"),
          Entry("a/upper", data=b"u", uid=1000, gid=1000), Entry(".wh.gone"),
          Entry("ro/added", data=b"a", uid=1000, gid=1000)]
    return [l1, l2]


# Put by the user into its own store (default root: ~/.local/share/isolate/images).
PUT = """
import json, pickle, sys
sys.path.insert(0, sys.argv[1])
import build
from isolate.images import Store
store = Store()
with open(sys.argv[3], "rb") as f:
    layers = pickle.load(f)
build.put_image(store, "t:1", layers, Cmd=["/bin/sh", "-c", sys.argv[2]])
print(json.dumps(str(store.root)))
"""
# A dead shifted unpack in tmp/ (a 0555 directory of uid 1000 inside) and the marker of a
# layer that is gone, then another image's first unpack.
DEAD = """
import os, sys
sys.path.insert(0, os.path.expanduser("~/helpers"))
import build
from build import Entry
from isolate.images import Image, Store
from isolate.images.unpack import shift_maps, unpack_layer
store = Store()
tar = build.layer_tar([Entry("ro", "dir", uid=1000, gid=1000, mode=0o555),
                       Entry("ro/f", data=b"x", uid=1000, gid=1000, mode=0o600)])
(store.root / "blob").write_bytes(build.compress(tar, "gzip"))
unpack_layer(store.root / "blob", store.root / "tmp/unpack-dead", diff_id=build.digest(tar),
             compression="gzip", id_maps=shift_maps())
os.unlink(store.root / "blob")
assert os.listdir(store.root / "tmp") == ["unpack-dead"]
(store.root / "layers/sha256" / ("f" * 64 + ".ids")).write_text("uid 0 1 1")   # its layer gone
build.put_image(store, "t:2", [[Entry("x", data=b"1")]])
Image.open("t:2").layers()
"""
SHOW = ("stat -c '%u:%g %a %n' /home/guest/f /ro/inside /bin/suid /a/upper /a/. /ro/.; ls /a; "
        "test -e /gone || echo nogone; test -e /dev/null0 && echo dev; id -u")


@pytest.fixture(scope="module")
def no_ranges() -> Iterator[Any]:
    """A second user, without /etc/subuid and /etc/subgid ranges."""
    from rootless import rootless_user

    with rootless_user("isoti", subids=False) as user:
        yield user


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def _helpers(user: Any) -> Path:
    """build.py (and the test image's layers) where the user can read them."""
    helpers = user.home / "helpers"
    if not helpers.is_dir():
        helpers.mkdir()
        shutil.copy(build.__file__, helpers / "build.py")
        (helpers / "layers.pickle").write_bytes(pickle.dumps(image_layers()))
        os.chown(helpers, user.uid, user.gid)
    return helpers


def _put(user: Any) -> Path:
    """The test image in ``user``'s own store as ``t:1``; the store's root."""
    helpers = _helpers(user)
    return Path(json.loads(_ok(user.run([user.python, "-c", PUT, str(helpers), SHOW,
                                         str(helpers / "layers.pickle")]))))


def _forget(user: Any, store: Path, ref: str = "t:1") -> None:
    """``isolate rmi`` and ``isolate image prune`` as the user: nothing of the layers stays."""
    _ok(user.run(["isolate", "rmi", ref]))
    _ok(user.run(["isolate", "image", "prune"]))
    left = [p for d in ("layers/sha256", "tmp") for p in (store / d).iterdir()]
    assert left == [], left
    assert list((store / "blobs" / "sha256").iterdir()) == []


@pytest.fixture(scope="module")
def pushed(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test image in the session's registry; its reference."""
    layout = tmp_path_factory.mktemp("rootless-layout")
    build.write_layout(layout, "shifted", image_layers(), Cmd=["/bin/sh", "-c", SHOW])
    push(registry.url, "rootless/shifted", layout, "shifted", as_tag="1")
    return f"{registry.host}/rootless/shifted:1"


def test_shifted_owners_on_the_host_and_in_the_container(rootless: Any, pushed: str) -> None:
    store = rootless.home / ".local/share/isolate/images"
    _helpers(rootless)
    try:
        # isolate pull unpacks each layer as it arrives (in a thread of its own).
        r = rootless.run(["isolate", "pull", "--quiet", pushed])
        _ok(r)
        assert "device node" in r.stderr, r.stderr    # skipped, with a warning, not an error
        assert len([p for p in (store / "layers/sha256").iterdir() if p.is_dir()]) == 2
        out = _ok(rootless.run(["isolate", "run", "--image", pushed]))
        lines = out.splitlines()
        # Inside: the image's owners, root's setuid binary, whiteout and opaque dir applied.
        # /ro, which layer 2 implies, keeps layer 1's owner and mode (a metadata layer
        # made in the user namespace of the user's ids: owners shifted there too).
        assert lines[:6] == ["1000:1000 640 /home/guest/f", "1000:1000 600 /ro/inside",
                             "0:0 4755 /bin/suid", "1000:1000 644 /a/upper", "0:0 755 /a/.",
                             "1000:1000 555 /ro/."]
        assert lines[6:] == ["upper", "nogone", "0"]

        # On the host: shifted into the user's ranges (0 is the user itself).
        (su, _), (sg, _) = rootless.subuid[0], rootless.subgid[0]
        info = json.loads(_ok(rootless.python_run(
            f"import json; from isolate.images import Image; i = Image.open({pushed!r}); "
            "print(json.dumps([str(p) for p in i.layer_paths()]))")))
        low, up = (Path(p) for p in info)
        for path, owner in ((low / "home/guest/f", (su + 999, sg + 999)),
                            (low / "ro/inside", (su + 999, sg + 999)),
                            (low / "bin/suid", (rootless.uid, rootless.gid)),
                            (up / "a/upper", (su + 999, sg + 999)),
                            (low, (rootless.uid, rootless.gid))):
            st = os.lstat(path)
            assert (st.st_uid, st.st_gid) == owner, path
        assert stat.S_IMODE(os.lstat(low / "bin/suid").st_mode) == 0o4755
        assert not os.path.lexists(low / "dev/null0")
        wh = os.lstat(up / "gone")
        assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
        assert os.getxattr(up / "a", "user.overlay.opaque") == b"y"
        assert "trusted.overlay.opaque" not in os.listxattr(up / "a")
        for layer in (low, up):
            marker = layer.with_suffix(".ids").read_text()
            assert f"uid 1 {su} " in marker and f"gid 1 {sg} " in marker

        # Ranges that changed since the unpack (here: the marker says so) would show the
        # files as nobody: the run stops with one line saying why.
        marker = up.with_suffix(".ids")
        was = marker.read_text()
        marker.write_text(was.replace(f"uid 1 {su} ", f"uid 1 {su + 1} "))
        r = rootless.run(["isolate", "run", "--image", pushed])
        marker.write_text(was)
        assert r.returncode != 0 and r.stdout == "", r
        assert len(r.stderr.splitlines()) == 1 and "other subordinate ids" in r.stderr, r.stderr

        # The user alone may not remove them (podman needs 'podman unshare rm').
        r = rootless.run(["rm", "-rf", str(low / "ro")])
        assert r.returncode != 0 and (low / "ro/inside").exists()

        # A bundle of it: the same shifted owners, and config.json maps the same ids, so
        # isolate-oci as the user shows the image's owners too.
        bundle = rootless.home / "bundle"
        _ok(rootless.run(["isolate", "image", "bundle", pushed, str(bundle)]))
        st = os.lstat(bundle / "rootfs/ro/inside")
        assert (st.st_uid, st.st_gid) == (su + 999, sg + 999)
        linux = json.loads((bundle / "config.json").read_text())["linux"]
        assert linux["uidMappings"][1] == {"containerID": 1, "hostID": su,
                                           "size": rootless.subuid[0][1]}
        r = rootless.run(["isolate-oci", "run", "--bundle", str(bundle), "shifted-bundle"])
        # runc's default capabilities lack CAP_DAC_OVERRIDE: root inside may not enter
        # the 0750 home of uid 1000, which shows that it belongs to 1000 there too.
        assert r.stdout.splitlines() == lines[1:], (r.stdout, r.stderr)
        assert "/home/guest/f': Permission denied" in r.stderr
        _ok(rootless.python_run(f"from isolate.images.unpack import remove_tree; "
                                f"remove_tree({str(bundle)!r})"))
        assert not bundle.exists()

        # An unpack killed before its rename leaves such a tree in tmp/: the next unpack
        # of the store clears it.
        _ok(rootless.python_run(DEAD, cwd=store))
        assert [p.name for p in (store / "tmp").iterdir()] == []
        assert not (store / "layers/sha256" / ("f" * 64 + ".ids")).exists()
        assert Path(store, "layers/sha256", json.loads(_ok(rootless.python_run(
            "import json; from isolate.images import Image; "
            "print(json.dumps(Image.open('t:2').config.diff_ids[0][7:]))")))).is_dir()
    finally:
        rootless.run(["isolate", "rmi", "t:2"])
        _forget(rootless, store, pushed)


def test_library_errors_keep_their_type_and_message(rootless: Any) -> None:
    # A layer whose diff_id is wrong, unpacked in the user namespace of subordinate ids:
    # the caller gets DigestError with the child's message, and nothing stays; an owner
    # outside the ranges is an ImageError naming the entry.
    out = _ok(rootless.python_run(r"""
import gzip, io, json, os, tarfile, tempfile
from isolate.images.unpack import shift_maps, unpack_layer
from isolate.errors import DigestError, ImageError
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tf:
    t = tarfile.TarInfo("f"); t.uid = 7; t.size = 1
    tf.addfile(t, io.BytesIO(b"x"))
d = tempfile.mkdtemp()
blob = os.path.join(d, "blob")
with open(blob, "wb") as f:
    f.write(gzip.compress(buf.getvalue()))
maps = shift_maps()
out = []
def first():     # from a thread, as a pull unpacks while it downloads
    try:
        unpack_layer(blob, d + "/l", diff_id="sha256:" + "0" * 64, compression="gzip", id_maps=maps)
    except DigestError as e:
        out.append(["DigestError", str(e), e.expected, os.path.exists(d + "/l")])
import threading
t = threading.Thread(target=first)
t.start()
t.join()
buf2 = io.BytesIO()
with tarfile.open(fileobj=buf2, mode="w") as tf:
    t = tarfile.TarInfo("far"); t.uid = 900000; t.size = 1
    tf.addfile(t, io.BytesIO(b"y"))
with open(blob, "wb") as f:
    f.write(gzip.compress(buf2.getvalue()))
import hashlib
try:
    unpack_layer(blob, d + "/l", diff_id="sha256:" + hashlib.sha256(buf2.getvalue()).hexdigest(),
                 compression="gzip", id_maps=maps, name="L")
except ImageError as e:
    out.append([type(e).__name__, str(e), os.path.exists(d + "/l")])
import shutil
shutil.rmtree(d)
print(json.dumps(out))
"""))
    (d_kind, d_msg, d_expected, d_left), (i_kind, i_msg, i_left) = json.loads(out)
    assert d_kind == "DigestError" and d_expected == "sha256:" + "0" * 64 and not d_left
    assert "hashes to sha256:" in d_msg and "\n" not in d_msg
    assert i_kind == "ImageError" and not i_left
    assert i_msg.startswith("layer L: 'far' belongs to uid 900000"), i_msg


def test_without_ranges_owners_are_dropped(no_ranges: Any) -> None:
    store = _put(no_ranges)
    try:
        out = _ok(no_ranges.run(["isolate", "run", "--image", "t:1"]))
        lines = out.splitlines()
        assert lines[:6] == ["0:0 640 /home/guest/f", "0:0 600 /ro/inside", "0:0 4755 /bin/suid",
                             "0:0 644 /a/upper", "0:0 755 /a/.", "0:0 555 /ro/."]
        assert lines[6:] == ["upper", "nogone", "0"]
        # The two layers and layer 2's metadata layer (/ro); no .ids marker.
        names = sorted(p.name for p in (store / "layers" / "sha256").iterdir())
        layers = [store / "layers" / "sha256" / n for n in names if "." not in n]
        assert len(layers) == 3 and all(p.is_dir() for p in layers)
        assert [n.split(".")[1] for n in names if "." in n] == ["implied"]
        for p in layers:
            for f in p.rglob("*"):
                assert os.lstat(f).st_uid == no_ranges.uid, f
    finally:
        _forget(no_ranges, store)
