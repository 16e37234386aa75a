"""RootFS mount flags, mqueue, cgroupfs, masked and read-only paths: validation and the ops
they plan (no privileges needed), and how OCI mounts map onto them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import isolate
from isolate import _ops as O
from isolate import _plan as P
from isolate._ops import RootBinds, RootMasks, RootMkdirs
from isolate.cgroup.layout import Hierarchy
from isolate.oci.convert import spec_to_config
from isolate.oci.spec import parse
from isolate._planner_root import HostFacts, RootContext, cgroup_ops, defer_sys, sys_after_switch, sys_ops
from isolate.config import SpecialMount
from isolate.rootfs import OCI_MASKED_PATHS, OCI_READONLY_PATHS, RootFS

L: Any = P.lib
NOSUID, NODEV, NOEXEC, RDONLY = (L.MOUNT_ATTR_NOSUID, L.MOUNT_ATTR_NODEV, L.MOUNT_ATTR_NOEXEC,
                                 L.MOUNT_ATTR_RDONLY)


def ctx(**kw: Any) -> RootContext:
    args: dict[str, Any] = {"new": b"/newroot", "old": b"/oldroot", "stage": b"/tmp", "chroot": False,
                            "userns": True, "new_net": True, "new_pid": True, "console": None}
    args.update(kw)
    return RootContext(**args)


def mount_at(ops: list[P.Op], target: bytes) -> P.Op:
    (op,) = [op for op in ops if isinstance(op, (O.RootMount, O.RootBind)) and op.target == target
             and op.root == b"/newroot"]
    return op


@pytest.fixture
def image(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    return tmp_path / "img"


# --- bind and tmpfs flags -------------------------------------------------------------


def test_bind_flags_are_set_on_the_bind(tmp_path: Path) -> None:
    ops = RootFS.host().bind(tmp_path, "/data", nosuid=True, nodev=True, noexec=True)._ops(ctx())
    op = mount_at(ops, b"data")
    assert isinstance(op, O.RootBind)
    assert op.attr_set == NOSUID | NODEV | NOEXEC and not op.readonly
    # False leaves the flag as the source mount has it: nothing set, nothing cleared.
    plain = mount_at(RootFS.host().bind(tmp_path, "/data", readonly=True)._ops(ctx()), b"data")
    assert isinstance(plain, O.RootBind) and (plain.attr_set, plain.attr_clr, plain.readonly) == (0, 0, True)


def test_tmpfs_flags_and_atime() -> None:
    ops = RootFS.host().tmpfs("/scratch", readonly=True, nosuid=False, nodev=False, noexec=True,
                              atime="strictatime")._ops(ctx())
    op = mount_at(ops, b"scratch")
    assert isinstance(op, O.RootMount) and op.fstype == b"tmpfs"
    assert op.attrs == RDONLY | NOEXEC | L.MOUNT_ATTR_STRICTATIME
    # The default stays nosuid and nodev (relatime).
    default = mount_at(RootFS.host().tmpfs("/scratch")._ops(ctx()), b"scratch")
    assert isinstance(default, O.RootMount) and default.attrs == NOSUID | NODEV


@pytest.mark.parametrize("call, message", [
    (lambda r, d: r.bind(d, "/x", nosuid=1), "bind nosuid must be True or False, got 1"),
    (lambda r, d: r.bind(d, "/x", noexec="yes"), "bind noexec must be True or False, got 'yes'"),
    (lambda r, d: r.tmpfs("/x", readonly=None), "tmpfs readonly must be True or False, got None"),
    (lambda r, d: r.tmpfs("/x", atime="lazytime"),
     "tmpfs atime must be one of noatime, relatime, strictatime, got 'lazytime'"),
    (lambda r, d: r.tmpfs("/x", mode=0o10000), "tmpfs mode must be an integer up to 0o7777, got 4096"),
    (lambda r, d: r.mqueue("/"), "mqueue target must not be the root"),
    (lambda r, d: r.mqueue("/x", nodev=0), "mqueue nodev must be True or False, got 0"),
    (lambda r, d: r.cgroupfs("rel"), "cgroupfs target must be an absolute path"),
    (lambda r, d: r.cgroupfs(readonly="ro"), "cgroupfs readonly must be True or False, got 'ro'"),
])
def test_bad_flags_name_the_argument_and_value(tmp_path: Path, call: Any, message: str) -> None:
    rootfs = RootFS.host()
    with pytest.raises(isolate.ConfigError) as info:
        call(rootfs, tmp_path)
    assert str(info.value).startswith(message)
    assert rootfs.spec.mounts == RootFS.host().spec.mounts     # nothing half-added


# --- the mounts RootFS makes itself -------------------------------------------------------


def test_builtin_defaults_are_unchanged() -> None:
    ops = RootFS.host()._ops(ctx())
    proc, sys_, dev = mount_at(ops, b"proc"), mount_at(ops, b"sys"), mount_at(ops, b"dev")
    pts, shm = mount_at(ops, b"dev/pts"), mount_at(ops, b"dev/shm")
    assert isinstance(proc, O.RootMount) and proc.attrs == NOSUID | NODEV | NOEXEC
    assert isinstance(sys_, O.RootMount) and sys_.attrs == NOSUID | NODEV | NOEXEC | RDONLY
    assert isinstance(dev, O.RootMount) and dev.attrs == NOSUID | NOEXEC
    assert dev.options == (("mode", "0755"), ("size", "64k"))
    assert isinstance(pts, O.RootMount) and pts.attrs == NOSUID | NOEXEC
    assert pts.options == (("newinstance", None), ("ptmxmode", "0666"), ("mode", "0620"))
    assert isinstance(shm, O.RootMount) and (shm.attrs, shm.options) == (NOSUID | NODEV, (("mode", "1777"),
                                                                                      ("size", "64m")))


def test_sysfs_comes_after_the_root_switch_without_a_user_namespace() -> None:
    # Its own network namespace and no user namespace: the namespace is made while the
    # root is built, and sysfs (which shows its mounter's) waits for it, after pivot_root.
    c = ctx(userns=False)
    rootfs = RootFS.host()
    ops = rootfs._ops(c)
    assert not [op for op in ops if getattr(op, "fstype", None) == b"sysfs"]
    assert all(not m.startswith(b"sys") for op in ops if isinstance(op, RootMasks) for m in op.targets)
    assert sys_after_switch(rootfs.spec, c)
    after = sys_ops(rootfs.spec, b"/", b"/dev/null")
    assert after[0] == O.RootMount(b"sysfs", b"/", b"sys", source=b"sysfs",
                                   attrs=NOSUID | NODEV | NOEXEC | RDONLY)
    assert isinstance(after[1], RootMasks) and set(after[1].targets) == {
        p.lstrip("/").encode() for p in OCI_MASKED_PATHS if p.startswith("/sys")}
    # A caller's mount below /sys needs sysfs first: the usual order.
    ops = RootFS.host().tmpfs("/sys/fs/cgroup")._ops(c)
    sysfs = [i for i, op in enumerate(ops) if getattr(op, "fstype", None) == b"sysfs"]
    below = [i for i, op in enumerate(ops) if getattr(op, "target", None) == b"sys/fs/cgroup"]
    assert sysfs and below and sysfs[0] < below[0]
    # With a user namespace sysfs keeps its place; in chroot mode it comes last, before the switch.
    assert not sys_after_switch(rootfs.spec, ctx()) and not defer_sys(rootfs.spec, ctx())
    chroot = ctx(userns=False, chroot=True)
    assert not sys_after_switch(rootfs.spec, chroot)
    assert getattr(rootfs._ops(chroot)[-2], "fstype", None) == b"sysfs"


def test_mount_options_change_only_what_is_given() -> None:
    rootfs = (RootFS.host().mount_options("/proc", nosuid=False, nodev=False, noexec=False)
              .mount_options("/dev", noexec=False, atime="strictatime", size="65536k")
              .mount_options("/dev/pts", gid=5)
              .mount_options("/dev/shm", noexec=True, size=64 << 20, mode=0o1777))
    ops = rootfs._ops(ctx())
    assert mount_at(ops, b"proc").attrs == 0        # type: ignore[attr-defined]
    dev = mount_at(ops, b"dev")
    assert isinstance(dev, O.RootMount) and dev.attrs == NOSUID | L.MOUNT_ATTR_STRICTATIME
    assert dev.options == (("mode", "0755"), ("size", "65536k"))
    pts = mount_at(ops, b"dev/pts")
    assert isinstance(pts, O.RootMount) and ("gid", "5") in pts.options and ("mode", "0620") in pts.options
    shm = mount_at(ops, b"dev/shm")
    assert isinstance(shm, O.RootMount) and shm.attrs == NOSUID | NODEV | NOEXEC
    assert shm.options == (("mode", "1777"), ("size", str(64 << 20)))
    # Packed and read back the same (the gid travels as a string option).
    plan = P.Plan(ops=list(ops), argv=[b"x"], envp=None)
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    back = P.unpack_ops(bytes(P.ffi.buffer(c.ops, 64 * c.n_ops)), bytes(P.ffi.buffer(c.arena, c.arena_len)))
    assert back == ops


def test_proc_and_sys_binds_in_a_user_namespace_take_the_flags_without_atime() -> None:
    rootfs = RootFS.host().mount_options("/proc", noexec=False, readonly=True, atime="noatime")
    ops = rootfs._ops(ctx(new_pid=False, new_net=False))
    proc, sys_ = mount_at(ops, b"proc"), mount_at(ops, b"sys")
    # mount_setattr() takes an atime only with MOUNT_ATTR__ATIME cleared: binds keep the source's.
    assert isinstance(proc, O.RootBind) and (proc.readonly, proc.attr_set) == (True, NOSUID | NODEV)
    assert isinstance(sys_, O.RootBind) and (sys_.readonly, sys_.attr_set) == (True, NOSUID | NODEV | NOEXEC)


@pytest.mark.parametrize("target, kw, message", [
    ("/run", {}, "mount_options target must be one of /proc, /sys, /dev, /dev/pts, /dev/shm, got '/run'"),
    ("/proc", {"size": "1m"}, "mount_options '/proc': size applies only to /dev, /dev/shm, got '1m'"),
    ("/sys", {"gid": 5}, "mount_options '/sys': gid applies only to /dev/pts, got 5"),
    ("/dev/pts", {"gid": -1}, "mount_options '/dev/pts' gid must be a group id (int), got -1"),
    ("/dev/shm", {"size": "lots"}, "mount_options '/dev/shm' size must be bytes"),
    ("/dev", {"nosuid": "no"}, "mount_options '/dev' nosuid must be True or False, got 'no'"),
    ("/dev", {"atime": "often"}, "mount_options '/dev' atime must be one of"),
])
def test_bad_mount_options(target: str, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(isolate.ConfigError) as info:
        RootFS.host().mount_options(target, **kw)
    assert str(info.value).startswith(message)


def test_mount_options_of_a_mount_that_was_turned_off(image: Path) -> None:
    with pytest.raises(isolate.ConfigError, match=r"^mount_options '/dev/pts': the RootFS makes no /dev/pts"):
        RootFS.from_directory(image, dev=False).mount_options("/dev/pts", gid=5)


def test_changing_options_invalidates_the_cached_ops() -> None:
    rootfs = RootFS.host()
    before = rootfs._ops(ctx())
    rootfs.mount_options("/proc", noexec=False)
    after = rootfs._ops(ctx())
    assert mount_at(before, b"proc") != mount_at(after, b"proc")
    rootfs.mask_paths("/etc/shadow")
    assert O.RootMask(b"/newroot", b"etc/shadow", b"dev/null") in rootfs._ops(ctx())


# --- order ----------------------------------------------------------------------------


def test_builtins_come_first_then_calls_in_order_then_masks(tmp_path: Path) -> None:
    rootfs = (RootFS.host().bind(tmp_path, "/dev/extra").tmpfs("/dev/extra/t").mqueue()
              .cgroupfs().mask_paths("/dev/extra/t"))
    ops = rootfs._ops(ctx())
    where: dict[bytes, int] = {}
    for i, op in enumerate(ops):
        if isinstance(op, (O.RootMount, O.RootBind, O.RootMask)) and op.root == b"/newroot":
            where.setdefault(op.target, i)
    assert where[b"proc"] < where[b"sys"] < where[b"dev"] < where[b"dev/extra"] < where[b"dev/extra/t"] \
        < where[b"dev/mqueue"] < where[b"sys/fs/cgroup"]
    mask = ops.index(O.RootMask(b"/newroot", b"dev/extra/t", b"dev/null"))
    assert mask > where[b"sys/fs/cgroup"]


# --- mqueue -------------------------------------------------------------------------------


def test_mqueue_is_mounted_or_bound_without_an_ipc_namespace() -> None:
    op = mount_at(RootFS.host().mqueue()._ops(ctx()), b"dev/mqueue")
    assert isinstance(op, O.RootMount) and (op.fstype, op.attrs) == (b"mqueue", NOSUID | NODEV | NOEXEC)
    # A user namespace may mount mqueue only for an ipc namespace it owns.
    op = mount_at(RootFS.host().mqueue(readonly=True)._ops(ctx(new_ipc=False)), b"dev/mqueue")
    assert isinstance(op, O.RootBind) and op.source == b"dev/mqueue" and not op.optional
    assert (op.readonly, op.attr_set) == (True, NOSUID | NODEV | NOEXEC)
    op = mount_at(RootFS.host().mqueue("/mq")._ops(ctx(userns=False, new_ipc=False)), b"mq")
    assert isinstance(op, O.RootMount) and op.fstype == b"mqueue"


# --- cgroupfs -----------------------------------------------------------------------------


V1 = [("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/user.slice"),
      ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/user.slice"),
      ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd/user.slice/session-1.scope")]


def test_cgroupfs_on_v1_binds_the_containers_directories_read_only() -> None:
    mine = (("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/isolate/job"),
            ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/isolate/job"))
    m = SpecialMount(kind="cgroup", target=b"sys/fs/cgroup", attrs=RDONLY | NOSUID | NODEV | NOEXEC)
    ops = cgroup_ops(ctx(cgroup_paths=mine), m, V1, None)
    tmpfs, mkdirs, *binds = ops
    assert tmpfs == O.RootMount(b"tmpfs", b"/newroot", b"sys/fs/cgroup", source=b"tmpfs",
                                attrs=NOSUID | NODEV | NOEXEC, options=(("mode", "0755"),))
    assert isinstance(mkdirs, RootMkdirs) and mkdirs.parent == b"sys/fs/cgroup"
    assert sorted(mkdirs.entries, key=lambda e: e[0]) == [
        (b"cpu", 2, 0o777, b"cpu,cpuacct"), (b"cpu,cpuacct", 0, 0o755, None),
        (b"cpuacct", 2, 0o777, b"cpu,cpuacct"), (b"memory", 0, 0o755, None), (b"systemd", 0, 0o755, None)]
    # The container's own directory where it has one, else the one the child inherits.
    assert [(b.source, b.target) for b in binds] == [  # type: ignore[attr-defined]
        (b"sys/fs/cgroup/cpu,cpuacct/user.slice", b"sys/fs/cgroup/cpu,cpuacct"),
        (b"sys/fs/cgroup/memory/isolate/job", b"sys/fs/cgroup/memory"),
        (b"sys/fs/cgroup/systemd/user.slice/session-1.scope", b"sys/fs/cgroup/systemd")]
    for b in binds:
        assert isinstance(b, O.RootBind) and b.source_root == b"/oldroot" and b.readonly
        assert b.attr_set == NOSUID | NODEV | NOEXEC and not b.recursive


def test_cgroupfs_on_v2_mounts_cgroup2_in_a_cgroup_namespace_else_binds() -> None:
    v2 = Hierarchy(2, "/sys/fs/cgroup", "/", frozenset(), "/user.slice")
    m = SpecialMount(kind="cgroup", target=b"sys/fs/cgroup", attrs=RDONLY | NOSUID)
    mine = (("/sys/fs/cgroup", "/sys/fs/cgroup/isolate/job"),)
    assert cgroup_ops(ctx(new_cgroupns=True, cgroup_paths=mine), m, [], v2) == [
        O.RootMount(b"cgroup2", b"/newroot", b"sys/fs/cgroup", source=b"cgroup2", attrs=RDONLY | NOSUID)]
    (bind,) = cgroup_ops(ctx(cgroup_paths=mine), m, [], v2)
    assert isinstance(bind, O.RootBind) and bind.source == b"sys/fs/cgroup/isolate/job" and bind.readonly
    (bind,) = cgroup_ops(ctx(), m, [], v2)
    assert isinstance(bind, O.RootBind) and bind.source == b"sys/fs/cgroup/user.slice"
    with pytest.raises(isolate.ConfigError, match="no cgroup filesystem"):
        cgroup_ops(ctx(), m, [], None)


def test_cgroup_paths_are_part_of_the_cache_key() -> None:
    # This host's own hierarchies (the first v1 one, or the cgroup2 of a pure v2 host).
    v1 = HostFacts().v1_hierarchies()
    mount = v1[0][0] if v1 else "/sys/fs/cgroup"
    rootfs = RootFS.host().cgroupfs()
    sources = [{op.source for op in rootfs._ops(ctx(cgroup_paths=((mount, f"{mount}/{name}"),)))
                if isinstance(op, O.RootBind)} for name in ("a", "b")]
    assert f"{mount}/a".encode().lstrip(b"/") in sources[0]
    assert f"{mount}/b".encode().lstrip(b"/") in sources[1]


# --- masked and read-only paths -------------------------------------------------------


def test_explicit_lists_replace_the_default_one(image: Path) -> None:
    rootfs = RootFS.from_directory(image, oci_masks=False).mask_paths("/etc/secret", "/proc/kcore") \
        .readonly_paths("/srv", "/proc/sys")
    ops = rootfs._ops(ctx())
    assert [op.target for op in ops if isinstance(op, O.RootMask)] == [b"etc/secret", b"proc/kcore"]
    ro = [op for op in ops if isinstance(op, O.RootBind) and op.source_root == b"/newroot"]
    assert [(op.source, op.target, op.readonly, op.optional) for op in ro] == [
        (b"srv", b"srv", True, True), (b"proc/sys", b"proc/sys", True, True)]
    # Without explicit lists and oci_masks=False: nothing is masked.
    assert not any(isinstance(op, O.RootMask) for op in RootFS.from_directory(image, oci_masks=False)
                   ._ops(ctx()))


def test_default_lists_stay_for_other_callers() -> None:
    ops = [one for op in RootFS.host().mask_paths("/etc/extra")._ops(ctx())
           for one in (op.expand() if isinstance(op, (RootBinds, RootMasks)) else [op])]
    masked = [op.target.decode() for op in ops if isinstance(op, O.RootMask)]
    assert masked == [p.lstrip("/") for p in OCI_MASKED_PATHS] + ["etc/extra"]
    ro = [op.target.decode() for op in ops if isinstance(op, O.RootBind) and op.source_root == b"/newroot"]
    assert ro == [p.lstrip("/") for p in OCI_READONLY_PATHS]


@pytest.mark.parametrize("call, message", [
    (lambda r: r.mask_paths("proc/kcore"), "masked path must be an absolute path"),
    (lambda r: r.mask_paths("/"), "masked path must not be the root"),
    (lambda r: r.readonly_paths("/a/../.."), "read-only path must not contain '..'"),
    (lambda r: r.readonly_paths("/"), "read-only path must not be the root"),
])
def test_bad_paths(call: Any, message: str) -> None:
    with pytest.raises(isolate.ConfigError, match="^" + message):
        call(RootFS.host())


# --- OCI mounts onto RootFS ----------------------------------------------------------------


def convert(bundle: Path, mounts: list[dict[str, Any]], **linux: Any) -> Any:
    from isolate.oci.features import default_spec

    d = default_spec()
    d["root"] = {"path": "rootfs"}
    d["process"]["terminal"] = False
    d["mounts"] = d["mounts"] + mounts
    d["linux"].update(linux)
    (bundle / "rootfs").mkdir(exist_ok=True)
    return spec_to_config(parse(json.dumps(d)), bundle)


def test_oci_mount_options_become_flags(tmp_path: Path) -> None:
    src = tmp_path / "share"
    src.mkdir()
    with convert(tmp_path, [
        {"destination": "/ro", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=700"]},
        {"destination": "/mnt", "type": "bind", "source": str(src), "options": ["bind", "nosuid", "nodev"]},
    ]) as conv:
        rootfs = RootFS.from_spec(conv.config.root)
        assert not conv.unsupported, conv.unsupported
        ops = rootfs._ops(ctx())
    ro, scratch, mnt = mount_at(ops, b"ro"), mount_at(ops, b"scratch"), mount_at(ops, b"mnt")
    assert isinstance(ro, O.RootMount) and ro.attrs == RDONLY       # exactly the listed flags
    assert isinstance(scratch, O.RootMount) and scratch.attrs == NOSUID | NODEV | NOEXEC
    assert scratch.options == (("mode", "700"), ("size", "1m"))
    assert isinstance(mnt, O.RootBind) and (mnt.attr_set, mnt.readonly, mnt.recursive) == (NOSUID | NODEV,
                                                                                          False, False)


def test_oci_default_mounts_follow_the_config(tmp_path: Path) -> None:
    with convert(tmp_path, [], maskedPaths=["/proc/kcore", "/etc/secret"], readonlyPaths=["/srv"]) as conv:
        rootfs = RootFS.from_spec(conv.config.root)
        assert not conv.unsupported, conv.unsupported
        ops = rootfs._ops(ctx())
    proc, dev, pts, shm = (mount_at(ops, t) for t in (b"proc", b"dev", b"dev/pts", b"dev/shm"))
    assert isinstance(proc, O.RootMount) and proc.attrs == 0        # the config lists no options
    assert isinstance(dev, O.RootMount) and dev.attrs == NOSUID | L.MOUNT_ATTR_STRICTATIME
    assert dev.options == (("mode", "0755"), ("size", "65536k"))
    assert isinstance(pts, O.RootMount) and ("gid", "5") in pts.options
    assert isinstance(shm, O.RootMount) and shm.attrs == NOSUID | NODEV | NOEXEC
    assert ("size", "65536k") in shm.options
    mq = mount_at(ops, b"dev/mqueue")
    assert isinstance(mq, O.RootMount) and mq.attrs == NOSUID | NODEV | NOEXEC
    assert any(isinstance(op, O.RootMount) and op.target == b"sys/fs/cgroup" for op in ops)
    assert [op.target for op in ops if isinstance(op, O.RootMask)] == [b"proc/kcore", b"etc/secret"]
    assert [op.target for op in ops if isinstance(op, O.RootBind) and op.source_root == b"/newroot"] \
        == [b"srv"]


def test_oci_options_that_cannot_be_applied_are_reported(tmp_path: Path) -> None:
    with convert(tmp_path, [
        {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["uid=1000", "noatime"]},
        {"destination": "/b", "type": "bind", "source": str(tmp_path), "options": ["rbind", "noatime"]},
    ]) as conv:
        assert sorted(conv.unsupported) == ['mounts[7].options: not applied: ["uid=1000"]',
                                            'mounts[8].options: not applied: ["noatime"]']
    with pytest.raises(isolate.ConfigError, match=r"^mounts\[7\].options: bad tmpfs mode \"8\""):
        convert(tmp_path, [{"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["mode=8"]}])
    with pytest.raises(isolate.ConfigError, match=r"^linux.readonlyPaths\[1\]: "):
        convert(tmp_path, [], readonlyPaths=["/srv", "relative"])
