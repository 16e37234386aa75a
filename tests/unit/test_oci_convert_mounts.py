"""config.json's mounts, root and uts names: their order, typeless binds, rootfsPropagation,
idmapped mounts, hostname and domainname in a joined uts namespace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_oci_examples import podman, runc_spec

from isolate import ConfigError, Container, RootFS, UnsupportedError
from isolate import _ops as O
from isolate._plan import MS_REC, MS_SHARED, MS_SLAVE, MS_UNBINDABLE
from isolate._planner_root import RootContext, container_root_ops, root_ops
from isolate._record import replace
from isolate.config import BindMount
from isolate.oci import parse, spec_to_config


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def ctx(userns: bool = False, new_net: bool = True) -> RootContext:
    return RootContext(new=b"/newroot", old=b"/oldroot", stage=b"/tmp", chroot=False, userns=userns,
                       new_net=new_net, new_pid=True, console=None)


def mounted(ops: list[Any]) -> list[bytes]:
    """The targets of the mounts ``ops`` make, in order (binds of the fresh /dev's nodes left out)."""
    out = []
    for op in ops:
        if isinstance(op, O.RootMount) and op.root == b"/newroot":
            out.append(op.target)
        elif isinstance(op, O.RootBind) and op.root == b"/newroot" and op.source_root == b"/oldroot":
            out.append(op.target)
    # The cgroup hierarchies bound below a cgroupfs depend on the host.
    return [t for t in out if not t.startswith(b"sys/fs/cgroup/")]


def test_mounts_are_made_in_the_configs_order(bundle: Path) -> None:
    # runc's spec: proc, dev, devpts, shm, mqueue, sysfs, cgroup.
    with spec_to_config(parse(runc_spec()), bundle) as conv:
        root = conv.config.root
        assert root is not None
        assert root.order == (("/proc", 0), ("/dev", 0), ("/dev/pts", 0), ("/dev/shm", 0), ("/sys", 1))
        # /sys in its place even with a new network namespace (not deferred past the switch).
        got = mounted(root_ops(root, ctx()))
        assert got == [b"proc", b"dev", b"dev/pts", b"dev/shm", b"dev/mqueue", b"sys", b"sys/fs/cgroup"], got


def test_podmans_order_puts_sys_between_dev_and_devpts(bundle: Path) -> None:
    with spec_to_config(parse(podman_in(bundle)), bundle) as conv:
        root = conv.config.root
        assert root is not None
        got = mounted(root_ops(root, ctx(userns=True)))
        assert got == [b"proc", b"dev", b"sys", b"dev/pts", b"dev/shm", b"data", b"run"], got


def test_sys_listed_after_a_mount_below_it_follows_the_config(bundle: Path) -> None:
    d = runc_spec()
    d["mounts"] = [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
                   {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
                   {"destination": "/proc", "type": "proc", "source": "proc"}]
    with spec_to_config(parse(d), bundle) as conv:
        root = conv.config.root
        assert root is not None
        assert mounted(root_ops(root, ctx())) == [b"sys/fs/cgroup", b"sys", b"proc"]


def test_a_rootfs_keeps_its_own_order_unless_placed(bundle: Path) -> None:
    r = RootFS.from_directory(bundle / "rootfs").tmpfs("/scratch")
    assert mounted(root_ops(r.spec, ctx()))[:1] == [b"proc"]
    r.place("/proc")
    assert mounted(root_ops(r.spec, ctx())).index(b"proc") > mounted(root_ops(r.spec, ctx())).index(b"scratch")
    with pytest.raises(ConfigError, match="place: '/proc' is not a mount this RootFS makes"):
        r.place("/proc")
    with pytest.raises(ConfigError, match="place: '/etc'"):
        r.place("/etc")


@pytest.mark.parametrize("options", [["rbind", "ro"], ["bind"]])
def test_a_bind_without_a_type_is_a_bind(bundle: Path, options: list[str]) -> None:
    d = runc_spec()
    d["mounts"].append({"destination": "/dev/pts", "source": str(bundle / "data"), "options": options})
    d["mounts"].append({"destination": "/mnt/data", "source": str(bundle / "data"), "options": options})
    with spec_to_config(parse(d), bundle) as conv:
        root = conv.config.root
        assert root is not None
        binds = [m for m in root.mounts if isinstance(m, BindMount)]
        assert [(b.target, b.readonly, b.recursive) for b in binds] == [
            (b"dev/pts", "ro" in options, "rbind" in options), (b"mnt/data", "ro" in options, "rbind" in options)]
        assert not [u for u in conv.unsupported if "mounts[7]" in u or "mounts[8]" in u]


@pytest.mark.parametrize("prop, flag", [("shared", MS_SHARED), ("rslave", MS_SLAVE | MS_REC),
                                        ("unbindable", MS_UNBINDABLE), ("runbindable", MS_UNBINDABLE | MS_REC),
                                        ("private", None), ("rprivate", None)])
def test_rootfs_propagation_is_set_on_the_root_after_the_switch(bundle: Path, prop: str, flag: int | None) -> None:
    d = runc_spec()
    d["linux"]["rootfsPropagation"] = prop
    with spec_to_config(parse(d), bundle) as conv:
        assert not [u for u in conv.unsupported if "rootfsPropagation" in u]
        root = conv.config.root
        assert root is not None
        ops = container_root_ops(root, ctx(), root_ops(root, ctx()), cwd=b".", make_cwd=False, umask=None)
        pivot = next(i for i, op in enumerate(ops) if isinstance(op, O.PivotRoot))
        props = [op for op in ops if isinstance(op, O.Mount) and op.source is None and op.target == b"/"]
        if flag is None:      # every mount is private already
            assert root.propagation is None and props == []
        else:
            assert props == [O.Mount(None, b"/", None, flag)] and ops.index(props[0]) > pivot


def test_a_bad_propagation_is_refused_by_the_builder() -> None:
    with pytest.raises(ConfigError, match="propagation must be one of shared, .* got 'everywhere'"):
        RootFS.host().propagation("everywhere")


@pytest.mark.parametrize("key", ["uidMappings", "gidMappings"])
def test_idmapped_mounts_are_refused_naming_the_field(bundle: Path, key: str) -> None:
    d = runc_spec()
    d["mounts"].append({"destination": "/mnt", "source": str(bundle / "data"), "options": ["rbind"],
                        key: [{"containerID": 0, "hostID": 1000, "size": 1}]})
    with pytest.raises(UnsupportedError, match=rf"^mounts\[7\]\.{key}: idmapped mounts are not supported"):
        spec_to_config(parse(d), bundle)


def test_hostname_and_domainname_are_set_in_a_joined_uts_namespace(bundle: Path) -> None:
    d = runc_spec()
    d["linux"]["namespaces"] = [n for n in d["linux"]["namespaces"] if n["type"] != "uts"] + [
        {"type": "uts", "path": "/proc/self/ns/uts"}]
    d["hostname"], d["domainname"] = "joined", "example.test"
    with spec_to_config(parse(d), bundle) as conv:
        c = conv.config
        assert "uts" not in c.namespaces and [j.type for j in conv.join] == ["uts"]
        assert (c.hostname, c.domainname) == ("joined", "example.test")
        assert not [u for u in conv.unsupported if "domainname" in u or "hostname" in u]
        with Container(c, join=conv.join) as box:        # accepted as it is
            assert box._r.isolation.hostname == "joined" and box._r.isolation.domainname == "example.test"


def test_domainname_in_a_new_uts_namespace(bundle: Path) -> None:
    d = runc_spec()
    d["domainname"] = "example.test"
    with spec_to_config(parse(d), bundle) as conv:
        assert conv.config.domainname == "example.test" and conv.unsupported == ("process.terminal: not applied yet: true",)


def test_names_without_any_uts_namespace_are_refused(bundle: Path) -> None:
    d = runc_spec()
    d["linux"]["namespaces"] = [n for n in d["linux"]["namespaces"] if n["type"] != "uts"]
    d["domainname"] = "example.test"
    d.pop("hostname")
    with pytest.raises(ConfigError, match='^domainname: setting it needs a uts namespace in linux.namespaces, '
                                          'got "example.test"'):
        parse(d)


def podman_in(bundle: Path) -> dict[str, Any]:
    d = podman()
    d["root"]["path"] = str(bundle / "rootfs")
    return d


# --- the root with no mount namespace, or a joined one ------------------------------------


def _without_mount_ns(d: dict[str, Any]) -> dict[str, Any]:
    d["linux"]["namespaces"] = [n for n in d["linux"]["namespaces"] if n["type"] != "mount"]
    d["mounts"] = []
    d["linux"].pop("maskedPaths", None)
    d["linux"].pop("readonlyPaths", None)
    d["root"]["readonly"] = False
    return d


def test_without_a_mount_namespace_the_root_is_entered_as_it_is(bundle: Path) -> None:
    with spec_to_config(parse(_without_mount_ns(runc_spec())), bundle) as conv:
        root = conv.config.root
        assert root is not None and root.in_place and root.directory == bundle / "rootfs"
        assert "mnt" not in conv.config.namespaces
        assert not [u for u in conv.unsupported if u.startswith("root")]
        with Container(conv.config, join=conv.join) as box:
            assert box.root_mode == "chroot"
            ops, _ = box._root_ops(b".", None)
        # chroot into the directory, nothing mounted.
        assert [type(op) for op in ops] == [O.Umask, O.Chdir, O.Chroot]
        assert ops[1] == O.Chdir(path_=os.fsencode(bundle / "rootfs"))


@pytest.mark.parametrize("key, value", [
    ("mounts", [{"destination": "/proc", "type": "proc", "source": "proc"}]),
    ("linux.maskedPaths", ["/proc/kcore"]), ("linux.readonlyPaths", ["/proc/sys"]),
    ("root.readonly", True), ("linux.rootfsPropagation", "shared")])
def test_without_a_mount_namespace_mounts_are_refused(bundle: Path, key: str, value: Any) -> None:
    # runc would make them in its own mount namespace (the host's).
    d = _without_mount_ns(runc_spec())
    *parents, last = key.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[last] = value
    with pytest.raises(ConfigError, match=rf"^{key}: needs a mount namespace \(linux.namespaces has no mount\)"):
        spec_to_config(parse(d), bundle)


def test_a_joined_mount_namespace_gets_the_root_built_in_it(bundle: Path) -> None:
    d = runc_spec()
    d["linux"]["namespaces"] = [n for n in d["linux"]["namespaces"] if n["type"] != "mount"] + [
        {"type": "mount", "path": "/proc/self/ns/mnt"}]
    # Not this process's own namespace (nor init's): that one is refused.
    with pytest.raises(ConfigError, match=r"^linux.namespaces\[4\].path: \"/proc/self/ns/mnt\" is the "
                                          r"runtime's own mount namespace"):
        spec_to_config(parse(d), bundle)
    from isolate.namespace import Namespace

    with Namespace.from_path("/proc/self/ns/mnt", type="mnt") as ns:
        with spec_to_config(parse(runc_spec()), bundle) as conv:
            root = conv.config.root
            assert root is not None and not root.in_place and root.mounts
            config = replace(conv.config, namespaces=set(conv.config.namespaces) - {"mnt"})
            with Container(config, join=[ns]) as box:
                ops, _ = box._root_ops(b".", None)
    # runc's rslave on the joined namespace first, then the root as usual, and the switch.
    assert ops[1] == O.Mount(None, b"/", None, MS_REC | MS_SLAVE)
    assert any(isinstance(op, O.PivotRoot) for op in ops)
    assert any(isinstance(op, O.RootMount) and op.target == b"proc" for op in ops)


def test_a_rootfs_still_needs_a_mount_namespace(bundle: Path) -> None:
    with pytest.raises(ConfigError, match=r"a rootfs needs the 'mnt' namespace \(made, or joined\)"):
        Container(rootfs=RootFS.from_directory(bundle / "rootfs"), namespaces={"pid"})
    with pytest.raises(ConfigError, match="RootSpec.in_place: a directory entered as it is makes no mount"):
        RootFS.as_is(bundle / "rootfs").tmpfs("/tmp")


def test_container_config_checks_the_domainname() -> None:
    from isolate.config import ContainerConfig

    assert ContainerConfig(rootfs=None, domainname="example.test").domainname == "example.test"
    with pytest.raises(ConfigError, match="domainname must be a string of at most 64 bytes, got 'xxx"):
        ContainerConfig(rootfs=None, domainname="x" * 65)


def test_a_tmpfs_keeps_the_configs_source(bundle: Path) -> None:
    d = runc_spec()
    d["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "runfs", "options": ["size=1m"]})
    d["mounts"].append({"destination": "/tmp", "type": "tmpfs"})
    with spec_to_config(parse(d), bundle) as conv:
        root = conv.config.root
        assert root is not None
        ops = root_ops(root, ctx())
        sources = {op.target: op.source for op in ops if isinstance(op, O.RootMount) and op.fstype == b"tmpfs"}
        assert sources[b"run"] == b"runfs" and sources[b"tmp"] == b"tmpfs"
    with pytest.raises(ConfigError, match="tmpfs source must be a non-empty path"):
        RootFS.host().tmpfs("/x", source="")


def test_devpts_listed_before_dev_is_made_with_it(bundle: Path) -> None:
    d = runc_spec()
    pts = d["mounts"].pop(2)
    d["mounts"].insert(0, pts)          # devpts, proc, dev, shm, ...
    with spec_to_config(parse(d), bundle) as conv:
        root = conv.config.root
        assert root is not None
        got = mounted(root_ops(root, ctx()))
        assert got[:4] == [b"proc", b"dev", b"dev/pts", b"dev/shm"], got
