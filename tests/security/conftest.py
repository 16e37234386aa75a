"""Helpers for the escape attempts: a host-only marker file and a container runner.

Every attack runs in the default ``Container()`` (all namespaces, OCI default
capabilities, no_new_privs, Docker's default seccomp profile) unless the test
turns one defence off to show that the next one still holds.
"""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest


def _suite_conftest():  # type: ignore[no-untyped-def]
    """tests/conftest.py, whose module name this file shadows for the tests here."""
    spec = importlib.util.spec_from_file_location("isolate_suite_conftest",
                                                  Path(__file__).resolve().parent.parent / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_suite = _suite_conftest()
#: The suite's OCI bundle helpers (tests/conftest.py), for the attacks run through isolate-oci.
base_config = _suite.base_config
make_busybox_rootfs = _suite.make_busybox_rootfs

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


# --- comparison with other runtimes ---------------------------------------------------------------

#: (attack, tool, stopped, detail) rows, printed as a table at the end of the run.
COMPARISON: list[tuple[str, str, bool, str]] = []


def compare(attack: str, tool: str, stopped: bool, detail: str = "") -> None:
    """Record how ``tool`` (isolate, runc, crun, bwrap) fared against ``attack``."""
    COMPARISON.append((attack, tool, stopped, detail))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not COMPARISON:
        return
    tools = ["isolate", "runc", "crun", "bwrap"]
    rows: dict[str, dict[str, str]] = {}
    for attack, tool, stopped, detail in COMPARISON:
        cell = "stopped" if stopped else "NOT stopped"
        rows.setdefault(attack, {})[tool] = cell + (f" ({detail})" if detail else "")
    terminalreporter.section("the same attacks against other runtimes")
    terminalreporter.write_line(" | ".join(["attack"] + tools))
    for attack, cells in rows.items():
        terminalreporter.write_line(" | ".join([attack] + [cells.get(t, "-") for t in tools]))
