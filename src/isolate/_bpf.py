"""Load and attach cgroup v2 device programs over ``csrc/bpf.c``, with errors that say what to do.

The C calls go through ``_spawn`` (only ``_plan`` and ``_spawn`` import the
compiled module); this module turns their -errno into isolate's errors.
"""

from __future__ import annotations

import errno as _errno
import os

from . import _spawn
from .errors import CgroupError, UnsupportedError

__all__ = ["load_device_program", "attach_device_program", "detach_device_program"]

_LOG_SIZE = 64 * 1024


def load_device_program(insns: bytes) -> int:
    """Load a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program; returns its fd (O_CLOEXEC, caller closes).

    Raises ``UnsupportedError`` when the kernel has no bpf() or the caller may
    not load programs, ``CgroupError`` (with the verifier log) when it is rejected.
    """
    if not insns or len(insns) % 8:
        raise ValueError(f"a BPF program is a sequence of 8-byte instructions, got {len(insns)} bytes")
    fd, text = _spawn.bpf_load_device_prog(insns, _LOG_SIZE)
    if fd >= 0:
        return fd
    err = -fd
    if err == _errno.ENOSYS:
        raise UnsupportedError("the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL), needed for "
                               "device rules on cgroup v2")
    if err == _errno.EPERM:
        raise UnsupportedError("loading a cgroup device BPF program needs CAP_BPF or CAP_SYS_ADMIN "
                               "(device rules on cgroup v2)")
    raise CgroupError(err, f"{os.strerror(err)}: BPF device program rejected"
                           + (f":\n{text}" if text else ""))


def attach_device_program(prog_fd: int, cgroup_fd: int, where: str) -> None:
    """Attach a device program to the cgroup directory ``cgroup_fd`` (``where`` names it in errors)."""
    rc = _spawn.bpf_attach_device_prog(prog_fd, cgroup_fd)
    if rc < 0:
        raise CgroupError(-rc, f"{os.strerror(-rc)}: attaching the BPF device program", where)


def detach_device_program(prog_fd: int, cgroup_fd: int, where: str) -> None:
    """Detach a device program attached by ``attach_device_program`` (to replace it)."""
    rc = _spawn.bpf_detach_device_prog(prog_fd, cgroup_fd)
    if rc < 0:
        raise CgroupError(-rc, f"{os.strerror(-rc)}: detaching the BPF device program", where)
