"""Hostile config.json files given to ``isolate-oci create``: one line, exit 1, nothing left behind.

Hypothesis starts from a valid busybox bundle and breaks it: wrong types,
absurd numbers, unknown or duplicate namespaces, relative and ``..`` mount
destinations, a missing root, empty args.  Whatever the config, create either
fails with exactly one line naming a field (and leaves ``--root`` empty, no
cgroup, mount or process: the autouse leak check), or the mutation was
harmless and the container is created and deleted like any other.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from support import base_config, make_busybox_rootfs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isolate.cli.oci import main

pytestmark = [pytest.mark.root]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)

# Where a mutation lands: (path in the config, value strategy).
FIELDS = [
    ("process.args", JSON), ("process.cwd", st.sampled_from(["", "rel/dir", "/../..", "/ok", 7])),
    ("process.env", JSON), ("process.user.uid", JSON), ("process.rlimits", JSON),
    ("process.capabilities.bounding", st.lists(st.sampled_from(["CAP_KILL", "CAP_BOGUS", "", "kill"]),
                                               max_size=3)),
    ("root", JSON), ("root.path", st.sampled_from(["missing", "", "/nonexistent", "rootfs/../.."])),
    ("hostname", JSON), ("mounts", JSON),
    ("linux.namespaces", st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["pid", "mount", "network", "ipc", "uts", "bogus", "pid"])}), max_size=4)),
    ("linux.resources.memory.limit", JSON), ("linux.resources.pids.limit", JSON),
    ("linux.resources.cpu", JSON), ("linux.uidMappings", JSON), ("linux.maskedPaths", JSON),
    ("linux.seccomp", JSON), ("hooks.prestart", JSON), ("ociVersion", JSON),
]
MOUNT_DESTS = st.sampled_from(["relative", "/ok/../../etc", "../x", "/proc/../..", ""])


def put(config: dict[str, Any], path: str, value: Any) -> None:
    node = config
    *parents, last = path.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("hostile") / "rootfs")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.sampled_from(FIELDS).flatmap(lambda f: st.tuples(st.just(f[0]), f[1])),
                      min_size=1, max_size=3),
       dest=st.none() | MOUNT_DESTS)
def test_hostile_config_is_one_line_or_a_working_container(rootfs: Path, edits: list[tuple[str, Any]],
                                                           dest: str | None) -> None:
    config = base_config(["true"], cgroups_path=f"/isolate-test-hostile-{os.getpid()}/c")
    for path, value in edits:
        put(config, path, copy.deepcopy(value))
    if dest is not None:
        mounts = config.get("mounts") if isinstance(config.get("mounts"), list) else []
        config["mounts"] = [*mounts, {"destination": dest, "type": "tmpfs", "source": "tmpfs"}]
    with tempfile.TemporaryDirectory(prefix="isolate-hostile-") as d:
        bundle, state = Path(d, "bundle"), Path(d, "state")
        bundle.mkdir()
        os.symlink(rootfs, bundle / "rootfs")
        try:
            text = json.dumps(config)
        except ValueError:
            return
        (bundle / "config.json").write_text(text)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), open(os.devnull, "w") as null, \
                contextlib.redirect_stdout(null):
            rc = main(["--root", str(state), "create", "--bundle", str(bundle), "c1"])
        if rc == 0:
            # The mutation left a valid config: the container exists; remove it.
            assert main(["--root", str(state), "delete", "--force", "c1"]) == 0
        else:
            lines = err.getvalue().splitlines()
            assert rc == 1 and len(lines) == 1 and lines[0].startswith("isolate-oci: create: "), lines
        assert not state.exists() or os.listdir(state) == []
        name = f"isolate-test-hostile-{os.getpid()}"
        for top in [*Path("/sys/fs/cgroup").glob(f"*/{name}"), *Path("/sys/fs/cgroup").glob(name)]:
            below = [p for p in top.iterdir() if p.is_dir()]
            assert not below, f"container cgroup left behind: {below}"
            os.rmdir(top)       # the parent linux.cgroupsPath made (runtimes keep parents)
