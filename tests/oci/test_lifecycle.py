"""``isolate-oci`` as containerd's shim and conmon drive it: create, start, state, kill, delete, ...

Every test runs the installed program (next to ``sys.executable``) as a
separate process on a busybox bundle, with its own ``--root``, and checks what
the runtime spec promises: the process is held before exec until ``start``,
``state`` follows the kernel's view, every failure is one line and leaves
nothing behind (state directory, cgroup, process).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root]

OCI = str(Path(sys.executable).parent / "isolate-oci")


class Runtime:
    """``isolate-oci --root <tmp>``, one call per method."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a verb.  Output goes through files, not pipes: a container made by
        create or run -d keeps the runtime's stdio, and a pipe would not end until it does."""
        if "stdout" in kw or "stderr" in kw:
            return subprocess.run([OCI, "--root", str(self.root), *args], text=True, timeout=timeout,
                                  check=False, **kw)
        import tempfile

        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([OCI, "--root", str(self.root), *args], text=True, timeout=timeout,
                               check=False, stdout=out, stderr=err, **kw)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        return r

    def ok(self, *args: str, **kw: Any) -> str:
        r = self(*args, **kw)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def run_detached(self, bundle: Path, cid: str) -> None:
        """``run -d``: the container keeps the stdio it is given, so give it none of ours."""
        err = bundle / "run-d.err"
        with open(err, "w") as f:
            r = self("run", "-d", "--bundle", str(bundle), cid, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=f)
        assert r.returncode == 0, err.read_text()

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self.ok("state", cid))

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == want or time.monotonic() > deadline:
                assert st["status"] == want, st
                return st
            time.sleep(0.02)


@pytest.fixture
def oci(tmp_path: Path) -> Runtime:
    rt = Runtime(tmp_path / "state")
    yield rt
    # Whatever a failed test left: force-delete it, then insist the root is empty.
    if rt.root.exists():
        for cid in os.listdir(rt.root):
            rt("delete", "--force", cid)
        assert os.listdir(rt.root) == []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_create_holds_the_process_until_start(oci: Runtime, make_bundle: Callable[..., Path],
                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    bundle = make_bundle(["sh", "-c", "echo ran > /srv/mark; sleep 30"])
    with open(out, "w") as f:
        oci.ok("create", "--bundle", str(bundle), "--pid-file", str(tmp_path / "pid"), "c1", stdout=f, stderr=f)
    pid = int((tmp_path / "pid").read_text())
    st = oci.state("c1")
    assert (st["status"], st["pid"], st["id"]) == ("created", pid, "c1")
    assert st["bundle"] == str(bundle) and st["ociVersion"].startswith("1.")
    assert alive(pid)
    time.sleep(0.2)
    assert not (bundle / "rootfs" / "srv" / "mark").exists()     # held before execve
    assert "c1" in oci.ok("list", "-q").split()
    oci.ok("start", "c1")
    assert oci.wait_status("c1", "running")["pid"] == pid
    deadline = time.monotonic() + 10
    while not (bundle / "rootfs" / "srv" / "mark").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (bundle / "rootfs" / "srv" / "mark").read_text() == "ran\n"
    r = oci("start", "c1")
    assert (r.returncode, r.stderr) == (1, "isolate-oci: start: cannot start a container that is running\n")
    r = oci("delete", "c1")
    assert r.returncode == 1 and "not stopped: running" in r.stderr
    oci.ok("kill", "c1", "KILL")
    assert oci.wait_status("c1", "stopped")["pid"] == 0
    oci.ok("delete", "c1")
    assert not alive(pid) and os.listdir(oci.root) == []
    r = oci("state", "c1")
    assert (r.returncode, r.stderr) == (1, "isolate-oci: state: container 'c1' does not exist\n")


def test_only_root_can_reach_the_exec_fifo(make_bundle: Callable[..., Path]) -> None:
    # Writing one byte to exec.fifo starts a created container: nobody else may.
    # The state root's parent is world-readable, so only the runtime's own modes stop them.
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="isolate-fifo-"))
    base.chmod(0o755)
    oci = Runtime(base / "state")
    bundle = make_bundle(["sh", "-c", "echo started > /srv/mark"])
    try:
        oci.ok("create", "--bundle", str(bundle), "c1")
        fifo = oci.root / "c1" / "exec.fifo"
        assert fifo.exists() and oci.root.stat().st_mode & 0o777 == 0o700
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                            f"echo 0 > {fifo}"], capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "Permission denied" in r.stderr
        time.sleep(0.2)
        assert oci.state("c1")["status"] == "created"
        assert not (bundle / "rootfs" / "srv" / "mark").exists()
    finally:
        oci("delete", "--force", "c1")
        shutil.rmtree(base)


