"""Planning ahead: what a worker of the warm planner (``isolate.oci.warm``) works out before
its call comes.

A worker is a fresh fork of the planner, and would pay on its call's clock
for what a process works out once (host probes, the one cache's entries, the
interpreter's specialized code) and for every page it writes (copy-on-write
faults).  So the planner, once, and each worker forked ahead, once the call
before it has ended and ``SETTLE`` seconds more have passed without a call,
``create`` a container of a bundle of the planner's (``warm_bundle``) up to
its clone, which a delegate refuses (``plan_ahead``).
"""

from __future__ import annotations

import os
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._spawn import Outcome

__all__ = ["SETTLE", "idle", "plan_ahead", "warm_bundle", "remove_bundle"]


#: Seconds a spare waits, once the call before it has ended, for a call that follows at
#: once (a shim's start after its create) before it plans a container ahead: a call that
#: comes while it plans waits for it.
SETTLE = 0.02


def idle(listener: socket.socket, previous: int) -> bool:
    """Whether no front end has connected by the time the worker of the call before (its
    pidfd ``previous``, closed here; -1: none) has ended and ``SETTLE`` seconds more have
    passed."""
    import select

    poll = select.poll()
    poll.register(listener, select.POLLIN)
    if previous >= 0:
        poll.register(previous, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poll.poll()}
                if listener.fileno() in ready:
                    return False
                if previous in ready:
                    break
        finally:
            poll.unregister(previous)
            os.close(previous)
    return not poll.poll(int(SETTLE * 1000))


class _Refusal:
    """The spawn delegate of a container planned ahead: every clone is refused (ECANCELED),
    so that ``create`` undoes what it made; ``asked`` says whether it got that far."""

    __slots__ = ("asked",)

    def __init__(self) -> None:
        self.asked = False

    def spawn(self, wire: bytes, fds: Sequence[int], helper: bytes) -> tuple[Outcome, int]:
        """Refuse the clone (``_spawn.Delegate``)."""
        import errno

        self.asked = True
        raise OSError(errno.ECANCELED, "planned ahead: not cloned")

    def release(self) -> Outcome:
        """Never reached: nothing is cloned."""
        raise AssertionError("release without a child")

    def abandon(self) -> None:
        """Never reached: nothing is cloned."""

    def wait(self, pid: int) -> int:
        """No child of this delegate exists."""
        raise ChildProcessError(pid)

    def forward_signals(self) -> None:
        """Nothing to forward to."""


def plan_ahead(bundle: str) -> bool:
    """``create`` a container of ``bundle`` (``warm_bundle``) in this process up to its
    clone, which is refused; True if the clone was reached.

    A worker is a fresh fork of the planner: what a call works out once per
    process (host probes, the cgroup layout's resolution, the one cache's
    entries of a default config, a reclaim of the cgroup parent, regular
    expressions, the interpreter's specialized code) and every page it writes
    (copy-on-write faults) would be paid on the call's clock.  ``create``'s
    own error path removes the state directory and the cgroup it made, as
    for any failed clone.  Raises only what is not an ``Exception`` (``SystemExit``).
    """
    import io

    from .. import _owner, _spawn
    from ..cli.oci import main as oci_main

    refusal = _Refusal()
    err = sys.stderr
    sys.stderr = io.StringIO()                        # create's one line about the refusal
    _spawn.set_delegate(refusal)
    try:
        oci_main(["--root", os.path.join(bundle, "state"), "create", "--bundle", bundle,
                  f"warm-{os.getpid()}"])
    except Exception:
        pass                      # (SystemExit: the planner's SIGTERM, after create's undoing)
    finally:
        _spawn.set_delegate(None)
        sys.stderr = err
        _owner.leave()                                # nothing of this process is left to reclaim
    return refusal.asked


def warm_bundle(directory: str) -> str | None:
    """A bundle for spares to plan ahead, in the planners' ``directory``
    (``warm-<pid namespace>-<planner's pid>-*``): ``runc spec``'s config.json running /bin/true,
    without a terminal, on an empty root; its ``state`` directory is the runtime root.  None
    if it cannot be made.

    The bundles of planners gone (killed: their ``finally`` never ran) are removed first:
    those of our pid namespace whose pid is no process now.
    """
    import json
    import shutil
    import tempfile

    from .features import default_spec
    from .rootless import is_rootless

    mine = f"warm-{os.stat('/proc/self/ns/pid').st_ino}-"
    try:
        for name in os.listdir(directory):
            pid = name[len(mine):].split("-")[0]
            if name.startswith(mine) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                remove_bundle(os.path.join(directory, name))
        d = tempfile.mkdtemp(prefix=f"{mine}{os.getpid()}-", dir=directory)
    except OSError:
        return None
    try:
        spec = default_spec(rootless=is_rootless())
        spec["process"].update(terminal=False, args=["/bin/true"])
        os.mkdir(os.path.join(d, "rootfs"))
        os.mkdir(os.path.join(d, "state"))
        with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f)
    except Exception:
        shutil.rmtree(d, ignore_errors=True)
        return None
    return d


def remove_bundle(bundle: str) -> None:
    """Remove a warm bundle and what its state directory still names.

    A worker killed while it planned (its planner killed, PR_SET_PDEATHSIG)
    may leave a container there half-made: its cgroup is named by its
    state.json alone once ``create`` has recorded it there, so ``delete
    --force`` of each container goes before the directory does.
    """
    import shutil

    from .runtime import delete
    from .state import list_ids

    root = os.path.join(bundle, "state")
    for cid in list_ids(root):
        try:
            delete(root, cid, force=True)
        except Exception:
            pass                  # (what delete cannot remove, isolate gc may)
    shutil.rmtree(bundle, ignore_errors=True)
