"""``isolate-oci`` served by its warm planner (``isolate.oci.warm``): runc's process tree, the
planner's socket and peers, and a planner or worker killed in the middle of a ``create``.

Every call here goes to a planner of this session (tests/conftest.py); ``warm`` makes sure
one is listening before a test's calls, so that the call under test is a served one.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import socket_peer, stop_planners

from isolate.oci import warm as W

pytestmark = [pytest.mark.root]

OCI = str(Path(sys.executable).parent / "isolate-oci")
ANSWER = 30


def oci(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A call, its output through files: a container made by create keeps the runtime's stdio."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        r = subprocess.run([OCI, "--root", str(root), *args], text=True, stdout=out, stderr=err,
                           stdin=subprocess.DEVNULL, timeout=ANSWER)
        out.seek(0)
        err.seek(0)
        r.stdout, r.stderr = out.read(), err.read()
    return r


def planner_socket() -> Path:
    """The socket of this session's planner for calls from this process's context."""
    line = (Path(OCI).parent / "isolate").read_bytes().split(b"\n", 1)[0]
    python = line[2:].split()[0].decode()
    key = W.context_key(front=OCI, python=python)
    return Path(os.environ["ISOLATE_OCI_PLANNER_DIR"]) / W.socket_name(key)


def planner_pid() -> int:
    return socket_peer(planner_socket())


def ensure_planner(root: Path) -> int:
    """A planner listening for this process's calls (started by a call if need be): its pid."""
    deadline = time.monotonic() + ANSWER
    while True:
        try:
            return planner_pid()
        except OSError:
            pass
        assert time.monotonic() < deadline, "no planner started"
        oci(root, "list")
        time.sleep(0.05)


@pytest.fixture
def warm(tmp_path: Path) -> int:
    """A planner listening for this process's calls: its pid."""
    return ensure_planner(tmp_path / "state")


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(None, 1)[1]
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if int(status_field(int(name), "PPid")) == pid:
                    out.append(int(name))
            except (OSError, AssertionError):
                pass
    return out


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


# --- runc's process tree -------------------------------------------------------------------

SUBREAPER = r"""
import ctypes, json, os, subprocess, sys, tempfile
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0          # PR_SET_CHILD_SUBREAPER, as conmon and shims do
oci, root, bundle = sys.argv[1:4]
with tempfile.TemporaryFile() as err:           # the container keeps create's stdio: no pipe
    r = subprocess.run([oci, "--root", root, "create", "--bundle", bundle, "c1"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=err)
    err.seek(0)
    assert r.returncode == 0, err.read()
pid = json.loads(subprocess.run([oci, "--root", root, "state", "c1"], capture_output=True,
                                text=True).stdout)["pid"]
ppid = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("PPid:")][0]
print(json.dumps({"me": os.getpid(), "init": pid, "init_parent": int(ppid)}))
r = subprocess.run([oci, "--root", root, "delete", "--force", "c1"], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
os.waitpid(pid, 0)                              # ours now: reaped here, as a shim does
"""


