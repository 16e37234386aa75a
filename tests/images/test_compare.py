"""The root filesystem isolate makes of an image, compared file by file with umoci's and podman's.

Images made by the tests (``build``: busybox-static, and ``rich_layers``: three
layers with whiteouts, an opaque directory, replaced files and directories,
hardlinks, xattrs, setuid bits, metadata-only changes) are pushed with
``skopeo copy`` to the session's registry, then made into a tree three ways:

- isolate: ``pull`` into a store of the test's, then ``Image.bundle`` (the
  layers applied in order, as umoci does) and the live overlay a container
  runs on (``RootFS.from_image``), read from the host through
  ``/proc/<pid>/root`` while the container sleeps;
- ``skopeo copy docker://... oci:DIR:TAG`` and ``umoci unpack``;
- ``podman pull`` and ``podman image mount`` in a podman store of the test's
  own (``--root``, ``--runroot``, its own containers.conf, network and volume
  directories, HOME), unmounted and reset at the end: the host's podman
  storage is never used.

Compared per path: type, mode (setuid, setgid, sticky bits included), uid,
gid, size, sha256 of the content, symlink target, device number, xattrs
(overlay's own ``trusted.overlay.*`` / ``user.overlay.*`` and
``security.selinux`` left out), mtime, and the hardlink group (the paths of
the tree that are the same inode).  isolate must equal umoci and podman in
every field on which those two agree; where they differ among themselves the
field is not compared, and the test checks that they differ only there:

- the root directory itself: no layer has a ``./`` entry, so its mode and
  mtime are each tool's own (umoci 0755 at the epoch, podman's image mount
  0555 at the time the layer was made);
- the mtime of a directory a later layer changed without an entry for it
  (a whiteout or a new name in it): umoci's directory is modified at unpack
  time, overlay shows the top layer's directory as the layer had it.

Link counts are not compared (overlay shows a lower layer's count, which
counts links that a later layer replaced); the hardlink group is.  The live
overlay is read from the host, through the container's id block: its owners
are shifted back (``Container.id_block``).

umoci 0.4.7 unpacks no zstd layer, so its copy of a zstd image is recompressed
to gzip by skopeo (the same tars); podman 4.3 and isolate pull the zstd layers.
Where the tools part ways on what a layer means, a test of its own says who does
what: a hardlink to a file of a lower layer, a hardlink entry whose metadata is
not its target's, a directory a layer implies without an entry of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Collection, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

import build
from isolate import Container, RootFS
from isolate.errors import ImageError
from isolate.images import Image, Store
from isolate.images import pull
from registry import Registry
from tools import PrivatePodman, need, private_cache, run_tool, tool_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="umoci and podman unpack owners as root")

#: xattrs that belong to the filesystem the tree is on, not to the image.
IGNORED_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")


@dataclass(frozen=True)
class Entry:
    """One path of a tree, as compared."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    sha256: str
    target: str
    rdev: int
    xattrs: tuple[tuple[str, bytes], ...]
    mtime: int
    links: tuple[str, ...]      # the paths of the tree that are this inode (non-directories)


FIELDS = tuple(f.name for f in fields(Entry))
_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
          stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFSOCK: "socket"}


