"""The image tests: tests/images on sys.path (``import build``), and a store per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An empty ``isolate.images.Store`` in the test's temporary directory."""
    from isolate.images import Store

    return Store(tmp_path / "store")
