"""The OCI tests' planners: ``isolate-oci`` starts a warm planner (``isolate.oci.warm``) on its
first call; during the session they live in a directory of the session's own, and are ended
(and their directory removed) at its end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def planner_pids(directory: Path) -> list[int]:
    """The pids of the planners listening in ``directory`` (each socket's peer)."""
    pids = []
    for path in directory.glob("planner-*.sock"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(str(path))
            pid, _, _ = struct.unpack("=3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            pids.append(pid)
        except OSError:
            pass
        finally:
            s.close()
    return pids


def stop_planners(directory: Path) -> None:
    """End the planners of ``directory`` (SIGTERM: each removes its socket) and wait for them."""
    for pid in planner_pids(directory):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            import select

            select.select([fd], [], [], 10)
        finally:
            os.close(fd)


@pytest.fixture(scope="session", autouse=True)
def planner_dir() -> Iterator[Path]:
    """ISOLATE_OCI_PLANNER_DIR for the session: a directory of its own, left empty and removed."""
    directory = Path(tempfile.mkdtemp(prefix="isolate-test-planners-"))
    old = os.environ.get("ISOLATE_OCI_PLANNER_DIR")
    os.environ["ISOLATE_OCI_PLANNER_DIR"] = str(directory)
    try:
        yield directory
    finally:
        if old is None:
            del os.environ["ISOLATE_OCI_PLANNER_DIR"]
        else:
            os.environ["ISOLATE_OCI_PLANNER_DIR"] = old
        stop_planners(directory)
        for _ in range(100):
            if not directory.exists() or not any(directory.iterdir()):
                break
            time.sleep(0.05)
        if directory.exists():
            # A planner killed by a test leaves its socket and its warm bundle.
            shutil.rmtree(directory)