def test_kill_delivers_the_signal_and_state_follows_the_process(oci: Runtime, make_bundle: Callable[..., Path],
                                                                tmp_path: Path) -> None:
    bundle = make_bundle(["sh", "-c", 'trap "echo got-term; exit 42" TERM; echo up; '
                                      "while :; do sleep 0.05; done"])
    out = tmp_path / "out"
    with open(out, "w") as f:
        oci.ok("create", "--bundle", str(bundle), "c1", stdout=f, stderr=f)
    oci.ok("start", "c1")
    deadline = time.monotonic() + 10
    while "up" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    oci.ok("kill", "c1", "SIGTERM")
    oci.wait_status("c1", "stopped")
    assert out.read_text() == "up\ngot-term\n"
    r = oci("kill", "c1", "TERM")
    assert (r.returncode, r.stderr) == (1, "isolate-oci: kill: container not running\n")
    r = oci("kill", "c1", "NOPE")
    assert r.returncode == 1 and "unknown signal 'NOPE'" in r.stderr
    oci.ok("delete", "c1")


def test_delete_force_ends_a_running_container_and_its_cgroup(oci: Runtime, make_bundle: Callable[..., Path],
                                                              oci_cgroup_parent: str) -> None:
    bundle = make_bundle(["sh", "-c", "sleep 30 & sleep 30"])
    oci.run_detached(bundle, "c1")
    st = oci.wait_status("c1", "running")
    pids = json.loads(oci.ok("ps", "--format", "json", "c1"))
    assert st["pid"] in pids and len(pids) >= 2
    cgroups = [p for p in Path("/sys/fs/cgroup").glob(f"*/{oci_cgroup_parent}/bundle")]
    assert cgroups, "no cgroup made at linux.cgroupsPath"
    oci.ok("delete", "--force", "c1")
    assert not any(alive(p) for p in pids)
    assert not any(p.exists() for p in cgroups)
    assert oci("delete", "--force", "c1").returncode == 0     # nothing left: still fine


