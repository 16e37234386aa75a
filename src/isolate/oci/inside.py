"""A new process inside a running container, set up as the container's own process is.

``isolate-oci exec`` and the startContainer hooks both start a program in a
container that already runs, and that program may be the image's own: it
must get no more than the container's process has.  ``entering`` turns the
container's config (its ``process`` section, ``linux.seccomp`` and
``linux.namespaces``) and its cgroup into ``isolate.spawn`` options, the one
place both take them from::

    with entering(st, proc_spec) as options:
        p = isolate.spawn(args, **options)

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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Any

    from . import spec as S
    from .state import ContainerState

__all__ = ["cwd_op", "entering"]


def cwd_op(cwd: str) -> Any:
    """The op that enters ``cwd``, resolved inside the process's root (after it joined the
    container's mount namespace, the container's root): ``..`` stops at that root, symlinks
    resolve inside it, and magic links (``/proc/self/fd/N``, ``/proc/<pid>/cwd``) are refused."""
    from .. import _plan as P

    return P.RootChdir(b"/", os.fsencode(cwd).lstrip(b"/") or b".")


@contextlib.contextmanager
def entering(st: ContainerState, proc: S.Process, *, env: Mapping[str, str] | None = None,
             extra_caps: Sequence[str] = (), new_session: bool = True) -> Iterator[dict[str, Any]]:
    """``isolate.spawn`` options that start a process where container ``st``'s process runs.

    ``proc``: the process section to apply (the container's own, or exec's
    with its flags' overrides).  ``env``: the environment instead of
    ``proc``'s (a hook gets its own, exactly); otherwise ``proc.env`` plus
    HOME from the image's /etc/passwd, as runc sets it.  ``extra_caps``
    (exec ``--cap``) are added to the bounding, effective and permitted sets.
    ``new_session`` False: the caller gives the process a terminal, whose
    setup makes the session (``tty=True`` or a ``Console`` op).

    The options hold the container's namespace fds and cgroup, open until the
    block ends; spawn before it does.  Raises ``ConfigError`` for a config
    that cannot be applied and ``RuntimeError_`` if the container's process
    is gone.  The returned ``ops`` (the working directory) must stay in the
    plan; a caller may add ops before or after them.
    """
    from . import spec as S
    from .convert import _Out, _process, _seccomp
    from .runtime import RuntimeError_, _open_cgroup, _with_home
    from .state import proc_start_time

    spec = S.parse(st.config)
    linux = spec.linux or S.Linux()
    opts: dict[str, Any] = {}
    out = _Out()
    _process(proc, opts, out)
    _seccomp(linux.seccomp, opts, out)
    if env is None:
        env = _with_home(opts["env"], st.rootfs, opts.get("user")) if st.rootfs else opts["env"]
    sets = dict(opts.get("capability_sets") or {})
    if extra_caps:
        for name in ("bounding", "effective", "permitted"):
            sets[name] = sorted(set(sets.get(name, ())) | set(extra_caps))
    prog = opts["seccomp"].compile() if opts.get("seccomp") is not None else None
    from ..namespace import Namespace

    joined: list[Any] = []
    cg = None
    try:
        for ns in linux.namespaces or ():
            name = S.NAMESPACE_TYPES[ns.type]
            # The first process's own, not ns.path: that file may name another
            # namespace by now; the process is checked to be the same one below.
            joined.append(Namespace.from_path(f"/proc/{st.pid}/ns/{name}", type=name))
        if proc_start_time(st.pid) != st.pid_start:
            raise RuntimeError_("the container's process is gone (the container stopped)")
        cg = _open_cgroup(st)
        yield dict(join=joined, cgroup=cg, env=dict(env), user=opts["user"], group=opts["group"],
                   groups=opts["groups"], capabilities=opts.get("capabilities"), capability_sets=sets,
                   no_new_privs=opts["no_new_privs"], rlimits=opts.get("rlimits"), umask=opts.get("umask"),
                   seccomp=prog, new_session=new_session, ops=[cwd_op(proc.cwd)])
    finally:
        for ns in joined:
            ns.close()
        if cg is not None:
            cg.detach()
