"""The parent half of the report protocol, fed crafted reports with no child.

Like CPython's test_exception_errpipe_bad_data: the C call is replaced by one
that fills in the report the way a failing child would.
"""

from __future__ import annotations

import errno
import os
import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import isolate
from isolate import _ops as O
from isolate import _plan as P
from isolate import _spawn, errors
from isolate._native import ffi

PLAN_OPS = [
    O.SetNs(fd=3, nstype=P.NSTYPES["net"]),
    O.Mount(b"proc", b"/proc", b"proc"),
    O.SetResUid(1, 1, 1),
    O.Exec((b"/bin/true",)),
]


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
        buf = ffi.buffer(ffi.addressof(child, "report"), 16)
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


@given(st.binary(max_size=40).filter(lambda b: len(b) not in (0, 16)))
def test_report_of_wrong_length_is_a_protocol_error(data: bytes) -> None:
    e = P.decode_report(plan(), data)
    assert isinstance(e, errors.ProtocolError)
    assert "bad report" in str(e)


@given(st.integers(-2**31, 2**31 - 1).filter(lambda s: not 0 <= s < len(PLAN_OPS)),
       st.integers(1, 200))
def test_step_outside_the_plan_is_a_protocol_error(step: int, err: int) -> None:
    e = P.decode_report(plan(), struct.pack("=iiii", step, 1, err, 0))
    assert isinstance(e, errors.ProtocolError)


@given(st.integers(0, len(PLAN_OPS) - 1), st.integers(1, 4095))
def test_a_report_that_fits_gives_the_op_error_with_that_errno(step: int, err: int) -> None:
    op = PLAN_OPS[step]
    e = P.decode_report(plan(), struct.pack("=iiii", step, op.kind, err, 0))
    assert type(e) is op.error
    assert isinstance(e, errors.SetupError) and isinstance(e, OSError)
    assert e.errno == err and e.step == step
    assert e.op == op.describe()
    assert str(e) == f"step {step} ({op.describe()}): [Errno {err}] {os.strerror(err)}"


@given(st.integers(0, len(PLAN_OPS) - 1), st.integers(0, 100))
def test_kind_that_does_not_match_the_step_is_a_protocol_error(step: int, kind: int) -> None:
    if kind == PLAN_OPS[step].kind:
        kind += 100
    e = P.decode_report(plan(), struct.pack("=iiii", step, kind, errno.EPERM, 0))
    assert isinstance(e, errors.ProtocolError)


@pytest.mark.parametrize("err", [0, -1, 4096, 2**31 - 1])
def test_impossible_errno_is_a_protocol_error(err: int) -> None:
    e = P.decode_report(plan(), struct.pack("=iiii", 1, PLAN_OPS[1].kind, err, 0))
    assert isinstance(e, errors.ProtocolError)


def test_execute_raises_the_mount_error_a_child_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    e = run_fake(monkeypatch, struct.pack("=iiii", 1, P.lib.ISO_OP_MOUNT, errno.EPERM, 0))
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
    errors.ExecError(errno.EACCES, step=9, op="execve /x"),
    errors.SpawnError(errno.EAGAIN, stage="clone3"),
    errors.CgroupError(errno.EBUSY, filename="/sys/fs/cgroup/x"),
])
def test_errors_pickle_and_keep_their_fields(exc: errors.IsolateError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert back.errno == exc.errno  # type: ignore[attr-defined]


def test_oserror_subclasses_are_not_remapped_by_errno() -> None:
    e = errors.MountError(errno.ENOENT, step=0, op="x")
    assert type(e) is errors.MountError
    assert not isinstance(e, FileNotFoundError)
    assert isinstance(e, OSError) and isinstance(e, isolate.IsolateError)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.UnsupportedError, RuntimeError)
