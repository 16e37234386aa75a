"""Manifests, indexes and configs parsed and checked field by field; platforms picked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from isolate.errors import ImageError
from isolate.images.manifest import (ACCEPT, LAYER_TYPES, Index, Manifest, Platform, host_platform,
                                     parse_config, parse_manifest, select_platform)

D = "sha256:" + "a" * 64
E = "sha256:" + "b" * 64
OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
DOCKER_M = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_L = "application/vnd.docker.distribution.manifest.list.v2+json"


def manifest(**over: Any) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_M,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 7},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": E,
                    "size": 10},
                   {"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "digest": D,
                    "size": 0}]}
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def index(*plats: str, mt: str = OCI_I) -> Index:
    ms = []
    for i, p in enumerate(plats):
        parts = p.split("/")
        ms.append({"mediaType": OCI_M, "digest": "sha256:" + str(i) * 64, "size": 1,
                   "platform": {"os": parts[0], "architecture": parts[1],
                                **({"variant": parts[2]} if len(parts) > 2 else {})}})
    doc = parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": ms}).encode())
    assert isinstance(doc, Index)
    return doc


def test_a_manifest_and_its_layers() -> None:
    m = parse_manifest(manifest())
    assert isinstance(m, Manifest)
    assert (m.config.digest, [x.digest for x in m.layers]) == (D, [E, D])
    assert (m.compression(0), m.compression(1)) == ("gzip", "tar")


def test_docker_schema2_and_the_content_type_when_the_document_names_none() -> None:
    m = parse_manifest(manifest(mediaType=None), DOCKER_M)
    assert isinstance(m, Manifest) and m.media_type == DOCKER_M
    assert isinstance(parse_manifest(manifest(mediaType=None)), Manifest)
    assert set(ACCEPT.split(", ")) == {OCI_M, OCI_I, DOCKER_M, DOCKER_L}


@pytest.mark.parametrize("doc, says", [
    (b"{", "manifest: not JSON"),
    (b"[]", "manifest: expected an object, got list"),
    (manifest(schemaVersion=1), "schemaVersion: 1 is not supported"),
    (manifest(mediaType="application/vnd.example+json"), "'application/vnd.example\\+json' is not an"),
    (manifest(mediaType=5), "manifest.mediaType: expected a string, got 5"),
    (manifest(config={"mediaType": "application/vnd.example.config", "digest": D, "size": 1}),
     "manifest.config.mediaType: 'application/vnd.example.config' is not an image config"),
    (manifest(layers={}), "manifest.layers: expected a list"),
    (manifest(layers=[{"mediaType": "application/x-tar", "digest": D, "size": 1}]),
     "manifest.layers\\[0\\].mediaType: 'application/x-tar' is not a layer type"),
    (manifest(layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:x",
                       "size": 1}]), "manifest.layers\\[0\\].digest: 'sha256:x' is not a sha256"),
    (manifest(layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": D,
                       "size": -1}]), "manifest.layers\\[0\\].size: expected a size in bytes, got -1"),
    (manifest(layers=[{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": D,
                       "size": True}]), "size: expected a size in bytes, got True"),
    (manifest(config=None), "manifest.config: expected an object, got NoneType"),
])
def test_bad_manifests_name_the_field(doc: bytes, says: str) -> None:
    with pytest.raises(ImageError, match=says):
        parse_manifest(doc)


def test_every_layer_type_has_a_known_compression() -> None:
    assert set(LAYER_TYPES.values()) == {"tar", "gzip", "zstd"}


def test_select_platform_exact_then_variant_less() -> None:
    idx = index("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "windows/amd64")
    assert select_platform(idx, Platform("linux", "arm64", "v8")).digest == "sha256:" + "1" * 64
    assert select_platform(idx, Platform.parse("linux/arm64")).digest == "sha256:" + "1" * 64
    assert select_platform(idx, Platform.parse("linux/amd64")).digest == "sha256:" + "0" * 64
    assert select_platform(index("linux/arm64"), Platform.parse("linux/arm64/v8")).digest \
        == "sha256:" + "0" * 64
    with pytest.raises(ImageError, match="no manifest for linux/s390x in the index \\(it has: "
                                         "linux/amd64, linux/arm/v7, linux/arm64/v8, windows/amd64\\)"):
        select_platform(idx, Platform.parse("linux/s390x"))
    here = host_platform()
    assert select_platform(index(str(here), "linux/ppc64le" if here.architecture != "ppc64le"
                                 else "linux/s390x")).digest == "sha256:" + "0" * 64


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_platform_parse_refuses(text: str) -> None:
    with pytest.raises(ImageError, match="is not os/architecture"):
        Platform.parse(text)


def test_config_fields() -> None:
    c = parse_config(json.dumps({
        "architecture": "arm64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["A=1"],
                   "WorkingDir": "/w", "User": "1000:1000", "ExposedPorts": {"80/tcp": {}},
                   "Labels": {"k": "v"}},
        "rootfs": {"type": "layers", "diff_ids": [D, E]}}).encode())
    assert c.diff_ids == (D, E) and c.entrypoint == ("/bin/sh", "-c") and c.cmd == ("echo hi",)
    assert (c.env, c.working_dir, c.user, c.exposed_ports) == (("A=1",), "/w", "1000:1000", ("80/tcp",))
    assert (c.labels, c.os, c.architecture) == ({"k": "v"}, "linux", "arm64")
    bare = parse_config(b'{"rootfs": {"type": "layers", "diff_ids": []}}')
    assert (bare.cmd, bare.entrypoint, bare.env, bare.os) == (None, None, None, "linux")


@pytest.mark.parametrize("doc, says", [
    (b"nope", "image config: not JSON"),
    (b"{}", "image config.rootfs: expected an object"),
    (b'{"rootfs": {"diff_ids": ["x"]}}', "image config.rootfs.diff_ids\\[0\\]: 'x' is not a sha256"),
    (b'{"rootfs": {"diff_ids": []}, "config": {"Cmd": "ls"}}', "config.Cmd: expected a list of strings"),
    (b'{"rootfs": {"diff_ids": []}, "config": {"Env": [1]}}', "config.Env: expected a list of strings"),
    (b'{"rootfs": {"diff_ids": []}, "config": {"User": 0}}', "config.User: expected a string, got 0"),
    (b'{"rootfs": {"diff_ids": []}, "config": {"Labels": {"a": 1}}}', "Labels: expected an object"),
    (b'{"rootfs": {"diff_ids": []}, "config": []}', "image config.config: expected an object"),
])
def test_bad_configs_name_the_field(doc: bytes, says: str) -> None:
    with pytest.raises(ImageError, match=says):
        parse_config(doc)