def _xattrs(path: str, root_uid: int) -> tuple[tuple[str, bytes], ...]:
    out = []
    for name in os.listxattr(path, follow_symlinks=False):
        if name.startswith(IGNORED_XATTRS):
            continue
        value = os.getxattr(path, name, follow_symlinks=False)
        if (name == "security.capability" and root_uid and value[:4] == b"\x01\x00\x00\x03"
                and int.from_bytes(value[20:24], "little") == root_uid):
            # Read from outside a container's user namespace (through its idmapped layers)
            # the kernel shows the image's v2 file capability as a v3 one whose rootid is
            # the namespace's root; inside, it reads as the v2 the layer has.
            value = b"\x01\x00\x00\x02" + value[4:20]
        out.append((name, value))
    return tuple(sorted(out))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree(root: str | os.PathLike[str], *, ids: tuple[int, int] = (0, 0)) -> dict[str, Entry]:
    """Every path under ``root`` (``"."`` for ``root`` itself), nothing followed and
    nothing written: what ``Entry`` holds.  Directories on another filesystem than
    ``root`` (mount points) are listed but not entered.  ``ids``: the host (uid, gid)
    of the tree's id 0 (a container's id block, seen from the host), subtracted."""
    top = os.path.join(os.fspath(root), "")     # /proc/PID/root/: the directory, not the link
    raw: dict[str, tuple[os.stat_result, str]] = {}
    root_dev = os.lstat(top).st_dev

    def walk(path: str, rel: str) -> None:
        st = os.lstat(path)
        raw[rel] = (st, path)
        if stat.S_ISDIR(st.st_mode) and (rel == "." or st.st_dev == root_dev):
            for name in sorted(os.listdir(path)):
                walk(os.path.join(path, name), name if rel == "." else f"{rel}/{name}")

    walk(top, ".")
    inodes: dict[tuple[int, int], list[str]] = {}
    for rel, (st, _) in raw.items():
        if not stat.S_ISDIR(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    out = {}
    for rel, (st, path) in raw.items():
        mode = st.st_mode
        kind = _KINDS[stat.S_IFMT(mode)]
        out[rel] = Entry(
            kind=kind, mode=stat.S_IMODE(mode), uid=st.st_uid - ids[0], gid=st.st_gid - ids[1],
            size=st.st_size if kind in ("file", "symlink") else 0,
            sha256=_sha256(path) if kind == "file" else "",
            target=os.readlink(path) if kind == "symlink" else "",
            rdev=st.st_rdev if kind in ("char", "block") else 0,
            # A symlink's xattrs: only trusted.* and security.* can be set on one.
            xattrs=_xattrs(path, ids[0]), mtime=st.st_mtime_ns,
            links=tuple(sorted(inodes[(st.st_dev, st.st_ino)])) if kind != "dir" else ())
    return out


def _show(name: str, value: Any) -> str:
    if name == "mode":
        return oct(value)
    if name == "xattrs":
        return "{" + ", ".join(f"{k}={v!r}" for k, v in value) + "}"
    return repr(value)


def differences(a: dict[str, Entry], b: dict[str, Entry], *, names: tuple[str, str] = ("a", "b"),
                skip: Collection[tuple[str, str]] = ()) -> list[str]:
    """What differs between trees ``a`` and ``b``, one readable line per path and field,
    sorted by path; ``skip`` holds (path, field) pairs not compared."""
    na, nb = names
    out = []
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            out.append(f"{path}: only in {na} ({a[path].kind})")
        elif path not in a:
            out.append(f"{path}: only in {nb} ({b[path].kind})")
        else:
            for f in FIELDS:
                x, y = getattr(a[path], f), getattr(b[path], f)
                if x != y and (path, f) not in skip:
                    out.append(f"{path}: {f} {na}={_show(f, x)} {nb}={_show(f, y)}")
    return out


def report(lines: list[str], limit: int = 25) -> str:
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


# --- the images, pushed with skopeo -----------------------------------------------------

#: tag -> (layers, compression).  ``rich-zstd`` has other mtimes than ``rich`` (so other
#: layers: podman would otherwise reuse ``rich``'s, which it already has, by diff_id).
IMAGES: dict[str, tuple[Any, str]] = {
    "busybox": (lambda: [build.busybox_entries()], "gzip"),
    "rich": (lambda: build.rich_layers(), "gzip"),
    "rich-zstd": (lambda: build.rich_layers(mtime=1_500_000_000), "zstd"),
    "crosslink": (lambda: build.crosslink_layers(), "gzip"),
    "linkmeta": (lambda: build.linkmeta_layers(), "gzip"),
}


@pytest.fixture(scope="session")
def pushed(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every image of ``IMAGES`` written to an OCI layout and pushed by ``skopeo copy`` as
    ``127.0.0.1:PORT/compare/TAG:v1``; tag -> that reference."""
    skopeo = need("skopeo")
    base = tmp_path_factory.mktemp("compare-push")
    env = tool_env(base)
    layout = base / "layout"
    refs = {}
    for tag, (layers, compression) in IMAGES.items():
        build.write_layout(layout, tag, layers(), compression=compression, Cmd=["/bin/sh"])
        refs[tag] = f"{registry.host}/compare/{tag}:v1"
        run_tool(private_cache([skopeo, "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                         f"docker://{refs[tag]}"]), env)
    shutil.rmtree(base)
    return refs


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePodman]:
    p = PrivatePodman(tmp_path_factory.mktemp("compare-podman"))
    try:
        yield p
    finally:
        p.close()


class Trees:
    """Each tool's tree of each pushed image, made once per session."""

    def __init__(self, refs: dict[str, str], podman: Podman, work: Path) -> None:
        self.refs = refs
        self.podman = podman
        self.work = work
        self.env = tool_env(work)
        self.store = Store(work / "store")
        self.cache: dict[tuple[str, str], dict[str, Entry]] = {}

    def get(self, tool: str, tag: str) -> dict[str, Entry]:
        key = (tool, tag)
        if key not in self.cache:
            self.cache[key] = getattr(self, tool.replace("-", "_"))(tag)
        return self.cache[key]

    def isolate_image(self, tag: str) -> Image:
        ref = self.refs[tag]
        if ref not in [str(x) for x in self.store.refs()]:
            pull(ref, store=self.store, progress=False)
        return Image.open(ref, store=self.store)

    def bundle(self, tag: str) -> dict[str, Entry]:
        return tree(self.isolate_image(tag).bundle(self.work / f"bundle-{tag}") / "rootfs")

    def overlay(self, tag: str) -> dict[str, Entry]:
        rootfs = RootFS.from_image(self.isolate_image(tag), readonly=True, proc=False, sys=False,
                                   dev=False, oci_masks=False)
        with Container(rootfs=rootfs) as c:
            c.start(["/bin/sleep", "60"])
            try:
                return tree(f"/proc/{c.pid}/root", ids=c.id_block or (0, 0))
            finally:
                c.kill()
                c.wait(timeout=10)

    def umoci(self, tag: str) -> dict[str, Entry]:
        oci, bundle = self.work / f"oci-{tag}", self.work / f"umoci-{tag}"
        # umoci 0.4.7 unpacks no zstd layer ("blob is not correct mediatype"): skopeo
        # recompresses those as gzip on the way (the same tars, the same diff_ids).
        recompress = ["--dest-compress-format", "gzip"] if IMAGES[tag][1] == "zstd" else []
        run_tool(private_cache([need("skopeo"), "copy", "-q", "--src-tls-verify=false", *recompress,
                         f"docker://{self.refs[tag]}", f"oci:{oci}:{tag}"]), self.env)
        run_tool([need("umoci"), "unpack", "--image", f"{oci}:{tag}", str(bundle)], self.env)
        return tree(bundle / "rootfs")

    def podman_mount(self, tag: str) -> dict[str, Entry]:
        return tree(self.podman.mount(self.refs[tag]))


@pytest.fixture(scope="session")
def trees(pushed: dict[str, str], podman: Podman,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trees]:
    work = tmp_path_factory.mktemp("compare-trees")
    yield Trees(pushed, podman, work)
    shutil.rmtree(work, ignore_errors=True)



def disagreements(a: dict[str, Entry], b: dict[str, Entry]) -> set[tuple[str, str]]:
    """The (path, field) pairs on which trees ``a`` and ``b`` differ (paths in both)."""
    return {(p, f) for p in a.keys() & b.keys() for f in FIELDS
            if getattr(a[p], f) != getattr(b[p], f)}


#: Where umoci and podman differ among themselves, per image (see the module's docstring).
#: ``home`` is a directory of layer 1 that layer 2 adds a file to without an entry of its
#: own; ``implied`` and ``implied/deep`` are new directories no layer has an entry for.
ROOT_ONLY = {(".", "mode"), (".", "mtime")}
TOOLS_DIFFER = {
    "busybox": ROOT_ONLY,
    "rich": ROOT_ONLY | {("home", "mode"), ("home", "uid"), ("home", "gid"), ("home", "mtime"),
                         ("implied", "mtime"), ("implied/deep", "mtime")},
}
TOOLS_DIFFER["rich-zstd"] = TOOLS_DIFFER["rich"]


@pytest.mark.parametrize("tag", ["busybox", "rich", "rich-zstd"])
def test_isolate_trees_match_umoci_and_podman(trees: Trees, tag: str) -> None:
    umoci, podman = trees.get("umoci", tag), trees.get("podman-mount", tag)
    assert sorted(umoci) == sorted(podman), report(differences(umoci, podman,
                                                               names=("umoci", "podman")))
    # umoci and podman agree on all but these: the rest is the reference isolate must meet.
    skip = disagreements(umoci, podman)
    assert skip == TOOLS_DIFFER[tag], report(differences(umoci, podman, names=("umoci", "podman")))
    for view in ("bundle", "overlay"):
        ours = trees.get(view, tag)
        assert differences(ours, umoci, names=(view, "umoci/podman"), skip=skip) == [], \
            report(differences(ours, umoci, names=(view, "umoci/podman"), skip=skip))
    if tag == "rich-zstd":
        image = trees.isolate_image(tag)
        assert {image.manifest.compression(i) for i in range(3)} == {"zstd"}
    if tag.startswith("rich"):
        # What the comparison covered (the trees agree on all of it).
        t = trees.get("overlay", tag)
        assert t["srv/suid"].mode == 0o6750 and t["srv/suid"].uid == 1000
        assert t["srv/sgid"].mode == 0o2755 and t["srv/shared"].mode == 0o1777
        assert dict(t["srv/capped"].xattrs) == {"security.capability": build.NET_BIND_CAP.encode(),
                                                "user.why": b"bind port 80"}
        assert dict(t["srv/xattr"].xattrs) == {"user.note": b"changed"}
        assert t["srv/hl-a"].links == ("srv/hl-a", "srv/hl-b") and t["srv/hl-m"].links == ("srv/hl-m",)
        assert t["srv/fifo"].kind == "fifo" and t["srv/abs"].target == "/srv/plain"
        assert t["d2f"].kind == "file" and t["f2d"].kind == "dir"
        assert sorted(p for p in t if p.startswith(("opq/", "olddir/", "srv/tool"))) == [
            "olddir/back", "opq/new", "opq/sub", "srv/tool"]
        assert (t["srv/plain"].mode, t["srv/plain"].uid) == (0o600, 1000)
        assert (t["srv/private"].mode, t["srv/private"].uid) == (0o750, 65534)


def test_a_directory_a_later_layer_implies_keeps_the_lower_metadata(trees: Trees) -> None:
    # Layer 1 has home/ (0750, 1000:1000); layer 2 has home/.profile but no home/ entry.
    want = trees.get("umoci", "rich")["home"]
    assert (want.mode, want.uid, want.gid) == (0o750, 1000, 1000)
    wrong = {view: trees.get(view, "rich")["home"] for view in ("bundle", "overlay")}
    assert {v: (e.mode, e.uid, e.gid, e.mtime) for v, e in wrong.items()} == {
        v: (want.mode, want.uid, want.gid, want.mtime) for v in wrong}


def test_cross_layer_hardlink_is_refused_as_podman_does(trees: Trees, podman: Podman,
                                                        pushed: dict[str, str]) -> None:
    """Layer 2's ``data-link`` is a hardlink to layer 1's ``data``.  The OCI layer spec
    lets an unpacker refuse it ("Extracting a layer with hardlink references to files
    outside of the layer may fail"): podman (containers/storage, one directory per
    layer) refuses the image, and so does isolate, whose layers are unpacked one by one
    too (and shared by images whose lower layers differ); umoci, which applies the
    layers to one tree, makes the link."""
    ref = pushed["crosslink"]
    with pytest.raises(ImageError, match=r"hardlink 'data-link' -> 'data': its target is not an "
                                         r"entry of the layer"):
        pull(ref, store=trees.store, progress=False)
    assert ref not in trees.store.refs()
    assert os.listdir(trees.store.root / "tmp") == []
    with pytest.raises(AssertionError, match=r"processing tar file\(no such file or directory\)"):
        podman("pull", "-q", "--tls-verify=false", ref)
    assert trees.get("umoci", "crosslink")["data-link"].links == ("data", "data-link")


def test_a_hardlink_entry_s_own_metadata_is_ignored_as_umoci_does(trees: Trees) -> None:
    """A hardlink entry is a name for its target's inode: isolate keeps the target's
    owner, mode and mtime, as umoci (and GNU tar) do.  podman (containers/storage) applies
    the link entry's own mode, uid, gid and mtime to the shared inode instead."""
    umoci = trees.get("umoci", "linkmeta")
    a = umoci["a"]
    assert (a.mode, a.uid, a.gid, a.mtime, a.links) == (0o600, 1000, 1000, 1_600_000_000 * 10**9,
                                                         ("a", "b"))
    for view in ("bundle", "overlay"):
        t = trees.get(view, "linkmeta")
        assert (t["a"], t["b"]) == (umoci["a"], umoci["b"]), view
    podman = trees.get("podman-mount", "linkmeta")
    assert (podman["a"].mode, podman["a"].uid, podman["a"].mtime) == (0o755, 0, 1_650_000_000 * 10**9)
