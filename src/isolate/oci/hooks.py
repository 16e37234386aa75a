"""OCI lifecycle hooks: run with the container's state as JSON on stdin.

prestart, createRuntime, createContainer (at create) and poststart,
poststop run in the runtime's namespaces; startContainer runs inside the
container (every namespace of its own, so ``path`` resolves in the
container's root and the program, which comes from the container's files,
sees only the container), as the runtime spec asks.  A hook that fails or outlives its
``timeout`` fails create/start; poststart and poststop failures are only
warnings (the spec: "the runtime MUST log a warning").
"""

from __future__ import annotations

import os
import signal

from .. import _json as json
from ..errors import IsolateError
from . import spec as S

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

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
              container_pid: int | None = None, warn: Callable[[str], None] | None = None) -> None:
    """Run ``hooks`` in order; raise ``HookError`` on the first failure unless ``warn`` is given.

    ``container_pid``: run inside that process's mount namespace (startContainer).
    """
    data = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        where = f"hooks.{point}[{i}] ({hook.path})"
        try:
            _run_one(hook, data, container_pid)
        except HookError as e:
            if warn is None:
                raise HookError(f"{where}: {e}") from None
            warn(f"{where}: {e}")


def _run_one(hook: S.Hook, data: bytes, container_pid: int | None) -> None:
    import subprocess  # here, not at the top: most runtime calls run no hook

    args = list(hook.args) if hook.args else [hook.path]
    env: dict[str, str] = {}
    for entry in hook.env or ():
        k, _, v = entry.partition("=")
        env[k] = v
    timeout = hook.timeout
    if container_pid is not None:
        from .. import process
        from ..namespace import Namespace

        # Every namespace the container has of its own, not only its mount
        # namespace: the program comes from the container's files, so it must
        # not run as root of the host's pid, network or user namespaces.
        joined = []
        try:
            for t in ("user", "mnt", "pid", "net", "ipc", "uts", "cgroup"):
                theirs = f"/proc/{container_pid}/ns/{t}"
                if os.stat(theirs).st_ino != os.stat(f"/proc/self/ns/{t}").st_ino:
                    joined.append(Namespace.from_path(theirs, type=t))
        except (OSError, IsolateError) as e:
            for ns in joined:
                ns.close()
            raise HookError(f"cannot enter the container: {e}") from None
        try:
            try:
                proc = process.spawn(args, executable=hook.path, join=joined, env=env,
                                     stdin=subprocess.PIPE, cwd="/")
            except IsolateError as e:
                raise HookError(str(e)) from None
            with proc:
                try:
                    proc.communicate(data, timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise HookError(f"timed out after {timeout} s") from None
            code = proc.returncode
        finally:
            for ns in joined:
                ns.close()
    else:
        try:
            # A session of its own: a timeout kills everything the hook started.
            p = subprocess.Popen(args, executable=hook.path, env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/",
                                 start_new_session=True)
        except OSError as e:
            raise HookError(f"cannot run: {e.strerror}") from None
        with p:
            try:
                _, err = p.communicate(data, timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                raise HookError(f"timed out after {timeout} s") from None
        code = p.returncode
        if code != 0 and err:
            tail = err.decode(errors="replace").strip().splitlines()[-1:]
            if tail:
                raise HookError(f"exit status {code}: {tail[0]}")
    if code is None or code != 0:
        what = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        raise HookError(what)
