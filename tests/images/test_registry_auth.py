"""pull through TLS with a private CA, htpasswd Basic auth and the Bearer token flow,
each against a real docker-registry configured so."""

from __future__ import annotations

import base64
import ssl
import json
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from isolate.errors import ImageError
from isolate.images import pull
from isolate.images.store import Store
from registry import Registry, TokenServer, make_ca, make_server_cert, push


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, layout: Path) -> Iterator[tuple[Registry, Path]]:
    d = tmp_path_factory.mktemp("tls")
    key, cert = make_ca(d / "certs")
    reg = Registry(d / "reg", tls=make_server_cert(d, key, cert))
    try:
        push(reg.url, "test/small", layout, "small",
             verify=ssl.create_default_context(cafile=str(d / "certs" / "ca.crt")))
        yield reg, d / "certs"
    finally:
        reg.close()


def test_tls_with_the_ca_from_cert_dir(tls_registry: tuple[Registry, Path], tmp_path: Path) -> None:
    reg, certs = tls_registry
    img = pull(f"{reg.host}/test/small:small", store=Store(tmp_path / "s"), cert_dir=certs,
               progress=False)
    assert img.manifest.layers


def test_tls_without_the_ca_is_refused_unless_insecure(tls_registry: tuple[Registry, Path],
                                                       tmp_path: Path) -> None:
    reg, _ = tls_registry
    with pytest.raises(ImageError, match="CERTIFICATE_VERIFY_FAILED"):
        pull(f"{reg.host}/test/small:small", store=Store(tmp_path / "s"), progress=False)
    img = pull(f"{reg.host}/test/small:small", store=Store(tmp_path / "s"), insecure=True,
               progress=False)
    assert img.manifest.layers


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory, layout: Path) -> Iterator[Registry]:
    d = tmp_path_factory.mktemp("basic")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    (d / "htpasswd").write_text(f"alice:{hashed}\n")
    reg = Registry(d / "reg", htpasswd=d / "htpasswd")
    try:
        push(reg.url, "test/small", layout, "small", auth=("alice", "s3cret"))
        yield reg
    finally:
        reg.close()


def test_basic_auth(basic_registry: Registry, tmp_path: Path) -> None:
    ref = f"{basic_registry.host}/test/small:small"
    img = pull(ref, store=Store(tmp_path / "s1"), credentials=("alice", "s3cret"), progress=False)
    assert img.manifest.layers
    with pytest.raises(ImageError, match=rf"^authentication denied for {ref} "):
        pull(ref, store=Store(tmp_path / "s2"), credentials=("alice", "wrong"), progress=False)
    with pytest.raises(ImageError, match=rf"^authentication required for {ref} "):
        pull(ref, store=Store(tmp_path / "s3"), progress=False,
             auth_file=tmp_path / "missing.json")


def test_credentials_from_an_auth_file(basic_registry: Registry, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    auth = tmp_path / "run" / "containers" / "auth.json"
    auth.parent.mkdir(parents=True)
    auth.write_text(json.dumps({"auths": {basic_registry.host: {
        "auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    img = pull(f"{basic_registry.host}/test/small:small", store=Store(tmp_path / "s"),
               progress=False)
    assert img.manifest.layers


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory,
                   layout: Path) -> Iterator[tuple[Registry, TokenServer]]:
    d = tmp_path_factory.mktemp("token")
    tokens = TokenServer(d, {"bob": "pa55"}, anonymous_pull=False)
    try:
        reg = Registry(d / "reg", token=tokens)
        try:
            t = tokens.sign("bob", [{"type": "repository", "name": "test/small",
                                     "actions": ["pull", "push"]}])
            push(reg.url, "test/small", layout, "small", auth=_Bearer(t))
            yield reg, tokens
        finally:
            reg.close()
    finally:
        tokens.close()


class _Bearer(httpx.Auth):
    """httpx auth sending a ready token (the push helper's)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = "Bearer " + self.token
        yield request


def test_bearer_token_flow(token_registry: tuple[Registry, TokenServer], tmp_path: Path) -> None:
    reg, tokens = token_registry
    ref = f"{reg.host}/test/small:small"
    before = len(tokens.issued)
    img = pull(ref, store=Store(tmp_path / "s1"), credentials=("bob", "pa55"), progress=False)
    assert img.manifest.layers
    # one token for the repository's pull scope, reused by every request (and thread)
    assert tokens.issued[before:] == ["repository:test/small:pull"]
    with pytest.raises(ImageError, match=rf"^authentication denied for {ref} "):
        pull(ref, store=Store(tmp_path / "s2"), credentials=("bob", "nope"), progress=False)
    with pytest.raises(ImageError, match=rf"^authentication required for {ref} "):
        pull(ref, store=Store(tmp_path / "s3"), progress=False, auth_file=tmp_path / "none.json")


def test_cli_tls_options(tls_registry: tuple[Registry, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    reg, certs = tls_registry
    isolate = str(Path(sys.executable).parent / "isolate")
    ref = f"{reg.host}/test/small:small"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([isolate, "pull", "-q", "--store", str(tmp_path / "s"), *args, ref],
                              capture_output=True, text=True, timeout=60, check=False)

    r = run()
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "CERTIFICATE_VERIFY_FAILED" in r.stderr
    assert run("--cert-dir", str(certs)).returncode == 0
    assert run("--tls-verify=false").returncode == 0
