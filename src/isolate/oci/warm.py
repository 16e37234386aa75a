"""The warm planner of ``isolate-oci``: the runtime's Python, kept running, serving the C front end.

``isolate-oci`` is a small C program (csrc/front/front.c).  It connects to
a planner of its own user and context (``context_key``) on a
``SOCK_SEQPACKET`` socket and sends a REQUEST: its argv, environment,
umask, cwd and every fd it has.  The planner forks a worker, which takes
them all on (each fd at its number) and runs the verb
(``isolate.cli.oci.main``).  A process the verb would clone goes back to
the front end as a plan (``PackedPlan.wire``: SPAWN, then RELEASE or
ABANDON), so that the container's init is the front end's child, as a
runc's is; ``run`` and ``exec`` wait for it through the front end (WAIT).
EXIT ends the call with the verb's status.

The messages are ``struct iso_msg`` and a body (csrc/front/front.h), one
datagram each, fds as SCM_RIGHTS; both ends run on one machine, so the
layouts are native.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NoReturn

    from .._spawn import Outcome

__all__ = ["context_key", "socket_dir", "socket_name", "Channel", "Message", "FrontEnd", "main",
           "REQUEST", "SPAWN",
           "SPAWNED", "RELEASE", "RELEASED", "ABANDON", "ABANDONED", "WAIT", "WAITED", "EXIT", "FORWARD"]

# enum iso_msg_type (front.h)
REQUEST, SPAWN, SPAWNED, RELEASE, RELEASED, ABANDON, ABANDONED, WAIT, WAITED, EXIT, FORWARD = range(1, 12)
FRONT_VERSION = 1
#: struct iso_msg: type, reserved.
MSG = struct.Struct("=II")
#: struct iso_msg_request without its fds: version, umask, argc, envc, n_fds.
REQUEST_HEAD = struct.Struct("=5I")
#: struct iso_msg_spawn: oom_score_adj (INT32_MIN: leave), personality (0xffffffff: leave),
#: helper_len, wire_len.
SPAWN_HEAD = struct.Struct("=iIII")
#: struct iso_msg_spawned: rc, stage, pid, clone3_used, held, report_len, then struct iso_report.
SPAWNED_BODY = struct.Struct("=6i8i")
#: struct iso_msg_wait / iso_msg_waited / iso_msg_exit: two int32.
PAIR = struct.Struct("=ii")
KEEP_OOM = -(2**31)
KEEP_PERSONALITY = 0xFFFFFFFF
#: The largest message either end takes (front.c: ISO_MAX_MSG).
MAX_MSG = 4 << 20
#: The most fds one message carries (SCM_MAX_FD).
MAX_FDS = 253

_NAMESPACES = ("user", "mnt", "pid", "net", "cgroup", "ipc", "uts", "time")
_INFINITY = 2**64 - 1
_STATUS_KEYS = (b"CapInh:", b"CapPrm:", b"CapEff:", b"CapBnd:", b"CapAmb:", b"NoNewPrivs:",
                b"Seccomp:", b"Seccomp_filters:")


# --- the context key -------------------------------------------------------------------


def _fnv1a(h: int, data: bytes) -> int:
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _read(path: str, size: int) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(size)
    except OSError:
        return None


def context_key(*, front: str, python: str, pid: int | None = None,
                environ: Mapping[str, str] | None = None) -> str:
    """The context key of process ``pid`` (None: this one), as front.c's ``context_key`` makes it.

    A planner serves only callers of its key: the same effective uid and gid,
    supplementary groups, namespaces, capability sets, no_new_privs, seccomp
    mode, resource limits and LSM label, running the front end ``front`` (that very file: for
    ``pid`` its ``/proc/<pid>/exe``) with the Python ``python`` and the same
    ``PYTHON*`` and ``LD_*`` environment variables (``environ``;
    None: the process's own, from /proc).  16 hex digits (FNV-1a 64).
    Raises OSError if the process is gone.
    """
    proc = "/proc/self" if pid is None else f"/proc/{pid}"
    status = _read(f"{proc}/status", 8191)
    if status is None:
        raise ProcessLookupError(f"{proc}/status is gone")
    fields = {}
    for line in status.split(b"\n"):
        name, _, value = line.partition(b":")
        fields[name] = value.split()
    h = 0xCBF29CE484222325
    h = _fnv1a(h, struct.pack("=II", int(fields[b"Uid"][1]), int(fields[b"Gid"][1])))
    groups = [int(g) for g in fields.get(b"Groups", [])]
    if groups:
        h = _fnv1a(h, struct.pack(f"={len(groups)}I", *groups))
    for ns in _NAMESPACES:
        try:
            ino = os.stat(f"{proc}/ns/{ns}").st_ino
        except OSError:
            ino = 0
        h = _fnv1a(h, struct.pack("=Q", ino))
    for line in status.split(b"\n"):
        if line.startswith(_STATUS_KEYS):
            h = _fnv1a(h, line)
    # Resource limits, as getrlimit(2) gives resources 0-15 ("%-25s %-20s %-20s" per line).
    limits = (_read(f"{proc}/limits", 4096) or b"").split(b"\n")[1:17]
    for line in limits:
        pair = [_INFINITY if v == b"unlimited" else int(v) for v in (line[26:47].strip(), line[47:68].strip())]
        h = _fnv1a(h, struct.pack("=2Q", *pair))
    label = _read(f"{proc}/attr/current", 4096)
    h = _fnv1a(h, label if label else b"-")
    h = _fnv1a(h, os.fsencode(front))
    try:
        exe = os.stat(f"{proc}/exe" if pid is not None else front)
        ident = (exe.st_dev, exe.st_ino, exe.st_mtime_ns)
    except OSError:
        ident = (0, 0, 0)
    h = _fnv1a(h, struct.pack("=3Q", *ident))
    h = _fnv1a(h, os.fsencode(python))
    if environ is None:
        raw = _read(f"{proc}/environ", 1 << 16) or b""
        env = [e for e in raw.split(b"\0") if e]
    else:
        env = [os.fsencode(f"{k}={v}") for k, v in environ.items()]
    for e in env:
        if e.startswith((b"PYTHON", b"LD_")):
            h = _fnv1a(h, e + b"\0")
    return f"{h:016x}"


def socket_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The planners' directory, as front.c's ``planner_dir`` finds it (None: no planner)."""
    env = os.environ if environ is None else environ
    forced = env.get("ISOLATE_OCI_PLANNER_DIR", "")
    if forced.startswith("/"):
        return forced
    if os.geteuid() == 0:
        return "/run/isolate/oci-planner"
    run = env.get("XDG_RUNTIME_DIR", "")
    return f"{run}/isolate/oci-planner" if run.startswith("/") else None


def socket_name(key: str) -> str:
    """The socket's name in ``socket_dir`` for the context ``key``."""
    return f"planner-{key}.sock"


# --- messages ---------------------------------------------------------------------------


class Message:
    """One message received: its ``type``, ``body`` and ``fds`` (owned: the receiver closes them)."""

    __slots__ = ("type", "body", "fds")

    def __init__(self, type: int, body: bytes, fds: list[int]) -> None:
        self.type, self.body, self.fds = type, body, fds

    def close(self) -> None:
        """Close the fds not taken."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class Channel:
    """One end of the front end's socket: whole messages with fds, both ways."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, type: int, body: bytes = b"", fds: Sequence[int] = ()) -> None:
        """Send one message; raises OSError (EPIPE: the peer is gone)."""
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"={len(fds)}i", *fds))] if fds else []
        self.sock.sendmsg([MSG.pack(type, 0), body], anc)

    def recv(self, size: int = 65536) -> Message | None:
        """The next message, of at most ``size`` bytes (None: the peer closed its end); raises
        ``ProtocolError`` for one cut short."""
        from ..errors import ProtocolError

        data, anc, flags, _ = self.sock.recvmsg(size, socket.CMSG_SPACE(4 * MAX_FDS),
                                                socket.MSG_CMSG_CLOEXEC)
        fds: list[int] = []
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack(f"={len(raw) // 4}i", raw[:len(raw) - len(raw) % 4])
        if not data and not fds:
            return None
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) < MSG.size:
            for fd in fds:
                os.close(fd)
            raise ProtocolError(f"a message of {len(data)} bytes, cut short (flags {flags:#x})")
        type_, _ = MSG.unpack_from(data)
        return Message(type_, data[MSG.size:], fds)


