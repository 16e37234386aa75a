"""podman driving ``isolate-oci`` through conmon, the way ``podman --runtime`` is used.

The image is the session's busybox root filesystem, turned into a tar and
``podman import``-ed once per module: no registry.  Everything podman keeps
lives under one temporary directory (``--root``, ``--runroot``, ``--tmpdir``,
the vfs storage driver, a ``containers.conf`` named by ``CONTAINERS_CONF``,
which conmon hands on to podman's exit command), and containers go under an
``isolate-test-podman-*`` cgroup parent made here and removed at the end.

``RUNTIME`` is the runtime under test; ``ISOLATE_TEST_PODMAN_RUNTIME=runc``
(or a path) runs the same tests against another one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines import podman_files, processes_mentioning, runtime_path
from support import force_remove_cgroup, glob_below

pytestmark = pytest.mark.root

RUNTIME = os.environ.get("ISOLATE_TEST_PODMAN_RUNTIME", "isolate-oci")
IMAGE = "localhost/isolate-test-busybox:latest"
# Where runtimes keep their state when podman passes no --root (podman 4.3
# forwards --runtime-flag to its own calls but not to the exit command that
# conmon runs, so a private --root would split one container's state in two).
RUNTIME_STATE = {"isolate-oci": "/run/isolate-oci", "runc": "/run/runc", "crun": "/run/crun"}


def find_runtime(name: str) -> str:
    """``name`` as a path (``engines.runtime_path``); fails the test if there is none."""
    found = runtime_path(name)
    if found is None:
        pytest.fail(f"{name} not found beside {sys.executable} or on PATH")
    return found


def cgroup_mounts() -> list[str]:
    """Every cgroup (v1) and cgroup2 mount point of this host."""
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [m[1] for m in mounts if m[2] in ("cgroup", "cgroup2")]


class Podman:
    """podman with every path under ``base``, the runtime under test and a private cgroup parent."""

    def __init__(self, base: Path, runtime: str, cgroup_parent: str) -> None:
        self.base = base
        self.runtime = runtime
        self.cgroup_parent = cgroup_parent
        self.argv, self.env = podman_files(base, runtime)

    def __call__(self, *args: str, timeout: float = 30,
                 prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """podman ``args``; on timeout its process group (podman and the runtime it runs) is killed."""
        argv = [*prefix, *self.argv, *args]
        # cwd: conmon writes an "oom" marker file into its working directory.
        with subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True,
                              cwd=self.base) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                pytest.fail(f"podman {' '.join(args)}: no answer in {timeout} s\n{err}")
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def ok(self, *args: str) -> str:
        """Run podman and return its stdout; fail the test with podman's stderr if it fails."""
        r = self(*args)
        assert r.returncode == 0, f"podman {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
        return r.stdout

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``podman run`` with no network, in our cgroup parent; ``args`` are options, image and command."""
        return self("run", "--network", "none", "--cgroup-parent", f"/{self.cgroup_parent}", *args,
                    timeout=timeout)

    def start_detached(self, *args: str) -> str:
        """``podman run -d``; returns the container id."""
        r = self.run("-d", *args)
        assert r.returncode == 0, f"podman run -d: exit {r.returncode}\n{r.stderr}"
        return r.stdout.strip()

    def wait_for_log(self, cid: str, line: str, timeout: float = 20) -> None:
        """Poll ``podman logs`` until the container has printed ``line``."""
        deadline = time.monotonic() + timeout
        while line not in self.ok("logs", cid).splitlines():
            assert time.monotonic() < deadline, f"{cid} never printed {line!r}"
            time.sleep(0.05)

    def settle(self, timeout: float = 20) -> list[int]:
        """Remove every container, wait for conmon and the exit commands to go; SIGKILL and return stragglers."""
        try:
            self("rm", "--all", "--force", "--time", "0")
        except pytest.fail.Exception:
            pass  # a runtime that hangs: its processes are killed below
        deadline = time.monotonic() + timeout
        mine = {str(self.base), *self.container_ids()}
        while (left := processes_mentioning(mine)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def container_ids(self) -> set[str]:
        """Ids of every container this podman made (from its event log)."""
        log = self.base / "tmp" / "events.log"
        return set(re.findall(r'"ID":"([0-9a-f]{64})"', log.read_text())) if log.exists() else set()


def import_image(podman: Podman, rootfs: Path) -> None:
    tar = podman.base / "busybox.tar"
    with tarfile.open(tar, "w") as t:
        t.add(rootfs, arcname=".")
    # containers/image writes its blob cache to /var/lib/containers/cache whatever
    # --root says: give the import a private, empty /var/lib.
    r = podman("import", "--quiet", str(tar), IMAGE, prefix=(
        "unshare", "--mount", "--propagation", "private", "sh", "-c",
        'mount -t tmpfs tmpfs /var/lib && exec "$@"', "sh"))
    assert r.returncode == 0, f"podman import: {r.stderr}"
    tar.unlink()


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[Podman]:
    for tool in ("podman", "conmon"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: .ci/install-deps installs podman and conmon")
    runtime = find_runtime(RUNTIME)
    parent = f"isolate-test-podman-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # Made before any test so that the per-test leak check does not see it
    # appear; podman's cgroupfs manager adds <parent>/conmon, the runtime
    # <parent>/libpod-<id>.
    made = []
    # Someone else on the machine may use podman's default parent: only a new one counts.
    had_libpod_parent = {m for m in cgroup_mounts() if os.path.exists(os.path.join(m, "libpod_parent"))}
    for mnt in cgroup_mounts():
        os.mkdir(os.path.join(mnt, parent))
        made.append(os.path.join(mnt, parent))
    base = tmp_path_factory.mktemp("podman")
    p = Podman(base, runtime, parent)
    state = RUNTIME_STATE.get(os.path.basename(runtime), "")
    try:
        import_image(p, busybox_rootfs)
        info = p.ok("info", "--format", "{{.Host.OCIRuntime.Path}}").strip()
        assert info == runtime, f"podman uses {info}, not {runtime}"
        yield p
    finally:
        stragglers = p.settle()
        kept = sorted(i for i in p.container_ids() if state and os.path.exists(os.path.join(state, i)))
        for cid in kept:
            subprocess.run([runtime, "delete", "--force", cid], capture_output=True, timeout=30, check=False)
        p.settle()
        try:
            p("rmi", "--all", "--force")
        except pytest.fail.Exception:
            pass  # the directory goes below
        below = [d for top in made for d in glob_below(top) if os.path.basename(d) != "conmon"]
        for top in made:
            force_remove_cgroup(top)
        shutil.rmtree(base, ignore_errors=True)
    assert not stragglers, f"processes left after podman rm: {stragglers}"
    assert not kept, f"{os.path.basename(runtime)} kept state in {state} for {kept}"
    assert not below, f"container cgroups left behind: {below}"
    top_level = [m for m in cgroup_mounts() if os.path.exists(os.path.join(m, "libpod_parent"))
                 and m not in had_libpod_parent]
    assert not top_level, f"podman made libpod_parent in {top_level}"


@pytest.fixture(autouse=True)
def settled(podman: Podman) -> Iterator[None]:
    """Each test ends with no container and no conmon left, before the leak check looks."""
    yield
    stragglers = podman.settle()
    assert not stragglers, f"processes left after podman rm: {stragglers}"


def test_run_echo_rm(podman: Podman) -> None:
    r = podman.run("--rm", IMAGE, "echo", "hello from busybox")
    assert (r.returncode, r.stdout) == (0, "hello from busybox\n"), r.stderr
    assert podman.ok("ps", "--all", "--quiet") == ""


def test_exit_code(podman: Podman) -> None:
    r = podman.run("--rm", IMAGE, "sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr


def test_env(podman: Podman) -> None:
    r = podman.run("--rm", "-e", "FOO=bar", IMAGE, "sh", "-c", 'echo "$FOO:$PATH"')
    assert r.returncode == 0, r.stderr
    foo, path = r.stdout.rstrip("\n").split(":", 1)
    assert foo == "bar"
    assert "/bin" in path.split(":")


def test_cgroup_parent(podman: Podman) -> None:
    cid = podman.start_detached(IMAGE, "sleep", "600")
    pid = podman.ok("inspect", "--format", "{{.State.Pid}}", cid).strip()
    lines = Path("/proc", pid, "cgroup").read_text().splitlines()
    inside = [line for line in lines if f"/{podman.cgroup_parent}/libpod-{cid}" in line]
    assert any(":memory:" in line for line in inside), lines
    assert any(":pids:" in line or line.startswith("0::") for line in inside), lines


def test_memory_limit_oom_kills(podman: Podman) -> None:
    limit = ("--memory", "32m", "--memory-swap", "32m")
    # dd allocates its block and fills it from /dev/zero: every page is touched.
    small = podman.run("--rm", *limit, IMAGE, "dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1")
    assert small.returncode == 0, small.stderr
    big = podman.run("--rm", *limit, IMAGE, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    assert big.returncode == 128 + signal.SIGKILL, big.stderr


FORK_16 = 'i=0; while [ $i -lt 16 ]; do sleep 600 & i=$((i+1)); done; echo forked $i'


def test_pids_limit(podman: Podman) -> None:
    free = podman.run("--rm", IMAGE, "sh", "-c", FORK_16)
    assert (free.returncode, free.stdout) == (0, "forked 16\n"), free.stderr
    limited = podman.run("--rm", "--pids-limit", "8", IMAGE, "sh", "-c", FORK_16)
    assert limited.returncode != 0
    assert "forked" not in limited.stdout
    assert "can't fork" in limited.stderr, limited.stderr


def test_exec(podman: Podman) -> None:
    cid = podman.start_detached(IMAGE, "sleep", "600")
    r = podman("exec", cid, "sh", "-c", "echo in-exec; tr '\\0' ' ' < /proc/1/cmdline; echo; exit 5")
    assert r.returncode == 5, r.stderr
    assert r.stdout.splitlines() == ["in-exec", "sleep 600 "]
    # A process that may be gone before the runtime's `exec --detach` returns:
    # conmon, its subreaper, must still get its status (the runtime must not reap it).
    for _ in range(3):
        quick = podman("exec", cid, "sh", "-c", "exit 6")
        assert quick.returncode == 6, quick.stderr
    assert podman.ok("inspect", "--format", "{{.State.Status}}", cid).strip() == "running"


def test_exec_tty(podman: Podman) -> None:
    cid = podman.start_detached(IMAGE, "sleep", "600")
    r = podman("exec", "-t", cid, "tty")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"/dev/pts/\d+\n", r.stdout.replace("\r", "")), repr(r.stdout)


def test_logs(podman: Podman) -> None:
    cid = podman.start_detached(IMAGE, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 4")
    assert podman.ok("wait", cid).strip() == "4"
    r = podman("logs", cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "to-stdout\n"
    assert r.stderr == "to-stderr\n"


def test_stop_delivers_sigterm(podman: Podman) -> None:
    # A shell as pid 1 ignores SIGTERM unless it has a handler: the trap is one,
    # and its exit status tells SIGTERM (42) from the fallback SIGKILL (137).
    cid = podman.start_detached(IMAGE, "sh", "-c", 'trap "exit 42" TERM; echo ready; sleep 600 & wait')
    podman.wait_for_log(cid, "ready")
    podman.ok("stop", "--time", "5", cid)
    state = podman.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cid).split()
    assert state == ["exited", "42"]


def test_read_only(podman: Podman) -> None:
    r = podman.run("--rm", "--read-only", IMAGE, "sh", "-c",
                   "touch /x; echo root=$?; touch /tmp/x && echo tmp=$?")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["root=1", "tmp=0"]
    assert "Read-only file system" in r.stderr


def test_tty(podman: Podman) -> None:
    script = "tty; test -t 0 && echo stdin; test -t 1 && echo stdout"
    r = podman.run("--rm", "-t", IMAGE, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    # conmon puts the terminal in raw mode: no "\r" is added, but tolerate one.
    assert re.fullmatch(r"/dev/pts/\d+\nstdin\nstdout\n", r.stdout.replace("\r", "")), repr(r.stdout)
    plain = podman.run("--rm", IMAGE, "sh", "-c", script)
    assert (plain.returncode, plain.stdout) == (1, "not a tty\n"), plain.stderr


def test_run_timeout_ends_the_container_and_leaves_nothing(podman: Podman) -> None:
    """``podman run --timeout 2`` kills the container after 2 s: conmon survives to report it, and the
    runtime's state, the container's cgroup and every process of it are gone when podman returns.

    conmon kills the container's process group: a container in conmon's own
    group took conmon with it, and podman returned 127 after 23 s with the
    container left "running".  podman 4.3 reports a container its timeout
    killed as exit status 255 (exit code -1), with runc too.
    """
    r = podman.run("--rm", "--timeout", "2", IMAGE, "sleep", "30", timeout=15)
    assert r.returncode == 255, r.stderr
    assert podman.ok("ps", "--all", "--quiet") == ""
    cids = podman.container_ids()
    assert cids, "podman logged no container"
    state = RUNTIME_STATE.get(os.path.basename(podman.runtime), "")
    assert not [c for c in cids if state and os.path.exists(os.path.join(state, c))]
    assert not [d for m in cgroup_mounts() for c in cids
                for d in glob_below(os.path.join(m, podman.cgroup_parent)) if c in d]
    assert processes_mentioning(cids) == []


def test_kill_sigkill_ends_a_paused_container(podman: Podman) -> None:
    """``podman kill -s KILL`` of a paused container ends it at once.

    A process in a frozen v1 cgroup does not act on SIGKILL until thawed:
    the runtime thaws the group after SIGKILL, as runc does (without it,
    podman waits for an exit that never comes and fails after 5 s).
    """
    cid = podman.start_detached(IMAGE, "sleep", "600")
    podman.ok("pause", cid)
    assert podman.ok("inspect", "--format", "{{.State.Status}}", cid).strip() == "paused"
    r = podman("kill", "-s", "KILL", cid)
    assert r.returncode == 0, r.stderr
    assert podman.ok("wait", cid).strip() == "137"
    state = podman.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cid).split()
    assert state == ["exited", "137"]

