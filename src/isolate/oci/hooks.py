"""OCI lifecycle hooks: run with the container's state as JSON on stdin.

prestart, createRuntime, createContainer (at create) and poststart,
poststop run in the runtime's namespaces; startContainer runs inside the
container, as the runtime spec asks: ``path`` resolves in the container's
root, and the program, which comes from the container's files, runs as the
container's process would (``inside.entering`` and ``exec_into``: its namespaces, cgroup, user
and groups, capabilities, no_new_privs, seccomp filter, rlimits, umask and
working directory), as runc runs it from the container's init just before
execve, never with the runtime's privileges.  A hook that fails or outlives its
``timeout`` fails create/start; poststart and poststop failures are only
warnings (the spec: "the runtime MUST log a warning").
"""

from __future__ import annotations

import json
import os
import signal

from ..errors import IsolateError
from . import spec as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .state import ContainerState

__all__ = ["HookError", "hooks_of", "run_hooks"]

# The spec's name for each point, and the attribute of spec.Hooks holding it.
POINTS = {"prestart": "prestart", "createRuntime": "create_runtime", "createContainer": "create_container",
          "startContainer": "start_container", "poststart": "poststart", "poststop": "poststop"}


class HookError(IsolateError):
    """A hook failed: exited non-zero, was killed, timed out or could not be started."""


def hooks_of(config: dict[str, Any], point: str) -> list[S.Hook]:
    """The hooks at ``point`` (spec name, e.g. ``"createRuntime"``) of a raw config dict."""
    raw = (config.get("hooks") or {}).get(point) or []
    return [S.Hook.from_json(h, f"hooks.{point}[{i}]") for i, h in enumerate(raw)]


def run_hooks(hooks: Sequence[S.Hook], state: dict[str, Any], point: str, *,
              container: ContainerState | None = None, warn: Callable[[str], None] | None = None) -> None:
    """Run ``hooks`` in order; raise ``HookError`` on the first failure unless ``warn`` is given.

    ``container``: run inside that container, as its process (startContainer).
    """
    data = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        where = f"hooks.{point}[{i}] ({hook.path})"
        try:
            _run_one(hook, data, container)
        except HookError as e:
            if warn is None:
                raise HookError(f"{where}: {e}") from None
            warn(f"{where}: {e}")


def _run_one(hook: S.Hook, data: bytes, container: ContainerState | None) -> None:
    import subprocess  # here, not at the top: most runtime calls run no hook

    args = list(hook.args) if hook.args else [hook.path]
    env: dict[str, str] = {}
    for entry in hook.env or ():
        k, _, v = entry.partition("=")
        env[k] = v
    timeout = hook.timeout
    if container is not None:
        from .._enter import exec_into
        from .._record import replace
        from .inside import entering

        proc = S.parse(container.config).process
        if proc is None:
            raise HookError("the container has no process to run the hook as")
        try:
            # The hook's own environment, exactly (runc); everything else is the process's.
            with entering(container, proc, env=env) as inside:
                spec = replace(inside.spec, args=tuple(args), executable=hook.path)
                p = exec_into(spec, join=inside.join, cgroup=inside.cgroup, cwd=inside.cwd,
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except IsolateError as e:
            raise HookError(f"cannot run: {e}") from None
        with p:
            try:
                _, err = p.communicate(data, timeout)
            except subprocess.TimeoutExpired:
                # Its session (a process group): the hook and what it started, not the
                # container (kill_tree would kill the whole cgroup).  Not reaped yet, the
                # hook's pid cannot have been reused.
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.kill()
                p.wait()
                raise HookError(f"timed out after {timeout} s") from None
        code = p.returncode
        _check_exit(code, err)
        return
    try:
        # A session of its own: a timeout kills everything the hook started.
        host = subprocess.Popen(args, executable=hook.path, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/",
                                start_new_session=True)
    except OSError as e:
        raise HookError(f"cannot run: {e.strerror}") from None
    with host:
        try:
            _, err = host.communicate(data, timeout)
        except subprocess.TimeoutExpired:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
            raise HookError(f"timed out after {timeout} s") from None
    _check_exit(host.returncode, err)


def _check_exit(code: int | None, err: bytes | None) -> None:
    """``HookError`` for a hook that did not exit 0, with the last line of its stderr."""
    if code == 0:
        return
    if code is not None and code > 0 and err:
        tail = err.decode(errors="replace").strip().splitlines()[-1:]
        if tail:
            raise HookError(f"exit status {code}: {tail[0]}")
    what = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
    raise HookError(what)
