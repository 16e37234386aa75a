"""``isolate-oci`` under faults: a ``create`` killed at any moment, a caller in another cgroup.

A runtime driven by containerd or podman may be killed (``kill -9``) at any
point, and its later calls may come from another process in another cgroup.
Whatever happened, ``state``, ``list`` and ``delete --force`` must answer
within a few seconds (every call here has a timeout: a hang is a failure),
``delete --force`` must leave nothing (no state directory, cgroup, process
or mount), and the id must be usable again.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root]

OCI = str(Path(sys.executable).parent / "isolate-oci")
#: Seconds any call gets to answer; more is a hang.
ANSWER = 10.0


def oci(root: Path, *args: str, timeout: float = ANSWER) -> subprocess.CompletedProcess[str]:
    """``isolate-oci --root ROOT ARGS``, failing the test if it does not answer within ``timeout``.

    Output goes through files: a container made by ``create`` keeps the runtime's stdio.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            r = subprocess.run([OCI, "--root", str(root), *args], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=err, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"isolate-oci {' '.join(args)}: no answer in {timeout} s")
        out.seek(0)
        err.seek(0)
        r.stdout, r.stderr = out.read(), err.read()
    return r


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


# --- a caller in another cgroup -------------------------------------------------------


def test_delete_from_another_cgroup(make_bundle: Callable[..., Path], oci_cgroup_parent: str,
                                    tmp_path: Path) -> None:
    """Without linux.cgroupsPath the container's group sits under its creator's own cgroup
    (``<own>/isolate/<id>``); later calls come from another cgroup and must still find it,
    from the paths state.json recorded (they fail with "no such cgroup" when they look
    under their own)."""
    import isolate
    from isolate.cgroup import KNOWN_CONTROLLERS, Cgroup, detect

    root = tmp_path / "state"
    bundle = make_bundle(["sleep", "30"], edit=lambda c: c["linux"].pop("cgroupsPath"))
    controllers = sorted(set(detect().v1) & KNOWN_CONTROLLERS)
    a = Cgroup.create("creator", parent=oci_cgroup_parent, controllers=controllers)
    b = Cgroup.create("other", parent=oci_cgroup_parent, controllers=controllers)
    made: list[str] = []
    try:
        def in_cgroup(cg: Cgroup, *args: str) -> subprocess.CompletedProcess[bytes]:
            with open(tmp_path / "out", "w+b") as out:
                r = isolate.run([OCI, "--root", str(root), *args], cgroup=cg, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, timeout=ANSWER)
                out.seek(0)
                r.stdout = out.read()
            return r

        r = in_cgroup(a, "create", "--bundle", str(bundle), "c1")
        assert r.returncode == 0, r.stdout
        paths = json.loads((root / "c1" / "state.json").read_text())["cgroup"]["paths"]
        made = [os.path.dirname(p) for p in paths]          # <creator>/isolate, made by create
        assert paths and all(f"/{oci_cgroup_parent}/creator/isolate/c1" in p for p in paths), paths
        pid = json.loads(in_cgroup(b, "state", "c1").stdout)["pid"]
        assert alive(pid)
        r = in_cgroup(b, "ps", "--format", "json", "c1")
        assert r.returncode == 0 and json.loads(r.stdout) == [pid], r.stdout
        assert in_cgroup(b, "pause", "c1").returncode == 0
        assert json.loads(in_cgroup(b, "state", "c1").stdout)["status"] == "paused"
        assert in_cgroup(b, "resume", "c1").returncode == 0
        r = in_cgroup(b, "delete", "--force", "c1")
        assert r.returncode == 0, r.stdout
        assert not alive(pid)
        assert [p for p in paths if os.path.exists(p)] == []
        assert os.listdir(root) == []
        assert in_cgroup(b, "list", "-q").stdout == b""
    finally:
        if (root / "c1").exists():
            oci(root, "delete", "--force", "c1")
        for d in made:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
        a.close()
        b.close()
