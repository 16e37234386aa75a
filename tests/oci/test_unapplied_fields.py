"""A field isolate-oci cannot apply is refused: one line naming it, exit 1, nothing made.

The runtime spec: a runtime that cannot apply a property must fail.  Before,
such fields were dropped with a warning only ``--debug`` showed, and the
container ran without what it asked for.  Each case here is a config that
converts cleanly except for one field the converter reports as not applied;
``create`` (and ``exec``, for a process.json) must refuse it, naming the field,
and leave no state, cgroup or process behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import base_config, make_busybox_rootfs

from isolate.cli.oci import main

pytestmark = [pytest.mark.root]

Edit = Callable[[dict[str, Any]], None]


def _mount(m: dict[str, Any]) -> Edit:
    return lambda c: c.setdefault("mounts", []).append(m)


def _seccomp_flags(c: dict[str, Any]) -> None:
    c.setdefault("linux", {})["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                            "flags": ["SECCOMP_FILTER_FLAG_LOG"]}


def _umask(c: dict[str, Any]) -> None:
    c["process"].setdefault("user", {"uid": 0, "gid": 0})["umask"] = 0o1022


# (what the error must name, the edit)
CASES: list[tuple[str, Edit]] = [
    ("mounts[", _mount({"destination": "/mnt", "type": "nfs", "source": "host:/x"})),
    ("options", _mount({"destination": "/mnt", "type": "bind", "source": "/tmp",
                        "options": ["rbind", "rshared"]})),
    ("linux.seccomp.flags", _seccomp_flags),
    ("process.user.umask", _umask),
]


def _oci(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), open(os.devnull, "w") as null, \
            contextlib.redirect_stdout(null):
        rc = main(list(args))
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("unapplied") / "rootfs")


@contextlib.contextmanager
def _bundle(rootfs: Path, config: dict[str, Any]) -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="isolate-unapplied-") as d:
        bundle, state = Path(d, "bundle"), Path(d, "state")
        bundle.mkdir()
        os.symlink(rootfs, bundle / "rootfs")
        (bundle / "config.json").write_text(json.dumps(config))
        yield bundle, state


def _cgroup_name() -> str:
    return f"isolate-test-unapplied-{os.getpid()}"


def _no_container_cgroup() -> None:
    name = _cgroup_name()
    for top in [*Path("/sys/fs/cgroup").glob(f"*/{name}"), *Path("/sys/fs/cgroup").glob(name)]:
        below = [p for p in top.iterdir() if p.is_dir()]
        assert not below, f"container cgroup left behind: {below}"
        os.rmdir(top)       # the parent linux.cgroupsPath made (runtimes keep parents)


@pytest.mark.parametrize("field,edit", CASES, ids=[c[0] for c in CASES])
def test_create_refuses_a_field_it_cannot_apply(rootfs: Path, field: str, edit: Edit) -> None:
    config = base_config(["true"], cgroups_path=f"/{_cgroup_name()}/c")
    edit(config)
    with _bundle(rootfs, config) as (bundle, state):
        rc, err = _oci("--root", str(state), "create", "--bundle", str(bundle), "c1")
        if rc == 0:
            _oci("--root", str(state), "delete", "--force", "c1")
        lines = err.splitlines()
        assert rc == 1 and len(lines) == 1, (rc, lines)
        assert lines[0].startswith("isolate-oci: create: ") and "cannot apply" in lines[0], lines
        assert field in lines[0], lines
        assert not state.exists() or os.listdir(state) == []
    _no_container_cgroup()


def test_the_runtime_applies_the_terminal_itself(rootfs: Path) -> None:
    # process.terminal is reported by the converter (Container does not apply it) but
    # the runtime does, through the console socket: never a refusal.  Without a socket
    # the runtime says what is missing instead.
    config = base_config(["true"], cgroups_path=f"/{_cgroup_name()}/c")
    config["process"]["terminal"] = True
    with _bundle(rootfs, config) as (bundle, state):
        rc, err = _oci("--root", str(state), "create", "--bundle", str(bundle), "c1")
        if rc == 0:
            _oci("--root", str(state), "delete", "--force", "c1")
        assert rc == 1 and "console-socket" in err and "cannot apply" not in err, err
    _no_container_cgroup()


def test_exec_refuses_a_process_field_it_cannot_apply(rootfs: Path) -> None:
    config = base_config(["sleep", "1000"], cgroups_path=f"/{_cgroup_name()}/c")
    with _bundle(rootfs, config) as (bundle, state):
        assert _oci("--root", str(state), "create", "--bundle", str(bundle), "c1")[0] == 0
        try:
            assert _oci("--root", str(state), "start", "c1")[0] == 0
            proc = {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0, "umask": 0o1022}}
            pfile = bundle / "process.json"
            pfile.write_text(json.dumps(proc))
            rc, err = _oci("--root", str(state), "exec", "--process", str(pfile), "c1")
            assert rc != 0 and "process.user.umask" in err and "cannot apply" in err, err
            # The container is untouched.
            rc, out = 0, io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = main(["--root", str(state), "state", "c1"])
            assert rc == 0 and json.loads(out.getvalue())["status"] == "running"
        finally:
            _oci("--root", str(state), "delete", "--force", "c1")
    _no_container_cgroup()
