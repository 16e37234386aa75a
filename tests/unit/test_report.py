"""The parent half of the report protocol, fed crafted reports with no child.

Like CPython's test_exception_errpipe_bad_data: the C call is replaced by one
that fills in the report the way a failing child would.
"""

from __future__ import annotations

import errno
import os
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import isolate
from isolate import _ops as O
from isolate import _plan as P
from isolate import _ops_root as R
from isolate import _spawn, errors
from isolate._native import ffi

PLAN_OPS = [
    O.SetNs(fd=3, nstype=P.NSTYPES["net"]),
    O.Mount(b"proc", b"/proc", b"proc"),
    O.SetResUid(1, 1, 1),
    O.Exec((b"/bin/true",)),
]

#: One op of each batched kind: its failures name an entry.
BATCHED = [
    O.RootMkdirs(b"/newroot", b"etc", ((b"a", R.ENTRY_DIR, 0o755, None),
                                       (b"resolv.conf", R.ENTRY_FILE, 0o644, None),
                                       (b"mtab", R.ENTRY_SYMLINK, 0o777, b"../proc/mounts"),
                                       (b"hostname", R.ENTRY_CONTENTS, 0o644, b"box\n"),
                                       (b"null", R.ENTRY_CHARDEV, 0o666, bytes(8)))),
    O.RootBinds(b"/oldroot", b"/newroot", ((b"etc/hosts", b"etc/hosts"),
                                           (b"etc/resolv.conf", b"etc/resolv.conf"),
                                           (b"dev/null", b"dev/tty"))),
    O.RootMasks(b"/newroot", (b"proc/kcore", b"proc/keys", b"sys/firmware"), b"dev/null"),
]


def report(step: int, kind: int, err: int, *, pid: int = 0, entry: int = -1,
           substep: int = 0) -> bytes:
    """A struct iso_report as the child writes it."""
    return P.REPORT_STRUCT.pack(step, kind, err, pid, entry, substep, 0, 0)


REAL_LIB = _spawn.lib


def plan() -> P.Plan:
    return P.Plan(ops=list(PLAN_OPS), argv=[b"true"], envp=None)


class FakeLib:
    """Stands in for isolate._native.lib: 'spawns' a child that reports ``data``."""

    def __init__(self, data: bytes, rc: int = 0, stage: int = 0) -> None:
        self.data, self.rc, self.stage = data, rc, stage
        self.abandoned = 0

    def iso_spawn(self, c_plan: object, child: object) -> int:
        child.stage = self.stage  # type: ignore[attr-defined]
        if self.rc < 0:
            return self.rc
        buf = ffi.buffer(ffi.addressof(child, "report"), ffi.sizeof("struct iso_report"))
        buf[0:len(self.data)] = self.data
        child.report_len = len(self.data)  # type: ignore[attr-defined]
        child.pid = -1  # type: ignore[attr-defined]
        child.pidfd = -1  # type: ignore[attr-defined]
        return 0

    def iso_helper_load(self, path: bytes) -> int:
        return 0

    def __getattr__(self, name: str) -> object:
        return getattr(REAL_LIB, name)


def run_fake(monkeypatch: pytest.MonkeyPatch, data: bytes, **kw: int) -> BaseException:
    monkeypatch.setattr(_spawn, "lib", FakeLib(data, **kw))
    with pytest.raises(errors.IsolateError) as info:
        _spawn.execute(plan().pack())
    return info.value


@given(st.binary(max_size=64).filter(lambda b: len(b) not in (0, 32)))
def test_report_of_wrong_length_is_a_protocol_error(data: bytes) -> None:
    e = P.decode_report(plan(), data)
    assert isinstance(e, errors.ProtocolError)
    assert "bad report" in str(e)


@given(st.integers(-2**31, 2**31 - 1).filter(lambda s: not 0 <= s < len(PLAN_OPS)),
       st.integers(1, 200))
def test_step_outside_the_plan_is_a_protocol_error(step: int, err: int) -> None:
    e = P.decode_report(plan(), report(step, 1, err))
    assert isinstance(e, errors.ProtocolError)