def test_exec_joins_the_container(oci: Runtime, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["hostname"] = "inside"
        c["process"]["env"].append("FROM_CONFIG=1")

    bundle = make_bundle(["sleep", "30"], edit=edit)
    oci.run_detached(bundle, "c1")
    r = oci("exec", "--env", "EXTRA=2", "--cwd", "/tmp", "c1", "sh", "-c",
            'echo $(hostname) $FROM_CONFIG $EXTRA $(pwd) $$; tr "\\0" " " < /proc/1/cmdline; echo; '
            'ls /proc | grep "^[0-9]" | sort -n | tail -1; exit 7')
    assert r.returncode == 7, r.stderr
    first, init, highest = r.stdout.splitlines()
    host, from_config, extra, cwd, pid = first.split()
    assert (host, from_config, extra, cwd) == ("inside", "1", "2", "/tmp")
    assert init.split() == ["sleep", "30"]             # the container's pid namespace
    assert 1 < int(pid) <= int(highest) < 10           # only the container's few pids
    proc = {"args": ["sh", "-c", "id -u; cat /proc/self/status | grep NoNewPrivs"], "cwd": "/",
            "user": {"uid": 65534, "gid": 65534}, "noNewPrivileges": True, "env": ["PATH=/bin"]}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    r = oci("exec", "--process", str(tmp_path / "p.json"), "c1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["65534", "NoNewPrivs:", "1"]
    r = oci("exec", "--detach", "--pid-file", str(tmp_path / "e.pid"), "c1", "sleep", "30",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)     # kept by the detached process
    assert r.returncode == 0
    epid = int((tmp_path / "e.pid").read_text())
    assert alive(epid) and epid in json.loads(oci.ok("ps", "--format", "json", "c1"))
    oci.ok("delete", "--force", "c1")
    deadline = time.monotonic() + 5
    while alive(epid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(epid)


def test_pause_resume_update_and_events(oci: Runtime, make_bundle: Callable[..., Path],
                                        oci_cgroup_parent: str) -> None:
    bundle = make_bundle(["sh", "-c", "while :; do :; done"])
    oci.run_detached(bundle, "c1")
    oci.ok("pause", "c1")
    assert oci.state("c1")["status"] == "paused"
    before = json.loads(oci.ok("events", "--stats", "c1"))["data"]["cpu"]["usage"]["total"]
    time.sleep(0.3)
    after = json.loads(oci.ok("events", "--stats", "c1"))["data"]["cpu"]["usage"]["total"]
    assert after == before                             # frozen: no cpu time at all
    r = oci("pause", "c1")
    assert r.returncode == 1 and "is paused" in r.stderr
    oci.ok("resume", "c1")
    assert oci.state("c1")["status"] == "running"
    oci.ok("update", "--memory", str(64 << 20), "--pids-limit", "20", "c1")
    mem = [p for p in Path("/sys/fs/cgroup").glob(f"*/{oci_cgroup_parent}/bundle/memory.limit_in_bytes")]
    mem += [p for p in Path("/sys/fs/cgroup").glob(f"{oci_cgroup_parent}/bundle/memory.max")]
    assert mem and int(mem[0].read_text()) == 64 << 20
    r = oci("update", "-r", "-", "c1", input='{"pids": {"limit": "x"}}')
    assert r.returncode == 1 and "pids.limit: expected an integer" in r.stderr
    oci.ok("delete", "-f", "c1")


def test_hooks_run_in_order_with_the_state(oci: Runtime, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\nstate=$(cat)\necho "$1 $state" >> {log}\n')
    script.chmod(0o755)

    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {p: [{"path": str(script), "args": ["hook.sh", p]}]
                      for p in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")}
        # startContainer runs inside the container: its path is the container's.
        # It runs in all of the container's namespaces: its hostname, its pid namespace.
        c["hooks"]["startContainer"] = [{"path": "/bin/sh", "args": [
            "sh", "-c", "cat > /srv/start-state; hostname > /srv/start-host; ls /proc | grep -c '^[0-9]' "
                        "> /srv/start-pids"]}]
        c["hostname"] = "hooked"

    bundle = make_bundle(["true"], edit=edit)
    oci.ok("create", "--bundle", str(bundle), "c1")
    pid = oci.state("c1")["pid"]
    oci.ok("start", "c1")
    oci.wait_status("c1", "stopped")
    oci.ok("delete", "c1")
    entries = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [p for p, _ in entries] == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    states = {p: json.loads(s) for p, s in entries}
    assert [states[p]["status"] for p, _ in entries] == ["creating", "creating", "creating", "running", "stopped"]
    assert states["prestart"]["pid"] == pid and states["prestart"]["bundle"] == str(bundle)
    assert all(s["id"] == "c1" for s in states.values())
    inside = json.loads((bundle / "rootfs" / "srv" / "start-state").read_text())
    assert (inside["status"], inside["pid"]) == ("created", pid)
    assert (bundle / "rootfs" / "srv" / "start-host").read_text() == "hooked\n"
    # The container's init, the hook's shell and its pipeline: no host process in sight.
    assert int((bundle / "rootfs" / "srv" / "start-pids").read_text()) <= 5


def test_a_failing_hook_fails_create_and_leaves_nothing(oci: Runtime, make_bundle: Callable[..., Path],
                                                        oci_cgroup_parent: str) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]}

    bundle = make_bundle(["sleep", "30"], edit=edit)
    r = oci("create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1
    assert r.stderr == "isolate-oci: create: hooks.createRuntime[0] (/bin/sh): exit status 3: nope\n"
    assert os.listdir(oci.root) == []
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{oci_cgroup_parent}/bundle"))


def test_a_hook_past_its_timeout_is_killed_and_fails_create(oci: Runtime, make_bundle: Callable[..., Path],
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "hook-finished"

    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"sleep 7.31; touch {marker}"],
                                    "timeout": 1}]}

    bundle = make_bundle(["true"], edit=edit)
    t0 = time.monotonic()
    r = oci("create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1 and time.monotonic() - t0 < 4
    assert r.stderr == "isolate-oci: create: hooks.prestart[0] (/bin/sh): timed out after 1 s\n"
    assert os.listdir(oci.root) == []
    # The hook's whole process group was killed: its sleep does not live on.
    out = subprocess.run(["pgrep", "-fx", "sleep 7.31"], capture_output=True, text=True)
    assert out.stdout == "" and not marker.exists()


def test_no_pivot_runs_the_container_in_a_chroot(oci: Runtime, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["sh", "-c", "cat /etc/hostname; ls /"])
    r = oci("run", "--no-pivot", "--bundle", str(bundle), "c1", stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "busybox" and "srv" in r.stdout.split()   # the bundle's root


def test_console_socket_gets_the_pty_master(oci: Runtime, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    def edit(c: dict[str, Any]) -> None:
        c["process"]["terminal"] = True
        c["process"]["consoleSize"] = {"height": 33, "width": 77}

    bundle = make_bundle(["sh", "-c", "tty; stty size; ls /dev/pts | tr '\\n' ' '"], edit=edit)
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got: dict[str, Any] = {}

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
            got["msg"], got["fd"] = msg, fds[0]

    t = threading.Thread(target=accept)
    t.start()
    try:
        oci.ok("create", "--bundle", str(bundle), "--console-socket", path, "c1")
        t.join(10)
        master = got["fd"]
        oci.ok("start", "c1")
        out = b""
        while b"ptmx" not in out:
            ready, _, _ = select.select([master], [], [], 10)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
    finally:
        server.close()
    assert got["msg"] == b"/dev/ptmx"
    # The container's own devpts instance (as runc): its first pty, not one of the host's.
    assert out.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"33 77"]
    oci.wait_status("c1", "stopped")
    oci.ok("delete", "c1")


def test_terminal_without_console_socket_is_refused(oci: Runtime, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["true"], edit=lambda c: c["process"].update(terminal=True))
    r = oci("create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1
    assert r.stderr == ("isolate-oci: create: process.terminal: true needs --console-socket "
                        "(the pty master is sent there)\n")
    assert not oci.root.exists() or os.listdir(oci.root) == []


def test_run_in_the_foreground_returns_the_exit_status(oci: Runtime, make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["sh", "-c", "echo out; echo err >&2; exit 9"])
    r = oci("run", "--bundle", str(bundle), "c1", stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout, r.stderr) == (9, "out\n", "err\n")
    assert os.listdir(oci.root) == []
    def no_pidns(c: dict[str, Any]) -> None:
        # As pid 1 of a pid namespace the shell could not be killed by its own signal.
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]

    bundle2 = make_bundle(["sh", "-c", "kill -USR1 $$"], edit=no_pidns, name="b2")
    assert oci("run", "--bundle", str(bundle2), "c2", stdin=subprocess.DEVNULL).returncode == 128 + signal.SIGUSR1


def test_preserve_fds_passes_fd_3(oci: Runtime, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = make_bundle(["sh", "-c", "echo via-fd3 >&3; ls /proc/self/fd | sort -n | tr '\\n' ' '"])
    r_fd, w_fd = os.pipe()
    try:
        # The caller's fd 3, as conmon passes it: bash puts the pipe there (dash: fds < 10 only).
        r = subprocess.run(["bash", "-c", f'exec 3>&{w_fd} {w_fd}>&-; exec "$@"', "bash", OCI, "--root", str(oci.root),
                            "run", "--preserve-fds", "1", "--bundle", str(bundle), "c1"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, pass_fds=(w_fd,), timeout=30)
    finally:
        os.close(w_fd)
    with os.fdopen(r_fd) as f:
        assert f.read() == "via-fd3\n"
    assert r.returncode == 0 and r.stdout.split() == ["0", "1", "2", "3", "4"]   # 4: ls's directory
    r = oci("run", "--preserve-fds", "2", "--bundle", str(bundle), "c2", stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "--preserve-fds: fd 3 is not open" in r.stderr


def test_the_same_id_twice_and_concurrent_creates(oci: Runtime, make_bundle: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    bundle = make_bundle(["sleep", "30"])
    errs = [tmp_path / f"err{i}" for i in range(3)]
    procs = []
    for err in errs:
        with open(err, "w") as f:       # a file: the created container keeps its stderr
            procs.append(subprocess.Popen([OCI, "--root", str(oci.root), "create", "--bundle", str(bundle),
                                           "same"], stdout=subprocess.DEVNULL, stderr=f))
    results = [(p.wait(30), err.read_text()) for p, err in zip(procs, errs)]
    assert sorted(code for code, _ in results) == [0, 1, 1]
    assert all("already exists" in err for code, err in results if code)
    assert oci.state("same")["status"] == "created"
    oci.ok("delete", "same")           # a created container needs no --force
    assert os.listdir(oci.root) == []


@pytest.mark.parametrize("config, message", [
    ({"ociVersion": "1.0.2", "process": {"args": ["x"], "cwd": "/"}}, "root: is required"),
    ({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["x"], "cwd": "rel"}},
     "process.cwd: "),
    ({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["x"], "cwd": "/"},
      "linux": {"namespaces": [{"type": "pid"}, {"type": "pid"}]}}, "linux.namespaces[1]"),
    ({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["x"], "cwd": "/"},
      "linux": {"namespaces": [{"type": "bogus"}]}}, "linux.namespaces[0].type"),
    ({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["x"], "cwd": "/"},
      "mounts": [{"destination": "../etc", "type": "tmpfs"}]}, "mounts[0].destination"),
    ({"ociVersion": "1.0.2", "root": {"path": "missing"}, "process": {"args": ["x"], "cwd": "/"},
      "linux": {"namespaces": [{"type": "mount"}]}}, "root.path"),
    ({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["x"], "cwd": "/"},
      "linux": {"resources": {"memory": {"limit": "1g"}}}}, "linux.resources.memory.limit"),
    ({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
      "process": {"args": ["x"], "cwd": "/", "capabilities": {"bounding": ["CAP_CHOWN", "CAP_BOGUS"]}}},
     "process.capabilities.bounding[1]"),
])
def test_bad_config_is_one_line_and_leaves_nothing(oci: Runtime, tmp_path: Path, config: dict[str, Any],
                                                   message: str) -> None:
    bundle = tmp_path / "b"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(config))
    r = oci("create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr
    assert not oci.root.exists() or os.listdir(oci.root) == []


@pytest.mark.cgroupv2
def test_lifecycle_on_cgroup_v2(oci: Runtime, make_bundle: Callable[..., Path], oci_cgroup_parent: str) -> None:
    """Pure v2 (run in ../shared/vmtest/vm-run by .ci/run): limits, pause, update, stats, delete."""
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 32}}

    bundle = make_bundle(["sh", "-c", "while :; do :; done"], edit=edit)
    oci.run_detached(bundle, "c1")
    group = Path("/sys/fs/cgroup", oci_cgroup_parent, "bundle")
    assert int((group / "memory.max").read_text()) == 64 << 20
    assert (group / "pids.max").read_text().strip() == "32"
    assert oci.state("c1")["pid"] in [int(p) for p in (group / "cgroup.procs").read_text().split()]
    oci.ok("pause", "c1")
    assert oci.state("c1")["status"] == "paused" and (group / "cgroup.freeze").read_text().strip() == "1"
    oci.ok("resume", "c1")
    oci.ok("update", "--pids-limit", "16", "c1")
    assert (group / "pids.max").read_text().strip() == "16"
    stats = json.loads(oci.ok("events", "--stats", "c1"))["data"]
    assert stats["pids"]["current"] >= 1 and stats["memory"]["usage"]["usage"] > 0
    oci.ok("delete", "--force", "c1")
    assert not group.exists()


