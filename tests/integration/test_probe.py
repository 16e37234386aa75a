"""``isolate.probe()`` and ``isolate probe`` on the real host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import isolate
from isolate import _ops as O
from isolate._probe import parse_kernel_version, parse_status_seccomp
from isolate._spawn import clone3_available

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def result() -> isolate.Probe:
    return isolate.probe()


def test_every_namespace_type_is_available_here(result: isolate.Probe) -> None:
    assert set(result.namespaces) == set(isolate.NAMESPACE_TYPES)
    for t, f in result.namespaces.items():
        assert f.available, (t, f.reason)
        assert f"new {t} namespace" in f.reason  # really spawned, not guessed


def test_every_feature_has_a_name_and_a_reason(result: isolate.Probe) -> None:
    feats = result.features()
    assert set(feats) == {f"namespace.{t}" for t in isolate.NAMESPACE_TYPES} | {
        "userns_limits", "clone3", "clone_into_cgroup", "cgroup", "new_mount_api",
        "mount_setattr", "idmapped_mounts", "pidfd", "close_range", "seccomp", "newidmap",
        "subids"}
    for key, f in feats.items():
        assert isinstance(f, isolate.Feature)
        assert f.name and f.reason.strip(), key
        assert f.available or f.how_to_enable, key  # a missing feature says how to get it


def test_namespace_probes_are_cached_per_process(result: isolate.Probe) -> None:
    again = isolate.probe()
    assert all(again.namespaces[t] is result.namespaces[t] for t in result.namespaces)
    fresh = isolate.probe(refresh=True)
    assert all(fresh.namespaces[t] is not result.namespaces[t] for t in result.namespaces)
    assert fresh.namespaces == result.namespaces


def test_host_facts_match_independent_checks(result: isolate.Probe) -> None:
    assert result.kernel == os.uname().release
    assert result.clone3.available == clone3_available()
    limits = result.userns_limits.details
    assert limits["user.max_user_namespaces"] == int(
        Path("/proc/sys/user/max_user_namespaces").read_text())
    fstypes = {line.split()[2] for line in Path("/proc/self/mounts").read_text().splitlines()}
    expect = {(True, True): "hybrid", (True, False): "v1", (False, True): "v2"}.get(
        ("cgroup" in fstypes, "cgroup2" in fstypes), "none")
    assert result.cgroup_layout == expect
    status = Path("/proc/self/status").read_text()
    assert result.seccomp.details["mode"] == parse_status_seccomp(status)[0]


def test_syscall_features_on_this_kernel(result: isolate.Probe) -> None:
    # Linux 5.12+ has every syscall probed here (the suite needs far newer).
    assert parse_kernel_version(result.kernel) >= (5, 12, 0)
    for f in (result.new_mount_api, result.mount_setattr, result.pidfd, result.close_range,
              result.idmapped_mounts, result.clone_into_cgroup):
        assert f.available, (f.name, f.reason)
    calls = result.new_mount_api.details
    assert set(calls) == {"open_tree", "move_mount", "fsopen", "fsconfig", "fsmount"}
    # Invalid arguments on purpose: every call fails, with anything but ENOSYS.
    assert all(v not in ("ok", "ENOSYS", "EPERM", "unknown") for v in calls.values()), calls


def test_probing_leaves_every_fd_open(result: isolate.Probe) -> None:
    # close_range is probed with first > last: nothing may be closed.
    r, w = os.pipe()
    try:
        isolate.probe(refresh=True)
        os.fstat(r)
        os.fstat(w)
    finally:
        os.close(r)
        os.close(w)


def test_to_dict_is_json_and_complete(result: isolate.Probe) -> None:
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kernel"] == result.kernel
    assert set(data["features"]) == set(result.features())
    for item in data["features"].values():
        assert set(item) == {"name", "available", "reason", "how_to_enable", "details"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isolate", "probe", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_json_parses_and_exits_0(result: isolate.Probe) -> None:
    r = cli("--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert all(data["features"][f"namespace.{t}"]["available"] for t in isolate.NAMESPACE_TYPES)
    assert all(item["reason"] for item in data["features"].values())


def test_cli_table_lists_every_feature(result: isolate.Probe) -> None:
    r = cli()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"isolate probe: Linux {os.uname().release}")
    for f in result.features().values():
        assert any(line.startswith(f.name + " ") for line in r.stdout.splitlines()), f.name


NOBODY = 65534

AS_NOBODY = r"""
import json, os, sys
import isolate
out = {"probe": isolate.probe().to_dict()}
try:
    isolate.Namespace.create("net", "/tmp/isolate-test-nobody-net")
    out["create"] = None
except isolate.SpawnError as e:
    out["create"] = [e.errno, os.path.exists("/tmp/isolate-test-nobody-net")]
print(json.dumps(out))
"""


def _python_as_nobody(code: str) -> dict[str, object]:
    """Run ``code`` as nobody, with every capability gone, seeing this Python even under /root."""
    from isolate import _plan as P

    need = {os.path.realpath(sys.executable), sys.base_prefix, sys.prefix,
            os.path.dirname(isolate.__file__), os.path.dirname(os.__file__)}
    subtrees = sorted({"/root/" + p.split("/")[2] for p in need if p.startswith("/root/")})
    ops: list[P.Op] = []
    if subtrees and os.stat("/root").st_mode & 0o001 == 0:
        # /root is private to root: in a new mount namespace, show nobody only these.
        ops.append(O.Mount(b"tmpfs", b"/mnt", b"tmpfs", 0, b"mode=755"))
        for i, d in enumerate(subtrees):
            ops += [O.Mkdir(f"/mnt/{i}".encode()), O.Bind(d.encode(), f"/mnt/{i}".encode())]
        ops.append(O.Mount(b"tmpfs", b"/root", b"tmpfs", 0, b"mode=755"))
        for i, d in enumerate(subtrees):
            ops += [O.Mkdir(d.encode()), O.Bind(f"/mnt/{i}".encode(), d.encode())]
    r = isolate.run([sys.executable, "-c", code], namespaces={"mnt"}, ops=ops, cwd="/",
                    user=NOBODY, group=NOBODY, groups=[], capture_output=True, timeout=120,
                    env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                         "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.mark.userns
def test_unprivileged_probe_explains_what_needs_a_user_namespace() -> None:
    out = _python_as_nobody(AS_NOBODY)
    feats = out["probe"]["features"]  # type: ignore[index]
    assert out["probe"]["euid"] == NOBODY  # type: ignore[index]
    assert feats["namespace.user"]["available"]
    for t in isolate.NAMESPACE_TYPES - {"user"}:
        f = feats[f"namespace.{t}"]
        assert f["available"] and f["details"] == {"needs_user_namespace": True}, f
        assert "CAP_SYS_ADMIN" in f["reason"]
    if not feats["subids"]["available"]:
        assert "usermod --add-subuids" in feats["subids"]["how_to_enable"]
    # Binding a namespace needs privilege: a clean EPERM, nothing left behind.
    assert out["create"] == [1, False]
