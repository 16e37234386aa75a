"""Shared set-up for the pytest-benchmark files (``python -m pytest benchmarks/``).

The cases are the ones ``python -m benchmarks.run`` times (``benchmarks/cases.py``),
so both entry points measure the same thing.  A case the host cannot run is
skipped with its reason, as in the runner's table.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `python -m pytest benchmarks/` from the project root must find the `benchmarks` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import cases as C  # noqa: E402


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip("needs root")


def by_name(name: str) -> C.Case:
    """The registered case called ``name``."""
    for c in C.REGISTRY:
        if c.name == name:
            return c
    raise KeyError(name)


@pytest.fixture
def case_fn(request: pytest.FixtureRequest) -> Iterator[C.Iteration]:
    """The timed callable of the case named by the test's ``case_fn`` parameter (set up, torn down)."""
    try:
        cm = by_name(request.param).setup()
        fn = cm.__enter__()
    except C.Skip as e:
        pytest.skip(str(e))
    try:
        yield fn
    finally:
        cm.__exit__(None, None, None)
