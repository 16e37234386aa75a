"""config.json -> Container options: what maps, and the list of what does not (nothing dropped silently)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from test_oci_examples import podman, runc_spec

from isolate import ConfigError, Container, IdMap, IoThrottle, UnsupportedError
from isolate.cgroup import DEFAULT_DEVICES, DeviceRule
from isolate.oci import container_from_bundle, parse, spec_to_config, spec_to_container_options  # noqa: F401
from isolate.seccomp import ArgCmp, SeccompProfile


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def podman_in(bundle: Path, **changes: Any) -> dict[str, Any]:
    d = podman()
    d["root"]["path"] = str(bundle / "rootfs")
    # A host without block device 8:0 still parses the numbers; IoThrottle only checks paths.
    for k, v in changes.items():
        d[k] = v
    return d


def test_runc_spec_maps_cleanly_except_what_is_listed(bundle: Path) -> None:
    with spec_to_config(parse(runc_spec()), bundle) as conv:
        c, p = conv.config, conv.config.process
        assert conv.args == ("sh",) == p.args
        assert c.namespaces == {"pid", "net", "ipc", "uts", "mnt"} and c.net == "none"
        assert conv.join == ()
        assert p.capabilities == {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
        assert p.rlimits == {"rlimit_nofile": (1024, 1024)}
        assert p.no_new_privs is True and p.seccomp is None
        # Without root, no supplementary groups are set unless the config asks (runc's rule).
        groups = () if os.geteuid() == 0 else None
        assert (p.user, p.group, p.groups, p.cwd) == (0, 0, groups, "/")
        assert p.env["TERM"] == "xterm" and c.hostname == "runc"
        assert c.root is not None and c.root.directory == bundle / "rootfs" and c.root.readonly is True
        # runc's "deny all" is followed by the default devices, as runc itself does.
        assert c.limits is not None and c.limits.devices == (DeviceRule(allow=False),) + DEFAULT_DEVICES
        # mqueue and the cgroup filesystem are mounted; the terminal is the runtime's job.
        assert sorted(conv.unsupported) == ["process.terminal: not applied yet: true"]
        Container(conv.config, join=conv.join).close()   # the config is accepted as it is


def test_the_deprecated_options_still_make_a_container(bundle: Path) -> None:
    with pytest.warns(DeprecationWarning), spec_to_container_options(parse(runc_spec()), bundle) as conv:
        with pytest.warns(DeprecationWarning):
            o = conv.options
        assert o["namespaces"] == {"pid", "net", "ipc", "uts", "mnt"} and o["hostname"] == "runc"
        Container(**o).close()


def test_rootless_runc_spec_maps_ids_and_keeps_host_network(bundle: Path) -> None:
    with spec_to_config(parse(runc_spec(rootless=True)), bundle) as conv:
        c = conv.config
        assert "user" in c.namespaces and "net" not in c.namespaces and c.net == "host"
        assert c.uid_map == (IdMap(inside=0, outside=os.geteuid(), count=1),)
        assert c.gid_map == (IdMap(inside=0, outside=os.getegid(), count=1),)
        assert c.root is not None and c.root.sys is True      # /sys comes as an rbind of the host's
        assert c.limits is None


def test_podman_like_config(bundle: Path) -> None:
    with spec_to_config(parse(podman_in(bundle)), bundle) as conv:
        c, p = conv.config, conv.config.process
        assert (p.user, p.group, p.groups, p.umask) == (1000, 1000, (10, 1000), 0o22)
        assert p.env is not None and p.env["EMPTY"] == "" and p.cwd == "/srv"
        assert c.uid_map == (IdMap(inside=0, outside=100000, count=65536),)
        assert c.namespaces == {"pid", "net", "ipc", "uts", "mnt", "user", "cgroup"}
        lim = c.limits
        assert lim is not None
        assert lim.memory_max == 256 << 20 and lim.memory_memsw_max == 512 << 20
        # shares 1024 as given: v1 writes cpu.shares 1024, v2 converts it to cpu.weight 39.
        assert lim.cpu_shares == 1024 and lim.cpu_weight is None
        assert (lim.cpu_quota_us, lim.cpu_period_us, lim.pids_max) == (50000, 100000, 100)
        assert lim.io_weight == 1 + (500 - 10) * 9999 // 990
        assert lim.io_throttle == (IoThrottle(device=(8, 0), read_bps=1 << 20, write_iops=100),)
        assert lim.devices[:2] == (DeviceRule(allow=False), DeviceRule(allow=True, type="c", major=10, minor=200))
        sc = p.seccomp
        assert isinstance(sc, SeccompProfile)
        assert (sc.default_action, sc.default_errno) == ("errno", errno.ENOSYS)
        assert sc.rules[0].names == ("read", "write", "exit_group") and sc.rules[0].action == "allow"
        assert sc.rules[1].args == (ArgCmp(index=0, op="eq", value=8),)
        # OCI's MASKED_EQ: value is the mask, valueTwo the expected result (runc, libseccomp).
        assert sc.rules[2].args == (ArgCmp(index=0, op="masked_eq", mask=2114060288, value=0),)
        assert (sc.rules[3].action, sc.rules[3].errno) == ("errno", 1)
        root = c.root
        assert root is not None
        assert [(b.target, b.readonly, b.recursive) for b in root.mounts if b.__class__.__name__ == "BindMount"] \
            == [(b"data", True, True)]
        assert [(t.target, t.size, t.mode) for t in root.mounts if t.__class__.__name__ == "TmpfsMount"] \
            == [(b"run", "1048576", 0o755)]
        assert root.readonly is False
        text = "\n".join(conv.unsupported)
        # The hooks run, and the runtime applies the oom score and the sysctls itself.
        assert sorted(conv.unsupported) == ['linux.cgroupsPath: not applied yet: "machine.slice:libpod:abc"']
        assert conv.oom_score_adj == 100
        assert [(s.key, s.value, s.path, s.ns) for s in conv.sysctl] == [
            ("net.ipv4.ping_group_range", "0 0", "net/ipv4/ping_group_range", "net")]
        # Every architecture is filtered, as libseccomp adds them for runc.
        assert isinstance(sc, SeccompProfile) and sc.architectures == ("x86_64", "x86", "x32")
        assert "mounts[5]" not in text and "mounts[6].options" not in text
        Container(c, join=conv.join).close()   # user namespace, limits and the seccomp profile are accepted


def test_capability_sets_are_passed_exactly(bundle: Path) -> None:
    d = runc_spec()
    d["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    d["process"]["capabilities"]["inheritable"] = ["CAP_KILL"]
    with spec_to_config(parse(d), bundle) as conv:
        sets = conv.config.process.capability_sets
        assert sets is not None
        assert sets["bounding"] == {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"}
        assert sets["permitted"] == sets["effective"] == {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
        assert sets["inheritable"] == {"CAP_KILL"}
        assert not any(u.startswith("process.capabilities") for u in conv.unsupported)
    del d["process"]["capabilities"]
    with spec_to_config(parse(d), bundle) as conv:
        # No process.capabilities: every set empty, as runc does.
        p = conv.config.process
        assert p.capabilities == frozenset() and p.capability_sets is not None
        assert all(not v for v in p.capability_sets.values())


def test_the_configs_masked_and_readonly_paths_are_applied_exactly(bundle: Path) -> None:
    d = runc_spec()
    d["linux"]["maskedPaths"].append("/proc/secret")
    with spec_to_config(parse(d), bundle) as conv:
        root = conv.config.root
        assert root is not None and root.oci_masks is False and b"proc/secret" in root.masked
        assert not any(u.startswith("linux.maskedPaths") for u in conv.unsupported)
    d["linux"]["maskedPaths"] = d["linux"]["readonlyPaths"] = []
    with spec_to_config(parse(d), bundle) as conv:
        root = conv.config.root
        assert root is not None and root.masked == root.readonly_paths == ()


def test_joining_a_namespace_by_path_opens_it_and_close_releases_it(bundle: Path) -> None:
    d = runc_spec()
    d["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/self/ns/net"}
    conv = spec_to_config(parse(d), bundle)
    (ns,) = conv.join
    assert ns.type == "net" and "net" not in conv.config.namespaces
    assert os.fstat(ns.fileno()).st_ino == os.stat("/proc/self/ns/net").st_ino
    conv.close()
    conv.close()
    assert ns.closed


@pytest.mark.parametrize("path, message", [
    ("/does/not/exist", "linux.namespaces[3].path: path: '/does/not/exist' does not exist"),
    ("/proc/self/ns/net", "linux.namespaces[3].path: path: '/proc/self/ns/net' is a net namespace, not uts"),
])
def test_bad_namespace_path(bundle: Path, path: str, message: str) -> None:
    d = runc_spec()
    d["linux"]["namespaces"][3] = {"type": "uts", "path": path}
    d.pop("hostname")
    with pytest.raises(ConfigError) as info:
        spec_to_config(parse(d), bundle)
    assert str(info.value) == message


def test_missing_root_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^root.path: rootfs: '.*/rootfs' does not exist"):
        spec_to_config(parse(runc_spec()), tmp_path)


def test_limits_the_host_cannot_meet_name_the_section(bundle: Path) -> None:
    d = runc_spec()
    d["linux"]["resources"]["cpu"] = {"cpus": "0-4095"}
    with pytest.raises(ConfigError, match=r"^linux.resources: Limits.cpuset_cpus='0-4095' is outside"):
        spec_to_config(parse(d), bundle)


@pytest.mark.parametrize("where", ["defaultAction", "syscalls"])
def test_seccomp_actions_isolate_cannot_apply_are_refused_not_dropped(bundle: Path, where: str) -> None:
    d = runc_spec()
    d["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW"}
    if where == "defaultAction":
        d["linux"]["seccomp"]["defaultAction"] = "SCMP_ACT_NOTIFY"
    else:
        d["linux"]["seccomp"]["syscalls"] = [{"names": ["mount"], "action": "SCMP_ACT_TRACE"}]
    with pytest.raises(UnsupportedError, match=r"^linux.seccomp.(defaultAction|syscalls\[0\].action): "):
        spec_to_config(parse(d), bundle)


def test_bind_source_relative_to_the_bundle_must_exist(bundle: Path) -> None:
    d = podman_in(bundle)
    d["mounts"][5]["source"] = "nowhere"
    with pytest.raises(ConfigError, match=r"^mounts\[5\]: bind source '.*/nowhere': No such file"):
        spec_to_config(parse(d), bundle)


def test_container_from_bundle(bundle: Path) -> None:
    import json

    (bundle / "config.json").write_text(json.dumps(runc_spec()))
    container, conv = container_from_bundle(bundle)
    with conv, container:
        assert container.hostname == "runc" and conv.args == ("sh",)
    with pytest.raises(UnsupportedError, match="process.terminal: not applied yet"):
        container_from_bundle(bundle, strict=True)
