"""Fixtures of the network tests: a fake host (and its upstream) per test, in network
namespaces of the test's own (``fakehost.FakeHost``); the machine's network is never touched.

tests/net is on sys.path, so ``fakehost`` imports as a module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fakehost import FakeHost  # noqa: E402


@pytest.fixture
def fakehost(tmp_path: Path) -> Iterator[FakeHost]:
    """A host network namespace with an upstream behind it, isolate's state in tmp_path."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the fake host's namespaces are made with ip netns")
    h = FakeHost(tmp_path / "net-state")
    yield h
    h.close()
