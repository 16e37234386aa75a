"""The registry client's rules: plain HTTP only where allowed, credentials found as podman
finds them, challenges parsed, bad options refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from isolate.errors import ImageError
from isolate.images.auth import Challenge, auth_files, find_credentials, parse_challenges
from isolate.images.registry import RegistryClient
from registry import Registry, push


def test_plain_http_only_for_a_local_registry_or_when_insecure(registry: Registry,
                                                                layout: Path) -> None:
    push(registry.url, "client/small", layout, "small")
    with RegistryClient(registry.host, local=False) as c:
        with pytest.raises(ImageError, match="TLS failed: .*plain HTTP is used only for a registry "
                                             "on this host or with insecure=True"):
            c.get_manifest("client/small", "small", "x")
    with RegistryClient(registry.host, local=False, insecure=True) as c:
        data, media_type, digest = c.get_manifest("client/small", "small", "x")
        assert media_type == "application/vnd.oci.image.manifest.v1+json"
        assert digest.startswith("sha256:") and json.loads(data)["schemaVersion"] == 2


def test_challenges() -> None:
    assert parse_challenges('Bearer realm="https://auth.example.com/token",service="reg",'
                            'scope="repository:a/b:pull"') == [
        Challenge("bearer", {"realm": "https://auth.example.com/token", "service": "reg",
                             "scope": "repository:a/b:pull"})]
    assert parse_challenges('Basic realm="x, y", Bearer realm=r') == [
        Challenge("basic", {"realm": "x, y"}), Challenge("bearer", {"realm": "r"})]
    assert parse_challenges('Basic realm="a \\"quoted\\" word"') == [
        Challenge("basic", {"realm": 'a "quoted" word'})]


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_credentials_in_podmans_order_and_the_longest_key(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "env.json"))
    docker = tmp_path / "home" / ".docker" / "config.json"
    podman = tmp_path / "run" / "containers" / "auth.json"
    for p in (docker, podman):
        p.parent.mkdir(parents=True)
    assert auth_files(tmp_path / "given.json") == [tmp_path / "given.json", tmp_path / "env.json",
                                                   podman, docker]
    docker.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": _auth("hub", "1"),
                                            "quay.io": _auth("dq", "2")}}))
    podman.write_text(json.dumps({"auths": {"quay.io": _auth("pq", "3"),
                                            "quay.io/team": _auth("team", "4")}}))
    assert find_credentials("docker.io", "library/alpine") == ("hub", "1")
    assert find_credentials("quay.io", "other/x") == ("pq", "3")
    assert find_credentials("quay.io", "team/x") == ("team", "4")
    assert find_credentials("example.com", "x") is None
    (tmp_path / "env.json").write_text(json.dumps({"auths": {"quay.io": {
        "username": "u", "password": "p"}}}))
    assert find_credentials("quay.io", "team/x") == ("u", "p")
    (tmp_path / "given.json").write_text(json.dumps({"auths": {"quay.io": {"auth": "%%%"}}}))
    with pytest.raises(ImageError, match=r"given.json'.*auths\['quay.io'\].auth is not base64"):
        find_credentials("quay.io", "x", tmp_path / "given.json")
    (tmp_path / "given.json").write_text("{")
    with pytest.raises(ImageError, match="given.json'.*not JSON"):
        find_credentials("quay.io", "x", tmp_path / "given.json")


@pytest.mark.parametrize("kw, says", [
    ({"timeout": 0}, "timeout: 0 is not a positive number"),
    ({"retries": -1}, "retries: -1 is not a count"),
    ({"credentials": ("", "x")}, "credentials: expected"),
    ({"cert_dir": "/nonexistent-dir"}, "cert_dir: '/nonexistent-dir' is not a directory"),
])
def test_bad_options(kw: dict[str, object], says: str) -> None:
    with pytest.raises(ImageError, match=says):
        RegistryClient("quay.io", **kw)  # type: ignore[arg-type]


def test_any_header_parses_without_an_error() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.one_of(st.sampled_from(list('Bearer Basic realm="x\\,= ;\t')),
                                      st.characters()), max_size=80))
    def check(header: str) -> None:
        for c in parse_challenges(header):
            assert c.scheme and c.scheme == c.scheme.lower()

    check()
