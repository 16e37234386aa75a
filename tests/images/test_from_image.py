"""Containers on RootFS.from_image: layers stacked as overlay lowers, the image config applied,
layers shared between containers, kept by prune while in use."""

from __future__ import annotations

import os
import subprocess

import pytest

import build
from build import Entry
from isolate import Container, RootFS
from isolate.errors import ImageError
from isolate.images import Image, Store, prune, remove

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers as root")


def base_layers() -> list[list[Entry]]:
    l1 = build.busybox_entries() + [
        Entry("a", "dir"), Entry("a/lower", data=b"l"), Entry("gone", data=b"g"),
        Entry("home", "dir"), Entry("home/guest", "dir", uid=1000, gid=1000),
        Entry("link", "symlink", target="/etc"),
        Entry("suid", data=b"s", mode=0o4755)]
    l2 = [Entry("a", "dir"), Entry("a/.wh..wh..opq"), Entry("a/upper", data=b"u"), Entry(".wh.gone"),
          Entry("link/through", data=b"t")]
    return [l1, l2]


def test_whiteouts_opaque_and_config(store: Store) -> None:
    build.put_image(store, "t:1", base_layers(), Entrypoint=["/bin/sh", "-c"],
                    Cmd=["echo $FOO; pwd; id -un; ls /a; test -e /gone || echo nogone"],
                    Env=["FOO=bar", "PATH=/bin"], WorkingDir="/work", User="guest")
    with Container(rootfs=RootFS.from_image("t:1", store=store)) as c:
        r = c.run(timeout=20)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split() == ["bar", "/work", "guest", "upper", "nogone"]
        # Arguments replace Cmd; the Entrypoint stays.
        # A later layer's entry below an earlier layer's symlink: overlay shows the later
        # layer's directory there (the symlink is not followed at unpack time).
        r = c.run(["cat /link/through; echo; ls -l /suid | cut -c1-10; test -f /etc/through || echo no"],
                  timeout=20)
        assert r.stdout.decode().split() == ["t", "-rwsr-xr-x", "no"]
    # Explicit options override the image.
    with Container(rootfs=RootFS.from_image("t:1", store=store), env={"FOO": "mine"}, user=0,
                   cwd="/a") as c:
        r = c.run(["echo $FOO $PATH; pwd; id -u"], timeout=20)
        assert r.stdout.decode().split() == ["mine", "/bin", "/a", "0"]


def test_layers_shared_not_copied(store: Store) -> None:
    build.put_image(store, "t:1", base_layers(), Cmd=["/bin/sh"])
    r1, r2 = RootFS.from_image("t:1", store=store), RootFS.from_image("t:1", store=store)
    assert r1.spec.layers == r2.spec.layers
    inodes = []
    for r in (r1, r2):
        with Container(rootfs=r, userns="identity") as c:
            out = c.run(["/bin/stat", "-c", "%i", "/bin/busybox"], timeout=20).stdout
            inodes.append(int(out))
    # Overlay shows a lower file's own inode (same fs: xino keeps it): one file on disk.
    host = os.stat(r1.spec.layers[0] / "bin/busybox").st_ino
    assert inodes == [host, host]


def test_writes_go_to_the_container_layer(store: Store) -> None:
    build.put_image(store, "t:1", base_layers(), Cmd=["/bin/sh"])
    r = RootFS.from_image("t:1", store=store)
    with Container(rootfs=r) as c:
        res = c.run(["/bin/sh", "-c", "echo new > /a/upper && rm /suid && cat /a/upper"], timeout=20)
        assert res.stdout == b"new\n", res.stderr
    assert (r.spec.layers[1] / "a/upper").read_bytes() == b"u"
    assert (r.spec.layers[0] / "suid").exists()


def test_prune_keeps_layers_in_use(store: Store) -> None:
    build.put_image(store, "t:1", base_layers(), Cmd=["/bin/sh"])
    r = RootFS.from_image("t:1", store=store)
    layers = r.spec.layers
    with Container(rootfs=r) as c:
        c.start(["/bin/sleep", "30"])
        remove(store, "t:1")
        p = prune(store)
        assert set(p.in_use) == {"sha256:" + x.name for x in layers}
        assert all(x.is_dir() for x in layers)
        assert store.blobs() == []
        c.kill()
        c.wait()
    # Closed: its hold is released.
    p = prune(store)
    assert set(p.layers) == {"sha256:" + x.name for x in layers}
    assert not any(x.exists() for x in layers)
    assert store.layers() == []