# --- the worker's side: the front end as the spawn delegate ----------------------------


class FrontEnd(Channel):
    """The front end that sent the REQUEST, as the worker's spawn delegate (``_spawn.Delegate``).

    Each call is one message and its answer; a front end that is gone, or an
    answer of another type, raises ``ProtocolError``.
    """

    __slots__ = ()

    def _expect(self, type: int) -> Message:
        from ..errors import ProtocolError

        m = self.recv()
        if m is None:
            raise ProtocolError("the isolate-oci front end ended before the command did")
        if m.type != type:
            m.close()
            raise ProtocolError(f"the front end answered with message {m.type}, not {type}")
        return m

    @staticmethod
    def _outcome(body: bytes) -> Outcome:
        from .._spawn import Outcome

        rc, stage, pid, clone3, held, report_len, *_ = SPAWNED_BODY.unpack(body)
        report = body[SPAWNED_BODY.size - 32:SPAWNED_BODY.size - 32 + report_len]
        return Outcome(rc=rc, stage=stage, pid=pid, clone3=bool(clone3), held=bool(held), report=report)

    def spawn(self, wire: bytes, fds: Sequence[int], helper: bytes) -> tuple[Outcome, int]:
        """SPAWN: the front end clones the plan; its outcome and the child's pidfd (-1: none).

        The child inherits the front end's oom_score_adj and execution domain:
        it is given this process's (``apply.oom_score_adj``, ``apply.personality``
        set them here for the child).
        """
        oom = int(_read("/proc/self/oom_score_adj", 32) or KEEP_OOM)
        raw = _read("/proc/self/personality", 32)
        pers = int(raw, 16) if raw else KEEP_PERSONALITY
        self.send(SPAWN, SPAWN_HEAD.pack(oom, pers, len(helper), len(wire)) + helper + wire, fds)
        m = self._expect(SPAWNED)
        pidfd = m.fds.pop(0) if m.fds else -1
        m.close()
        return self._outcome(m.body), pidfd

    def release(self) -> Outcome:
        """RELEASE: the held child goes on; its outcome."""
        self.send(RELEASE)
        return self._outcome(self._expect(RELEASED).body)

    def abandon(self) -> None:
        """ABANDON: the held child is killed and reaped."""
        self.send(ABANDON)
        self._expect(ABANDONED)

    def forward_signals(self) -> None:
        """FORWARD: the front end catches the signals ``run`` and ``exec`` pass on, for the
        child of the next ``wait``."""
        self.send(FORWARD)

    def wait(self, pid: int) -> int:
        """WAIT: the front end waits for its child ``pid``, passing on the signals it gets."""
        self.send(WAIT, PAIR.pack(pid, 0))
        status, err = PAIR.unpack(self._expect(WAITED).body)
        if err:
            raise ChildProcessError(err, os.strerror(err))
        return int(status)


