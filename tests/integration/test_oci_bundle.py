"""A bundle written by ``isolate-oci spec``, edited as a user would, run through ``container_from_bundle``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import isolate

from isolate.oci import container_from_bundle
from isolate.oci.features import default_spec

pytestmark = [pytest.mark.root]


def make_bundle(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A root filesystem of the host's /usr (bound read-only) and merged-/usr symlinks."""
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "srv").mkdir()
    for name in ("bin", "sbin", "lib", "lib64"):
        host = Path("/", name)
        if host.is_symlink():
            (rootfs / name).symlink_to(os.readlink(host))
        elif host.is_dir():
            config["mounts"].append({"destination": f"/{name}", "type": "bind", "source": str(host),
                                     "options": ["rbind", "ro"]})
    config["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr",
                             "options": ["rbind", "ro", "nosuid"]})
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("rootless", [False, True], ids=["default", "rootless"])
def test_run_a_bundle(tmp_path: Path, rootless: bool) -> None:
    config = default_spec(rootless=rootless)
    config["process"].update(
        terminal=False, cwd="/srv", env=["PATH=/usr/bin:/bin", "FOO=bar"],
        args=["sh", "-c", ('echo "$FOO $(hostname) $(id -u) $(pwd) $(ulimit -n)"; '
                           "grep CapEff /proc/self/status; echo x > /srv/f 2>/dev/null || echo ro; exit 7")])
    config["process"]["rlimits"][0].update(soft=123, hard=456)
    config["hostname"] = "box"
    config["linux"].pop("resources", None)      # the cgroup side is tested with Limits
    bundle = make_bundle(tmp_path, config)
    container, conv = container_from_bundle(bundle)
    with conv, container:
        result = container.run(list(conv.args), timeout=60)
    assert result.returncode == 7, result
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "bar box 0 /srv 123"
    # CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10) and nothing else.
    assert lines[1].split() == ["CapEff:", f"{(1 << 29) | (1 << 5) | (1 << 10):016x}"]
    assert lines[2] == "ro"                        # root.readonly
    assert not (tmp_path / "rootfs" / "srv" / "f").exists()


def test_seccomp_and_tmpfs_from_the_config(tmp_path: Path) -> None:
    config = default_spec()
    config["process"].update(terminal=False, env=["PATH=/usr/bin:/bin"],
                             args=["sh", "-c", "mkdir /scratch/a && touch /scratch/b && ls /scratch"])
    config["linux"].pop("resources")
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    config["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                             "options": ["size=1m", "mode=1777"]})
    container, conv = container_from_bundle(make_bundle(tmp_path, config))
    with conv, container:
        result = container.run(list(conv.args), timeout=60)
    assert result.returncode == 1, result
    assert b"Permission denied" in result.stderr           # errnoRet 13 = EACCES
    config["process"]["args"] = ["sh", "-c", "touch /scratch/b && ls /scratch"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    container, conv = container_from_bundle(tmp_path)
    with conv, container:
        result = container.run(list(conv.args), timeout=60)
    assert (result.returncode, result.stdout) == (0, b"b\n"), result


def test_container_from_bundle_runs_the_configs_process(tmp_path: Path) -> None:
    config = default_spec()
    config["process"].update(terminal=False, args=["sh", "-c", "echo $(hostname) $FOO; exit 3"],
                             env=["PATH=/usr/bin:/bin", "FOO=from-config"])
    config["hostname"] = "bundled"
    config["linux"].pop("resources", None)
    config["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"})
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                     if n["type"] != "network" or "path" in n]
    bundle = make_bundle(tmp_path, config)
    with isolate.Container.from_bundle(bundle) as c:
        assert c.args == ("sh", "-c", "echo $(hostname) $FOO; exit 3")
        result = c.run(list(c.args), timeout=60)
        joined = c._conversion.join
    assert (result.returncode, result.stdout) == (3, b"bundled from-config\n")
    assert all(ns.closed for ns in joined)          # the joined network namespace was released
    with pytest.raises(isolate.ConfigError, match="cannot read config.json"):
        isolate.Container.from_bundle(tmp_path / "nope")
