"""The only caller of ``lib.iso_spawn``: runs a packed plan and raises on failure.

The protocol (see ``csrc/spawn.c``): the child writes one fixed-size
``struct iso_report`` on an O_CLOEXEC pipe if a step fails; end-of-file means
execve succeeded.  A failed child is reaped by the C side before we return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import errors
from ._native import ffi, lib
from ._plan import PLAN_HOLD, STAGES, Plan, decode_report


@dataclass(frozen=True, slots=True)
class Spawned:
    """A child that has exec'd: its pid and an owned pidfd."""

    pid: int
    pidfd: int
    clone3: bool
    timings: dict[str, int] | None = None


def _spawn_error(rc: int, child: object) -> errors.SpawnError:
    stage = STAGES.get(child.stage, f"stage {child.stage}")  # type: ignore[attr-defined]
    return errors.SpawnError(-rc, stage=stage)


def execute(plan: Plan, *, before_release: Callable[[int], None] | None = None) -> Spawned:
    """Spawn ``plan``.  ``before_release(pid)`` runs while the child waits, before any op.

    Raises ``SpawnError`` for a parent-side failure and the op's
    ``SetupError`` subclass for a child-side one; nothing is left behind.
    """
    if before_release is not None:
        plan.flags |= PLAN_HOLD
    c_plan = plan.pack()
    child = ffi.new("struct iso_child *")
    rc = lib.iso_spawn(c_plan, child)
    if rc < 0:
        raise _spawn_error(rc, child)
    if before_release is not None:
        try:
            before_release(child.pid)
        except BaseException:
            lib.iso_abandon(child)
            raise
        rc = lib.iso_release(c_plan, child)
        if rc < 0:
            raise _spawn_error(rc, child)
    if child.report_len:
        data = bytes(ffi.buffer(ffi.addressof(child, "report"), child.report_len))
        raise decode_report(plan, data)
    timings = None
    if plan.flags & lib.ISO_PLAN_TIMING:
        t0 = child.t_start
        timings = {
            "clone": child.t_cloned - t0,
            "parent_setup": child.t_mapped - child.t_cloned,
            "release": child.t_released - t0,
            "exec": child.t_done - child.t_released,
        }
    return Spawned(child.pid, child.pidfd, bool(child.clone3_used), timings)


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread; raises OSError."""
    import os

    rc = lib.iso_setns(fd, nstype)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread (``flags``: CLONE_NEW* bits); raises OSError."""
    import os

    rc = lib.iso_unshare(flags)
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))


def clone3_available() -> bool:
    """Whether this kernel has clone3(2)."""
    return bool(lib.iso_clone3_available())