# --- the planner ------------------------------------------------------------------------

#: The name (comm: its first 15 bytes) of containerd's shims, subreapers that let a planner go.
SHIM_COMM = b"containerd-shim"
#: Seconds without a connection after which a planner ends (ISOLATE_OCI_PLANNER_IDLE).
IDLE = 60.0


def _peer(conn: socket.socket, key: str) -> int | None:
    """The pid of the front end on ``conn`` if it may be served: our uid, our context key."""
    import signal

    pid, uid, _ = struct.unpack("=3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if uid != os.geteuid() or pid <= 0:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        theirs = context_key(front=os.readlink(f"/proc/{pid}/exe"), python=sys.executable, pid=pid)
        signal.pidfd_send_signal(pidfd, 0)      # still that process: what we read was its
    except (OSError, KeyError, ValueError, IndexError):
        return None
    finally:
        os.close(pidfd)
    return pid if theirs == key else None


def _bind(directory: str, path: str) -> socket.socket | None:
    """The listening socket at ``path`` (0600, in a 0700 ``directory`` of ours); None if
    another planner listens there or the directory is not fit."""
    import stat

    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o7777 != 0o700:
        return None
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
        return None                      # one is serving already
    except OSError:
        pass
    finally:
        probe.close()
    tmp = os.path.join(directory, f".planner-{os.getpid()}.tmp")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        s.bind(tmp)
        os.chmod(tmp, 0o600)
        s.listen(64)
        os.replace(tmp, path)            # over a dead planner's socket, at once
    except BaseException:
        s.close()
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return s


#: What the verbs import, imported once by the planner before it serves.
_WARM = ("isolate.cli.oci", "isolate.cli.oci_verbs", "isolate.oci.runtime", "isolate.oci.spec",
         "isolate.oci.convert", "isolate.oci.state", "isolate.oci.apply", "isolate.oci.inside",
         "isolate.oci.hooks", "isolate.oci.cgroups", "isolate.oci.rootless", "isolate.oci.stats",
         "isolate.oci.features", "isolate.container", "isolate.process", "isolate.rootfs",
         "isolate.cgroup", "isolate._enter", "isolate._owner", "isolate._registry",
         "isolate.seccomp", "isolate.namespace", "isolate.net.ports", "isolate.cli.oci_help",
         "isolate.cli._help", "argparse", "gettext", "json", "encodings.ascii", "traceback", "ctypes",
         "socket", "select", "signal", "subprocess", "datetime", "fcntl", "_thread")


#: The planner's /proc/self/cgroup, which its workers share (``_warm_up``).
_own_cgroup = ""


def _warm_up() -> None:
    """Import what the verbs need, build their parser, and read what every call would (the cgroup layout)."""
    import importlib

    global _own_cgroup
    _own_cgroup = (_read("/proc/self/cgroup", 1 << 16) or b"").decode()

    for name in _WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from ..cli.oci import keep_parser

    keep_parser()                              # a worker parses its call's arguments, builds no parser
    try:
        from ..cgroup import _layout

        _layout()
    except Exception:
        pass                                   # the verb says why, when one needs it


def _spare(listener: socket.socket, key: str, told: int, planner: int, previous: int,
           bundle: str | None) -> NoReturn:
    """A worker forked ahead: plan a container ahead while nothing is asked of it
    (``ahead.plan_ahead``), accept a front end the planner may serve, tell the planner (one
    byte on ``told``: fork the next), and serve it (``_worker``).

    ``previous``: a pidfd of the worker of the call before (-1: none).  Until it
    has a call it dies with the planner (PR_SET_PDEATHSIG): a spare left alone
    would take one more call for a planner that is gone.
    """
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != planner:
        os._exit(0)                                   # the planner is gone already
    if bundle is None:
        if previous >= 0:
            os.close(previous)
    else:
        from .ahead import idle, plan_ahead

        if idle(listener, previous):
            plan_ahead(bundle)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        peer = _peer(conn, key)
        if peer is not None:
            break
        conn.close()
    prctl(_PR_SET_PDEATHSIG, 0, 0, 0, 0)              # a worker outlives its planner
    os.write(told, b"x")
    os.close(told)
    listener.close()
    _worker(conn, peer)


_PR_SET_PDEATHSIG = 1


def main(argv: Sequence[str] | None = None) -> int:
    """The planner: ``--socket PATH --dir DIR --front EXE --caller-parent PID`` (front.c
    starts it so, PID its own parent's).

    Serves front ends of the context key in PATH's name until it has had no
    connection for ``IDLE`` seconds; then removes its socket (if still its
    own) and its directory (if empty).  Status 0, or 1 if it cannot serve
    that context.
    """
    import gc
    import select
    import signal
    import time

    args = list(sys.argv[1:] if argv is None else argv)
    opts = dict(zip(args[::2], args[1::2]))
    path, directory, front = opts.get("--socket"), opts.get("--dir"), opts.get("--front")
    if not path or not directory or not front:
        print("usage: python -m isolate.oci.warm --socket PATH --dir DIR --front EXE "
              "[--caller-parent PID]", file=sys.stderr)
        return 2
    name = os.path.basename(path)
    key = name[len("planner-"):-len(".sock")]
    # A planner does for its callers only what it may do itself: exactly their context.
    if socket_name(key) != name or context_key(front=front, python=sys.executable) != key:
        return 1
    # Adopted by the caller's own parent, a subreaper: only a containerd shim lets it go (it
    # reaps what exits, and ends when its containers are gone); conmon ends only once it has
    # no child left (front.c: adopter_lets_go).  Other callers run the verb themselves, or
    # are served by a planner started elsewhere.
    adopter = os.getppid()
    if (adopter != 1 and str(adopter) == opts.get("--caller-parent")
            and not (_read(f"/proc/{adopter}/comm", 64) or b"").startswith(SHIM_COMM)):
        return 0
    idle = float(os.environ.get("ISOLATE_OCI_PLANNER_IDLE", IDLE))
    listener = _bind(directory, path)
    if listener is None:
        return 0
    ino = os.stat(path).st_ino
    spare = previous = -1
    bundle = None
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # workers are reaped by the kernel
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # and the socket is removed
        _warm_up()
        from .ahead import plan_ahead, warm_bundle

        bundle = warm_bundle(directory)
        if bundle is not None:
            # Seccomp programs compiled by one worker, read by the next (podman's and Docker's
            # profile takes ~16 ms to compile): kept in the warm bundle, which goes at the end.
            from .. import seccomp

            programs = os.path.join(bundle, "seccomp")
            try:
                os.mkdir(programs, 0o700)
                seccomp.program_dir = programs
            except OSError:
                pass                                      # each worker compiles its own
            # Once here as well: every worker inherits what this works out (host probes, the
            # one cache's generic entries, specialized bytecode), calls back to back too.
            plan_ahead(bundle)
            from .._reclaim import forget

            forget()                                      # each worker reclaims for itself
        gc.collect()
        gc.freeze()                                       # workers share these pages
        while True:
            # The next call's worker, forked ahead: it accepts the call itself, so that no
            # fork (nor the interpreter's after-fork work) is on a call's path.
            took, told = os.pipe()
            planner = os.getpid()
            spare = os.fork()
            if spare == 0:
                os.close(took)
                _spare(listener, key, told, planner, previous, bundle)
            os.close(told)
            if previous >= 0:
                os.close(previous)
                previous = -1
            ready = select.select([took], [], [], idle)[0]
            answer = os.read(took, 1) if ready else b""
            os.close(took)
            if not ready:
                break                                     # idle: the spare goes below
            if not answer:
                time.sleep(0.1)                           # it died unused: not in a loop
            else:
                try:
                    previous = os.pidfd_open(spare)       # the next spare plans once it ends
                except OSError:
                    previous = -1                         # ended already
            spare = -1
    finally:
        if spare > 0:
            from .runtime import _kill_wait

            _kill_wait(spare, 5)        # it may be planning in the warm bundle, which goes next
        if previous >= 0:
            os.close(previous)
        if bundle is not None:
            from .ahead import remove_bundle

            remove_bundle(bundle)
        try:
            if os.stat(path).st_ino == ino:
                os.unlink(path)
        except OSError:
            pass
        listener.close()
        try:
            os.rmdir(directory)
        except OSError:
            pass
    return 0


# --- the worker -----------------------------------------------------------------------


def _take_on(ch: FrontEnd, req: Message) -> list[str]:
    """Become the caller: its fds at their numbers, its cwd, umask and environment; its argv.

    The REQUEST's fds are the cwd, the lifeline (``_lifeline``), then the caller's.
    """
    import fcntl

    version, umask, argc, envc, n_fds = REQUEST_HEAD.unpack_from(req.body)
    from ..errors import ProtocolError

    if version != FRONT_VERSION or len(req.fds) != n_fds + 2:
        raise ProtocolError(f"a REQUEST of version {version} with {len(req.fds)} fds for {n_fds}")
    numbers = struct.unpack_from(f"={n_fds}i", req.body, REQUEST_HEAD.size)
    strings = req.body[REQUEST_HEAD.size + 4 * n_fds:].split(b"\0")[:-1]
    if len(strings) != argc + envc:
        raise ProtocolError(f"a REQUEST of {len(strings)} strings for {argc} + {envc}")
    fds, req.fds = req.fds, []
    # Everything of ours above every number the caller uses; then each of its fds at its number.
    top = max([*numbers, *fds, ch.sock.fileno(), 2]) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in fds]
    sock = socket.socket(fileno=fcntl.fcntl(ch.sock.fileno(), fcntl.F_DUPFD_CLOEXEC, top))
    ch.sock.close()
    ch.sock = sock
    for fd in fds:
        os.close(fd)
    keep = set(high) | {sock.fileno()}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep and fd not in numbers:
            try:
                os.close(fd)
            except OSError:
                pass                    # the listing's own
    _lifeline(high[1])
    for number, fd in zip(numbers, high[2:]):
        os.dup2(fd, number)
        os.close(fd)
    os.fchdir(high[0])
    os.close(high[0])
    os.umask(umask)
    _set_environ(strings[argc:])
    _stdio(set(numbers))
    return [os.fsdecode(a) for a in strings[:argc]]