def test_init_is_the_front_ends_child_reparented_to_the_subreaper(
        warm: int, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    """The container's init is cloned by the ``isolate-oci`` process a shim ran, and is the
    shim's (the subreaper's) once that process has exited: not the planner's worker's, whose
    orphans go to pid 1."""
    bundle = make_bundle(["sleep", "30"])
    r = subprocess.run([sys.executable, "-c", SUBREAPER, OCI, str(tmp_path / "state"), str(bundle)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["init_parent"] == seen["me"]


def test_a_create_is_served_by_the_planner(warm: int, make_bundle: Callable[..., Path],
                                            tmp_path: Path) -> None:
    """The verb runs in a worker the planner forked (a hook's parent), its spawn in the
    front end: the create is the caller's child's, never a new Python's."""
    out = tmp_path / "hook.out"

    def edit(c: dict[str, object]) -> None:
        c["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": [
            "sh", "-c", f'cat /proc/$PPID/status | grep PPid > "{out}"']}]}

    bundle = make_bundle(["true"], edit=edit)
    root = tmp_path / "state"
    r = oci(root, "create", "--bundle", str(bundle), "c1")
    assert r.returncode == 0, r.stderr
    try:
        assert int(out.read_text().split()[1]) == warm     # the worker's parent: the planner
    finally:
        assert oci(root, "delete", "--force", "c1").returncode == 0


def test_run_gives_the_exit_status_and_forwards_signals(warm: int, make_bundle: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    root = tmp_path / "state"
    bundle = make_bundle(["sh", "-c", "exit 7"])
    r = oci(root, "run", "--bundle", str(bundle), "c1")
    assert (r.returncode, r.stderr) == (7, "")
    assert os.listdir(root) == []
    # A signal to the front end (the process the caller knows) reaches the container's init.
    bundle = make_bundle(["sh", "-c", "trap 'exit 42' TERM; echo up; while :; do sleep 0.1; done"],
                         name="trap")
    p = subprocess.Popen([OCI, "--root", str(root), "run", "--bundle", str(bundle), "c2"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"up\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=ANSWER) == 42
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()
        if (root / "c2").exists():
            oci(root, "delete", "--force", "c2")
    assert os.listdir(root) == []


# --- the socket and its peers --------------------------------------------------------------


def test_the_socket_is_its_users_alone(warm: int) -> None:
    path = planner_socket()
    st, dst = os.lstat(path), os.lstat(path.parent)
    assert stat.S_ISSOCK(st.st_mode) and st.st_mode & 0o7777 == 0o600 and st.st_uid == os.geteuid()
    assert stat.S_ISDIR(dst.st_mode) and dst.st_mode & 0o7777 == 0o700 and dst.st_uid == os.geteuid()
    # Another user cannot even reach it.
    code = ("import os, socket, sys; os.setgroups([]); os.setresgid(65534, 65534, 65534); "
            "os.setresuid(65534, 65534, 65534); s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=ANSWER)
    assert r.returncode == 3, r.stderr


# A peer of the planner's uid with a capability less: the planner never works for it.
FEWER_CAPS = r"""
import ctypes, os, socket, struct, sys
from isolate.oci import warm as W
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(24, 21, 0, 0, 0) == 0          # PR_CAPBSET_DROP, CAP_SYS_ADMIN
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
ch = W.Channel(s)
env = b"\0".join(f"{k}={v}".encode() for k, v in os.environ.items()) + b"\0"
body = W.REQUEST_HEAD.pack(W.FRONT_VERSION, 0o22, 1, len(os.environ), 3) + struct.pack("=3i", 0, 1, 2)
cwd = os.open(".", os.O_PATH)
life, _keep = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(20)
try:
    ch.send(W.REQUEST, body + b"list\0" + env, [cwd, life.fileno(), 0, 1, 2])
    m = ch.recv()
except (BrokenPipeError, ConnectionResetError):     # closed before, or with our REQUEST unread
    m = None
print("refused" if m is None else f"served: {m.type}")
"""


def test_a_peer_with_fewer_privileges_is_refused(warm: int) -> None:
    r = subprocess.run([sys.executable, "-c", FEWER_CAPS, str(planner_socket())], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "refused\n"), r.stderr


LESS = {
    # CAP_SYS_ADMIN out of the bounding set (PR_CAPBSET_DROP)
    "capability": "import ctypes; assert ctypes.CDLL(None).prctl(24, 21, 0, 0, 0) == 0",
    # a lower limit on open files
    "rlimit": "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))",
}


@pytest.mark.parametrize("less", sorted(LESS))
def test_a_caller_with_fewer_privileges_gets_a_planner_of_its_own(warm: int, tmp_path: Path,
                                                                  less: str) -> None:
    """The same command, with a capability or a resource limit less, works, and is served by
    another planner (another socket) than the full root's, which has no more than it."""
    def sockets() -> set[Path]:
        # Not the planners' warm bundles (warm-*) nor a socket being bound (.planner-*.tmp).
        return set(planner_socket().parent.glob("planner-*.sock"))

    before = sockets()
    code = LESS[less] + "; import os, sys; os.execv(sys.argv[1], sys.argv[1:])"
    deadline = time.monotonic() + ANSWER
    while True:
        r = subprocess.run([sys.executable, "-c", code, OCI, "--root", str(tmp_path / "s"), "list", "-q"],
                           capture_output=True, text=True, timeout=ANSWER)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        new = sockets() - before
        if new:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (theirs,) = new
    assert theirs != planner_socket()
    pid = socket_peer(theirs)
    if less == "capability":
        assert status_field(pid, "CapBnd") != status_field(os.getpid(), "CapBnd")
    else:
        assert [ln for ln in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if ln.startswith("Max open files")][0].split()[3:5] == ["64", "64"]
    os.kill(pid, signal.SIGTERM)
    fd = os.pidfd_open(pid)
    import select

    select.select([fd], [], [], 10)
    os.close(fd)
    assert not theirs.exists()


# --- faults ----------------------------------------------------------------------------------


def _create_in_hook(root: Path, bundle: Path, hook_pid: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``create`` started and stopped in its createRuntime hook: the front end and the hook's pid."""
    with open(hook_pid.with_suffix(".err"), "wb") as err:   # never a pipe: the container keeps it
        p = subprocess.Popen([OCI, "--root", str(root), "create", "--bundle", str(bundle), "c1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + ANSWER
    while not hook_pid.exists() or not hook_pid.read_text().strip():
        assert p.poll() is None and time.monotonic() < deadline, "the hook never ran"
        time.sleep(0.01)
    return p, int(hook_pid.read_text())


def _hook_bundle(make_bundle: Callable[..., Path], hook_pid: Path) -> Path:
    def edit(c: dict[str, object]) -> None:
        c["hooks"] = {"createRuntime": [{"path": "/bin/sh",
                                         "args": ["sh", "-c", f'echo $$ > "{hook_pid}"; exec sleep 30']}]}

    return make_bundle(["sleep", "30"], edit=edit)


def _nothing_left(root: Path, oci_cgroup_parent: str) -> None:
    assert not root.exists() or os.listdir(root) == []
    assert list(Path("/sys/fs/cgroup").glob(f"*/{oci_cgroup_parent}/bundle")) == []


def test_the_worker_killed_mid_create_leaves_what_delete_removes(
        warm: int, make_bundle: Callable[..., Path], oci_cgroup_parent: str, tmp_path: Path) -> None:
    root, hook_pid = tmp_path / "state", tmp_path / "hook.pid"
    bundle = _hook_bundle(make_bundle, hook_pid)
    p, hook = _create_in_hook(root, bundle, hook_pid)
    worker = int(status_field(hook, "PPid"))
    assert b"isolate.oci.warm" in cmdline(worker) and worker != warm
    os.kill(worker, signal.SIGKILL)
    try:
        assert p.wait(timeout=ANSWER) == 1
        assert hook_pid.with_suffix(".err").read_bytes() == \
            b"isolate-oci: the planner ended before the command did\n"
    finally:
        os.kill(hook, signal.SIGKILL)
    init = json.loads((root / "c1" / "state.json").read_text())["pid"]
    r = oci(root, "state", "c1")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "stopped", r.stderr
    assert oci(root, "delete", "--force", "c1").returncode == 0
    assert not Path(f"/proc/{init}").exists() or status_field(init, "State").startswith("Z")
    _nothing_left(root, oci_cgroup_parent)
    # The planner lives on, and serves the next call.
    assert planner_pid() == warm
    r = oci(root, "run", "--bundle", str(make_bundle(["true"], name="again")), "c2")
    assert (r.returncode, r.stderr) == (0, "")


def test_the_front_end_killed_mid_create_kills_its_worker(
        warm: int, make_bundle: Callable[..., Path], oci_cgroup_parent: str, tmp_path: Path) -> None:
    """A runtime killed mid-verb: its worker ends with it (no create finishing, or cleaning up,
    after the caller is gone); delete --force removes what is left."""
    root, hook_pid = tmp_path / "state", tmp_path / "hook.pid"
    bundle = _hook_bundle(make_bundle, hook_pid)
    p, hook = _create_in_hook(root, bundle, hook_pid)
    worker = int(status_field(hook, "PPid"))
    fd = os.pidfd_open(worker)
    p.kill()
    p.wait()
    import select

    try:
        assert select.select([fd], [], [], ANSWER)[0] == [fd], "the worker outlived its front end"
    finally:
        os.close(fd)
        os.kill(hook, signal.SIGKILL)
    assert oci(root, "delete", "--force", "c1").returncode == 0
    _nothing_left(root, oci_cgroup_parent)


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06])
def test_the_planner_killed_during_a_create_then_delete_and_the_next_call_work(
        make_bundle: Callable[..., Path], oci_cgroup_parent: str, tmp_path: Path, delay: float) -> None:
    """kill -9 of the planner at some point of a create: the call finishes or fails in one line;
    ``delete --force`` leaves nothing; the next call starts another planner and works."""
    root = tmp_path / "state"
    planner = ensure_planner(root)
    bundle = make_bundle(["sleep", "30"])
    errf = tmp_path / "create.err"
    with open(errf, "wb") as f:
        p = subprocess.Popen([OCI, "--root", str(root), "create", "--bundle", str(bundle), "c1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f)
    time.sleep(delay)
    spares = children(planner)
    os.kill(planner, signal.SIGKILL)
    code = p.wait(timeout=ANSWER)
    err = errf.read_bytes()
    assert code == 0 or (code == 1 and err.count(b"\n") == 1), err
    if code == 0:
        r = oci(root, "delete", "--force", "c1")
        assert r.returncode == 0, r.stderr
    elif (root / "c1").exists():
        assert oci(root, "delete", "--force", "c1").returncode == 0
    _nothing_left(root, oci_cgroup_parent)
    # Its spare worker, and its worker if it had one, are gone too: none is left to take a call.
    deadline = time.monotonic() + ANSWER
    while [pid for pid in spares if Path(f"/proc/{pid}").exists()
           and not status_field(pid, "State").startswith("Z")]:
        assert time.monotonic() < deadline, f"the planner's children {spares} outlived it"
        time.sleep(0.05)
    r = oci(root, "run", "--bundle", str(make_bundle(["true"], name="again")), "c2")
    assert (r.returncode, r.stderr) == (0, "")
    # The dead planner's socket was replaced by a live one (or is gone until the next call).
    if planner_socket().exists():
        try:
            assert planner_pid() != planner
        except ConnectionRefusedError:
            pass


ADOPTING_SUBREAPER = r"""
import ctypes, os, subprocess, sys, time
libc = ctypes.CDLL(None)
assert libc.prctl(36, 1, 0, 0, 0) == 0                 # PR_SET_CHILD_SUBREAPER
oci, root, name = sys.argv[1:4]
assert libc.prctl(15, name.encode(), 0, 0, 0) == 0     # PR_SET_NAME: /proc/self/comm
for _ in range(3):
    subprocess.run([oci, "--root", root, "list"], check=True, stdout=subprocess.DEVNULL)
time.sleep(2)                                          # a planner would be up by now
while True:                                            # reap what was adopted, as a shim does
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            break
    except ChildProcessError:
        break
def ppid(p):
    try:
        return [l for l in open(f"/proc/{p}/status") if l.startswith("PPid:")][0].split()[1]
    except OSError:
        return None                                    # gone meanwhile
kids = [p for p in os.listdir("/proc") if p.isdigit() and ppid(p) == str(os.getpid())]
d = os.environ["ISOLATE_OCI_PLANNER_DIR"]
print(len(kids), len([n for n in os.listdir(d) if n.endswith(".sock")]) if os.path.exists(d) else 0)
"""


@pytest.mark.parametrize(("name", "kept"), [("python3", False), ("conmon", False),
                                            ("containerd-shim", True)])
def test_a_planner_stays_with_a_subreaper_caller_only_if_it_is_a_containerd_shim(
        tmp_path: Path, name: str, kept: bool) -> None:
    """A caller whose parent is a subreaper adopts the planner its call starts, as a child and
    in its cgroup.  conmon (and any subreaper not known to let go) would wait for it before it
    ends: the planner leaves at once instead.  A containerd shim reaps what exits and ends when
    its containers are gone: its planner stays, the shim's one child, and serves."""
    planners = tmp_path / "planners"
    env = {**os.environ, "ISOLATE_OCI_PLANNER_DIR": str(planners)}
    try:
        r = subprocess.run([sys.executable, "-c", ADOPTING_SUBREAPER, OCI, str(tmp_path / "state"), name],
                           capture_output=True, text=True, timeout=60, env=env)
        assert (r.returncode, r.stdout) == (0, "1 1\n" if kept else "0 0\n"), r.stderr
    finally:
        stop_planners(planners)


def test_a_served_call_starts_no_python(warm: int, tmp_path: Path) -> None:
    """The point of it all: a call the planner serves executes one program, isolate-oci itself
    (strace -f sees every execve of the call's process tree)."""
    import shutil

    strace = shutil.which("strace")
    assert strace is not None, "strace is missing: .ci/install-deps installs it"
    trace = tmp_path / "trace"
    r = subprocess.run([strace, "-f", "-qq", "-e", "trace=execve,execveat", "-o", str(trace),
                        OCI, "--root", str(tmp_path / "state"), "list", "-q"],
                       capture_output=True, text=True, timeout=ANSWER)
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    execs = [ln for ln in trace.read_text().splitlines() if "execve" in ln and "exited" not in ln]
    assert len(execs) == 1 and OCI in execs[0], execs
    # Without a planner, the same call runs Python.
    r = subprocess.run([strace, "-f", "-qq", "-e", "trace=execve,execveat", "-o", str(trace),
                        OCI, "--root", str(tmp_path / "state"), "list", "-q"], capture_output=True,
                       text=True, timeout=ANSWER, env={**os.environ, "ISOLATE_OCI_PLANNER": "0"})
    assert r.returncode == 0, r.stderr
    assert len([ln for ln in trace.read_text().splitlines() if "execve(" in ln]) == 2


def test_a_spare_plans_a_container_ahead_and_leaves_nothing(warm: int, tmp_path: Path) -> None:
    """Once the call before it has ended, the next call's worker creates a container of the
    planner's warm bundle up to its clone, which is refused (what a call works out once per
    process is then worked out ahead): the state directory it makes is removed again, no cgroup
    or owner record is left, and the planner removes the bundle when it ends."""
    import glob
    import shutil

    strace = shutil.which("strace")
    assert strace is not None, "strace is missing: .ci/install-deps installs it"
    deadline = time.monotonic() + ANSWER
    pattern = f"warm-{os.stat('/proc/self/ns/pid').st_ino}-{warm}-*"
    while not (bundles := glob.glob(os.path.join(os.environ["ISOLATE_OCI_PLANNER_DIR"], pattern))):
        assert time.monotonic() < deadline, "the planner made no warm bundle"
        time.sleep(0.05)                                # made once the planner has imported all
    assert len(bundles) == 1, bundles
    state = Path(bundles[0]) / "state"
    trace = tmp_path / "trace"
    tracer = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=mkdir,mkdirat,rmdir,unlinkat",
                               "-o", str(trace), "-p", str(warm)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)                                 # attached (strace has no ready signal)
        r = oci(tmp_path / "state", "list", "-q")       # served by the spare there; the next plans
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + ANSWER
        while f'rmdir("{state}/warm-' not in (trace.read_text() if trace.exists() else ""):
            assert time.monotonic() < deadline, "no spare planned a container ahead"
            time.sleep(0.05)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=ANSWER)
    # Its state directory, made (at a directory fd) and removed again by create's error path.
    removed = [ln for ln in trace.read_text().splitlines() if f'rmdir("{state}/warm-' in ln]
    cid = removed[0].split(f"{state}/")[1].split('"')[0]
    assert removed[0].endswith("= 0"), removed
    assert os.listdir(state) == []
    assert not [top for top, dirs, _ in os.walk("/sys/fs/cgroup") if cid in dirs]
    owners = "/run/isolate/owners"
    spare = cid.split("-")[1]
    assert not [o for o in (os.listdir(owners) if os.path.isdir(owners) else []) if o.startswith(f"{spare}-")]
    os.kill(warm, signal.SIGTERM)
    deadline = time.monotonic() + ANSWER
    while os.path.exists(bundles[0]):
        assert time.monotonic() < deadline, "the planner left its warm bundle"
        time.sleep(0.05)


def _seccomp(denied: str) -> dict[str, object]:
    """linux.seccomp allowing all but ``denied`` (EPERM), on two architectures: libseccomp's
    compiler, as podman's and Docker's profiles."""
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": [denied], "action": "SCMP_ACT_ERRNO"}]}


def test_a_seccomp_program_one_call_compiled_is_loaded_by_the_next(
        warm: int, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    """A worker keeps the program it compiled in the planner's warm bundle; the next call's
    worker loads that one (shown by replacing it: the next container gets the replacement),
    unless someone else could have written it.  The planner removes them when it ends."""
    import glob

    from isolate.oci.spec import parse

    def edit(c: dict[str, object]) -> None:
        c["linux"]["seccomp"] = _seccomp("swapon")          # type: ignore[index]

    bundle = make_bundle(["uname"], edit=edit)
    root = tmp_path / "state"
    r = oci(root, "run", "--bundle", str(bundle), "c1")
    assert (r.returncode, r.stdout) == (0, "Linux\n"), r.stderr
    pattern = f"warm-{os.stat('/proc/self/ns/pid').st_ino}-{warm}-*/seccomp/*"
    [kept] = glob.glob(os.path.join(os.environ["ISOLATE_OCI_PLANNER_DIR"], pattern))
    spec = parse(json.loads((bundle / "config.json").read_text()))
    assert Path(kept).read_bytes() == _seccomp_program(spec)
    # The program of a profile that refuses uname(2), in its place: the next run loads it.
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["seccomp"] = _seccomp("uname")
    denying = parse(config)
    Path(kept).write_bytes(_seccomp_program(denying))
    r = oci(root, "run", "--bundle", str(bundle), "c2")
    assert r.stdout.strip() == "", r       # uname(2) failed: busybox prints no name
    # One others could write is not loaded (and is replaced by the compiled one).
    os.chmod(kept, 0o620)
    r = oci(root, "run", "--bundle", str(bundle), "c3")
    assert (r.returncode, r.stdout) == (0, "Linux\n"), r.stderr
    assert Path(kept).read_bytes() == _seccomp_program(spec) and Path(kept).stat().st_mode & 0o777 == 0o600
    os.kill(warm, signal.SIGTERM)
    deadline = time.monotonic() + ANSWER
    while os.path.exists(kept):
        assert time.monotonic() < deadline, "the planner left its seccomp programs"
        time.sleep(0.05)


def _seccomp_program(spec: object) -> bytes:
    from isolate.oci.convert import _Out, _seccomp

    return _seccomp(spec.linux.seccomp, _Out()).compile()   # type: ignore[attr-defined,union-attr]


KILLED_WHILE_PLANNING = r"""
import os, signal, sys
from isolate import _spawn
from isolate.cli.oci import main

class Killed:                      # the worker SIGKILLed at its clone, its planner gone
    def spawn(self, *args):
        from isolate import _owner
        _owner.leave()             # (its owner record names nothing by then: the cgroup is state.json's)
        os.kill(os.getpid(), signal.SIGKILL)

bundle, cid = sys.argv[1:3]
_spawn.set_delegate(Killed())
main(["--root", bundle + "/state", "create", "--bundle", bundle, cid])
"""


def test_a_bundle_a_killed_worker_planned_in_is_removed_with_its_container(tmp_path: Path) -> None:
    """A worker killed while it plans (PR_SET_PDEATHSIG, its planner killed) leaves a
    container half-made, its cgroup named by its state.json alone: removing the bundle
    (the planner's end, or the next planner's sweep) removes that cgroup too."""
    from isolate.oci import ahead

    bundle = ahead.warm_bundle(str(tmp_path))
    assert bundle is not None
    cid = f"warm-test-{os.getpid()}"
    r = subprocess.run([sys.executable, "-c", KILLED_WHILE_PLANNING, bundle, cid], timeout=ANSWER)
    assert r.returncode == -signal.SIGKILL
    assert os.listdir(os.path.join(bundle, "state")) == [cid]
    assert [top for top, dirs, _ in os.walk("/sys/fs/cgroup") if cid in dirs]
    ahead.remove_bundle(bundle)
    assert not os.path.exists(bundle)
    assert not [top for top, dirs, _ in os.walk("/sys/fs/cgroup") if cid in dirs]
