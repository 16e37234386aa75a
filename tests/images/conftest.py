"""Fixtures of the image tests: a real registry (docker-registry) per session, test images,
and an empty store per test.

tests/images is on sys.path, so ``build``, ``registry`` and ``tools`` import as modules;
helpers live there, not here (``conftest`` names another module in each test directory).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import build  # noqa: E402
from build import layer  # noqa: E402
from registry import REGISTRY, FaultProxy, Registry  # noqa: E402
from tools import need  # noqa: E402


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry on 127.0.0.1 for the whole session."""
    need(REGISTRY)
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout with the tests' images: ``small`` (gzip, 3 layers), ``small-zstd``,
    ``small-tar`` (uncompressed), ``shared`` (small's first two layers and a new one)."""
    root = tmp_path_factory.mktemp("layout")
    base = [build.busybox_entries(), layer("one", 200_000, 1), layer("two", 100_000, 2)]
    build.write_layout(root, "small", base, Cmd=["/bin/sh"])
    build.write_layout(root, "small-zstd", base, compression="zstd")
    build.write_layout(root, "small-tar", base, compression="tar")
    build.write_layout(root, "shared", base[:2] + [layer("three", 50_000, 3)])
    return root


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session registry (see ``registry.FaultProxy``)."""
    p = FaultProxy(registry.url)
    yield p
    p.close()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """An empty ``isolate.images.Store`` in the test's temporary directory."""
    from isolate.images import Store

    return Store(tmp_path / "store")
