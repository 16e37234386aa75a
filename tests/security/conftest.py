"""Helpers for the escape attempts: a host-only marker file and a container runner.

Every attack runs in the default ``Container()`` (all namespaces, OCI default
capabilities, no_new_privs, Docker's default seccomp profile) unless the test
turns one defence off to show that the next one still holds.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Iterator

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
