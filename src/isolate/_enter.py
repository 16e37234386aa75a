"""``exec_into``: a new process inside a running container, set up as its own processes are.

``Container.exec``, ``isolate-oci exec`` and the startContainer hooks all
start a program in a container that already runs, and that program may be
the image's own: it must get no more than the container's process has.  They
give ``exec_into`` the container's namespaces (its first process's, open),
its cgroup and a ``ProcessSpec`` of the container's credentials,
capabilities, no_new_privs, rlimits, umask and seccomp filter; it adds what
every such process needs:

- not dumpable until its execve (``SetDumpable(0)``): what already runs in
  the container must not ptrace it or open its /proc/<pid>/exe while it is
  still the runtime (the class of CVE-2019-5736);
- its working directory resolved inside the container's root without magic
  links (``RootChdir``: ``..`` stops at that root, ``/proc/self/fd/N``
  cannot name a directory of the runtime's), or as a plain path without a
  root of its own;
- a session of its own unless the spec says otherwise (no controlling
  terminal: it cannot type into the caller's with TIOCSTI).
"""

from __future__ import annotations

from . import _cache
from . import _ops as O
from ._plan import OpSeq
from ._planner import isolation
from .process import join_refs, launch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import IO, Any, TypeAlias

    from .config import ProcessSpec
    from .process import CgroupTarget, NamespaceLike, Process

    Stdio: TypeAlias = "None | int | IO[Any]"

__all__ = ["exec_into"]


def exec_into(spec: ProcessSpec, *, join: Sequence[NamespaceLike], cgroup: CgroupTarget | None,
              cwd: bytes, in_root: bool = True, stdin: Stdio = None, stdout: Stdio = None,
              stderr: Stdio = None, pass_fds: Sequence[int] | Mapping[int, int] = (),
              console: tuple[int, tuple[int, int, bool]] | None = None) -> Process:
    """Start ``spec`` in the namespaces ``join`` and the ``cgroup`` of a running container.

    ``cwd``: the working directory, relative to the container's root
    (``b"."`` for it) when ``in_root``, else a plain path.  ``console``: (a
    unix socket, (rows, columns, bind /dev/console)) to send a new
    terminal's master to (``isolate-oci exec --tty``).  ``spec.cwd`` must be
    None.  Raises as ``isolate.spawn`` does; nothing is left behind.
    """
    ops = _cache.memo(("exec ops", cwd, in_root), lambda: OpSeq((
        O.SetDumpable(0), O.RootChdir(b"/", cwd) if in_root else O.Chdir(path_=cwd))))
    types, fds = join_refs(join)
    return launch(spec, isolation(join=types), stdin=stdin, stdout=stdout, stderr=stderr,
                  pass_fds=pass_fds, join_fds=fds, cgroup=cgroup, extra=ops, console=console)
