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
from support import compare


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


# --- comparison with other runtimes ---------------------------------------------
# One row per (attack, tool): whether that tool stopped the attack, and how.  The
# test records isolate's row and asserts isolate's outcome; a competitor that
# cannot be run at all must fail the test, never be recorded as a guess.  Rows
# live in the test reports (user_properties), so a test module that loaded this
# file under another name still adds to the one table.

TOOLS = ("isolate", "runc", "crun", "bwrap")   # compare() itself is in tests/support.py


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The table "attack | isolate | runc | crun | bwrap" of every recorded comparison."""
    rows: dict[str, dict[str, str]] = {}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) != "call":
                continue
            for name, row in getattr(rep, "user_properties", ()):
                if name != "comparison":
                    continue
                mark = "stopped" if row["stopped"] else "NOT STOPPED"
                cells = rows.setdefault(row["attack"], {})
                # Tried several ways (interfaces, stagings): not stopped once is not stopped.
                cells[row["tool"]] = mark if cells.get(row["tool"], mark) == mark else "NOT STOPPED"
    if not rows:
        return
    width = max(len(a) for a in rows)
    terminalreporter.section("comparison with other runtimes")
    terminalreporter.write_line(f"{'attack':<{width}} | " + " | ".join(f"{t:<11}" for t in TOOLS))
    for attack in sorted(rows):
        terminalreporter.write_line(f"{attack:<{width}} | "
                                    + " | ".join(f"{rows[attack].get(t, '-'):<11}" for t in TOOLS))


@pytest.fixture
def comparison(request: pytest.FixtureRequest) -> Callable[[str, str, bool, str], None]:
    """``compare`` bound to the running test: ``comparison(attack, tool, stopped, detail)``."""
    return lambda attack, tool, stopped, detail: compare(request, attack, tool, stopped, detail)
