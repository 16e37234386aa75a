"""RootFS validation and the ops it plans (no privileges needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import isolate
from isolate import _ops as O
from isolate import _plan as P
from isolate._ops import RootBinds, RootMasks, RootMkdirs
from isolate._planner_root import RootContext
from isolate._plans import builds_in_place
from isolate._record import replace
from isolate.rootfs import OCI_MASKED_PATHS, RootFS, container_path


def ctx(chroot: bool = False, userns: bool = True) -> RootContext:
    stage = b"/tmp"
    return RootContext(new=stage + b"/newroot" if chroot else b"/newroot",
                old=stage + b"/oldroot" if chroot else b"/oldroot", stage=stage, chroot=chroot,
                userns=userns, new_net=True, new_pid=True, console=None)


def test_directory_must_exist_and_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(isolate.ConfigError, match="does not exist"):
        RootFS.from_directory(tmp_path / "missing")
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(isolate.ConfigError, match="not a directory"):
        RootFS.from_directory(f)


@pytest.mark.parametrize("target", ["relative/x", "/a/../etc", "/..", "", "/x\0y"])
def test_bad_targets_are_config_errors(target: str) -> None:
    with pytest.raises(isolate.ConfigError):
        RootFS.host().tmpfs(target)
    with pytest.raises(isolate.ConfigError):
        RootFS.host().bind("/usr", target)


def test_bind_source_must_exist(tmp_path: Path) -> None:
    with pytest.raises(isolate.ConfigError, match="bind source"):
        RootFS.host().bind(tmp_path / "missing", "/x")


@pytest.mark.parametrize("size", [0, -1, "lots", "12q", True])
def test_bad_tmpfs_size(size: object) -> None:
    with pytest.raises(isolate.ConfigError, match="size"):
        RootFS.host().tmpfs("/x", size=size)  # type: ignore[arg-type]


def test_overlay_upper_checks(tmp_path: Path) -> None:
    with pytest.raises(isolate.ConfigError):
        RootFS.host().overlay(tmp_path / "missing")
    img = tmp_path / "img"
    (img / "up").mkdir(parents=True)
    with pytest.raises(isolate.ConfigError, match="inside the rootfs"):
        RootFS.from_directory(img).overlay(img / "up")
    with pytest.raises(isolate.ConfigError):
        RootFS.host().changes()


@given(st.lists(st.sampled_from(["a", "b", ".", "", "usr", "x y"]), min_size=1, max_size=6))
def test_container_path_normalizes(parts: list[str]) -> None:
    p = container_path("/" + "/".join(parts), "t")
    assert not p.startswith(b"/") and b"//" not in p and b".." not in p.split(b"/")


def expanded(ops: list[P.Op]) -> list[P.Op]:
    """Batched ops (``RootBinds``, ``RootMasks``) as the single ops they stand for."""
    return [one for op in ops for one in (op.expand() if isinstance(op, (RootBinds, RootMasks)) else [op])]


def test_host_plan_targets_are_resolved_in_the_new_root() -> None:
    ops = expanded(RootFS.host(home="/root")._ops(ctx()))
    assert isinstance(ops[0], O.RootStage) and not ops[0].chroot
    for op in ops[1:]:
        if isinstance(op, (O.RootBind, O.RootMount)) and op.target != b"/newroot":
            assert op.root == b"/newroot", op
            assert not op.target.startswith(b"/"), op
        if isinstance(op, O.RootBind) and op.source_root is not None:
            assert op.source_root in (b"/oldroot", b"/newroot")
    usr = [op for op in ops if isinstance(op, O.RootBind) and op.target == b"usr"]
    assert usr and usr[0].readonly and usr[0].recursive
    kinds = {op.fstype for op in ops if isinstance(op, O.RootMount)}
    assert {b"tmpfs", b"proc", b"sysfs", b"devpts"} <= kinds
    masked = {op.target for op in ops if isinstance(op, O.RootMask)}
    assert b"proc/kcore" in masked and b"sys/firmware" in masked


def test_merged_usr_symlinks_are_recreated() -> None:
    ops = RootFS.host()._ops(ctx())
    links = {name: link for op in ops if isinstance(op, RootMkdirs)
             for name, type_, _, link in op.entries if type_ == 2}
    for name in ("bin", "sbin", "lib", "lib64"):
        if Path("/", name).is_symlink():
            assert links[name.encode()] == os.fsencode(os.readlink(Path("/", name)))


def test_chroot_mode_plan() -> None:
    ops = RootFS.host()._ops(ctx(chroot=True))
    assert ops[0] == O.RootStage(base=b"/tmp", chroot=True)
    assert all(op.root in (None, b"/tmp/newroot") for op in ops if isinstance(op, O.RootMount))


def test_overlay_plan_uses_userxattr_in_a_user_namespace(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.mkdir()
    for userns in (True, False):
        ops = RootFS.from_directory(img).overlay()._ops(ctx(userns=userns))
        ovl = [op for op in ops if isinstance(op, O.RootMount) and op.fstype == b"overlay"]
        assert len(ovl) == 1
        opts = dict(ovl[0].options)
        assert opts["lowerdir"] == f"/oldroot{img}"
        assert ("userxattr" in opts) == userns


def test_no_sysfs_mount_without_owning_the_net_namespace() -> None:
    c = ctx()
    c = replace(c, new_net=False)
    ops = RootFS.host()._ops(c)
    assert not any(isinstance(op, O.RootMount) and op.fstype == b"sysfs" for op in ops)
    assert any(isinstance(op, O.RootBind) and op.target == b"sys" and op.readonly for op in ops)


def test_new_ops_round_trip_through_pack() -> None:
    ops = RootFS.host().tmpfs("/data", size="1m").overlay(size="4m")._ops(ctx())
    ops += [O.RootChdir(b"/", b"tmp"), O.SetDumpable(0), O.Exec((b"/bin/true",))]
    plan = P.Plan(ops=list(ops), argv=[b"true"], envp=[])
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    buf = bytes(P.ffi.buffer(c.ops, 64 * c.n_ops))
    arena = bytes(P.ffi.buffer(c.arena, c.arena_len))
    assert P.unpack_ops(buf, arena) == ops


def test_error_descriptions_name_the_path() -> None:
    op = O.RootMount(b"proc", b"/newroot", b"proc", source=b"proc")
    err = P.Plan(ops=[op, O.Exec((b"/x",))], argv=[b"x"], envp=[]).error_for(0, op.kind, 1)
    assert isinstance(err, isolate.MountError)
    assert str(err) == "step 0 (mount proc on /newroot/proc): [Errno 1] Operation not permitted"


def direct_ctx(stage: bytes = b"/tmp") -> RootContext:
    return RootContext(new=stage, old=b"/", stage=stage, chroot=False, userns=True, new_net=True,
                new_pid=True, console=None, direct=True)


def test_host_root_is_built_in_place_on_the_stage() -> None:
    # No staging tmpfs and no first pivot_root: the new root is mounted on the
    # stage itself and host paths are read where they are.
    rootfs = RootFS.host(home="/root")
    assert builds_in_place(rootfs.spec, b"/tmp", None)
    ops = rootfs._ops(direct_ctx())
    assert not any(isinstance(op, O.RootStage) for op in ops)
    assert ops[0] == O.RootMount(b"tmpfs", None, b"/tmp", source=b"tmpfs",
                                 attrs=P.lib.MOUNT_ATTR_NOSUID, options=(("mode", "0755"),))
    for op in ops[1:]:
        if isinstance(op, (O.RootBind, O.RootMount, O.RootMask, O.RootMkdir)):
            assert op.root == b"/tmp", op        # every target inside the new root
        if isinstance(op, O.RootBind):
            assert op.source_root in (b"/", b"/tmp"), op


def test_sources_under_the_stage_keep_the_staged_build(tmp_path: Path) -> None:
    # The new root would cover such a source: the build pivots into a staging
    # tmpfs first, where the host tree stays whole under /oldroot.
    stage = os.fsencode(tmp_path)
    (tmp_path / "data").mkdir()
    assert builds_in_place(RootFS.host().spec, stage, None)
    assert not builds_in_place(RootFS.host().bind(tmp_path / "data", "/data").spec, stage, None)
    assert not builds_in_place(RootFS.from_directory(tmp_path / "data").spec, stage, None)
    # A source that contains the stage (here /) would take the new root along.
    assert not builds_in_place(RootFS.host().bind("/", "/host").spec, stage, None)
    # The overlay's upper layer lives in the staging tmpfs.
    assert not builds_in_place(RootFS.host().overlay().spec, b"/tmp", None)


def test_large_etc_files_are_bound_small_ones_copied() -> None:
    from isolate.rootfs import ETC_COPY_MAX, HOST_ETC

    rootfs = RootFS.host()
    kinds = {name: kind for name, kind, _ in rootfs.spec.host_etc}
    for name in HOST_ETC:
        p = Path("/etc", name)
        if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK):
            assert kinds[name] == ("file" if p.stat().st_size <= ETC_COPY_MAX else "bind"), name


def test_batched_entries_round_trip_through_the_packed_plan() -> None:
    # The top of the root, /etc and /dev are each made by one op through one
    # directory fd; the packed form must say the same as the op.
    ops = RootFS.host(home="/root")._ops(direct_ctx())
    batches = [op for op in ops if isinstance(op, RootMkdirs)]
    assert [b.parent for b in batches][::len(batches) - 1] == [b".", b"dev"]
    top = {e[0] for e in batches[0].entries}
    assert {b"usr", b"etc", b"tmp", b"root", b"proc", b"sys", b"dev"} <= top
    # Nothing made twice: the later per-target mkdirs skip what the batch made.
    singles = {op.name for op in ops if isinstance(op, O.RootMkdir) and op.parent == b"."}
    assert not singles & top
    plan = P.Plan(ops=ops, argv=[b"x"], envp=None)
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    back = P.unpack_ops(bytes(P.ffi.buffer(c.ops, 64 * len(ops))),
                        bytes(P.ffi.buffer(c.arena, c.arena_len)))
    assert back == ops


@pytest.mark.parametrize("entry", [(b"a/b", 0, 0o755, None), (b"..", 0, 0o755, None),
                                   (b"", 0, 0o755, None), (b"x", 2, 0o777, None),
                                   (b"x", 0, 0o10000, None), (b"x", 3, 0, None)])
def test_batched_entries_are_single_components(entry: tuple[bytes, int, int, bytes | None]) -> None:
    # mkdirat() follows symlinks in leading components: a name with a slash
    # could leave the root, so the op refuses it when made.
    with pytest.raises(ValueError):
        RootMkdirs(b"/newroot", b"dev", (entry,))


def test_host_plan_batches_only_the_default_paths() -> None:
    # /dev's nodes, /etc and the OCI default lists are one op each; a caller's
    # masked and read-only paths stay one op per path (each resolves the root anew).
    rootfs = RootFS.host().mask_paths("/etc/extra").readonly_paths("/srv")
    ops = rootfs._ops(ctx())
    (masks,) = [op for op in ops if isinstance(op, RootMasks)]
    assert masks.targets == tuple(p.lstrip("/").encode() for p in OCI_MASKED_PATHS)
    binds = [op for op in ops if isinstance(op, RootBinds)]
    assert [b.entries[0][0] for b in binds][-1] == b"proc/bus"
    assert O.RootMask(b"/newroot", b"etc/extra", b"dev/null") in ops
    assert O.RootBind(b"/newroot", b"srv", b"/newroot", b"srv", readonly=True, optional=True) in ops
    files = {e[0]: e[3] for op in ops if isinstance(op, RootMkdirs) and op.parent == b"etc"
             for e in op.entries if e[1] == 3}
    assert all(Path("/etc", n.decode()).read_bytes() == data for n, data in files.items())
    assert not any(isinstance(op, O.WriteFile) for op in ops)


names = st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b and b"/" not in b
                                                  and b not in (b".", b".."))
rel_paths = st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b)
ROOT_OPS = st.one_of(
    st.builds(RootMkdirs, root=st.none() | rel_paths, parent=rel_paths, entries=st.lists(st.one_of(
        st.tuples(names, st.sampled_from([0, 1]), st.integers(0, 0o7777), st.none()),
        st.tuples(names, st.just(2), st.integers(0, 0o7777), rel_paths),
        st.tuples(names, st.just(3), st.integers(0, 0o7777), st.binary(max_size=64)),
        st.tuples(names, st.just(4), st.integers(0, 0o7777), st.binary(min_size=8, max_size=8))),
        min_size=1, max_size=5).map(tuple)),
    st.builds(RootBinds, source_root=st.none() | rel_paths, root=st.none() | rel_paths,
              entries=st.lists(st.tuples(rel_paths, rel_paths), min_size=1, max_size=5).map(tuple),
              recursive=st.booleans(), readonly=st.booleans(), optional=st.booleans(),
              attr_set=st.integers(0, 2**32 - 1), attr_clr=st.integers(0, 2**32 - 1)),
    st.builds(RootMasks, root=rel_paths, targets=st.lists(rel_paths, min_size=1, max_size=5).map(tuple),
              null=rel_paths, fd=st.integers(-1, 2**31 - 1)),
    st.builds(O.RootBind, source_root=st.none() | rel_paths, source=rel_paths, root=st.none() | rel_paths,
              target=rel_paths, recursive=st.booleans(), readonly=st.booleans(), optional=st.booleans()),
    st.builds(O.RootMask, root=rel_paths, target=rel_paths, null=rel_paths),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ROOT_OPS, max_size=6))
def test_root_ops_pack_then_read_back(ops: list[P.Op]) -> None:
    # Batches share their kind with the single op: the count in val2 tells them apart.
    plan = P.Plan(ops=ops, argv=[b"x"], envp=None)
    inst = plan.pack().instantiate()  # keeps the packed plan (and c's memory) alive
    c = inst.c
    ops_bytes = bytes(P.ffi.buffer(c.ops, 64 * len(ops))) if ops else b""
    assert P.unpack_ops(ops_bytes, bytes(P.ffi.buffer(c.arena, c.arena_len))) == ops
