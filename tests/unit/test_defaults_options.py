"""The options behind the default sandbox's guarantees (issue 12), without a process.

The attacks themselves are in tests/security/test_defaults.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import isolate
from isolate import _plan as P
from isolate.rootfs import RootFS, _Ctx


def ctx() -> _Ctx:
    return _Ctx(new=b"/newroot", old=b"/oldroot", stage=b"/tmp", chroot=False, userns=True,
                new_net=True, new_pid=True, console=None)


def tmpfs_sizes(rootfs: RootFS) -> dict[bytes, str | None]:
    """Every tmpfs the root mounts: target -> its size option (None: none)."""
    out = {}
    for op in rootfs._ops(ctx()):
        if isinstance(op, P.RootMount) and op.fstype == b"tmpfs" or (
                isinstance(op, P.RootMount) and op.source == b"shm"):
            out[op.target] = dict(op.options).get("size")
    return out


# --- tmpfs sizes -------------------------------------------------------------------------


def test_every_writable_tmpfs_of_the_host_root_is_bounded() -> None:
    sizes = tmpfs_sizes(RootFS.host(home="/root"))
    assert sizes[b"tmp"] == "512m" and sizes[b"root"] == "256m" and sizes[b"dev/shm"] == "64m"
    assert sizes[b"dev"] == "64k"


def test_tmpfs_sizes_can_be_changed_or_lifted() -> None:
    r = RootFS.host(home="/home/u", tmp_size="1g", home_size=8 << 20).mount_options("/dev/shm", size="1m")
    sizes = tmpfs_sizes(r)
    assert sizes[b"tmp"] == "1g" and sizes[b"home/u"] == str(8 << 20) and sizes[b"dev/shm"] == "1m"
    # None: tmpfs's own default (half of RAM), for a caller who wants it.
    sizes = tmpfs_sizes(RootFS.host(home="/root", tmp_size=None, home_size=None))
    assert sizes[b"tmp"] is None and sizes[b"root"] is None


def test_the_overlay_upper_tmpfs_is_bounded() -> None:
    def upper_size(r: RootFS) -> str | None:
        (op,) = [op for op in r._ops(ctx()) if isinstance(op, P.RootMount) and op.target == b"/ovl"]
        return dict(op.options).get("size")

    assert upper_size(RootFS.host().overlay()) == "1g"
    assert upper_size(RootFS.host().overlay(size="64m")) == "64m"
    assert upper_size(RootFS.host().overlay(size=None)) is None


@pytest.mark.parametrize("option", ["tmp_size", "home_size"])
@pytest.mark.parametrize("value", [0, -1, "lots", True])
def test_bad_sizes_name_the_option(option: str, value: object) -> None:
    with pytest.raises(isolate.ConfigError, match=option):
        RootFS.host(home="/root", **{option: value})  # type: ignore[arg-type]


# --- output ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 1.5, "1m", True])
def test_bad_max_output_is_refused_before_anything_runs(value: object) -> None:
    with pytest.raises(isolate.ConfigError, match="max_output"):
        isolate.run(["/bin/true"], capture_output=True, max_output=value)  # type: ignore[arg-type]
    with isolate.Container() as c, pytest.raises(isolate.ConfigError, match="max_output"):
        c.run(["/bin/true"], max_output=value)  # type: ignore[arg-type]
    assert c.process is None


def test_capture_keeps_the_first_bytes_and_says_it_truncated() -> None:
    from isolate.process import _Capture

    cap = _Capture(10)
    for chunk in (b"0123", b"4567", b"89ab", b"cd"):
        cap.add(chunk)
    assert (cap.value(), cap.truncated) == (b"0123456789", True)
    exact = _Capture(4)
    exact.add(b"0123")
    assert (exact.value(), exact.truncated) == (b"0123", False)
    unlimited = _Capture(None)
    unlimited.add(b"x" * 100)
    assert (unlimited.value(), unlimited.truncated) == (b"x" * 100, False)


def test_result_reports_truncation() -> None:
    r = isolate.Result(args=["x"], returncode=0, stdout=b"", stderr=b"", wall_time=0.0, cpu_time=0.0,
                       peak_memory=None, oom_killed=False, timed_out=False, root_mode="none",
                       truncated=True)
    assert r.to_dict()["truncated"] is True
    from isolate.container import DEFAULT_MAX_OUTPUT

    assert DEFAULT_MAX_OUTPUT == 32 << 20
