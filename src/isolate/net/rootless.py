"""Rootless networking: outbound traffic and published ports through pasta or slirp4netns.

A caller without root cannot make a veth pair or nftables rules on the host.
It can still give a network namespace it owns (one made in a user namespace
of its own) a tap device served by a user-mode network stack running as the
caller, in the caller's namespace: **pasta** (Debian package ``passt``) or
**slirp4netns**.  ``start(pid)`` runs one for the network namespace of
process ``pid`` and returns once the namespace is configured.

The choice (``available()``) is the podman of Debian 12's: slirp4netns when it
is installed and usable, else pasta; ``$ISOLATE_ROOTLESS_NET`` (``pasta`` or
``slirp4netns``) forces one, as podman's ``--network pasta|slirp4netns`` and
containers.conf's ``default_rootless_network_cmd`` do.  (Debian 12's podman,
4.3, knows only slirp4netns: pasta support came in podman 4.4 and became the
default in podman 5.0.  podman 5's order is not followed because Debian 12's
pasta, 0.0~git20230309, closes a connection from another host to a published
port whose server speaks first (an SSH or SMTP server) before it says
anything: see ``tests/net/test_rootless_net.py``; slirp4netns also starts in
a third of pasta's time here, 8 ms against 24.)

What the namespace gets:

pasta
    the host's address, prefix and gateway (those of the interface with the
    default IPv4 route, whose name the namespace's interface takes), given to
    pasta explicitly so they are known without asking it (the container's own
    address is the host's: the host's services on that address are out of
    its reach); ``--no-map-gw``, so the gateway is the real one and never the
    host's loopback; ``-T none -U none``, so the container's loopback reaches
    no port of the host's; a DNS forwarder at 169.254.1.1 (podman 5's
    address: link-local, so it never hides a real server) that sends queries
    on to the first resolver of the host's /etc/resolv.conf (read when pasta
    starts).  IPv6 too when the host has it (not reported).
slirp4netns
    ``10.0.2.100/24``, gateway ``10.0.2.2``, DNS forwarder ``10.0.2.3`` (to
    the host's resolver); ``--disable-host-loopback`` (10.0.2.2 does not
    reach the host's 127.0.0.1; the host's other addresses are reachable, as
    any outside address is), ``--enable-seccomp``, and ``--enable-sandbox``
    for a caller without root (see ``_start_slirp``: as root it would
    unmount the caller's shared mounts);
    published ports through its API socket (``add_hostfwd``).  With both,
    a connection to a published port arrives from the client's address.

Both run in the foreground, as children of the caller, in a session of their
own, with nothing passed through a shell.  Readiness comes from the tools:
slirp4netns writes to ``--ready-fd``; pasta writes its pid to ``-P`` (a pipe
here, ``/dev/fd/N``: no file) after it has configured the namespace and bound
the published ports, just before its main loop.  ``RootlessNet.close()``
stops and reaps the helper and removes slirp4netns's socket directory (0700,
under ``$XDG_RUNTIME_DIR``).  Both also end with the caller's process, however
it ends: SIGTERM from ``PR_SET_PDEATHSIG`` (``setpriv --pdeathsig``; the fork
happens on a thread of isolate's that lives as long as the process, see
``_Spawner``), and for slirp4netns also ``--exit-fd`` (a pipe whose other end
only the caller holds).  Neither notices the container's end by itself: the
owner of the container calls ``close()`` when it reaps it.  (A caller killed
with SIGKILL leaves slirp4netns's socket directory behind, on a tmpfs.)

The target: ``pid``'s user namespace (with its id maps written) and network
namespace must exist when ``start()`` is called; both tools join them from
the caller's namespaces (``setns``: the caller owns the user namespace).  A
held child (before its ``execve``) is the usual target.

Known limit, measured with Debian 12's pasta (0.0~git20230309) on Linux
6.18: a connection to a published port from another host is closed by
pasta at once unless the client sends first (HTTP works; a server that
speaks first, as SSH and SMTP do, is unreachable); connections from the
host itself (pasta splices them) and slirp4netns are not affected.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import queue
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Interface
from typing import IO, Final, Literal, TypeVar, final

from ..errors import ConfigError, NetworkError
from .ports import PortMapping, PublishLike, publish_list

__all__ = ["RootlessNet", "available", "start", "TOOLS"]

Tool = Literal["pasta", "slirp4netns"]
_T = TypeVar("_T")

#: The tools, in the order ``available()`` prefers them.
#: In the order of the automatic choice (see the module's doc).
TOOLS: Final[tuple[Literal["pasta", "slirp4netns"], ...]] = ("slirp4netns", "pasta")
#: What to install for each (Debian's package names).
_PACKAGE: Final = {"pasta": "passt", "slirp4netns": "slirp4netns"}
ENV_VAR: Final = "ISOLATE_ROOTLESS_NET"

PASTA_DNS: Final = IPv4Address("169.254.1.1")
SLIRP_ADDRESS: Final = IPv4Interface("10.0.2.100/24")
SLIRP_GATEWAY: Final = IPv4Address("10.0.2.2")
SLIRP_DNS: Final = IPv4Address("10.0.2.3")

_TUN = "/dev/net/tun"
_READY_TIMEOUT = 30.0      # seconds a tool may take to configure the namespace
_STOP_TIMEOUT = 5.0        # seconds between SIGTERM and SIGKILL in close()
_SIOCGIFADDR = 0x8915      # <linux/sockios.h>
_SIOCGIFNETMASK = 0x891B
_CAP_NET_BIND_SERVICE = 10


# --- which tool ---------------------------------------------------------------------


def _find(tool: Tool) -> tuple[str | None, str | None]:
    """(path, None) when ``tool`` is usable by this caller, else (None, why not)."""
    path = shutil.which(tool)
    if path is None:
        return None, f"{tool} is not installed (Debian package {_PACKAGE[tool]!r})"
    if not os.access(_TUN, os.R_OK | os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return None, (f"{tool} needs {_TUN}, which this user cannot open (it should be "
                      f"mode 0666: 'chmod 0666 {_TUN}', or a udev rule)")
    return path, None


def _forced() -> Tool | None:
    value = os.environ.get(ENV_VAR)
    if not value:
        return None
    if value not in TOOLS:
        raise ConfigError(f"${ENV_VAR} must be 'pasta' or 'slirp4netns', got {value!r}")
    return value


def _choose(tool: str | None) -> tuple[Tool, str]:
    """The tool to use and its path; ``NetworkError`` saying what to install when none is."""
    if tool is not None and tool not in TOOLS:
        raise ConfigError(f"rootless network tool must be 'pasta' or 'slirp4netns', got {tool!r}")
    wanted = tool or _forced()
    if wanted is not None:
        path, why = _find(wanted)
        if path is None:
            raise NetworkError(f"rootless network: {why}")
        return wanted, path
    reasons = []
    for name in TOOLS:
        path, why = _find(name)
        if path is not None:
            return name, path
        reasons.append(why)
    if all("not installed" in str(r) for r in reasons):
        raise NetworkError("rootless network: neither pasta nor slirp4netns is installed: "
                           "install the 'passt' package (or 'slirp4netns')")
    raise NetworkError(f"rootless network: no usable tool: {'; '.join(str(r) for r in reasons)}")


def available() -> Literal["pasta", "slirp4netns"] | None:
    """The tool ``start()`` would use for this caller: ``"slirp4netns"`` if installed and
    usable, else ``"pasta"``, else None; ``$ISOLATE_ROOTLESS_NET`` forces one (None when it
    is not usable).  ``ConfigError`` if that variable names an unknown tool."""
    try:
        return _choose(None)[0]
    except NetworkError:
        return None


# --- checks made before any process exists ------------------------------------------


def _unprivileged_port_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024


def _may_bind_low_ports() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_BIND_SERVICE & 1)
    except OSError:
        pass
    return False


def _check_ports(publish: Sequence[PortMapping]) -> None:
    """``NetworkError`` for a host port this caller may not bind or that is taken, found by
    binding it for a moment (the tools' own failures say only "failed")."""
    low = _unprivileged_port_start()
    for m in publish:
        if m.host_port < low and not _may_bind_low_ports():
            raise NetworkError(f"publish {m}: host port {m.host_port} is privileged for this user "
                               f"(net.ipv4.ip_unprivileged_port_start = {low}): use a port >= {low}")
        kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            # As the tools bind: a TCP port in TIME_WAIT is not "in use".
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((m.host_ip or "0.0.0.0", m.host_port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise NetworkError(f"publish {m}: host port {m.host_port}/{m.protocol} "
                                       f"is already in use") from None
                if e.errno == errno.EADDRNOTAVAIL:
                    raise NetworkError(f"publish {m}: {m.host_ip} is not an address of "
                                       f"this host") from None
                raise NetworkError(f"publish {m}: cannot bind host port {m.host_port}: "
                                   f"{e.strerror}") from None


def _check_target(pid: int) -> None:
    if type(pid) is not int or pid <= 0:
        raise ConfigError(f"rootless network: pid must be a positive int, got {pid!r}")
    try:
        theirs = os.stat(f"/proc/{pid}/ns/net")
        ours = os.stat("/proc/self/ns/net")
        os.stat(f"/proc/{pid}/ns/user")
    except FileNotFoundError:
        raise NetworkError(f"rootless network: process {pid} does not exist") from None
    except PermissionError:
        raise NetworkError(f"rootless network: process {pid} is not this user's") from None
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        raise ConfigError(f"rootless network: process {pid} shares the caller's network "
                          f"namespace: it needs one of its own")


def _check_dns(dns: Sequence[str] | None) -> tuple[IPv4Address | ipaddress.IPv6Address, ...]:
    from .network import check_dns

    return tuple(ipaddress.ip_address(d) for d in check_dns(dns))


def _host_template() -> tuple[str, IPv4Interface, IPv4Address]:
    """The interface of the default IPv4 route (lowest metric), its address and gateway:
    what pasta copies into the namespace."""
    best: tuple[int, str, IPv4Address] | None = None
    with open("/proc/net/route") as f:
        next(f, None)
        for line in f:
            fields = line.split()
            if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
                continue
            metric = int(fields[6])
            gateway = IPv4Address(struct.pack("<I", int(fields[2], 16)))
            if best is None or metric < best[0]:
                best = (metric, fields[0], gateway)
    if best is None:
        raise NetworkError("rootless network (pasta): the host has no default IPv4 route to "
                           "copy; use slirp4netns ($ISOLATE_ROOTLESS_NET=slirp4netns)")
    _, ifname, gateway = best
    req = struct.pack("256s", ifname.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            addr = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24]
            mask = fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, req)[20:24]
        except OSError as e:
            raise NetworkError(f"rootless network (pasta): no IPv4 address on {ifname}, the "
                               f"interface of the default route: {e.strerror}") from None
    return ifname, IPv4Interface(f"{IPv4Address(addr)}/{IPv4Address(mask)}"), gateway


def _private_dir() -> str:
    """A new 0700 directory for the tool's socket: under $XDG_RUNTIME_DIR when that is
    this user's own and closed to others, else under the temporary directory."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        try:
            st = os.stat(base, follow_symlinks=False)
        except OSError:
            base = None
        else:
            if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                    or st.st_mode & 0o077):
                base = None
    # sockaddr_un holds 108 bytes: a long runtime directory falls back to /tmp.
    if base and len(base) > 60:
        base = None
    return tempfile.mkdtemp(prefix="isolate-net-", dir=base)


# --- the result ----------------------------------------------------------------------


@final
class RootlessNet:
    """A running pasta or slirp4netns serving one network namespace; ``close()`` stops it.

    ``tool``, ``pid`` (the helper's), ``address`` (inside), ``gateway``, ``dns`` (the
    helper's DNS forwarder), ``publish``.  A context manager; ``close()`` is idempotent;
    dropped while running it only warns (``ResourceWarning``).  Made by ``start()``.
    """

    __slots__ = ("tool", "address", "gateway", "dns", "publish", "_servers", "_proc",
                 "_lifeline", "_dir", "_closed")

    #: ``"pasta"`` or ``"slirp4netns"``.
    tool: Literal["pasta", "slirp4netns"]
    #: The namespace's address, with its prefix.
    address: IPv4Interface
    #: Its default route's gateway.
    gateway: IPv4Address
    #: The helper's DNS forwarder (or the first of ``dns=``).
    dns: IPv4Address
    #: The host ports forwarded to the namespace.
    publish: tuple[PortMapping, ...]

    def __init__(self, tool: Literal["pasta", "slirp4netns"], proc: subprocess.Popen[bytes], *,
                 address: IPv4Interface,
                 gateway: IPv4Address, dns: IPv4Address, publish: tuple[PortMapping, ...],
                 servers: tuple[IPv4Address | ipaddress.IPv6Address, ...],
                 lifeline: int | None, private_dir: str | None) -> None:
        self.tool = tool
        self._proc = proc
        self.address = address
        self.gateway = gateway
        self.dns = dns
        self.publish = publish
        self._servers = servers
        self._lifeline = lifeline
        self._dir = private_dir
        self._closed = False

    @property
    def pid(self) -> int:
        """The helper's pid (a child of the caller until ``close()`` reaps it)."""
        return self._proc.pid

    def running(self) -> bool:
        """Whether the helper is still running."""
        return not self._closed and self._proc.poll() is None

    def resolv_conf(self) -> bytes:
        """What the namespace's /etc/resolv.conf should hold: the ``dns=`` servers when given,
        else the helper's forwarder; the host's ``search`` and ``options`` lines."""
        servers = self._servers or (self.dns,)
        lines = [f"nameserver {s}" for s in servers]
        try:
            with open("/etc/resolv.conf") as f:
                lines += [line.strip() for line in f
                          if line.split()[:1] in (["search"], ["domain"], ["options"])]
        except OSError:
            pass
        return ("\n".join(lines) + "\n").encode()

    def close(self) -> None:
        """Stop the helper (SIGTERM, then SIGKILL), reap it, remove its socket directory."""
        if self._closed:
            return
        self._closed = True
        _stop(self._proc, self._lifeline)
        self._lifeline = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RootlessNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid={self._proc.pid}"
        return f"<RootlessNet {self.tool} {state} address={self.address}>"

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` for ``proc`` to exit, on its pidfd (``Popen.wait(timeout)``
    polls, up to 50 ms late); reap it if it did."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:          # no pidfd (before Linux 5.3), or already gone: poll
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if ready:
        proc.wait()
    return bool(ready)


def _stop(proc: subprocess.Popen[bytes], lifeline: int | None) -> None:
    """Stop the helper: close its lifeline, SIGTERM, SIGKILL after ``_STOP_TIMEOUT``; reap."""
    if lifeline is not None:
        os.close(lifeline)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        if not _exited(proc, _STOP_TIMEOUT):
            proc.kill()
            proc.wait()


# --- starting the tools --------------------------------------------------------------


def _wait_readable(fd: int, what: str) -> bytes:
    """The first write of the tool on ``fd`` (one write below PIPE_BUF: whole), or b"" when
    it exits without one."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NetworkError(f"rootless network: {what} was not ready after "
                               f"{_READY_TIMEOUT:.0f} s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            return os.read(fd, 64)


def _last_error(log: IO[bytes], proc: subprocess.Popen[bytes]) -> str:
    """The tool's last meaningful line of stderr, or its exit status."""
    rc = proc.returncode if _exited(proc, _STOP_TIMEOUT) else None
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
    lines = [line for line in lines if line and "to syslog" not in line
             and "external routable interface for IPv6" not in line]
    status = "did not exit" if rc is None else (
        f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}")
    return f"{lines[-1]} ({status})" if lines else status


class _Spawner:
    """The one thread that forks every helper, for the life of the process.

    A helper gets ``PR_SET_PDEATHSIG`` (SIGTERM; set by util-linux's ``setpriv
    --pdeathsig``, which then execs the tool, so no Python runs between fork and
    exec) so that it ends with its caller, even a caller killed with SIGKILL.  The
    kernel sends that signal when the *thread* that forked the child exits
    (prctl(2)), so the fork must not happen on a caller's thread that may end
    before the container does: it happens on this daemon thread, which ends only
    with the process.
    """

    _lock = threading.Lock()
    _jobs: queue.SimpleQueue[tuple[Callable[[], object], list[object], threading.Event]] | None = None

    @classmethod
    def call(cls, fn: Callable[[], _T]) -> _T:
        """``fn()`` run on the spawner thread: its result, or its exception raised here."""
        with cls._lock:
            if cls._jobs is None:
                cls._jobs = queue.SimpleQueue()
                threading.Thread(target=cls._serve, args=(cls._jobs,), daemon=True,
                                 name="isolate-net-spawner").start()
            jobs = cls._jobs
        box: list[object] = []
        done = threading.Event()
        jobs.put((fn, box, done))
        done.wait()
        ok, value = box
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    @classmethod
    def _forget(cls) -> None:
        # A forked child has no spawner thread: it starts its own on first use.
        cls._lock = threading.Lock()
        cls._jobs = None

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], object], list[object], threading.Event]]) -> None:
        while True:
            fn, box, done = jobs.get()
            try:
                box[:] = [True, fn()]
            except BaseException as e:  # handed to the caller's thread
                box[:] = [False, e]
            finally:
                done.set()


os.register_at_fork(after_in_child=_Spawner._forget)


def _spawn(argv: list[str], pass_fds: tuple[int, ...], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start a helper: its own session (the caller's terminal's ^C does not reach it),
    SIGTERM when the caller's process ends (``_Spawner``), nothing but ``pass_fds``."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, pass_fds=pass_fds, start_new_session=True,
                                close_fds=True)

    return _Spawner.call(popen)


def _pasta_spec(m: PortMapping) -> str:
    return f"{m.host_ip + '/' if m.host_ip else ''}{m.host_port}:{m.container_port}"


def _start_pasta(path: str, pid: int, publish: tuple[PortMapping, ...],
                 servers: tuple[IPv4Address | ipaddress.IPv6Address, ...]) -> RootlessNet:
    ifname, address, gateway = _host_template()
    ports: list[str] = []
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        specs = [_pasta_spec(m) for m in publish if m.protocol == proto]
        for spec in specs or ["none"]:
            ports += [flag, spec]
    r, w = os.pipe()
    argv = [path, "--config-net", "--foreground", "--quiet", "--no-map-gw",
            # As the caller, even a root one (pasta would switch root to "nobody").
            "--runas", f"{os.geteuid()}:{os.getegid()}",
            "--interface", ifname, "--address", str(address.ip),
            "--netmask", str(address.network.prefixlen), "--gateway", str(gateway),
            "--dns-forward", str(PASTA_DNS), *ports, "-T", "none", "-U", "none",
            # The pid file is this pipe: pasta writes its pid once the namespace is set up.
            "--pid", f"/dev/fd/{w}", str(pid)]
    with tempfile.TemporaryFile() as log:
        try:
            proc = _spawn(argv, (w,), log)
        except OSError as e:
            os.close(r)
            os.close(w)
            raise NetworkError(f"rootless network: cannot run {path}: {e.strerror}") from None
        os.close(w)
        try:
            got = _wait_readable(r, "pasta")
        except BaseException:
            os.close(r)
            _stop(proc, None)
            raise
        os.close(r)
        if not got.strip().isdigit():
            why = _last_error(log, proc)
            _stop(proc, None)
            raise NetworkError(f"rootless network: pasta for process {pid} failed: {why}")
    return RootlessNet("pasta", proc, address=address, gateway=gateway, dns=PASTA_DNS,
                       publish=publish, servers=servers, lifeline=None, private_dir=None)


def _api(path: str, request: dict[str, object]) -> dict[str, object]:
    """One request to slirp4netns's API socket, its JSON answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(_READY_TIMEOUT)
        s.connect(path)
        s.sendall(json.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise NetworkError(f"rootless network: slirp4netns answered {data!r}")
    return answer


def _start_slirp(path: str, pid: int, publish: tuple[PortMapping, ...],
                 servers: tuple[IPv4Address | ipaddress.IPv6Address, ...]) -> RootlessNet:
    private = _private_dir()
    api = os.path.join(private, "slirp4netns.sock")
    ready_r, ready_w = os.pipe()
    exit_r, lifeline = os.pipe()      # slirp4netns exits when ``lifeline`` closes
    # --enable-sandbox only without root: slirp4netns then makes a user namespace for
    # its sandbox, whose new mount namespace holds shared mounts as slaves
    # (mount_namespaces(7)).  Run by root, it keeps them shared, and detaching its
    # old root unmounts their peers in the caller's namespace (measured: every
    # ``ip netns`` mount under a shared /run/netns went).
    sandbox = ["--enable-sandbox"] if os.geteuid() != 0 else []
    argv = [path, "--configure", "--mtu=65520", "--disable-host-loopback", *sandbox,
            "--enable-seccomp", f"--api-socket={api}",
            f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", str(pid), "tap0"]
    proc: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryFile() as log:
            try:
                proc = _spawn(argv, (ready_w, exit_r), log)
            except OSError as e:
                raise NetworkError(f"rootless network: cannot run {path}: {e.strerror}") from None
            finally:
                os.close(ready_w)
                os.close(exit_r)
            got = _wait_readable(ready_r, "slirp4netns")
            if got != b"1":
                why = _last_error(log, proc)
                raise NetworkError(f"rootless network: slirp4netns for process {pid} failed: {why}")
            for m in publish:
                answer = _api(api, {"execute": "add_hostfwd", "arguments": {
                    "proto": m.protocol, "host_addr": m.host_ip or "0.0.0.0",
                    "host_port": m.host_port, "guest_port": m.container_port}})
                if "error" in answer:
                    err = answer["error"]
                    desc = err.get("desc") if isinstance(err, dict) else err
                    raise NetworkError(f"publish {m}: slirp4netns refused it: {desc} (is host "
                                       f"port {m.host_port}/{m.protocol} free?)")
    except BaseException:
        os.close(ready_r)
        if proc is not None:
            _stop(proc, lifeline)
        else:
            os.close(lifeline)
        shutil.rmtree(private, ignore_errors=True)
        raise
    os.close(ready_r)
    return RootlessNet("slirp4netns", proc, address=SLIRP_ADDRESS, gateway=SLIRP_GATEWAY,
                       dns=SLIRP_DNS, publish=publish, servers=servers, lifeline=lifeline,
                       private_dir=private)


def start(pid: int, *, publish: Sequence[PublishLike] = (), dns: Sequence[str] | None = None,
          tool: str | None = None) -> RootlessNet:
    """Give the network namespace of process ``pid`` outbound traffic and ``publish``'s ports.

    ``pid``'s user namespace must own its network namespace and be the caller's to enter
    (a held container child, or any process in user+net namespaces the caller made); the
    namespace must exist already.  ``tool`` (or ``$ISOLATE_ROOTLESS_NET``) picks pasta or
    slirp4netns, else ``available()`` decides.  Returns once the interface is up with its
    address and default route and the published ports are bound on the caller's side.

    ``ConfigError`` for malformed input; ``NetworkError`` (one line, naming the port or
    tool) for a privileged or taken host port, no usable tool, or a tool that fails.
    Nothing is left running or on disk when it raises.
    """
    ports = publish_list(publish)
    servers = _check_dns(dns)
    name, path = _choose(tool)
    _check_target(pid)
    _check_ports(ports)
    if name == "pasta":
        return _start_pasta(path, pid, ports, servers)
    return _start_slirp(path, pid, ports, servers)