def test_open_by_digest_and_errors(store: Store) -> None:
    digest = build.put_image(store, "t:1", [[Entry("f", data=b"f")]])
    assert Image.open(digest, store=store).digest == digest
    assert Image.open(digest[7:15], store=store).digest == digest
    assert Image.open("docker.io/library/t:1", store=store).name == "docker.io/library/t:1"
    with pytest.raises(ImageError, match=r"^nope: not in the store \(isolate pull nope\)$"):
        Image.open("nope", store=store)


def test_bad_layer_digest_keeps_nothing(store: Store) -> None:
    tar = build.layer_tar([Entry("f", data=b"f")])
    blob = build.compress(tar, "gzip")
    import json

    cfg = json.dumps(build.image_config(["sha256:" + "1" * 64])).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": build.OCI_MANIFEST,
                      "config": {"mediaType": build.OCI_CONFIG, "digest": store.put(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": build.OCI_LAYER["gzip"], "digest": store.put(blob),
                                  "size": len(blob)}]}).encode()
    store.set_ref("docker.io/library/bad:1", store.put(man))
    from isolate.errors import DigestError

    with pytest.raises(DigestError):
        RootFS.from_image("bad:1", store=store)
    assert store.layers() == [] and os.listdir(store.root / "tmp") == []


def test_concurrent_unpack_once(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    build.put_image(store, "t:1", [[Entry("f", data=os.urandom(1 << 20))]])
    code = ("import sys; from isolate.images import Image, Store; "
            "print(Image.open('t:1', store=Store(sys.argv[1])).layers()[0].stat().st_ino)")
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.root)], stdout=subprocess.PIPE)
             for _ in range(3)]
    outs = {p.communicate(timeout=30)[0] for p in procs}
    assert len(outs) == 1 and all(p.returncode == 0 for p in procs)


def test_start_after_a_prune_removed_the_layers(store: Store) -> None:
    build.put_image(store, "t:1", base_layers(), Cmd=["/bin/sh"])
    r = RootFS.from_image("t:1", store=store)
    remove(store, "t:1")
    prune(store)       # nothing runs on the layers yet: they go
    with Container(rootfs=r) as c:
        with pytest.raises(ImageError, match="no longer in the store"):
            c.start(["/bin/true"])
    assert store.layers_in_use() == set()


