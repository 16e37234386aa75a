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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["context_key", "socket_dir", "socket_name", "Channel", "Message", "REQUEST", "SPAWN",
           "SPAWNED", "RELEASE", "RELEASED", "ABANDON", "ABANDONED", "WAIT", "WAITED", "EXIT"]

# enum iso_msg_type (front.h)
REQUEST, SPAWN, SPAWNED, RELEASE, RELEASED, ABANDON, ABANDONED, WAIT, WAITED, EXIT = range(1, 11)
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
    mode and LSM label, running the front end ``front`` with the Python
    ``python`` and the same ``PYTHON*`` environment variables (``environ``;
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
    label = _read(f"{proc}/attr/current", 4096)
    h = _fnv1a(h, label if label else b"-")
    h = _fnv1a(h, os.fsencode(front))
    h = _fnv1a(h, os.fsencode(python))
    if environ is None:
        raw = _read(f"{proc}/environ", 1 << 20) or b""
        env = [e for e in raw.split(b"\0") if e]
    else:
        env = [os.fsencode(f"{k}={v}") for k, v in environ.items()]
    for e in env:
        if e.startswith(b"PYTHON"):
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

    def recv(self) -> Message | None:
        """The next message (None: the peer closed its end); raises ``ProtocolError`` for one
        cut short."""
        from ..errors import ProtocolError

        data, anc, flags, _ = self.sock.recvmsg(MAX_MSG, socket.CMSG_SPACE(4 * MAX_FDS),
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