@given(st.integers(0, len(PLAN_OPS) - 1), st.integers(1, 4095))
def test_a_report_that_fits_gives_the_op_error_with_that_errno(step: int, err: int) -> None:
    op = PLAN_OPS[step]
    e = P.decode_report(plan(), report(step, op.kind, err))
    assert type(e) is op.error
    assert isinstance(e, errors.SetupError) and isinstance(e, OSError)
    assert e.errno == err and e.step == step
    assert e.op == op.describe()
    assert str(e) == f"step {step} ({op.describe()}): [Errno {err}] {os.strerror(err)}"
    assert e.entry is None and e.entries is None and e.substep is None


@given(st.integers(0, len(PLAN_OPS) - 1), st.integers(0, 100))
def test_kind_that_does_not_match_the_step_is_a_protocol_error(step: int, kind: int) -> None:
    if kind == PLAN_OPS[step].kind:
        kind += 100
    e = P.decode_report(plan(), report(step, kind, errno.EPERM))
    assert isinstance(e, errors.ProtocolError)


@pytest.mark.parametrize("err", [0, -1, 4096, 2**31 - 1])
def test_impossible_errno_is_a_protocol_error(err: int) -> None:
    e = P.decode_report(plan(), report(1, PLAN_OPS[1].kind, err))
    assert isinstance(e, errors.ProtocolError)


def test_execute_raises_the_mount_error_a_child_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    e = run_fake(monkeypatch, report(1, P.lib.ISO_OP_MOUNT, errno.EPERM))
    assert isinstance(e, errors.MountError)
    assert str(e) == "step 1 (mount proc on /proc): [Errno 1] Operation not permitted"
    assert e.filename == "/proc"


def test_execute_raises_protocol_error_for_a_short_report(monkeypatch: pytest.MonkeyPatch) -> None:
    e = run_fake(monkeypatch, b"\x01\x00\x00")
    assert isinstance(e, errors.ProtocolError)


def test_parent_side_failure_names_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    e = run_fake(monkeypatch, b"", rc=-errno.EPERM, stage=P.lib.ISO_STAGE_UID_MAP)
    assert isinstance(e, errors.SpawnError) and isinstance(e, OSError)
    assert e.errno == errno.EPERM and e.stage == "uid_map"
    assert str(e) == "uid_map: [Errno 1] Operation not permitted"


@pytest.mark.parametrize("exc", [
    errors.MountError(errno.ENOENT, step=4, op="mount proc on /proc", path="/proc"),
    errors.MountError(errno.ENOENT, step=7, op="bind /a on /b", path="/b", entry=2, entries=5,
                      substep="open target"),
    errors.ExecError(errno.EACCES, step=9, op="execve /x"),
    errors.SpawnError(errno.EAGAIN, stage="clone3"),
    errors.CgroupError(errno.EBUSY, filename="/sys/fs/cgroup/x"),
])
def test_errors_pickle_and_keep_their_fields(exc: errors.IsolateError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert back.errno == exc.errno  # type: ignore[attr-defined]
    if isinstance(exc, errors.SetupError):
        assert isinstance(back, errors.SetupError)
        assert (back.step, back.op, back.filename, back.entry, back.entries, back.substep) == (
            exc.step, exc.op, exc.filename, exc.entry, exc.entries, exc.substep)


def test_oserror_subclasses_are_not_remapped_by_errno() -> None:
    e = errors.MountError(errno.ENOENT, step=0, op="x")
    assert type(e) is errors.MountError
    assert not isinstance(e, FileNotFoundError)
    assert isinstance(e, OSError) and isinstance(e, isolate.IsolateError)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.UnsupportedError, RuntimeError)


# --- batched ops: the entry and the sub-step ------------------------------------------


def batched_plan(op: P.Op) -> P.Plan:
    return P.Plan(ops=[O.SetNs(fd=3, nstype=P.NSTYPES["mnt"]), op, O.Exec((b"/bin/true",))],
                  argv=[b"true"], envp=None)


def test_a_failing_bind_entry_is_named_with_its_sub_step() -> None:
    op = BATCHED[1]
    e = P.decode_report(batched_plan(op), report(1, op.kind, errno.ENOENT, entry=1,
                                                 substep=P.lib.ISO_SUB_OPEN_TARGET))
    assert type(e) is errors.MountError
    assert (e.step, e.entry, e.entries, e.substep) == (1, 1, 3, "open target")
    assert e.op == "bind /oldroot/etc/resolv.conf on /newroot/etc/resolv.conf"
    assert e.filename == "/newroot/etc/resolv.conf"
    assert str(e) == ("step 1 (bind /oldroot/etc/resolv.conf on /newroot/etc/resolv.conf, "
                      "entry 2 of 3): open target: [Errno 2] No such file or directory")


