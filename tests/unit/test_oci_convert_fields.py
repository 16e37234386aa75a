"""config.json fields isolate-oci applies itself (devices, sysctls, oom score) or refuses, one line each.

The spec: a runtime that cannot apply a property must fail.  Each refusal names
the field and the value, and is raised by the conversion, before anything exists.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from test_oci_examples import runc_spec

from isolate import ConfigError, UnsupportedError
from isolate.oci import parse, spec_to_config
from isolate.oci.apply import oom_score_adj


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def convert(bundle: Path, **linux: Any) -> Any:
    d = runc_spec()
    process = linux.pop("process", {})
    d["linux"].update(linux)
    d["process"].update(process)
    with spec_to_config(parse(d), bundle) as conv:
        return conv


def test_podmans_device_file_mode_carries_the_type_bits(bundle: Path) -> None:
    conv = convert(bundle, devices=[
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 8630, "uid": 0, "gid": 0},
        {"path": "/dev/sub/blk", "type": "b", "major": 7, "minor": 1, "fileMode": 0o640, "uid": 5, "gid": 6},
        {"path": "/dev/fifo", "type": "p"}])
    assert [(d.path, d.mode, d.major, d.minor, d.uid, d.gid) for d in conv.devices] == [
        ("/dev/fuse", stat.S_IFCHR | 0o666, 10, 229, 0, 0),
        ("/dev/sub/blk", stat.S_IFBLK | 0o640, 7, 1, 5, 6),
        ("/dev/fifo", stat.S_IFIFO | 0o666, 0, 0, 0, 0)]       # runc's default mode
    assert conv.unsupported == ("process.terminal: not applied yet: true",)


def test_a_device_file_mode_of_another_type_is_refused(bundle: Path) -> None:
    # runc strips the type bits whatever they say; a mode saying "block" for a
    # character device is a mistake in the config, refused here.
    with pytest.raises(ConfigError, match=r"^linux.devices\[0\].fileMode: 0o60666 is not a \"c\" device's"):
        convert(bundle, devices=[{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o60666}])


def test_devices_in_a_user_namespace_are_bound(bundle: Path) -> None:
    d = runc_spec(rootless=True)
    d["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    with spec_to_config(parse(d), bundle) as conv:
        assert [(n.path, n.bind) for n in conv.devices] == [("/dev/fuse", True)]


@pytest.mark.parametrize("key, message", [
    ("vm.swappiness", "not in a namespace of the container's own"),
    ("kernel.hostname", "conflicts with the OCI hostname field"),
    ("net..ipv4", "not a sysctl name"),
    ("net.ipv4/../../vm/x", "not a sysctl name"),
])
def test_sysctls_of_the_host_are_refused(bundle: Path, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^linux.sysctl\[\"{key.replace('.', '[.]')}\"\]: .*{message}"):
        convert(bundle, sysctl={key: "1"})


def test_a_net_sysctl_needs_a_network_namespace(bundle: Path) -> None:
    d = runc_spec()
    d["linux"]["namespaces"] = [n for n in d["linux"]["namespaces"] if n["type"] != "network"]
    d["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    with pytest.raises(ConfigError, match=r"not allowed in the host's net namespace"):
        spec_to_config(parse(d), bundle)


def test_namespaced_sysctls_are_kept_with_their_namespace(bundle: Path) -> None:
    conv = convert(bundle, sysctl={"net/ipv4/ip_forward": "1", "kernel.shmmax": "9", "fs.mqueue.msg_max": "5",
                                   "kernel.domainname": "d"})
    assert [(s.path, s.ns) for s in conv.sysctl] == [
        ("net/ipv4/ip_forward", "net"), ("kernel/shmmax", "ipc"), ("fs/mqueue/msg_max", "ipc"),
        ("kernel/domainname", "uts")]


@pytest.mark.parametrize("linux, message", [
    ({"mountLabel": "system_u:object_r:x:s0"}, "linux.mountLabel: SELinux mount labels are not supported"),
    ({"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}},
     'linux.personality.flags: personality flags are not supported, got ["ADDR_NO_RANDOMIZE"]'),
    ({"timeOffsets": {"monotonic": {"secs": 5}}}, "linux.timeOffsets: time namespace offsets are not"),
    ({"intelRdt": {"closID": "x"}}, "linux.intelRdt: Intel RDT"),
    ({"process": {"apparmorProfile": "p"}}, 'process.apparmorProfile: AppArmor profiles are not supported, got "p"'),
    ({"process": {"selinuxLabel": "l"}}, 'process.selinuxLabel: SELinux labels are not supported, got "l"'),
])
def test_what_cannot_be_applied_is_refused_naming_the_field(bundle: Path, linux: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        convert(bundle, **linux)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("domain, number", [("LINUX", 0), ("LINUX32", 8)])
def test_the_personality_domain_is_carried(bundle: Path, domain: str, number: int) -> None:
    conv = convert(bundle, personality={"domain": domain})
    assert conv.personality == number and conv.unsupported == ("process.terminal: not applied yet: true",)


def test_oom_score_adj_is_carried_and_checked(bundle: Path) -> None:
    assert convert(bundle, process={"oomScoreAdj": 250}).oom_score_adj == 250
    with pytest.raises(ConfigError, match=r"^process.oomScoreAdj: expected an integer from -1000 to 1000, got 1001"):
        convert(bundle, process={"oomScoreAdj": 1001})


def _has_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def test_oom_score_adj_is_set_for_the_block_and_put_back() -> None:
    path = Path("/proc/self/oom_score_adj")
    before = path.read_text()
    with oom_score_adj(int(before) + 10):
        assert int(path.read_text()) == int(before) + 10
        if os.fork() == 0:       # what the container's process inherits
            os._exit(0 if int(path.read_text()) == int(before) + 10 else 1)
        assert os.wait()[1] == 0
    assert path.read_text() == before
    if _has_sys_resource():
        return                   # lowering works with CAP_SYS_RESOURCE: nothing to refuse
    # Root here lacks CAP_SYS_RESOURCE: the kernel refuses a lower score (EACCES).
    with pytest.raises(ConfigError, match=rf"^process.oomScoreAdj: cannot set {int(before) - 1}: lowering it "
                                          r"below this runtime's own \(.*\) needs CAP_SYS_RESOURCE"):
        with oom_score_adj(int(before) - 1):
            pass
    assert path.read_text() == before