def test_many_layers_long_paths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # 60 layers under a 200-byte store path: ~13 KB of lower paths, past one page of mount
    # options (what a single "lowerdir=" string may hold).
    deep = tmp_path / ("d" * 100) / ("e" * 90)
    store = Store(deep)
    layers = [build.busybox_entries()] + [[Entry(f"l{i}", data=str(i).encode()),
                                           Entry(".wh.l%d" % (i - 1))] for i in range(1, 60)]
    build.put_image(store, "many:1", layers, Cmd=["/bin/sh", "-c", "ls / | grep '^l'; cat /l59"])
    r = RootFS.from_image("many:1", store=store)
    assert len(r.spec.layers) == 60
    with Container(rootfs=r) as c:
        res = c.run(timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"l59\n59"


def test_layers_at_short_names_where_the_kernel_has_no_lowerdir_plus(
        tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Before Linux 6.8 the lower layers are one "lowerdir" string of at most 256 bytes: each
    # layer is bound at a short name first (20 layers of 200-byte paths would be ~4 KB).
    from isolate import _planner_root

    monkeypatch.setattr(_planner_root, "_lowerdir_plus", lambda: False)
    store = Store(tmp_path / ("d" * 100) / ("e" * 90))
    layers = [build.busybox_entries()] + [[Entry(f"l{i}", data=str(i).encode()),
                                           Entry(".wh.l%d" % (i - 1))] for i in range(1, 20)]
    build.put_image(store, "short:1", layers, Cmd=["/bin/sh", "-c", "ls / | grep '^l'; cat /l19"])
    for userns in ("auto", "identity"):       # idmapped binds, and plain ones
        with Container(rootfs=RootFS.from_image("short:1", store=store), userns=userns) as c:
            res = c.run(timeout=30)
        assert (res.returncode, res.stdout) == (0, b"l19\n19"), res.stderr


def test_readonly_root(store: Store) -> None:
    build.put_image(store, "t:1", base_layers(), Cmd=["/bin/sh"])
    with Container(rootfs=RootFS.from_image("t:1", store=store, readonly=True)) as c:
        res = c.run(["/bin/sh", "-c", "touch /x 2>&1; echo $?"], timeout=20)
    assert res.stdout.decode().split()[-1] == "1" and b"Read-only" in res.stdout


def test_changes_of_a_kept_layer(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    build.put_image(store, "t:1", base_layers(), Cmd=["/bin/sh"])
    kept = tmp_path / "kept"
    kept.mkdir()
    r = RootFS.from_image("t:1", store=store).overlay(kept)
    with Container(rootfs=r) as c:
        res = c.run(["/bin/sh", "-c", "echo n > /new; echo c > /a/lower 2>/dev/null; "
                     "echo c > /a/upper; echo c > /bin/busybox.txt; chmod 700 /bin/busybox; "
                     "rm /bin/cat /suid"], timeout=20)
        assert res.returncode == 0, res.stderr
    ch = r.changes()
    assert "/new" in ch.added and "/bin/busybox.txt" in ch.added
    # Changed: in the top layer (/a/upper) or only in the bottom one (/bin/busybox).
    assert "/a/upper" in ch.changed and "/bin/busybox" in ch.changed
    assert set(ch.deleted) >= {"/bin/cat", "/suid"}


def test_with_config_overrides(store: Store) -> None:
    build.put_image(store, "t:1", base_layers(), Entrypoint=["/bin/false"], Cmd=["x"], User="guest")
    image = Image.open("t:1", store=store)
    changed = image.with_config(entrypoint=["/bin/sh", "-c"], cmd=["id -u; pwd"], working_dir="/a",
                                user="root")
    assert image.config.entrypoint == ("/bin/false",)      # the original is unchanged
    with Container(rootfs=RootFS.from_image(changed)) as c:
        res = c.run(timeout=20)
    assert res.stdout == b"0\n/a\n", res.stderr
    with pytest.raises(ImageError, match="with_config cmd"):
        image.with_config(cmd="ls")  # type: ignore[arg-type]


def test_a_detached_container_keeps_its_layers(store: Store) -> None:
    import signal
    import time

    build.put_image(store, "t:1", base_layers(), Cmd=["/bin/sh"])
    r = RootFS.from_image("t:1", store=store)
    c = Container(rootfs=r, die_with_parent=False)
    c.start(["/bin/sleep", "30"])
    pid = c.pid
    assert pid is not None
    c.detach()         # the container outlives the object: the hold passes to its process
    try:
        remove(store, "t:1")
        assert len(prune(store).in_use) == 2
        assert all(x.is_dir() for x in r.spec.layers)
    finally:
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.01)
    assert len(prune(store).layers) == 2
    assert store.layers() == []
    # The detached container's id block was its own: gc takes it back now that it is gone.
    import isolate

    isolate.gc()


def test_index_and_platform(store: Store) -> None:
    import json

    from isolate.images.manifest import host_platform

    digest = build.put_image(store, None, [build.busybox_entries()], Cmd=["/bin/true"])
    other = build.put_image(store, None, [[Entry("f", data=b"f")]], architecture="s390x")
    host = host_platform()
    index = json.dumps({"schemaVersion": 2, "mediaType": build.OCI_INDEX, "manifests": [
        {"mediaType": build.OCI_MANIFEST, "digest": d, "size": len(store.read_blob(d)),
         "platform": {"os": "linux", "architecture": arch}}
        for d, arch in ((other, "s390x"), (digest, host.architecture))]}).encode()
    store.set_ref("docker.io/library/multi:1", store.put(index))
    image = Image.open("multi:1", store=store)
    assert image.digest == digest
    with Container(rootfs=RootFS.from_image(image)) as c:
        assert c.run(timeout=20).returncode == 0
    store.set_ref("docker.io/library/other:1", other)
    with pytest.raises(ImageError, match="is for linux/s390x, this machine runs linux/"):
        RootFS.from_image("other:1", store=store)
