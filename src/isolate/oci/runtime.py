"""The OCI runtime's operations: create, start, state, kill, delete, exec, ps, pause, ...

Each function is one runc verb, run by a short-lived process.  What must
outlive it (the container's first process, its cgroup) is left running and
recorded under the state root (``state.StateDir``); the next command finds
it there::

    create("/run/isolate-oci", "c1", "/path/to/bundle")   # set up, held before execve
    start("/run/isolate-oci", "c1")                         # runs the program
    state("/run/isolate-oci", "c1")["status"]               # "running"
    kill("/run/isolate-oci", "c1", signal.SIGTERM)
    delete("/run/isolate-oci", "c1")

Create holds the process at an exec gate (runc's exec fifo): the child does
every setup step, reports ready and blocks reading ``exec.fifo``; ``start``
writes one byte there and removes the fifo.  Failures raise ``IsolateError``
subclasses (``ConfigError`` for bad input) and leave nothing behind: no
state directory, cgroup or process.
"""

from __future__ import annotations

import errno
import json
import os
import select

from ..errors import CgroupError, ConfigError, UnsupportedError
from .cgroups import cgroup_place, open_cgroup, planned_paths
from .cgroups import controllers as cgroup_controllers
from .rootless import cgroup_denied, lost_limits, quiet_if, without_cgroup
from .state import (
    ContainerState,
    RuntimeError_,
    StateDir,
    list_ids,
    now,
    proc_start_time,
    sweep,
    thaw_paths,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from . import spec as S

    Warn = Callable[[str], None]

__all__ = ["RuntimeError_", "create", "delete", "exec_process", "kill", "list_states",
           "pause", "ps", "resume", "start", "state"]


def _ignore(msg: str) -> None:
    pass


def hooks_of(config: dict[str, Any], point: str) -> list[S.Hook]:
    """``hooks.hooks_of``, importing that module only for a config that has hooks at ``point``."""
    if not (config.get("hooks") or {}).get(point):
        return []
    from .hooks import hooks_of as parse

    return parse(config, point)


def run_hooks(hooks: Sequence[S.Hook], state: dict[str, Any], point: str, *,
              container: ContainerState | None = None, warn: Warn | None = None) -> None:
    """``hooks.run_hooks``, importing that module only when there are hooks to run."""
    if hooks:
        from .hooks import run_hooks as run

        run(hooks, state, point, container=container, warn=warn)


# --- create ---------------------------------------------------------------------


def _connect_console(console_socket: str) -> int:
    """A connected socket to ``console_socket``; the child sends the pty master on it."""
    import socket  # only with a terminal: the import costs a CLI call 4 ms

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(console_socket)
    except OSError as e:
        s.close()
        raise ConfigError(f"--console-socket {console_socket!r}: {e.strerror}") from None
    return s.detach()


def _check_preserved(n: int) -> None:
    """fds 3 .. 3+n-1 must be the caller's, open before this process opens anything of its own."""
    for fd in range(3, 3 + n):
        try:
            os.fstat(fd)
        except OSError:
            raise ConfigError(f"--preserve-fds: fd {fd} is not open (the caller must pass fds 3 to "
                              f"{2 + n})") from None


def _cloexec_from(first: int) -> None:
    """Mark every open fd from ``first`` up close-on-exec (runc's CloseExecFrom).

    What the caller left open (a shim's pipe, a shell's directory) is not the
    container's: with O_CLOEXEC it is gone once the new process execs, so no
    path the process looks up afterwards can go through it (/proc/self/fd/N).
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass            # the listing's own fd, closed by now


def _write_pid_file(path: str | None, pid: int) -> None:
    if not path:
        return
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def _kill_wait(pid: int, timeout: float = 10.0) -> None:
    """SIGKILL ``pid`` (not necessarily our child) and wait until it has exited."""
    import signal

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            return
        select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    try:
        os.waitpid(pid, os.WNOHANG)      # ours (run, or a failed create): reap it
    except ChildProcessError:
        pass


def create(root: str, cid: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None, preserve_fds: int = 0, no_pivot: bool = False,
           foreground_tty: bool = False, rootless: bool = False, warn: Warn = _ignore,
           notice: Warn | None = None) -> ContainerState:
    """Set the container up and hold its process before execve; returns its state.

    ``foreground_tty`` (``run`` without ``--console-socket``): a terminal
    config uses the caller's own stdin as the terminal.  ``rootless``
    (``rootless.is_rootless``): a cgroup refused for lack of permission is
    skipped, and the container runs without it and its limits, said through
    ``notice`` (default ``warn``).
    """
    from .._record import replace
    from ..container import Container
    from . import spec as S
    from .convert import refuse_unapplied, spec_to_config
    from .inside import with_home

    _check_preserved(preserve_fds)
    _cloexec_from(3 + preserve_fds)
    sd = StateDir(root, cid)
    spec, bundle_path = S.load_bundle(bundle)
    proc_spec = spec.process
    if proc_spec is None:
        raise ConfigError("process: a container needs a process to start")
    terminal = bool(proc_spec.terminal)
    if terminal and not console_socket and not foreground_tty:
        raise ConfigError("process.terminal: true needs --console-socket (the pty master is sent there)")
    if console_socket and not terminal:
        raise ConfigError("--console-socket: process.terminal is false in config.json")
    linux = spec.linux or S.Linux()
    parent, name = cgroup_place(linux.cgroups_path, cid)
    conv = None
    cg = None
    begun = False
    pid = -1
    fds: list[int] = []
    try:
        conv = spec_to_config(spec, bundle_path)
        refuse_unapplied(conv.unsupported, "config.json")
        config = conv.config
        limits = config.limits
        process = replace(config.process, die_with_parent=False)
        if config.root is not None and spec.root is not None:
            process = replace(process, env=with_home(process.env or {}, str(spec.root_path(bundle_path)),
                                                     process.user))
        # The group is made here (below), before the container, which joins it.
        config = replace(config, process=process, limits=None, make_cwd=True, name=cid,
                         pivot_root=False if no_pivot and config.root is not None else config.pivot_root)
        from ..cgroup import Cgroup

        sd.check_free()         # before the cgroup's: a taken id says what to do about it
        controllers = cgroup_controllers(limits)
        planned = planned_paths(name, parent, controllers, limits)
        for path in planned:
            # Taken before we record it: the record must only ever name what this create makes.
            if os.path.lexists(path):
                raise CgroupError(errno.EEXIST, "a cgroup of this name already exists", path)
        me = os.getpid()
        me_start = proc_start_time(me)
        assert me_start is not None
        # Recorded before anything is made: if this process dies from here on, delete
        # --force finds the owner dead and removes what the record names.
        st = ContainerState(id=cid, bundle=str(bundle_path), pid=-1, pid_start=0, created=now(),
                            config=spec.to_dict(), rootfs=str(spec.root_path(bundle_path)) if spec.root else "",
                            cgroup={"name": name, "parent": parent, "controllers": controllers, "paths": planned},
                            annotations=dict(spec.annotations or {}), owner={"pid": me, "pid_start": me_start})
        sd.begin(st)
        begun = True
        try:
            with quiet_if(rootless, warn):
                cg = Cgroup.create(name, parent=parent, limits=limits, controllers=controllers)
        except OSError as e:
            if not (rootless and cgroup_denied(e)):
                raise
            # Limits lost: said where it is seen (runc refuses them; podman warns and drops them).
            say = (notice or warn) if lost_limits(limits) else warn
            say(without_cgroup(e, limits))
        made = {"name": name, "parent": parent, "controllers": sorted(cg.controllers),
                "paths": sorted(cg.paths.values())} if cg is not None else {}
        if made != st.cgroup:
            st.cgroup = made
            sd.write(st)
        # state.json names the group now, and delete removes it: never isolate.gc()'s to reclaim,
        # which would take a container whose `create` ended early from under its state.
        if cg is not None:
            cg.disown()
        os.mkfifo(sd.fifo, 0o600)
        gate = os.open(sd.fifo, os.O_RDWR | os.O_CLOEXEC)
        fds.append(gate)
        stdio: dict[str, Any] = {}
        if terminal and console_socket:
            sock = _connect_console(console_socket)
            fds.append(sock)
            size = proc_spec.console_size
            stdio = dict(console_socket=sock, console_size=(size.height, size.width) if size else None)
        elif terminal and os.isatty(0):
            stdio = dict(tty=True)
        else:
            # A session of its own, as runc's: the caller's terminal, if any, is not the
            # process's controlling one, so it cannot type into it (TIOCSTI).  With a
            # terminal, its setup makes the session instead.
            stdio = dict(new_session=True)
        pass_fds = list(range(3, 3 + preserve_fds))
        container = Container(config, join=conv.join, cgroup=cg)
        from .apply import bind_devices, make_devices, oom_score_adj, personality, write_sysctls

        # Both inherited by the process (runc's init sets them before its execve).
        with oom_score_adj(conv.oom_score_adj), personality(conv.personality):
            proc = container.start(list(conv.args), exec_gate=gate, pass_fds=pass_fds, **stdio)
        pid = proc.pid
        start_time = proc_start_time(pid)
        assert start_time is not None
        st.pid, st.pid_start = pid, start_time
        sd.write(st)
        # The process waits at its exec gate: its root is built, its program not started.
        make_devices(pid, [d for d in conv.devices if not d.bind])
        bind_devices(pid, [d for d in conv.devices if d.bind])     # a user namespace's (runc)
        write_sysctls(pid, conv.sysctl)
        creating = sd.oci_state(st, "creating")
        try:
            for point in ("prestart", "createRuntime", "createContainer"):
                run_hooks(hooks_of(st.config, point), creating, point)
        except BaseException:
            # The spec's lifecycle: a failed create still runs poststop, once the container is gone.
            _kill_wait(pid)
            pid = -1
            run_hooks(hooks_of(st.config, "poststop"), sd.oci_state(st, "stopped"), "poststop", warn=warn)
            raise
        st.owner = None
        sd.write(st)            # created: it no longer depends on this process
        _write_pid_file(pid_file, pid)
        container.detach()
        if cg is not None:
            cg.detach()         # it outlives this process; delete removes it
            cg = None
        return st
    except BaseException:
        if pid > 0:
            _kill_wait(pid)
        if cg is not None:
            try:
                cg.close()
            except Exception as e:      # report the first failure, not the cleanup's
                warn(f"removing the cgroup: {e}")
        if begun:
            sd.remove()
        raise
    finally:
        for fd in fds:
            os.close(fd)
        if conv is not None:
            conv.close()
        sd.unlock()


def _load(root: str, cid: str, *, exclusive: bool = False) -> tuple[StateDir, ContainerState]:
    """The container's state directory, locked (see ``StateDir.lock``), and its state."""
    sd = StateDir(root, cid)
    sd.lock(exclusive=exclusive)
    try:
        return sd, sd.read()
    except BaseException:
        sd.unlock()
        raise


def start(root: str, cid: str, *, warn: Warn = _ignore) -> ContainerState:
    """Let a created container's process execve (startContainer, then poststart hooks)."""
    sd, st = _load(root, cid, exclusive=True)
    with sd:
        status = sd.status(st)
        if status != "created":
            raise RuntimeError_(f"cannot start a container that is {status}")
        hooks = hooks_of(st.config, "startContainer")
        if hooks:
            _cloexec_from(3)
            run_hooks(hooks, sd.oci_state(st, "created"), "startContainer", container=st)
        try:
            fd = os.open(sd.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ENXIO:
                raise RuntimeError_("cannot start: the container's process is no longer waiting") from None
            raise
        try:
            os.unlink(sd.fifo)
            os.write(fd, b"0")
        finally:
            os.close(fd)
        st.started = True
        sd.write(st)
        run_hooks(hooks_of(st.config, "poststart"), sd.oci_state(st, "running"), "poststart", warn=warn)
        return st


def config_of(root: str, cid: str) -> dict[str, Any]:
    """The config.json (as a dict) that container ``cid`` was created from."""
    return StateDir(root, cid).read().config


def state(root: str, cid: str) -> dict[str, Any]:
    """The runtime-spec state object of container ``cid``.

    Takes no lock (state.json is replaced atomically), so it answers while
    another command works on the container: "creating" during a ``create``.
    """
    sd = StateDir(root, cid)
    return sd.oci_state(sd.read())


def list_states(root: str) -> list[dict[str, Any]]:
    """The state of every container under ``root``."""
    out = []
    for cid in list_ids(root):
        try:
            out.append(state(root, cid))
        except LookupError:
            continue            # deleted meanwhile
    return out


def parse_signal(text: str | int | None) -> int:
    """``TERM``, ``SIGTERM`` or ``15`` to a signal number (runc's rules); ``ConfigError`` otherwise."""
    import signal

    if text is None:
        return signal.SIGTERM
    if isinstance(text, int) or text.isdigit():
        num = int(text)
        if 0 < num < signal.SIGRTMAX + 1:
            return num
        raise ConfigError(f"signal: {text!r} is not a signal number")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if sig is None:
        raise ConfigError(f"signal: unknown signal {text!r}")
    return int(sig)


def kill(root: str, cid: str, sig: int | None = None, *, all: bool = False) -> None:
    """Send ``sig`` (default SIGTERM) to the container's first process (``all``: to every
    process in its cgroup, also after the first one has exited).

    SIGKILL to a paused container thaws it: a process in a frozen cgroup v1
    acts on SIGKILL only once thawed (runc does the same).  ``all`` with
    SIGKILL freezes, kills and thaws until the group is empty, so a process
    that forks cannot outrun it.
    """
    # signal is imported here, not at the top: building its enums costs state,
    # the verb runtimes call most, several milliseconds of start-up.
    import signal

    if sig is None:
        sig = signal.SIGTERM
    sd, st = _load(root, cid)
    with sd:
        status = sd.status(st)
        cg = open_cgroup(st) if all else None
        try:
            if cg is not None and (status != "stopped" or cg.procs()):
                # Also once the first process is gone: without a pid namespace of
                # its own, what it started may still run (runc does the same).
                if sig == signal.SIGKILL:
                    cg.kill()       # v1: freeze, kill, thaw until empty; v2: cgroup.kill
                else:
                    for pid in cg.procs():
                        try:
                            os.kill(pid, sig)
                        except ProcessLookupError:
                            pass
            elif status == "stopped" or st.pid <= 0:
                raise RuntimeError_("container not running")
            else:
                pidfd = os.pidfd_open(st.pid)
                try:
                    if proc_start_time(st.pid) == st.pid_start:     # the same process, not a reused pid
                        signal.pidfd_send_signal(pidfd, sig)
                finally:
                    os.close(pidfd)
        finally:
            if cg is not None:
                cg.detach()
        if sig == signal.SIGKILL and status == "paused":
            # A frozen (v1) process acts on SIGKILL only once thawed; a paused
            # container told to die must not stay paused (runc: signalInit).
            thaw_paths(st)


def delete(root: str, cid: str, *, force: bool = False, warn: Warn = _ignore) -> None:
    """Remove a stopped (or created) container; ``force`` kills a running one first.

    poststop hooks run last, with status "stopped"; their failures are warnings.
    A container left half-made by a ``create`` that died reads as stopped
    and is removed like one: its process, if it got one, its cgroup (the
    paths recorded before it was made) and its state directory.  ``force``
    also removes a state directory without state.json, and takes the lock
    from processes of the container that hold it (see ``StateDir.lock``).
    """
    sd = StateDir(root, cid)
    try:
        sd.lock(exclusive=True, evict=force)
    except LookupError:
        if force:
            sweep(sd.root)
            return
        raise
    with sd:
        try:
            st = sd.read()
        except LookupError:
            if not (force and sd.exists()):
                raise
            sd.remove()         # a directory an older isolate-oci's create left without state.json
            st = None
        if st is not None:
            status = sd.status(st)
            if status in ("running", "paused", "creating") and not force:
                raise RuntimeError_(f"cannot delete container {cid} that is not stopped: {status}")
            _destroy(st)
            if st.pid > 0:
                run_hooks(hooks_of(st.config, "poststop"), sd.oci_state(st, "stopped"), "poststop", warn=warn)
            sd.remove()
    sweep(sd.root)


def _destroy(st: ContainerState) -> None:
    """Kill the container's processes and remove its cgroup, from what state.json records."""
    thaw_paths(st)              # a frozen (v1) process does not die of SIGKILL
    if st.pid > 0 and proc_start_time(st.pid) == st.pid_start:
        _kill_wait(st.pid)
    cg = open_cgroup(st)
    if cg is not None:
        cg.close()              # kills what is left (no pid namespace, a half-made container), then rmdir


def pause(root: str, cid: str) -> None:
    """Freeze every process of the container."""
    _freeze(root, cid, True)


def resume(root: str, cid: str) -> None:
    """Thaw a paused container."""
    _freeze(root, cid, False)


def _freeze(root: str, cid: str, on: bool) -> None:
    sd, st = _load(root, cid, exclusive=True)
    with sd:
        status = sd.status(st)
        want = ("running", "created") if on else ("paused",)
        if status not in want:
            raise RuntimeError_(f"container {cid} is {status}, not {' or '.join(want)}")
        cg = open_cgroup(st)
        if cg is None:
            raise UnsupportedError("pause/resume need the container's cgroup; it has none")
        try:
            cg.freeze() if on else cg.thaw()
        finally:
            cg.detach()


def ps(root: str, cid: str) -> list[int]:
    """Host pids of the container's processes."""
    sd, st = _load(root, cid)
    with sd:
        if sd.status(st) == "stopped":
            return []
        cg = open_cgroup(st)
        if cg is None:
            return [st.pid]
        try:
            return sorted(cg.procs())
        finally:
            cg.detach()


# --- exec ----------------------------------------------------------------------------


def exec_process(root: str, cid: str, proc_spec: S.Process, *, detach: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None,
                 preserve_fds: int = 0, extra_caps: Sequence[str] = (),
                 ignore_paused: bool = False) -> int:
    """Run ``proc_spec`` inside the container; returns its exit status (0 at once with ``detach``).

    The process is set up as the container's own (``inside.entering``,
    then ``exec_into``, as ``Container.exec``): it joins the namespaces of
    the container's first process and its cgroup, gets the config's
    credentials, capabilities and seccomp filter, a session of its own, and
    its working directory resolved inside the container's root (never a
    magic link), as runc's exec does.
    """
    from .._enter import exec_into
    from .._record import replace
    from . import spec as S
    from .inside import entering

    _check_preserved(preserve_fds)
    _cloexec_from(3 + preserve_fds)
    if not detach:
        from .._spawn import forward_signals

        forward_signals()
    sd, st = _load(root, cid)
    fds: list[int] = []
    with sd:
        status = sd.status(st)
        if status not in ("running", "created") and not (status == "paused" and ignore_paused):
            raise RuntimeError_(f"cannot exec in a {status} container")
        terminal = bool(proc_spec.terminal)
        if terminal and not console_socket and not os.isatty(0):
            raise ConfigError("--tty needs --console-socket or a terminal on stdin")
        # With a terminal, its setup makes the session (setsid, then TIOCSCTTY).
        with entering(st, proc_spec, extra_caps=extra_caps, new_session=not terminal) as inside:
            try:
                # Not dumpable from birth: the new process appears in the container's pid
                # namespace at clone, before its first op, and what runs there must not
                # ptrace it or open its /proc/<pid>/exe (this interpreter: CVE-2019-5736).
                # This short-lived process stays so too.
                from .._spawn import set_dumpable

                set_dumpable(False)
                console = None
                if terminal and console_socket:
                    sock = _connect_console(console_socket)
                    fds.append(sock)
                    size = proc_spec.console_size
                    console = (sock, (size.height if size else 0, size.width if size else 0, False))
                spec = replace(inside.spec, args=tuple(proc_spec.args or ()),
                               tty=terminal and console is None)
                from .apply import oom_score_adj, personality
                from .convert import _personality

                # runc's exec'd processes get the container's process.oomScoreAdj and
                # linux.personality (runc 1.2's setns init sets it too).
                config = S.parse(st.config)
                oom = proc_spec.oom_score_adj
                if oom is None:
                    oom = (config.process or S.Process()).oom_score_adj
                pers = _personality((config.linux or S.Linux()).personality)
                with oom_score_adj(oom), personality(pers):
                    p = exec_into(spec, join=inside.join, cgroup=inside.cgroup, cwd=inside.cwd,
                                  pass_fds=list(range(3, 3 + preserve_fds)), console=console)
            finally:
                for fd in fds:
                    os.close(fd)
    _write_pid_file(pid_file, p.pid)
    if detach:
        p.detach()          # the caller (conmon, a shim) is the subreaper that reaps it
        return 0
    with p:
        code = p.wait()
    return code if code >= 0 else 128 - code


def process_from_args(config: dict[str, Any], args: Sequence[str], *, cwd: str | None = None,
                      env: Sequence[str] = (), user: str | None = None, tty: bool = False,
                      additional_gids: Sequence[str] = (), no_new_privs: bool = False) -> S.Process:
    """An exec ``Process``: the container's own process settings with ``args`` and the flags' overrides."""
    from . import spec as S

    base = dict(config.get("process") or {})
    base.pop("args", None)
    base.pop("commandLine", None)
    if not args:
        raise ConfigError("exec: a command is required (or --process)")
    base["args"] = list(args)
    base["terminal"] = tty
    if cwd is not None:
        base["cwd"] = cwd
    if env:
        merged = {e.partition("=")[0]: e for e in base.get("env") or []}
        merged.update({e.partition("=")[0]: e for e in env})
        base["env"] = list(merged.values())
    if user is not None:
        uid, _, gid = user.partition(":")
        try:
            base["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise ConfigError(f"--user: expected UID[:GID], got {user!r}") from None
    if additional_gids:
        base.setdefault("user", {"uid": 0, "gid": 0})
        try:
            base["user"]["additionalGids"] = [int(g) for g in additional_gids]
        except ValueError:
            raise ConfigError(f"--additional-gids: expected numbers, got {list(additional_gids)!r}") from None
    if no_new_privs:
        base["noNewPrivileges"] = True
    return S.Process.from_json(base, "process")


# --- run -----------------------------------------------------------------------------


def run(root: str, cid: str, bundle: str, *, pid_file: str | None = None,
        console_socket: str | None = None, preserve_fds: int = 0, no_pivot: bool = False,
        detach: bool = False, keep: bool = False, rootless: bool = False, warn: Warn = _ignore,
        notice: Warn | None = None) -> int:
    """create + start (+ wait and delete unless ``detach``); returns the exit status."""
    if not detach:
        from .._spawn import forward_signals

        forward_signals()
    st = create(root, cid, bundle, pid_file=pid_file, console_socket=console_socket,
                preserve_fds=preserve_fds, no_pivot=no_pivot, foreground_tty=not detach,
                rootless=rootless, warn=warn, notice=notice)
    try:
        start(root, cid, warn=warn)
    except BaseException:
        delete(root, cid, force=True, warn=warn)
        raise
    if detach:
        return 0
    code = _wait_forwarding(st.pid)
    if not keep:
        delete(root, cid, force=True, warn=warn)
    return code


def _wait_forwarding(pid: int) -> int:
    """Wait for our child ``pid``, passing on the signals we get (runc run does too).

    Cloned by the ``isolate-oci`` front end (``_spawn.set_delegate``), it is the front
    end's child: the front end waits, and passes on the signals it gets.
    """
    import signal

    from .. import _spawn

    if _spawn._delegate is not None:
        try:
            status = _spawn.wait_status(pid)
        except ChildProcessError:
            return 255
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code

    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                 signal.SIGUSR2, signal.SIGWINCH)
    old = {}

    def forward(sig: int, frame: Any) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in forwarded:
        old[sig] = signal.signal(sig, forward)
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                return 255
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def read_json_arg(value: str, what: str) -> Any:
    """A JSON file named by a flag (``-`` for stdin)."""
    try:
        if value == "-":
            import sys

            text = sys.stdin.read()
        else:
            with open(value, encoding="utf-8") as f:
                text = f.read()
        return json.loads(text)
    except OSError as e:
        raise ConfigError(f"{what} {value!r}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"{what} {value!r}: not valid JSON: {e}") from None
