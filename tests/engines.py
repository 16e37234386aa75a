"""containerd and podman of a run's own, for the tests (tests/oci) and the benchmarks (benchmarks/engines.py).

A plain module, imported as ``engines`` (tests/ is on the path, as for
``support``); it imports no pytest.

- ``Containerd``: one containerd on its own sockets, with its root, state and
  FIFOs under a directory of the caller's; ``close`` stops it and SIGKILLs any
  shim of its own (with what runs below it).
- ``podman_files``: a containers.conf and storage.conf that keep everything
  podman stores under one directory, and the argv and environment that use
  them: no network, a private IPC namespace, resource limits within this
  process's hard limits, the cgroupfs manager.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

NAMESPACE = "isolate-test"
# Plugins a task needs: metadata, content, snapshots service, runtime v1 and v2
# (the tasks service needs both in 1.6), events, the GRPC services.
DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",            # would create /opt/containerd
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]
# The shims' sockets live in /run/containerd/s whatever the state dir is.
SHIM_SOCKET_DIRS = ("/run/containerd/s", "/run/containerd")


def runtime_path(name: str) -> str | None:
    """``name`` as a path: beside the running interpreter first (the install's console
    scripts), then $PATH; None if neither has it."""
    if os.sep in name:
        return name
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def processes_mentioning(texts: set[str]) -> list[int]:
    """Pids (other than ours) whose command line contains one of ``texts``: our paths (conmon,
    podman's exit command) or a container id (``RUNTIME start ID`` names nothing else)."""
    needles = [t.encode() for t in texts]
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            out.append(int(entry))
    return out


def ctr_argv(address: str, *args: str, namespace: str = NAMESPACE) -> list[str]:
    """``ctr`` against the containerd at ``address``."""
    return ["ctr", "--address", address, "--namespace", namespace, *args]


def _ppids() -> dict[int, int]:
    out = {}
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            out[int(path.split("/")[2])] = int(Path(path).read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def our_shims(address: str, cid: str | None = None) -> list[int]:
    """Pids of the containerd-shim-runc-v2 processes serving ``address`` (and container ``cid``)."""
    pids = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            argv = Path(path).read_bytes().split(b"\0")
        except OSError:
            continue
        if (argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv
                and (cid is None or cid.encode() in argv)):
            pids.append(int(path.split("/")[2]))
    return pids


def descendants(pids: list[int]) -> set[int]:
    """Every process below ``pids`` (not ``pids`` themselves)."""
    ppids = _ppids()
    out = set(pids)
    while grown := {pid for pid, ppid in ppids.items() if ppid in out} - out:
        out |= grown
    return out - set(pids)


def cmdline(pid: int) -> str:
    """``pid``'s command line, spaced; "PID (gone)" if it has exited."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return f"{pid} (gone)"


def below_shims(address: str) -> list[str]:
    """The command lines of the processes below our shims: a hung runtime call shows here."""
    return [cmdline(pid) for pid in sorted(descendants(our_shims(address)))]


def kill_shims(address: str, cid: str | None = None) -> list[str]:
    """SIGKILL our shims and everything below them (runtime calls, container processes)."""
    shims = our_shims(address, cid)
    found = [cmdline(pid) for pid in shims]
    for pid in set(shims) | descendants(shims):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found


def shim_socket(address: str, cid: str, namespace: str = NAMESPACE) -> Path:
    """Where containerd 1.6 puts a shim's socket: /run/containerd/s/sha256(address/ns/id)."""
    return Path("/run/containerd/s", hashlib.sha256(f"{address}/{namespace}/{cid}".encode()).hexdigest())


class Containerd:
    """A containerd with everything of its own under ``top``: started by the constructor,
    ready for ``ctr`` when it returns (RuntimeError, with its log, if it is not within ``timeout``)."""

    def __init__(self, top: Path, *, timeout: float = 20, namespace: str = NAMESPACE) -> None:
        self.top = top
        self.namespace = namespace
        self.address = str(top / "containerd.sock")
        self.log = top / "containerd.log"
        self.ids: list[str] = []            # containers made: their shims' sockets go in close()
        config = top / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{top}/root"\n'
            f'state = "{top}/state"\n'
            f"disabled_plugins = {json.dumps(DISABLED_PLUGINS)}\n"
            "[grpc]\n"
            f'  address = "{self.address}"\n'
            "[ttrpc]\n"
            f'  address = "{self.address}.ttrpc"\n')
        self.made = [d for d in reversed(SHIM_SOCKET_DIRS) if not os.path.exists(d)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["containerd", "--config", str(config)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while subprocess.run(self.ctr("version"), capture_output=True, check=False,
                             timeout=timeout).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"containerd did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def ctr(self, *args: str) -> list[str]:
        """``ctr ARGS`` against this containerd, in its namespace."""
        return ctr_argv(self.address, *args, namespace=self.namespace)

    def log_tail(self) -> str:
        """The last 20 lines of containerd's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def close(self, timeout: float = 20) -> list[str]:
        """Stop containerd, SIGKILL its shims (returned: none should be left), remove the
        sockets and directories it made outside ``top``."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shims = kill_shims(self.address)
        for cid in self.ids:
            shim_socket(self.address, cid, self.namespace).unlink(missing_ok=True)  # a killed shim's
        for d in reversed(self.made):
            try:
                os.rmdir(d)
            except OSError:
                pass
        return shims


def podman_files(base: Path, runtime: str) -> tuple[list[str], dict[str, str]]:
    """podman's argv (up to its command) and environment, everything it keeps under ``base``
    (made here: root, runroot, tmp, net), ``runtime`` its OCI runtime.  Events go to
    ``base/tmp/events.log``."""
    tmpdir = base / "tmp"
    for d in ("root", "runroot", "tmp", "net"):
        (base / d).mkdir()
    # Root without CAP_SYS_RESOURCE cannot raise a hard limit, and podman
    # asks for nofile=1048576 and nproc=4194304: stay within ours.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    (base / "containers.conf").write_text(f"""\
[containers]
netns = "none"
# "shareable" (podman's default) mounts a tmpfs for /dev/shm in the host's mount namespace.
ipcns = "private"
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{base}/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmpdir}/events.log"
tmp_dir = "{tmpdir}"
static_dir = "{base}/root/libpod"
volume_path = "{base}/root/volumes"
lock_type = "file"
""")
    (base / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{base}/root"\nrunroot = "{base}/runroot"\n')
    (base / "registries.conf").write_text("")
    env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"),
               CONTAINERS_STORAGE_CONF=str(base / "storage.conf"),
               CONTAINERS_REGISTRIES_CONF=str(base / "registries.conf"))
    argv = ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"),
            "--tmpdir", str(tmpdir), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--runtime", runtime]
    return argv, env
