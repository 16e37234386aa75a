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