def _set_environ(entries: Sequence[bytes]) -> None:
    """Make ``os.environ`` the caller's ``entries`` (``NAME=value``; one without a name is
    skipped), changing only what differs: most of it, as a rule, is the planner's already
    (clearing it and setting it all again took 0.7 ms in a fresh fork)."""
    env = {}
    for entry in entries:
        k, _, v = entry.partition(b"=")
        if k:
            env[k] = v
    ours = os.environb
    for k in [k for k in ours if k not in env]:
        del ours[k]
    for k, v in env.items():
        if ours.get(k) != v:
            ours[k] = v


def _stdio(open_fds: set[int]) -> None:
    """sys.stdin, stdout and stderr on the caller's fds 0-2 (None for one it did not have)."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if fd not in open_fds:
            setattr(sys, name, None)
            continue
        if fd == 0:
            f = open(0, "r", closefd=False, encoding="utf-8", errors="surrogateescape")
        else:
            f = open(fd, "w", buffering=1 if fd == 2 or os.isatty(fd) else -1, closefd=False,
                     encoding="utf-8", errors="backslashreplace" if fd == 2 else "surrogateescape")
        setattr(sys, name, f)


def _lifeline(fd: int) -> None:
    """Have the kernel SIGKILL this process when the front end's end of the lifeline ``fd``
    closes (the front end exited or was killed): a runtime killed mid-verb leaves what runc
    killed there leaves (``delete --force`` and ``isolate gc`` know what to do with it),
    never a verb going on, or cleaning up, after its caller is gone.

    The front end never writes on it, so the only event is its close: O_ASYNC with
    F_SETSIG(SIGKILL) sends it from the front end's exit itself, with no thread of ours
    to be scheduled first.  Kept open (close-on-exec) until this process ends.
    """
    import fcntl
    import select
    import signal

    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, _F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    if poll.poll(0):
        os.kill(os.getpid(), signal.SIGKILL)      # gone before we listened


#: fcntl(2)'s F_SETSIG (Linux).
_F_SETSIG = 10


def _worker(conn: socket.socket, peer: int) -> NoReturn:
    """The forked worker: take the caller's REQUEST on, run the verb, send EXIT, end."""
    import gc
    import signal

    gc.disable()                        # one short call: nothing to collect
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ch = FrontEnd(conn)
    code = 1
    try:
        req = ch.recv(MAX_MSG)
        if req is None or req.type != REQUEST:
            os._exit(0)
        argv = _take_on(ch, req)
        from .. import _spawn, cgroup
        from ..cgroup import layout

        # The verb's "own cgroup" is the caller's (a container without cgroupsPath goes there);
        # the layout the planner read stands if the caller's is the planner's.
        theirs = (_read(f"/proc/{peer}/cgroup", 1 << 16) or b"").decode()
        if theirs != _own_cgroup:
            layout.own_cgroup = theirs
            cgroup._layout_cache = None
        _spawn.set_delegate(ch)
        sys.argv = ["isolate-oci", *argv]
        from ..cli.oci import main as oci_main

        code = oci_main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:
                f.flush()
        except (OSError, ValueError):
            pass
    owner = sys.modules.get("isolate._owner")
    if owner is not None:
        owner.leave()
    try:
        ch.send(EXIT, PAIR.pack(code, 0))
    except OSError:
        pass
    os._exit(0)