@pytest.mark.parametrize("how", [("KILL",), ("--all", "KILL")])
def test_sigkill_ends_a_paused_container(oci: Runtime, make_bundle: Callable[..., Path], how: tuple[str, ...]) -> None:
    """SIGKILL (to the first process, or ``--all``) ends a paused container: a process in a
    frozen v1 cgroup acts on it only once thawed, so the runtime thaws the group after
    sending it (as runc does)."""
    bundle = make_bundle(["sh", "-c", "sleep 30 & sleep 30"])
    oci.run_detached(bundle, "c1")
    pids = json.loads(oci.ok("ps", "--format", "json", "c1"))
    oci.ok("pause", "c1")
    assert oci.state("c1")["status"] == "paused"
    *flags, sig = how
    oci.ok("kill", *flags, "c1", sig)
    assert oci.wait_status("c1", "stopped")["pid"] == 0
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(alive(p) for p in pids)
    oci.ok("delete", "c1")


def test_kill_all_reaches_what_outlives_the_first_process(oci: Runtime, make_bundle: Callable[..., Path]) -> None:
    """Without a pid namespace of its own, what the first process started outlives it; ``kill
    --all`` of the stopped container still signals it (runc does the same)."""
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "pid"]

    bundle = make_bundle(["sh", "-c", "sleep 30 & echo $! > /srv/left.pid.tmp; mv /srv/left.pid.tmp /srv/left.pid"],
                         edit=edit)
    oci.run_detached(bundle, "c1")
    oci.wait_status("c1", "stopped")
    left = bundle / "rootfs" / "srv" / "left.pid"
    deadline = time.monotonic() + 10
    while not left.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = int(left.read_text())             # a host pid: no pid namespace
    assert alive(pid)
    r = oci("kill", "--all", "c1", "KILL")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid)
    oci.ok("delete", "c1")
