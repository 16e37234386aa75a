"""Idmapped binds in the plan (no process): which binds the caller prepares, how the plan
names their fds, and when a container gets the setuid guard."""

from __future__ import annotations

import os

import pytest

from isolate import IdMap, RootFS
from isolate._ops_root import RootBind
from isolate._plan import MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, Plan
from isolate._planner import FdLayout, Host, Isolation, plan_process
from isolate._planner_root import RootContext, root_ops
from isolate._resolve import Resolved, _maps_to
from isolate._slots import SpawnFd
from isolate.config import ContainerConfig, ProcessSpec


def ctx(idmap: bool, joined_mnt: bool = False) -> RootContext:
    return RootContext(new=b"/newroot", old=b"/oldroot", stage=b"/tmp", chroot=False, userns=True,
                       new_net=True, new_pid=True, console=None, idmap=idmap, joined_mnt=joined_mnt)


def spec(tmp: str) -> object:
    return RootFS.host().bind(tmp, "/rw").bind(tmp, "/ro", readonly=True).spec


def host_binds(ops: list) -> list[RootBind]:
    return [op for op in ops if type(op) is RootBind and op.source_root == b"/oldroot"
            and op.target in (b"usr", b"rw", b"ro")]


def test_host_binds_name_prepared_mounts_in_order(tmp_path) -> None:
    ops = root_ops(spec(str(tmp_path)), ctx(idmap=True))     # type: ignore[arg-type]
    binds = host_binds(ops)
    assert {b.target for b in binds} == {b"usr", b"rw", b"ro"}
    prepared = [op.fd for op in ops if type(op) is RootBind and type(op.fd) is SpawnFd]
    assert [fd.index for fd in prepared] == list(range(len(prepared)))
    rw = next(b for b in binds if b.target == b"rw")
    ro = next(b for b in binds if b.target == b"ro")
    # Only a read-write idmapped bind gets nosuid,nodev on top of what was asked.
    assert rw.attr_set & (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) == MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
    assert ro.readonly and not ro.attr_set & MOUNT_ATTR_NODEV


@pytest.mark.parametrize("context", [ctx(idmap=False), ctx(idmap=True, joined_mnt=True)])
def test_no_prepared_mounts_without_idmap_or_in_a_joined_mount_namespace(tmp_path, context) -> None:
    ops = root_ops(spec(str(tmp_path)), context)     # type: ignore[arg-type]
    assert all(op.fd == -1 for op in host_binds(ops))
    assert not host_binds(ops)[0].attr_set & MOUNT_ATTR_NOSUID


def test_the_plan_names_them_first_and_each_spawn_fills_them(tmp_path) -> None:
    ops = root_ops(spec(str(tmp_path)), ctx(idmap=True))     # type: ignore[arg-type]
    n = sum(1 for op in ops if type(getattr(op, "fd", -1)) is SpawnFd)
    p = ProcessSpec(args=["/bin/true"])
    planned = plan_process(p, Isolation(namespaces=frozenset({"user", "mnt"}),
                                        uid_map=(IdMap(inside=0, outside=200000, count=65536),),
                                        gid_map=(IdMap(inside=0, outside=200000, count=65536),)),
                           FdLayout(), Host(*Host.values(p)), ops)
    plan: Plan = planned.plan
    assert plan.fd_names[:n] == tuple(f"mount {i}" for i in range(n))
    fds = [100 + i for i in range(len(plan.fd_names))]
    bound = plan.bind(fds)
    got = [op.fd for op in bound.ops if type(op) is RootBind and op.fd != -1]
    assert got == fds[:n]


@pytest.mark.parametrize("userns, uid_map, guard, idmapped", [
    ("auto", None, True, True),                        # root's default: a block of its own
    ("identity", None, False, False),                  # every id to itself
    ("keep-id", None, False, False),                   # 0 to 0, one line
    ("auto", [IdMap(inside=0, outside=0, count=65536)], False, False),
    ("auto", [IdMap(inside=0, outside=200000, count=65536)], True, True),
    # Container uid 1000 is host root: a file it makes is host root's; guarded too.
    ("auto", [IdMap(inside=0, outside=200000, count=1000), IdMap(inside=1000, outside=0, count=1)],
     True, True),
])
def test_the_setid_guard_follows_where_container_root_maps(userns, uid_map, guard, idmapped) -> None:
    if os.geteuid() != 0:
        pytest.skip("the guard and idmapped binds are a root caller's")
    config = ContainerConfig(rootfs=RootFS.host().spec, process=ProcessSpec(args=["/bin/true"]),
                             userns=userns, uid_map=uid_map, gid_map=uid_map)
    r = Resolved(config, RootFS.host(), [], None)
    try:
        assert r.setid_guard is guard and r.idmapped is idmapped
        assert ("CAP_SETFCAP" not in r.capabilities) is guard    # type: ignore[operator]
        s = r.spec(["/bin/true"], env=None)
        assert (s.seccomp != "default") is guard
    finally:
        r.release(processes_gone=True)


def test_maps_to() -> None:
    m = [IdMap(inside=0, outside=200000, count=10), IdMap(inside=10, outside=0, count=1)]
    assert _maps_to(m, 10, 0) and not _maps_to(m, 0, 0) and _maps_to(m, 3, 200003)
    assert _maps_to(None, 0, 0)


def test_a_spec_that_keeps_plain_binds_names_no_prepared_mount(tmp_path) -> None:
    """``RootFS(idmap=False)``, as an OCI config's root is made (its binds are idmapped only
    when it asks, as with runc): no prepared mount, and rw binds as asked."""
    root = RootFS.from_directory(tmp_path, readonly=False, idmap=False).bind(tmp_path, "/rw")
    ops = root_ops(root.spec, ctx(idmap=True))
    assert not any(type(getattr(op, "fd", -1)) is SpawnFd for op in ops)


def test_an_oci_config_root_keeps_plain_binds(tmp_path) -> None:
    import json

    from isolate.oci.convert import convert_bundle
    from isolate.oci.features import default_spec

    (tmp_path / "rootfs").mkdir()
    config = default_spec()
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["linux"]["namespaces"].append({"type": "user"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    conv = convert_bundle(tmp_path)
    try:
        assert conv.config.rootfs is not None and conv.config.rootfs.idmap is False
    finally:
        conv.close()
