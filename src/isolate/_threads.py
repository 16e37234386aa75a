"""Starting the background threads of ``CgroupPool`` and ``NetnsPool``, with a clear error."""

from __future__ import annotations

import errno as _errno
import threading

from .errors import SpawnError

__all__ = ["start"]


def start(thread: threading.Thread, who: str) -> None:
    """``thread.start()``; ``SpawnError`` (``EAGAIN``) naming ``who`` if the thread cannot start.

    CPython turns every ``pthread_create`` failure into ``RuntimeError("can't
    start new thread")``; on Linux that is ``EAGAIN``: the caller's cgroup is
    at its ``pids.max``, or the user at ``RLIMIT_NPROC`` or the system at
    ``kernel.threads-max``.  The caller undoes what it made before raising.
    """
    try:
        thread.start()
    except RuntimeError as e:
        raise SpawnError(_errno.EAGAIN, stage=(
            f"{who}: cannot start its background thread ({e}; is this process's cgroup at its "
            "pids.max, or the user at RLIMIT_NPROC?)")) from e
