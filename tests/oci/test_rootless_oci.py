"""``isolate-oci`` run by an ordinary user, as runc's rootless mode is, and runc beside it.

Every command runs as the session's unprivileged user (tests/rootless.py):
``spec --rootless`` then ``run``, the create/start/state/kill/delete
lifecycle, exec, the state root under ``$XDG_RUNTIME_DIR``, device nodes
bound from the host (mknod is refused in a user namespace), and resources:
skipped with a warning when no cgroup is delegated, applied when
``linux.cgroupsPath`` names a delegated subtree.  The same bundle runs under
``runc --root $XDG_RUNTIME_DIR/runc`` to compare.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import force_remove_cgroup, glob_below, make_busybox_rootfs

pytestmark = [pytest.mark.root, pytest.mark.userns]

# The default nodes, their numbers, and a linux.devices entry the user namespace must bind.
NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
SHOW_NODES = ("for n in null zero full random urandom tty kmsg; do stat -c '%n %F %t:%T' /dev/$n; done; "
              "echo x > /dev/null && head -c 3 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c")


class Bundle:
    """A bundle directory the user owns: busybox root, config.json from ``spec --rootless``."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.dir = Path(tempfile.mkdtemp(prefix="isolate-rootless-oci-", dir="/tmp"))
        self.dir.chmod(0o755)
        make_busybox_rootfs(self.dir / "rootfs")
        for path in [self.dir, *self.dir.rglob("*")]:
            os.chown(path, user.uid, user.gid, follow_symlinks=False)
        r = user.run([self.oci, "spec", "--rootless"], cwd=self.dir)
        assert r.returncode == 0, r.stderr

    @property
    def oci(self) -> str:
        return str(self.user.bin / "isolate-oci")

    def config(self, args: list[str], **linux: Any) -> dict[str, Any]:
        """Rewrite config.json: no terminal, ``args``, and ``linux`` fields added."""
        path = self.dir / "config.json"
        config = json.loads(path.read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = list(args)
        config["linux"].update(linux)
        path.write_text(json.dumps(config))
        return config

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def bundle(rootless: Any) -> Iterator[Bundle]:
    b = Bundle(rootless)
    try:
        yield b
    finally:
        b.remove()
        state = rootless.runtime_dir / "isolate-oci"
        left = sorted(os.listdir(state)) if state.exists() else []
        shutil.rmtree(rootless.runtime_dir / "runc", ignore_errors=True)
        assert not left, f"isolate-oci left state behind: {left}"


def cid() -> str:
    return f"rl-{uuid.uuid4().hex[:10]}"


def oci(bundle: Bundle, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
    return bundle.user.run([bundle.oci, *args], cwd=bundle.dir, env=env, **kw)


def create(bundle: Bundle, name: str, cgroups: list[str] | None = None) -> Any:
    """``isolate-oci create``, its output (and so the container's stdio) in a file: a created
    container holds what it inherits open, so captured pipes would never end."""
    out = bundle.dir / f"create-{name}.out"
    r = bundle.user.run(["sh", "-c", 'exec "$@" </dev/null >"$OUT" 2>&1', "sh", bundle.oci, "create", name],
                        cwd=bundle.dir, env={"OUT": str(out)}, cgroups=cgroups or ())
    r.stdout = out.read_text() if out.exists() else r.stderr
    return r


def runc(bundle: Bundle, *args: str, **kw: Any) -> Any:
    return bundle.user.run(["runc", "--root", str(bundle.user.runtime_dir / "runc"), *args],
                           cwd=bundle.dir, **kw)


def test_spec_rootless_then_run_as_runc_does(bundle: Bundle) -> None:
    config = bundle.config(["sh", "-c", "id; cat /proc/self/uid_map /proc/self/setgroups"])
    user = bundle.user
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]
    assert {"type": "user"} in config["linux"]["namespaces"]
    mine, theirs = oci(bundle, "run", cid()), runc(bundle, "run", cid())
    assert (mine.returncode, theirs.returncode) == (0, 0), (mine.stderr, theirs.stderr)
    assert mine.stdout.split() == theirs.stdout.split()
    # Root of the user's own single id; setgroups denied, as the kernel requires for that map.
    assert mine.stdout.split() == ["uid=0(root)", "gid=0(root)", "groups=0(root)", "0", str(user.uid), "1",
                                   "deny"]
    assert mine.stderr == ""


def test_lifecycle_and_exec_with_the_state_under_xdg_runtime_dir(bundle: Bundle) -> None:
    bundle.config(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    name = cid()
    state_dir = bundle.user.runtime_dir / "isolate-oci" / name
    r = create(bundle, name)
    assert r.returncode == 0, r.stdout
    try:
        assert state_dir.is_dir() and state_dir.stat().st_uid == bundle.user.uid
        assert not Path("/run/isolate-oci", name).exists()
        state = json.loads(oci(bundle, "state", name, check=True).stdout)
        assert state["status"] == "created" and state["id"] == name
        oci(bundle, "start", name, check=True)
        assert json.loads(oci(bundle, "state", name, check=True).stdout)["status"] == "running"
        r = oci(bundle, "exec", name, "sh", "-c", "id -u; ls /proc/1/ns/user >/dev/null; exit 5")
        assert (r.returncode, r.stdout) == (5, "0\n"), r.stderr
        oci(bundle, "kill", name, "TERM", check=True)
        for _ in range(200):
            if json.loads(oci(bundle, "state", name, check=True).stdout)["status"] == "stopped":
                break
        else:
            pytest.fail("the container never stopped after SIGTERM")
    finally:
        r = oci(bundle, "delete", "--force", name)
    assert r.returncode == 0, r.stderr
    assert not state_dir.exists()


def test_without_xdg_runtime_dir_an_error_says_what_to_do(bundle: Bundle) -> None:
    bundle.config(["true"])
    argv = ["env", "-u", "XDG_RUNTIME_DIR", bundle.oci, "run", cid()]
    r = bundle.user.run(argv, cwd=bundle.dir)
    assert r.returncode == 1
    assert "/run/isolate-oci is not writable" in r.stderr and "XDG_RUNTIME_DIR" in r.stderr
    assert "--root" in r.stderr
    # An explicit --root is used as given.
    root = bundle.dir / "state"
    r = bundle.user.run(["env", "-u", "XDG_RUNTIME_DIR", bundle.oci, "--root", str(root), "run", cid()],
                        cwd=bundle.dir)
    assert r.returncode == 0, r.stderr
    assert root.is_dir() and os.listdir(root) == []


def _nodes(out: str) -> dict[str, tuple[str, int, int]]:
    nodes = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("/dev/"):
            major, minor = (int(x, 16) for x in parts[-1].split(":"))
            nodes[parts[0][5:]] = (" ".join(parts[1:-1]), major, minor)
    return nodes


def test_device_nodes_are_bound_and_usable_like_runcs(bundle: Bundle) -> None:
    kmsg = {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644}
    bundle.config(["sh", "-c", SHOW_NODES], devices=[kmsg])
    mine, theirs = oci(bundle, "run", cid()), runc(bundle, "run", cid())
    assert (mine.returncode, theirs.returncode) == (0, 0), (mine.stderr, theirs.stderr)
    want = {name: ("character special file", *nums) for name, nums in {**NODES, "kmsg": (1, 11)}.items()}
    assert _nodes(mine.stdout) == want
    assert _nodes(theirs.stdout) == want
    # Written to /dev/null, read from /dev/zero and /dev/urandom.
    assert mine.stdout.split()[-2:] == ["3", "4"] == theirs.stdout.split()[-2:]


def test_resources_without_a_delegated_cgroup_are_skipped_with_a_warning(bundle: Bundle) -> None:
    bundle.config(["sh", "-c", "echo ran"], resources={"memory": {"limit": 64 << 20}, "pids": {"limit": 64}})
    r = oci(bundle, "run", cid())
    assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
    assert "warning: rootless: no cgroup for the container" in r.stderr
    assert "memory_max, pids_max" in r.stderr and "linux.cgroupsPath" in r.stderr
    # With --log the warning goes there (runc's format), not to stderr.
    log = bundle.dir / "log.json"
    r = oci(bundle, "--log", str(log), "--log-format", "json", "run", cid())
    assert (r.returncode, r.stdout, r.stderr) == (0, "ran\n", "")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["warning"]
    assert "no cgroup for the container" in entries[0]["msg"]
    # --rootless false: a cgroup refused is an error again (runc's flag, honoured).
    r = oci(bundle, "--rootless", "false", "run", cid())
    assert r.returncode == 1 and "warning" not in r.stderr
    assert "cgroup" in r.stderr and ("Permission denied" in r.stderr or "[Errno 13]" in r.stderr), r.stderr
    # runc 1.1 refuses limits it cannot apply; isolate-oci runs without them, as podman does.
    r = runc(bundle, "run", cid())
    assert r.returncode == 1 and "cannot set memory limit" in r.stderr


def test_a_config_with_no_resources_runs_without_a_cgroup_silently(bundle: Bundle) -> None:
    bundle.config(["sh", "-c", "echo ran"])
    r = oci(bundle, "--rootless", "true", "run", cid())
    assert (r.returncode, r.stdout, r.stderr) == (0, "ran\n", "")


def _cgroup_mounts() -> list[str]:
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [m[1] for m in mounts if m[2] in ("cgroup", "cgroup2")]


def _own(d: str, user: Any) -> None:
    """``d`` and its interface files (cgroup.procs, cgroup.subtree_control...) to ``user``."""
    os.chown(d, user.uid, user.gid)
    for f in os.listdir(d):
        if os.path.isfile(os.path.join(d, f)):
            os.chown(os.path.join(d, f), user.uid, user.gid)


@pytest.fixture
def delegated(rootless: Any) -> Iterator[str]:
    """``isolate-test-rootless-*`` in every hierarchy, owned by the user, with a ``session`` group
    below it that the user's commands start in (a login into a delegated subtree; on v2 its
    controllers enabled for the groups below it, as systemd's Delegate=yes)."""
    name = f"isolate-test-rootless-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    made = []
    try:
        for mount in _cgroup_mounts():
            top = os.path.join(mount, name)
            os.mkdir(top)
            made.append(top)
            os.mkdir(os.path.join(top, "session"))
            if os.path.exists(os.path.join(mount, "cpuset.cpus")):
                for f in ("cpuset.cpus", "cpuset.mems"):      # v1 cpuset: a new group has none
                    Path(top, f).write_text(Path(mount, f).read_text())
                    Path(top, "session", f).write_text(Path(mount, f).read_text())
            controllers = Path(top, "cgroup.controllers")
            if controllers.exists() and controllers.read_text().split():
                Path(top, "cgroup.subtree_control").write_text(
                    " ".join("+" + c for c in controllers.read_text().split()))
            _own(top, rootless)
            _own(os.path.join(top, "session"), rootless)
        yield name
    finally:
        below = [d for top in made for d in glob_below(top) if not d.endswith("/session")]
        for top in made:
            force_remove_cgroup(top)
    assert not below, f"container cgroups left behind: {below}"


@pytest.mark.parametrize("version", [pytest.param(1, marks=pytest.mark.cgroup1),
                                     pytest.param(2, marks=pytest.mark.cgroupv2)], ids=["v1", "v2"])
def test_resources_in_a_delegated_subtree_are_applied(bundle: Bundle, delegated: str, version: int) -> None:
    bundle.config(["sh", "-c", "cat /proc/self/cgroup"], cgroupsPath=f"/{delegated}/ctr",
                  resources={"memory": {"limit": 64 << 20}, "pids": {"limit": 64}})
    mounts = _cgroup_mounts()
    sessions = [os.path.join(m, delegated, "session") for m in mounts]
    if version == 1:
        mem = Path(next(m for m in mounts if m.endswith("/memory")), delegated, "ctr")
        pids = Path(next(m for m in mounts if m.endswith("/pids")), delegated, "ctr")
        mem_file = mem / "memory.limit_in_bytes"
    else:
        mem = pids = Path("/sys/fs/cgroup", delegated, "ctr")
        mem_file = mem / "memory.max"
    name = cid()
    r = create(bundle, name, sessions)
    assert (r.returncode, r.stdout) == (0, ""), r.stdout
    try:
        assert int(mem_file.read_text()) == 64 << 20
        assert (pids / "pids.max").read_text().strip() == "64"
        assert mem.stat().st_uid == bundle.user.uid
        pid = json.loads(oci(bundle, "state", name, check=True).stdout)["pid"]
        assert str(pid) in (mem / "cgroup.procs").read_text().split()
    finally:
        r = bundle.user.run([bundle.oci, "delete", "--force", name], cwd=bundle.dir, cgroups=sessions)
    assert r.returncode == 0, r.stderr
    assert not mem.exists() and not pids.exists()


def test_multi_range_maps_go_through_newuidmap(bundle: Bundle) -> None:
    user = bundle.user
    (sub_uid, _), (sub_gid, _) = user.subuid[0], user.subgid[0]
    maps = {"uidMappings": [{"containerID": 0, "hostID": user.uid, "size": 1},
                            {"containerID": 1, "hostID": sub_uid, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": user.gid, "size": 1},
                            {"containerID": 1, "hostID": sub_gid, "size": 65536}]}
    bundle.config(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups"], **maps)
    mine, theirs = oci(bundle, "run", cid()), runc(bundle, "run", cid())
    assert (mine.returncode, theirs.returncode) == (0, 0), (mine.stderr, theirs.stderr)
    assert mine.stdout.split() == theirs.stdout.split()
    assert mine.stdout.split() == ["0", str(user.uid), "1", "1", str(sub_uid), "65536",
                                   "0", str(user.gid), "1", "1", str(sub_gid), "65536", "allow"]


def test_additional_gids_with_a_single_id_map_are_refused_clearly(bundle: Bundle) -> None:
    config = bundle.config(["id"])
    config["process"]["user"]["additionalGids"] = [5]
    (bundle.dir / "config.json").write_text(json.dumps(config))
    r = oci(bundle, "run", cid())
    assert r.returncode == 1
    assert "process.user.additionalGids: [5] cannot be set" in r.stderr and "/etc/subgid" in r.stderr
