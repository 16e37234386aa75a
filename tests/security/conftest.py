"""Helpers for the escape attempts: a host-only marker file and a container runner.

Every attack runs in the default ``Container()`` (all namespaces, OCI default
capabilities, no_new_privs, Docker's default seccomp profile) unless the test
turns one defence off to show that the next one still holds.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

PY = "/usr/bin/python3"


@pytest.fixture
def host_marker() -> Iterator[Path]:
    """A file only the host can see: /var is not part of the container's root."""
    d = Path("/var/tmp") / f"isolate-marker-{uuid.uuid4().hex}"
    d.mkdir()
    marker = d / "secret"
    marker.write_text("host secret\n")
    try:
        yield marker
    finally:
        shutil.rmtree(d)


# --- the comparison with other tools ------------------------------------------------
# Each attack also runs against runc / crun / bwrap; ``compare`` records whether the
# tool stopped it (a row of the table printed at the end of the run) and as the
# test's user property "comparison" (in --junitxml reports).

COMPARISONS: list[tuple[str, str, bool, str]] = []


def compare(request: pytest.FixtureRequest, attack: str, tool: str, stopped: bool, detail: str) -> None:
    """Record whether ``tool`` stopped ``attack`` (``detail``: what it did instead)."""
    request.node.user_properties.append(
        ("comparison", {"attack": attack, "tool": tool, "stopped": stopped, "detail": detail}))
    COMPARISONS.append((attack, tool, stopped, detail))


@pytest.fixture
def comparison(request: pytest.FixtureRequest) -> Callable[[str, str, bool, str], None]:
    """``compare`` bound to the running test: ``comparison(attack, tool, stopped, detail)``."""
    return lambda attack, tool, stopped, detail: compare(request, attack, tool, stopped, detail)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The table "attack | isolate | runc | crun | bwrap" of every comparison recorded."""
    if not COMPARISONS:
        return
    tools = ["isolate", "runc", "crun", "bwrap"]
    rows: dict[str, dict[str, str]] = {}
    for attack, tool, stopped, _ in COMPARISONS:
        cell = rows.setdefault(attack, {}).get(tool)
        verdict = "stopped" if stopped else "ESCAPED"
        # One attack run several ways (parametrized): escaped once is escaped.
        rows[attack][tool] = "ESCAPED" if "ESCAPED" in (cell, verdict) else verdict
    terminalreporter.section("attacks compared")
    width = max(len(a) for a in rows)
    terminalreporter.write_line(" | ".join(["attack".ljust(width), *tools]))
    for attack, cells in rows.items():
        terminalreporter.write_line(" | ".join([attack.ljust(width), *(cells.get(t, "-") for t in tools)]))
