"""Image references normalized as docker and podman do, and bad ones refused naming the text."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from isolate.errors import ImageError
from isolate.images.reference import Reference, parse_reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, full", [
    ("alpine", "docker.io/library/alpine:latest"),
    ("alpine:3.20", "docker.io/library/alpine:3.20"),
    ("library/alpine", "docker.io/library/alpine:latest"),
    ("docker.io/alpine", "docker.io/library/alpine:latest"),
    ("index.docker.io/library/alpine:edge", "docker.io/library/alpine:edge"),
    ("registry-1.docker.io/bitnami/redis", "docker.io/bitnami/redis:latest"),
    ("quay.io/podman/stable:v4", "quay.io/podman/stable:v4"),
    ("localhost/x", "localhost/x:latest"),
    ("localhost:5000/a/b/c:t_1.2-x", "localhost:5000/a/b/c:t_1.2-x"),
    ("localhost:5000", "docker.io/library/localhost:5000"),      # a name with a tag, as in docker
    (f"alpine@{D}", f"docker.io/library/alpine@{D}"),
    (f"alpine:3@{D}", f"docker.io/library/alpine:3@{D}"),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ("my-registry.example.com:443/a__b/c.d", "my-registry.example.com:443/a__b/c.d:latest"),
])
def test_normalized(text: str, full: str) -> None:
    assert str(parse_reference(text)) == full


def test_parts_and_manifest_ref() -> None:
    r = parse_reference(f"localhost:5000/team/app:1@{D}")
    assert r == Reference("localhost:5000", "team/app", "1", D)
    assert (r.name, r.manifest_ref, r.api_host) == ("localhost:5000/team/app", D, "localhost:5000")
    assert parse_reference("alpine").api_host == "registry-1.docker.io"
    assert parse_reference("alpine").manifest_ref == "latest"


def test_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert str(parse_reference("x/y", default_registry="quay.io")) == "quay.io/x/y:latest"
    monkeypatch.setenv("ISOLATE_DEFAULT_REGISTRY", "registry.example.com")
    assert str(parse_reference("y")) == "registry.example.com/y:latest"


@pytest.mark.parametrize("text, local", [
    ("localhost/x", True), ("localhost:5000/x", True), ("127.0.0.1:5000/x", True),
    ("127.1.2.3/x", True), ("[::1]:80/x", True), ("alpine", False), ("quay.io/x", False),
    ("localhost.example.com/x", False), ("10.0.0.1:5000/x", False),
])
def test_is_local(text: str, local: bool) -> None:
    assert parse_reference(text).is_local is local


@pytest.mark.parametrize("text, says", [
    ("", "is not a reference"),
    (" alpine", "is not a reference"),
    ("Alpine", "repository 'library/Alpine' is not a valid name"),
    ("alpine:é", "tag 'é' is not a valid tag"),              # \w would take it: ASCII only
    ("alpine:.x", "tag '.x' is not a valid tag"),
    ("alpine:" + "t" * 129, "is not a valid tag"),
    ("alpine@sha256:abc", "digest"),
    ("alpine@md5:" + "a" * 32, "digest"),
    ("a//b", "is not a valid name"),
    ("a/-b", "is not a valid name"),
    ("exa_mple.com:x/y", r"registry 'exa_mple.com:x' is not a host\[:port\]"),
    ("x" * 5000, "is not a reference"),
])
def test_refused_naming_the_text(text: str, says: str) -> None:
    with pytest.raises(ImageError, match=says):
        parse_reference(text)


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(st.sampled_from(["", "quay.io/", "localhost:5000/", "docker.io/"]),
       st.lists(_component, min_size=1, max_size=3), _tag)
def test_str_parses_back_to_itself(registry: str, path: list[str], tag: str) -> None:
    # Without a registry, a first component with a dot is one (docker's rule): keep it a path.
    assume(registry or len(path) == 1 or "." not in path[0])
    r = parse_reference(f"{registry}{'/'.join(path)}:{tag}")
    assert parse_reference(str(r)) == r
    assert r.tag == tag
