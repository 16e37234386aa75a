"""A new process inside a running container, set up as the container's own process is.

``isolate-oci exec`` and the startContainer hooks both start a program in a
container that already runs, and that program may be the image's own: it
must get no more than the container's process has.  ``entering`` turns the
container's config (its ``process`` section, ``linux.seccomp`` and
``linux.namespaces``) and its cgroup into what ``isolate._enter.exec_into``
takes (the one way every process enters a running container, as
``Container.exec`` does too)::

    with entering(st, proc_spec) as inside:
        p = exec_into(replace(inside.spec, args=args), join=inside.join,
                      cgroup=inside.cgroup, cwd=inside.cwd)

What the process gets, as runc gives its exec'd processes and its hooks:
every namespace of the container's first process, its cgroup, the config's
user, group and additional groups, its five capability sets, no_new_privs,
rlimits, umask and seccomp filter, a session of its own (no controlling
terminal, so it cannot type into the caller's with TIOCSTI), and the working
directory resolved inside the container's root without following magic links
(``/proc/self/fd/N`` cannot name a directory of the runtime's).
"""

from __future__ import annotations

import contextlib
import os

from .._record import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Any

    from ..cgroup import Cgroup
    from ..config import ProcessSpec
    from ..namespace import Namespace
    from . import spec as S
    from .state import ContainerState

__all__ = ["Inside", "entering", "home_for", "with_home"]


@dataclass(frozen=True, slots=True)
class Inside:
    """What ``exec_into`` needs to start a process in a container: its ``spec`` (no args
    yet), the namespaces to ``join`` (open), its ``cgroup`` and the working directory ``cwd``
    (relative to the container's root)."""

    spec: ProcessSpec
    join: tuple[Namespace, ...]
    cgroup: Cgroup | None
    cwd: bytes


def home_for(rootfs: str, uid: int) -> str:
    """The home of ``uid`` in the image's /etc/passwd, else ``/`` (runc sets HOME this way)."""
    try:
        # O_NOFOLLOW: an image's /etc/passwd that is a symlink is not followed onto the host.
        etc = os.open(os.path.join(rootfs, "etc"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd = os.open("passwd", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=etc)
        finally:
            os.close(etc)
        with os.fdopen(fd, "rb") as f:
            data = f.read(1 << 20)
    except OSError:
        return "/"
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid) and fields[5]:
            return fields[5]
    return "/"


def with_home(env: Mapping[Any, Any], rootfs: str, uid: Any) -> dict[Any, Any]:
    """``env`` with HOME from the image's /etc/passwd when it has none (as runc)."""
    out = dict(env)
    if "HOME" not in out and isinstance(uid, int):
        out["HOME"] = home_for(rootfs, uid)
    return out


@contextlib.contextmanager
def entering(st: ContainerState, proc: S.Process, *, env: Mapping[str, str] | None = None,
             extra_caps: Sequence[str] = (), new_session: bool = True) -> Iterator[Inside]:
    """What a process needs to start where container ``st``'s process runs.

    ``proc``: the process section to apply (the container's own, or exec's
    with its flags' overrides).  ``env``: the environment instead of
    ``proc``'s (a hook gets its own, exactly); otherwise ``proc.env`` plus
    HOME from the image's /etc/passwd, as runc sets it.  ``extra_caps``
    (exec ``--cap``) are added to the bounding, effective and permitted sets.
    ``new_session`` False: the caller gives the process a terminal, whose
    setup makes the session (``tty=True`` or a console).

    The namespace fds and the cgroup stay open until the block ends: start
    the process before it does.  Raises ``ConfigError`` for a config that
    cannot be applied and ``RuntimeError_`` if the container's process is gone.
    """
    from .._record import replace
    from ..namespace import Namespace
    from . import spec as S
    from .cgroups import open_cgroup
    from .convert import _Out, process_spec, refuse_unapplied
    from .state import RuntimeError_, proc_start_time

    linux = S.parse(st.config).linux or S.Linux()
    # As spawn does by default: no death signal, the runtime's umask unless the config gives one.
    out = _Out()
    spec = process_spec(proc, linux.seccomp, out, extra_caps=tuple(extra_caps), umask=None)
    refuse_unapplied(out.unsupported, "the process")
    env_: Mapping[Any, Any] | None = env
    if env_ is None:
        env_ = with_home(spec.env or {}, st.rootfs, spec.user) if st.rootfs else spec.env
    spec = replace(spec, args=(), cwd=None, env=env_, die_with_parent=False, new_session=new_session)
    cwd = os.fsencode(proc.cwd).lstrip(b"/") or b"."
    joined: list[Namespace] = []
    cg = None
    try:
        for entry in linux.namespaces or ():
            name = S.NAMESPACE_TYPES[entry.type]
            # The first process's own, not entry.path: that file may name another
            # namespace by now; the process is checked to be the same one below.
            joined.append(Namespace.from_path(f"/proc/{st.pid}/ns/{name}", type=name))
        if proc_start_time(st.pid) != st.pid_start:
            raise RuntimeError_("the container's process is gone (the container stopped)")
        cg = open_cgroup(st)
        yield Inside(spec=spec, join=tuple(joined), cgroup=cg, cwd=cwd)
    finally:
        for ns in joined:
            ns.close()
        if cg is not None:
            cg.detach()
