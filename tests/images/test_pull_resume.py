"""A pull killed with SIGKILL mid-blob resumes where it stopped (a Range request) and ends
consistent; a registry that ignores Range, or a wrong partial file, still ends with the right blob."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from build import layer

import build
from isolate.images import pull
from isolate.images.store import Store
from registry import FaultProxy, Registry, push

BIG = 6 << 20


@pytest.fixture(scope="module")
def big(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An image with one ~6 MiB layer of data gzip cannot shrink: (reference path, layer digest)."""
    lay = tmp_path_factory.mktemp("big")
    d = build.write_layout(lay, "big", [layer("big", BIG, 42)])
    push(registry.url, "test/big", lay, "big")
    m = json.loads((lay / "blobs/sha256" / d[7:]).read_bytes())
    return "test/big:big", m["layers"][0]["digest"]


def ranges(proxy: FaultProxy, digest: str) -> list[str]:
    return [r for m, p, r in proxy.requests if m == "GET" and p.endswith("/blobs/" + digest)]


def test_killed_pull_resumes_with_a_range_request(big: tuple[str, str], proxy: FaultProxy,
                                                  registry: Registry, tmp_path: Path) -> None:
    path, digest = big
    store = Store(tmp_path / "store")
    proxy.rate = 2 << 20                              # 2 MiB/s: about 3 s for the layer
    ref = f"{proxy.host}/{path}"
    code = ("import sys; from isolate.images import pull; from isolate.images.store import "
            "Store; pull(sys.argv[1], store=Store(sys.argv[2]), progress=False)")
    child = subprocess.Popen([sys.executable, "-c", code, ref, str(store.root)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ingest = store.ingest_path(digest)
    try:
        deadline = time.monotonic() + 30
        while not (ingest.exists() and ingest.stat().st_size > (1 << 20)):
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the layer's download never started"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    partial = ingest.stat().st_size
    assert (1 << 20) < partial < BIG
    assert not store.has_blob(digest) and store.refs() == {}
    del proxy.requests[:]
    proxy.rate = None
    img = pull(ref, store=store, progress=False)
    assert ranges(proxy, digest) == [f"bytes={partial}-"]
    assert store.refs() == {ref: img.manifest_digest}
    assert store.has_blob(digest) and not ingest.exists()
    direct = pull(f"{registry.host}/{path}", store=Store(tmp_path / "direct"), progress=False)
    assert direct.manifest_digest == img.manifest_digest


def test_a_registry_ignoring_range_or_a_wrong_partial_still_gives_the_blob(
        big: tuple[str, str], proxy: FaultProxy, tmp_path: Path) -> None:
    path, digest = big
    ref = f"{proxy.host}/{path}"
    good = Store(tmp_path / "good")
    pull(ref, store=good, progress=False)
    blob = good.read_blob(digest)

    s1 = Store(tmp_path / "s1")                       # a right partial, Range ignored: start over
    s1.ingest_path(digest).write_bytes(blob[:1000])
    proxy.ignore_range = True
    del proxy.requests[:]
    pull(ref, store=s1, progress=False)
    assert s1.read_blob(digest) == blob
    proxy.ignore_range = False

    s2 = Store(tmp_path / "s2")                       # a wrong partial: resumed, refused, refetched
    s2.ingest_path(digest).write_bytes(b"x" * 1000)
    del proxy.requests[:]
    pull(ref, store=s2, progress=False)
    assert s2.read_blob(digest) == blob
    assert ranges(proxy, digest) == ["bytes=1000-", ""]


def test_two_pulls_of_one_image_into_one_store_fetch_each_blob_once(
        big: tuple[str, str], proxy: FaultProxy, tmp_path: Path) -> None:
    import threading

    path, digest = big
    store = Store(tmp_path / "store")
    proxy.rate = 8 << 20
    ref = f"{proxy.host}/{path}"
    results: list[object] = []

    def one() -> None:
        try:
            results.append(pull(ref, store=store, progress=False))
        except Exception as e:  # the assertion below shows it
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and results[0] == results[1], results
    assert len(ranges(proxy, digest)) == 1          # the second waited for the first's blob
    assert store.has_blob(digest) and not list((store.root / "ingest" / "sha256").iterdir())
