"""containerd 1.6 driving ``isolate-oci`` through its runc shim.

containerd-shim-runc-v2 runs the program named by the container's runtime
option ``BinaryName`` with runc's arguments.  ``ctr run --runc-binary`` sets
that option (containerd 1.6 has no other place for it outside the CRI plugin:
``--runtime-config-path`` is ignored for ``io.containerd.runc.v2``), and
``--runc-root`` sets the runtime's ``--root``.

One containerd per module, on its own sockets, with its root, state, FIFOs and
the runtime's state under a temp dir; it is stopped at the end, with any shim
of its own.  Containers run the session's busybox root filesystem directly
(``ctr run --rootfs``: no image, no registry, no snapshot mount).  Every
container's cgroup is ``/<isolate-test-ctr-*>/<id>`` (``ctr run --cgroup``);
without it containerd would ask for ``/<namespace>/<id>`` at the top of every
hierarchy.

The shim's calls, as observed with containerd 1.6.20 (cwd is the bundle B;
R is --runc-root, NS the namespace)::

    RT --root R/NS --log B/log.json --log-format json create --bundle B --pid-file B/init.pid ID
    RT ... start ID
    RT ... exec --process /tmp/runc-processNNN --detach --pid-file B/EXEC_ID.pid ID
    RT ... ps --format json ID         (ctr task ps)
    RT ... pause ID / resume ID
    RT ... kill ID 15                  (ctr task kill; -s SIGKILL gives 9)
    RT ... kill --all ID 9             (ctr task rm --force of a running task)
    RT ... delete ID                   (after the init process has exited)
    RT ... delete --force ID           (the shim's cleanup, after it has exited)

``state`` is not called in these flows.  ``create`` gets the container's stdio as its own
fds 0-2; the init process must be left behind as a child of the shim (a
subreaper) with its pid in ``--pid-file``: that is how the shim learns its exit
status.  On failure the shim's error message is the last entry of ``--log``.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from engines import NAMESPACE, Containerd, below_shims, ctr_argv, kill_shims, our_shims
from support import cgroup_leftovers, force_remove_cgroup, glob_below

pytestmark = [pytest.mark.root]

# The runtime the shim runs: the isolate-oci installed next to this Python
# (ISOLATE_TEST_OCI_RUNTIME=/usr/sbin/runc compares with runc).
RUNTIME = os.environ.get("ISOLATE_TEST_OCI_RUNTIME", str(Path(sys.executable).with_name("isolate-oci")))
TIMEOUT = 20


@dataclass
class Daemon:
    """The module's containerd (tests/engines.py), the runtime's state root and the rootfs."""

    engine: Containerd
    runc_root: Path
    fifo_dir: Path
    rootfs: Path

    @property
    def address(self) -> str:
        return self.engine.address

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.engine.proc

    @property
    def ids(self) -> list[str]:
        return self.engine.ids

    def log_tail(self) -> str:
        return self.engine.log_tail()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Daemon]:
    for prog in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(prog) is None:
            pytest.fail(f"{prog} is missing: .ci/install-deps installs containerd")
    if not os.access(RUNTIME, os.X_OK):
        pytest.fail(f"the runtime {RUNTIME} is missing")
    top = tmp_path_factory.mktemp("containerd")
    rootfs = top / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    try:
        engine = Containerd(top, timeout=TIMEOUT)
    except RuntimeError as e:
        pytest.fail(str(e))
    daemon = Daemon(engine, top / "runc", top / "fifo", rootfs)
    try:
        yield daemon
    finally:
        shims = engine.close(TIMEOUT)
        shutil.rmtree(top, ignore_errors=True)
        assert not shims, f"containerd shims left running: {shims}"


def _top_cgroups() -> set[str]:
    """The directories at the top of every cgroup hierarchy (v1, hybrid or v2)."""
    mounts = [m.split() for m in Path("/proc/self/mounts").read_text().splitlines()]
    return {d for m in mounts if m[2] in ("cgroup", "cgroup2") for d in glob.glob(f"{m[1]}/*/")}


@dataclass
class Ctr:
    """``ctr`` against the module's containerd, with one test's cgroup parent."""

    daemon: Daemon
    parent: str
    ids: list[str] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(ctr_argv(self.daemon.address, *args), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = below_shims(self.daemon.address)
        pytest.fail(f"ctr {' '.join(args)}: no answer in {timeout} s; running under the shims: {hung}")

    def new_id(self, what: str) -> str:
        cid = f"ctr-{what}-{uuid.uuid4().hex[:8]}"
        self.ids.append(cid)
        self.daemon.ids.append(cid)
        return cid

    def run_args(self, cid: str, *argv: str, detach: bool = False, binary: str = RUNTIME) -> list[str]:
        """``ctr run`` arguments: --rm unless ``detach``."""
        return ["run", "-d" if detach else "--rm", "--rootfs", "--runc-binary", binary,
                "--runc-root", str(self.daemon.runc_root), "--fifo-dir", str(self.daemon.fifo_dir),
                "--cgroup", f"/{self.parent}/{cid}", str(self.daemon.rootfs), cid, *argv]

    def run(self, cid: str, *argv: str, detach: bool = False,
            binary: str = RUNTIME) -> subprocess.CompletedProcess[str]:
        return self(*self.run_args(cid, *argv, detach=detach, binary=binary))

    def tasks(self) -> dict[str, tuple[int, str]]:
        """``ctr task ls``: id -> (pid, status)."""
        r = self("task", "ls")
        assert r.returncode == 0, r
        rows = [line.split() for line in r.stdout.splitlines()[1:]]
        return {row[0]: (int(row[1]), row[2]) for row in rows}

    def containers(self) -> list[str]:
        r = self("containers", "ls", "-q")
        assert r.returncode == 0, r
        return r.stdout.split()

    def wait_status(self, cid: str, status: str) -> int:
        """Poll ``ctr task ls`` until the task has ``status``; its pid."""
        deadline = time.monotonic() + TIMEOUT
        while (task := self.tasks().get(cid)) is None or task[1] != status:
            assert time.monotonic() < deadline, f"task {cid} is {task}, not {status}"
            time.sleep(0.05)
        return task[0]

    def remove(self, cid: str) -> None:
        """The safety net: kill and delete task and container; kill the shim if that hangs or fails."""
        start = time.monotonic()
        while time.monotonic() < start + 10:
            try:
                self("task", "kill", "--all", "--signal", "SIGKILL", cid, timeout=2)
                self("task", "rm", "--force", cid, timeout=2)
                if self("containers", "rm", cid, timeout=2).returncode == 0:
                    return
            except pytest.fail.Exception:     # a call timed out
                kill_shims(self.daemon.address, cid)
            if time.monotonic() > start + 2:
                kill_shims(self.daemon.address, cid)
            time.sleep(0.1)


@pytest.fixture
def ctr(containerd: Daemon) -> Iterator[Ctr]:
    """``ctr`` for one test; containers it leaves and cgroups outside its parent fail it."""
    if containerd.proc.poll() is not None:
        pytest.fail(f"containerd has exited:\n{containerd.log_tail()}")
    parent = f"isolate-test-ctr-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    top_before = _top_cgroups()
    c = Ctr(containerd, parent)
    yield c
    try:
        left = [cid for cid in c.containers() if cid in c.ids]
    except pytest.fail.Exception:
        left = list(c.ids)
    for cid in left:
        c.remove(cid)
    # A shim exits soon after its task is deleted; one that stays is killed with what runs below it.
    deadline = time.monotonic() + 5
    while any(our_shims(containerd.address, cid) for cid in c.ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    shims = [shim for cid in c.ids for shim in kill_shims(containerd.address, cid)]
    tops = cgroup_leftovers(parent)
    below = [p for top in tops for p in glob_below(top)]
    for top in tops:
        force_remove_cgroup(top)
    # Nothing new at the top of a hierarchy but isolate-test-* (ours is gone by now) ...
    stray = sorted(p for p in _top_cgroups() - top_before if not Path(p).name.startswith("isolate-test-"))
    # ... and no directory named after one of the test's containers anywhere else.
    stray += [p for cid in c.ids for p in cgroup_leftovers(cid)]
    assert not left, f"containers left behind: {left}"
    assert not shims, f"shims left running: {shims}"
    assert not below, f"container cgroups left behind: {below}"
    assert not stray, f"cgroups made outside /{parent}: {stray}"


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def proto_strings(data: bytes) -> dict[int, str]:
    """The string fields of a protobuf message, by field number (enough for runc's Options)."""
    out, i = {}, 0
    while i < len(data):
        key, i = _varint(data, i)
        if key & 7 == 0:
            _, i = _varint(data, i)
        elif key & 7 == 2:
            n, i = _varint(data, i)
            out[key >> 3] = data[i:i + n].decode()
            i += n
        else:
            raise AssertionError(f"unexpected protobuf wire type in {data!r}")
    return out


def read_line(stream: int, timeout: float = TIMEOUT) -> bytes:
    """One line from a pipe, or fail after ``timeout`` seconds."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0 and select.select([stream], [], [], left)[0], f"no line within {timeout} s: {buf!r}"
        chunk = os.read(stream, 1)
        assert chunk, f"EOF after {buf!r}"
        buf += chunk
    return buf


# --- the tests ------------------------------------------------------------------


def test_run_output_and_exit_status(ctr: Ctr) -> None:
    cid = ctr.new_id("run")
    r = ctr.run(cid, "/bin/sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, "hi\n"), r
    assert "oops\n" in r.stderr
    assert cid not in ctr.containers()          # --rm: task and container deleted


def test_detached_task_sigkill_and_removal(ctr: Ctr) -> None:
    cid = ctr.new_id("kill")
    r = ctr.run(cid, "/bin/sleep", "60", detach=True)
    assert r.returncode == 0, r
    info = json.loads(ctr("containers", "info", cid).stdout)
    assert info["Runtime"]["Name"] == "io.containerd.runc.v2"
    options = proto_strings(base64.b64decode(info["Runtime"]["Options"]["value"]))
    assert options[6] == RUNTIME                            # BinaryName
    assert options[7] == str(ctr.daemon.runc_root)          # Root
    pid = ctr.wait_status(cid, "RUNNING")
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"/bin/sleep\x0060\x00"
    assert f":/{ctr.parent}/{cid}\n" in Path(f"/proc/{pid}/cgroup").read_text()

    r = ctr("task", "kill", "--signal", "SIGKILL", cid)
    assert r.returncode == 0, r
    ctr.wait_status(cid, "STOPPED")
    r = ctr("task", "rm", cid)
    assert r.returncode == 0 and "exit code 137" in r.stderr, r
    assert cid not in ctr.tasks()
    r = ctr("containers", "rm", cid)
    assert r.returncode == 0, r
    assert cid not in ctr.containers()


def test_exec_into_running_task(ctr: Ctr) -> None:
    cid = ctr.new_id("exec")
    assert ctr.run(cid, "/bin/sleep", "60", detach=True).returncode == 0
    pid = ctr.wait_status(cid, "RUNNING")
    fifo = ("--fifo-dir", str(ctr.daemon.fifo_dir))
    # No cgroup namespace in ctr's spec: /proc/self/cgroup shows host paths.
    script = "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/self/cgroup; echo to-stderr >&2; exit 5"
    r = ctr("task", "exec", *fifo, "--exec-id", "x", cid, "/bin/sh", "-c", script)
    assert r.returncode == 5, r
    first, *cgroups = r.stdout.splitlines()
    assert first == "/bin/sleep 60 "                        # the task's pid namespace
    assert any(line.endswith(f":/{ctr.parent}/{cid}") for line in cgroups), cgroups   # its cgroup
    assert "to-stderr\n" in r.stderr
    r = ctr("task", "ps", cid)
    assert r.returncode == 0 and str(pid) in r.stdout.split(), r

    # The shim's message is the last entry of the runtime's --log.
    r = ctr("task", "exec", *fifo, "--exec-id", "bad", cid, "/nonexistent")
    assert r.returncode != 0 and "OCI runtime exec failed" in r.stderr, r
    assert ctr.tasks()[cid][1] == "RUNNING"

    assert ctr("task", "kill", "--signal", "SIGKILL", cid).returncode == 0
    ctr.wait_status(cid, "STOPPED")
    assert ctr("task", "rm", cid).returncode == 0
    assert ctr("containers", "rm", cid).returncode == 0


def freezer_state(pid: int) -> str:
    """FROZEN or THAWED: the v1 freezer's state, or cgroup2's ``frozen`` event, of ``pid``'s cgroup."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()
    path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
    mounts = [m.split()[1] for m in Path("/proc/self/mounts").read_text().splitlines() if m.split()[2] == "cgroup2"]
    events = Path(mounts[0] + path, "cgroup.events").read_text()
    return "FROZEN" if "frozen 1" in events.splitlines() else "THAWED"


def test_pause_resume_and_forced_removal(ctr: Ctr) -> None:
    cid = ctr.new_id("pause")
    assert ctr.run(cid, "/bin/sleep", "60", detach=True).returncode == 0
    pid = ctr.wait_status(cid, "RUNNING")
    r = ctr("task", "pause", cid)
    assert r.returncode == 0, r
    assert ctr.tasks()[cid] == (pid, "PAUSED")
    assert freezer_state(pid) == "FROZEN"
    r = ctr("task", "resume", cid)
    assert r.returncode == 0, r
    assert ctr.tasks()[cid] == (pid, "RUNNING")
    assert freezer_state(pid) == "THAWED"
    r = ctr("task", "rm", "--force", cid)                   # kill --all ID 9, then delete
    assert r.returncode == 0, r
    assert cid not in ctr.tasks()
    assert cgroup_leftovers(cid) == []                      # emptied and removed
    assert ctr("containers", "rm", cid).returncode == 0


def test_sigterm_stops_a_foreground_task(ctr: Ctr) -> None:
    cid = ctr.new_id("term")
    # pid 1 of a pid namespace ignores signals it has no handler for: trap TERM.
    script = 'trap "echo got-term; exit 7" TERM; echo ready; sleep 60 & wait'
    p = subprocess.Popen(ctr_argv(ctr.daemon.address, *ctr.run_args(cid, "/bin/sh", "-c", script)),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert read_line(p.stdout.fileno()) == b"ready\n"
        r = ctr("task", "kill", cid)                         # SIGTERM by default
        assert r.returncode == 0, r
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()
    assert (p.returncode, out) == (7, b"got-term\n"), err
    assert cid not in ctr.containers()


def test_missing_binary_is_reported(ctr: Ctr, tmp_path: Path) -> None:
    cid = ctr.new_id("missing")
    missing = str(tmp_path / "no-such-runtime")
    r = ctr.run(cid, "/bin/true", binary=missing)
    assert r.returncode != 0 and f"fork/exec {missing}: no such file or directory" in r.stderr, r
    assert cid not in ctr.containers()


def test_shim_argv(ctr: Ctr, tmp_path: Path) -> None:
    """What the shim passes the runtime for ``ctr run --rm``, recorded by a wrapper."""
    record = tmp_path / "calls"
    record.mkdir()
    wrapper = tmp_path / "runtime"
    wrapper.write_text("#!/bin/sh\n"
                       f'printf "%s\\0" "$PWD" "$@" > "{record}/$(date +%s%N)-$$"\n'
                       f'exec "{RUNTIME}" "$@"\n')
    wrapper.chmod(0o755)
    cid = ctr.new_id("argv")
    r = ctr.run(cid, "/bin/sh", "-c", "exit 4", binary=str(wrapper))
    assert r.returncode == 4, r
    calls = [p.read_bytes().decode().split("\0")[:-1] for p in sorted(record.iterdir())]
    bundle = f"{ctr.daemon.runc_root.parent}/state/io.containerd.runtime.v2.task/{NAMESPACE}/{cid}"
    common = ["--root", f"{ctr.daemon.runc_root}/{NAMESPACE}", "--log", f"{bundle}/log.json",
              "--log-format", "json"]
    expected = [
        [bundle, *common, "create", "--bundle", bundle, "--pid-file", f"{bundle}/init.pid", cid],
        [bundle, *common, "start", cid],
        [bundle, *common, "delete", cid],
    ]
    assert calls[:3] == expected
    # The shim's cleanup may follow (asynchronously, after ctr has returned).
    assert all(call == [bundle, *common, "delete", "--force", cid] for call in calls[3:]), calls


def test_sigkill_ends_a_paused_task(ctr: Ctr) -> None:
    """``ctr task kill -s SIGKILL`` of a paused task ends it, and ``task rm`` removes it.

    A process in a frozen v1 cgroup does not act on SIGKILL until thawed:
    the runtime's kill must thaw the group after SIGKILL (as runc does), or
    the task stays PAUSED and the shim's ``task rm --force`` waits forever.
    """
    cid = ctr.new_id("pausekill")
    assert ctr.run(cid, "/bin/sleep", "60", detach=True).returncode == 0
    pid = ctr.wait_status(cid, "RUNNING")
    assert ctr("task", "pause", cid).returncode == 0
    assert ctr.tasks()[cid] == (pid, "PAUSED")
    r = ctr("task", "kill", "--signal", "SIGKILL", cid)
    assert r.returncode == 0, r
    ctr.wait_status(cid, "STOPPED")
    r = ctr("task", "rm", cid)
    assert r.returncode == 0 and "exit code 137" in r.stderr, r
    assert cid not in ctr.tasks()
    assert cgroup_leftovers(cid) == []
    assert ctr("containers", "rm", cid).returncode == 0


def test_forced_removal_of_a_paused_task(ctr: Ctr) -> None:
    """``ctr task rm --force`` of a paused task (the shim's ``kill --all ID 9``) returns and removes it."""
    cid = ctr.new_id("pauserm")
    assert ctr.run(cid, "/bin/sh", "-c", "sleep 60 & sleep 60", detach=True).returncode == 0
    ctr.wait_status(cid, "RUNNING")
    assert ctr("task", "pause", cid).returncode == 0
    r = ctr("task", "rm", "--force", cid)
    assert r.returncode == 0, r
    assert cid not in ctr.tasks()
    assert cgroup_leftovers(cid) == []
    assert ctr("containers", "rm", cid).returncode == 0