@given(st.sampled_from(BATCHED), st.data(), st.sampled_from(sorted(P.SUBSTEPS)),
       st.integers(1, 4095))
def test_any_entry_of_a_batched_op_gives_that_entrys_error(
        op: P.Op, data: st.DataObject, substep: int, err: int) -> None:
    described = op.describe_entries()  # type: ignore[attr-defined]
    entry = data.draw(st.integers(0, len(described) - 1))
    e = P.decode_report(batched_plan(op), report(1, op.kind, err, entry=entry, substep=substep))
    assert type(e) is op.error and isinstance(e, errors.SetupError)
    assert (e.errno, e.entry, e.entries) == (err, entry, len(described))
    assert (e.op, e.filename) == described[entry]
    assert e.substep == P.SUBSTEPS[substep]
    assert str(e) == (f"step 1 ({e.op}, entry {entry + 1} of {len(described)}): "
                      f"{P.SUBSTEPS[substep]}: [Errno {err}] {os.strerror(err)}")


def test_each_batched_kind_describes_its_entries() -> None:
    mkdirs, binds, masks = (op.describe_entries() for op in BATCHED)  # type: ignore[attr-defined]
    assert [d for d, _ in mkdirs] == [
        "mkdir /newroot/etc/a", "create file /newroot/etc/resolv.conf",
        "symlink /newroot/etc/mtab", "write file /newroot/etc/hostname", "mknod /newroot/etc/null"]
    assert binds[2] == ("bind /oldroot/dev/null on /newroot/dev/tty", "/newroot/dev/tty")
    assert masks[1] == ("mask /newroot/proc/keys (null device: /newroot/dev/null)",
                        "/newroot/proc/keys")


@given(st.sampled_from(BATCHED), st.integers(-2**31, 2**31 - 1))
def test_an_entry_outside_the_batch_is_a_protocol_error(op: P.Op, entry: int) -> None:
    n = len(op.describe_entries())  # type: ignore[attr-defined]
    if -1 <= entry < n:
        entry = n
    e = P.decode_report(batched_plan(op), report(1, op.kind, errno.EIO, entry=entry))
    assert isinstance(e, errors.ProtocolError) and f"entry {entry}" in str(e)


@given(st.integers(0, len(PLAN_OPS) - 1), st.integers(0, 2**31 - 1))
def test_an_entry_of_an_op_that_has_none_is_a_protocol_error(step: int, entry: int) -> None:
    e = P.decode_report(plan(), report(step, PLAN_OPS[step].kind, errno.EIO, entry=entry))
    assert isinstance(e, errors.ProtocolError)


@given(st.integers(-2**31, 2**31 - 1).filter(lambda s: s != 0 and s not in P.SUBSTEPS))
def test_an_unknown_sub_step_is_a_protocol_error(substep: int) -> None:
    e = P.decode_report(plan(), report(1, PLAN_OPS[1].kind, errno.EIO, substep=substep))
    assert isinstance(e, errors.ProtocolError) and f"substep {substep}" in str(e)


def test_a_sub_step_without_an_entry_is_told_too() -> None:
    op = O.RootMount(b"tmpfs", b"/newroot", b"tmp")
    e = P.decode_report(batched_plan(op), report(1, op.kind, errno.ENOENT,
                                                 substep=P.lib.ISO_SUB_OPEN_TARGET))
    assert type(e) is errors.MountError and e.entry is None
    assert str(e) == ("step 1 (mount tmpfs on /newroot/tmp): open target: "
                      "[Errno 2] No such file or directory")


def test_execute_raises_the_entry_a_child_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    op = BATCHED[0]
    monkeypatch.setattr(_spawn, "lib", FakeLib(report(1, op.kind, errno.EEXIST, entry=3,
                                                      substep=P.lib.ISO_SUB_CREATE)))
    with pytest.raises(errors.MountError) as info:
        _spawn.execute(batched_plan(op).pack())
    assert str(info.value) == ("step 1 (write file /newroot/etc/hostname, entry 4 of 5): create: "
                               "[Errno 17] File exists")
