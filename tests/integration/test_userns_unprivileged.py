"""User namespaces created by an unprivileged caller.

The test runs a Python as ``nobody`` (with every capability gone) inside a
private mount namespace where /etc/subuid and /etc/subgid hold a range for
``nobody``, so the host's files are never touched.  There, a single-id map is
written directly (with setgroups denied), and a multi-range map goes through
Debian's setuid newuidmap/newgidmap.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

import isolate
from isolate import _ops as O
from isolate import _plan as P

pytestmark = [pytest.mark.root, pytest.mark.userns]

NOBODY = 65534

CHILD = r"""
import json, os, sys
import isolate
from isolate import IdMap
out = {}
r = isolate.run(["sh", "-c", "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/setgroups"],
                namespaces={"user"}, capture_output=True)
out["single"] = [r.returncode, r.stdout.decode(), r.stderr.decode()]
maps = [IdMap(inside=0, outside=os.getuid()), IdMap(inside=1, outside=200000, count=1000)]
gmaps = [IdMap(inside=0, outside=os.getgid()), IdMap(inside=1, outside=200000, count=1000)]
r = isolate.run(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map"], namespaces={"user"},
                uid_map=maps, gid_map=gmaps, capture_output=True)
out["multi"] = [r.returncode, r.stdout.decode(), r.stderr.decode()]
bad = [IdMap(inside=0, outside=os.getuid()), IdMap(inside=1, outside=900000, count=10)]
try:
    isolate.run(["true"], namespaces={"user"}, uid_map=bad, gid_map=gmaps)
    out["refused"] = None
except isolate.ConfigError as e:
    out["refused"] = str(e)
print(json.dumps(out))
"""


def _root_subtrees() -> set[str]:
    """Directories under /root that this Python needs (pyenv keeps its Pythons there)."""
    need = {os.path.realpath(sys.executable), sys.base_prefix, sys.prefix,
            os.path.dirname(isolate.__file__), os.path.dirname(os.__file__)}
    return {"/root/" + p.split("/")[2] for p in need if p.startswith("/root/")}


@pytest.mark.skipif(shutil.which("newuidmap") is None, reason="the uidmap package is not installed")
def test_unprivileged_single_and_multi_range_maps(tmp_path: Path) -> None:
    for name in ("subuid", "subgid"):
        (tmp_path / name).write_text("nobody:200000:65536\n")
    stage = tmp_path / "stage"
    stage.mkdir()
    ops: list[P.Op] = []
    subtrees = sorted(_root_subtrees())
    if subtrees and os.stat("/root").st_mode & 0o001 == 0:
        # /root is private to root: show nobody only what this Python needs, in this namespace.
        for i, d in enumerate(subtrees):
            (stage / str(i)).mkdir()
            ops.append(O.Bind(d.encode(), str(stage / str(i)).encode()))
        ops.append(O.Mount(b"tmpfs", b"/root", b"tmpfs", 0, b"mode=755"))
        for i, d in enumerate(subtrees):
            ops.append(O.Mkdir(d.encode()))
            ops.append(O.Bind(str(stage / str(i)).encode(), d.encode()))
    for name in ("subuid", "subgid"):
        target = f"/etc/{name}"
        if not os.path.exists(target):
            pytest.skip(f"{target} does not exist to bind over")
        ops.append(O.Bind(str(tmp_path / name).encode(), target.encode()))
    os.chmod(tmp_path, 0o755)
    r = isolate.run([sys.executable, "-c", CHILD], namespaces={"mnt"}, ops=ops, cwd="/",
                    user=NOBODY, group=NOBODY, groups=[], capture_output=True,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                         "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)

    rc, text, err = out["single"]
    assert rc == 0, err
    lines = text.split("\n")
    assert lines[0] == "0" and lines[1] == "0"
    assert lines[2].split() == ["0", str(NOBODY), "1"]
    assert lines[3] == "deny"  # required for an unprivileged gid_map write (CVE-2014-8989)

    rc, text, err = out["multi"]
    assert rc == 0, err
    rows = [line.split() for line in text.strip().split("\n")]
    assert rows == [["0", str(NOBODY), "1"], ["1", "200000", "1000"],
                    ["0", str(NOBODY), "1"], ["1", "200000", "1000"]]

    # A range outside nobody's subuid entry: newuidmap refuses, and the error says so.
    assert out["refused"] is not None and "newuidmap" in out["refused"]
