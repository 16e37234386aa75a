"""pull from a real docker-registry: tags, digests, indexes, formats, shared layers, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

import build
from build import layer
from isolate.errors import DigestError, ImageError
from isolate.images.manifest import Descriptor, host_platform
from isolate.images import pull
from isolate.images.store import Store
from registry import FaultProxy, Registry, add_index, push
from tools import need, private_cache


def layout_blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest[7:]).read_bytes()


def image_digests(layout: Path, manifest_digest: str) -> list[str]:
    m = json.loads(layout_blob(layout, manifest_digest))
    return [m["config"]["digest"], *[x["digest"] for x in m["layers"]]]


@pytest.fixture(scope="session")
def pushed(registry: Registry, layout: Path) -> dict[str, str]:
    """Every image of ``layout`` pushed as test/<tag>:v1; tag -> manifest digest."""
    return {tag: push(registry.url, f"test/{tag}", layout, tag, as_tag="v1")
            for tag in ("small", "small-zstd", "small-tar", "shared")}


@pytest.mark.parametrize("tag", ["small", "small-zstd", "small-tar"])
def test_pull_by_tag_stores_every_blob_byte_exact_then_the_name(
        registry: Registry, layout: Path, pushed: dict[str, str], store: Store, tag: str) -> None:
    seen: list[tuple[int, Descriptor]] = []
    lock = threading.Lock()

    def on_layer(i: int, d: Descriptor) -> None:
        assert store.has_blob(d.digest)           # called once the blob is stored
        with lock:
            seen.append((i, d))

    img = pull(f"{registry.host}/test/{tag}:v1", store=store, on_layer=on_layer, progress=False)
    assert img.reference == f"{registry.host}/test/{tag}:v1"
    assert img.manifest_digest == pushed[tag]
    assert store.refs() == {img.reference: pushed[tag]}
    for d in [pushed[tag], *image_digests(layout, pushed[tag])]:
        assert store.blob_path(d).read_bytes() == layout_blob(layout, d)
    assert sorted(i for i, _ in seen) == [0, 1, 2]
    assert {i: d for i, d in seen} == dict(enumerate(img.manifest.layers))
    assert {build.OCI_LAYER[c] for c in ["gzip", "zstd", "tar"]} >= {
        d.media_type for d in img.manifest.layers}
    assert img.config.cmd == (("/bin/sh",) if tag == "small" else None)
    assert len(img.config.diff_ids) == 3
    assert not list((store.root / "ingest" / "sha256").iterdir())


def test_pull_by_digest(registry: Registry, pushed: dict[str, str], store: Store) -> None:
    ref = f"{registry.host}/test/small@{pushed['small']}"
    img = pull(ref, store=store, progress=False)
    assert (img.reference, img.manifest_digest) == (ref, pushed["small"])
    assert store.refs() == {ref: pushed["small"]}


def test_second_image_fetches_only_the_layer_it_does_not_share(
        registry: Registry, layout: Path, pushed: dict[str, str], proxy: FaultProxy,
        store: Store) -> None:
    pull(f"{proxy.host}/test/small:v1", store=store, progress=False)
    assert sorted(proxy.blob_gets()) == sorted(image_digests(layout, pushed["small"]))
    del proxy.requests[:]
    img = pull(f"{proxy.host}/test/shared:v1", store=store, progress=False)
    new = [img.config_digest, img.manifest.layers[2].digest]
    assert sorted(proxy.blob_gets()) == sorted(new)
    again = pull(f"{proxy.host}/test/shared:v1", store=store, progress=False)
    assert again == img
    assert sorted(proxy.blob_gets()) == sorted(new)     # nothing fetched the second time


def test_index_picks_the_host_platform_or_the_one_asked(
        registry: Registry, tmp_path: Path) -> None:
    lay = tmp_path / "layout"
    amd = build.write_layout(lay, "amd", [layer("amd", 1000, 10)], architecture="amd64")
    arm = build.write_layout(lay, "arm", [layer("arm", 1000, 11)])
    here = str(host_platform())
    other = "linux/arm64/v8" if here != "linux/arm64/v8" else "linux/amd64"
    index = add_index(lay, "multi", [("amd", here), ("arm", other)])
    assert push(registry.url, "test/multi", lay, "multi") == index
    s1, s2 = Store(tmp_path / "s1"), Store(tmp_path / "s2")
    ref = f"{registry.host}/test/multi:multi"
    assert pull(ref, store=s1, progress=False).manifest_digest == amd
    img = pull(ref, store=s2, platform=other, progress=False)
    assert img.manifest_digest == arm
    assert s2.has_blob(index) and s2.refs() == {ref: arm}
    with pytest.raises(ImageError, match="no manifest for linux/s390x in the index"):
        pull(ref, store=s2, platform="linux/s390x", progress=False)


def test_docker_schema2_pushed_by_skopeo_matches_skopeos_own_copy(
        registry: Registry, layout: Path, store: Store, tmp_path: Path) -> None:
    skopeo = need("skopeo")
    dest = f"docker://{registry.host}/test/v2s2:v1"
    subprocess.run(private_cache([skopeo, "copy", "-q", "--dest-tls-verify=false", "--format", "v2s2",
                                  f"oci:{layout}:small", dest]), check=True, capture_output=True,
                   timeout=60)
    img = pull(f"{registry.host}/test/v2s2:v1", store=store, progress=False)
    assert img.manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    copy = tmp_path / "copy"
    subprocess.run(private_cache([skopeo, "copy", "-q", "--src-tls-verify=false", dest, f"dir:{copy}"]),
                   check=True, capture_output=True, timeout=60)   # dir: keeps every blob as sent
    for d in [img.config_digest, *[x.digest for x in img.manifest.layers]]:
        assert store.blob_path(d).read_bytes() == (copy / d[7:]).read_bytes()
    raw = store.read_blob(img.manifest_digest)
    assert raw == (copy / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == img.manifest_digest


def test_unknown_tag_is_manifest_unknown(registry: Registry, pushed: dict[str, str],
                                         store: Store) -> None:
    with pytest.raises(ImageError, match=rf"^{registry.host}/test/small:nope: manifest unknown"):
        pull(f"{registry.host}/test/small:nope", store=store, progress=False)
    assert store.refs() == {} and store.blobs() == []


def test_a_blob_that_does_not_match_its_digest_is_not_kept(
        registry: Registry, pushed: dict[str, str], proxy: FaultProxy, store: Store,
        layout: Path) -> None:
    bad = image_digests(layout, pushed["small"])[2]
    proxy.corrupt.add(bad)
    with pytest.raises(DigestError, match=bad) as e:
        pull(f"{proxy.host}/test/small:v1", store=store, progress=False)
    assert e.value.expected == bad
    assert not store.has_blob(bad)
    assert not (store.root / "ingest" / "sha256" / bad[7:]).exists()
    assert store.refs() == {}


def test_an_unknown_layer_media_type_is_refused(registry: Registry, tmp_path: Path,
                                                store: Store) -> None:
    lay = tmp_path / "layout"
    d = build.write_layout(lay, "odd", [layer("x", 100, 20)])
    m = json.loads(layout_blob(lay, d))
    m["layers"][0]["mediaType"] = "application/vnd.example.unknown"
    data = json.dumps(m).encode()
    nd = build._put_blob(lay, data)
    idx = json.loads((lay / "index.json").read_text())
    idx["manifests"][0].update(digest=nd, size=len(data))
    (lay / "index.json").write_text(json.dumps(idx))
    push(registry.url, "test/odd", lay, "odd")
    with pytest.raises(ImageError, match="'application/vnd.example.unknown' is not a layer type"):
        pull(f"{registry.host}/test/odd:odd", store=store, progress=False)
    assert store.refs() == {}


def test_an_unknown_manifest_media_type_is_refused(registry: Registry, tmp_path: Path,
                                                   proxy: FaultProxy, store: Store) -> None:
    lay = tmp_path / "layout"
    d = build.write_layout(lay, "untyped", [layer("x", 100, 21)])
    m = json.loads(layout_blob(lay, d))
    del m["mediaType"]                  # optional in a manifest: the Content-Type says it then
    data = json.dumps(m).encode()
    idx = json.loads((lay / "index.json").read_text())
    idx["manifests"][0].update(digest=build._put_blob(lay, data), size=len(data))
    (lay / "index.json").write_text(json.dumps(idx))
    push(registry.url, "test/untyped", lay, "untyped")
    proxy.manifest_type = "application/vnd.example.thing.v1+json"
    with pytest.raises(ImageError, match=r"test/untyped:untyped: manifest.mediaType: "
                                         r"'application/vnd.example.thing.v1\+json' is not an image"):
        pull(f"{proxy.host}/test/untyped:untyped", store=store, progress=False)
    assert store.refs() == {} and store.blobs() == []


def test_429_is_retried_and_then_bounded(registry: Registry, pushed: dict[str, str],
                                         proxy: FaultProxy, store: Store) -> None:
    proxy.too_many = 3
    img = pull(f"{proxy.host}/test/small:v1", store=store, progress=False, retries=4)
    assert img.manifest_digest == pushed["small"] and proxy.too_many == 0
    proxy.too_many = 1000
    with pytest.raises(ImageError, match=r"too many requests \(429\) after 3 tries: slow down"):
        pull(f"{proxy.host}/test/shared:v1", store=Store(store.root.parent / "s2"),
             progress=False, retries=2)


def test_a_registry_that_never_answers_fails_within_the_timeout(
        proxy: FaultProxy, store: Store) -> None:
    proxy.hang = True
    start = time.monotonic()
    with pytest.raises(ImageError, match="unreachable after 2 tries: no answer in time"):
        pull(f"{proxy.host}/test/small:v1", store=store, progress=False, timeout=0.5, retries=1)
    assert time.monotonic() - start < 5


def test_nothing_listening_is_unreachable(store: Store) -> None:
    from registry import free_port

    with pytest.raises(ImageError, match=r"127\.0\.0\.1:\d+/x:v1: registry 127\.0\.0\.1:\d+ "
                                         r"unreachable after 2 tries"):
        pull(f"127.0.0.1:{free_port()}/x:v1", store=store, progress=False, retries=1)


def test_an_on_layer_error_fails_the_pull_and_names_nothing(
        registry: Registry, pushed: dict[str, str], store: Store) -> None:
    calls: list[int] = []

    def on_layer(i: int, d: Descriptor) -> None:
        calls.append(i)
        if i == 1:
            raise RuntimeError("unpack failed")

    with pytest.raises(RuntimeError, match="unpack failed"):
        pull(f"{registry.host}/test/small:v1", store=store, on_layer=on_layer, jobs=1,
             progress=False)
    assert calls.count(1) == 1 and len(calls) == len(set(calls))
    assert store.refs() == {}
    assert threading.active_count() == 1 or all(
        not t.name.startswith("isolate-pull") for t in threading.enumerate())


def test_layers_from_this_host_download_one_at_a_time_in_order(
        registry: Registry, pushed: dict[str, str], proxy: FaultProxy, tmp_path: Path) -> None:
    # From a registry on this host the downloads share the CPU with the unpacking: one at a
    # time, in the manifest's order, each layer unpacks while the next downloads.
    proxy.rate = 2 << 20
    img = pull(f"{proxy.host}/test/small:v1", store=Store(tmp_path / "a"), progress=False)
    assert proxy.blob_gets() == [img.manifest.config.digest,
                                 *(d.digest for d in img.manifest.layers)]
    assert proxy.most_in_flight == 1
    # Asked for more, they download at once.
    proxy.most_in_flight = 0
    pull(f"{proxy.host}/test/small:v1", store=Store(tmp_path / "b"), progress=False, jobs=3)
    assert proxy.most_in_flight == 3


def test_pull_unpacks_every_layer_unless_asked_not_to(
        registry: Registry, pushed: dict[str, str], tmp_path: Path) -> None:
    ref = f"{registry.host}/test/small:v1"
    store = Store(tmp_path / "a")
    img = pull(ref, store=store, progress=False)
    dirs = [store.layer_path(d) for d in img.config.diff_ids]
    assert all(d.is_dir() for d in dirs)
    assert (dirs[0] / "bin" / "busybox").is_file()
    assert (dirs[1] / "data" / "one").is_file()
    lazy = Store(tmp_path / "b")
    pull(ref, store=lazy, progress=False, unpack=False)
    assert lazy.layers() == []
    assert not list((lazy.root / "tmp").iterdir())


def test_a_prune_during_a_pull_waits_and_takes_nothing_of_it(
        registry: Registry, pushed: dict[str, str], proxy: FaultProxy, store: Store) -> None:
    from isolate.images.gc import prune

    proxy.rate = 400 << 10                          # the 300 kB of layers take about a second
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(
        pull(f"{proxy.host}/test/small:v1", store=store, progress=False)))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while not store.blobs() and time.monotonic() < deadline:   # the config is in
            time.sleep(0.01)
        assert store.blobs() and not store.refs()
        pruned = prune(store)                       # waits for the pull to name its image
        assert store.refs()                         # it ran after the name was set
    finally:
        t.join()
    assert pruned.blobs == () and pruned.layers == ()
    img = result[0]
    assert all(store.has_blob(d.digest) for d in img.manifest.layers)  # type: ignore[attr-defined]
    assert len(store.layers()) == 3


def test_isolate_images_pull_is_the_function_whatever_was_imported() -> None:
    # A submodule named like a name the package exports would replace it once imported.
    import importlib

    import isolate.images

    for m in ("pulling", "importer", "image", "store", "registry", "unpack", "gc", "reference"):
        importlib.import_module(f"isolate.images.{m}")
    assert callable(isolate.images.pull) and isolate.images.pull.__name__ == "pull"
    assert callable(isolate.images.load) and isolate.images.load.__name__ == "load"
