"""``isolate-oci`` under faults: a ``create`` killed at any moment, a caller in another cgroup.

A runtime driven by containerd or podman may be killed (``kill -9``) at any
point, and its later calls may come from another process in another cgroup.
Whatever happened, ``state``, ``list`` and ``delete --force`` must answer
within a few seconds (every call here has a timeout: a hang is a failure),
``delete --force`` must leave nothing (no state directory, cgroup, process
or mount), and the id must be usable again.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import isolate

pytestmark = [pytest.mark.root]

OCI = str(Path(sys.executable).parent / "isolate-oci")
#: Seconds any call gets to answer; more is a hang.
ANSWER = 10.0


def oci(root: Path, *args: str, timeout: float = ANSWER) -> subprocess.CompletedProcess[str]:
    """``isolate-oci --root ROOT ARGS``, failing the test if it does not answer within ``timeout``.

    Output goes through files: a container made by ``create`` keeps the runtime's stdio.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            r = subprocess.run([OCI, "--root", str(root), *args], stdin=subprocess.DEVNULL, stdout=out,
                               stderr=err, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"isolate-oci {' '.join(args)}: no answer in {timeout} s")
        out.seek(0)
        err.seek(0)
        r.stdout, r.stderr = out.read(), err.read()
    return r


def start_create(root: Path, bundle: Path, cid: str, *extra: str) -> subprocess.Popen[bytes]:
    """``isolate-oci create`` in the background (its stdio: nothing of ours)."""
    return subprocess.Popen([OCI, "--root", str(root), "create", *extra, "--bundle", str(bundle), cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def status(root: Path, cid: str) -> str:
    """``state``'s status, or "missing" when the runtime says there is no such container."""
    r = oci(root, "state", cid)
    if r.returncode == 1 and r.stderr == f"isolate-oci: state: container {cid!r} does not exist\n":
        return "missing"
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["status"])


def wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def runtime_pids(front: int) -> list[int]:
    """The processes doing the ``isolate-oci`` call ``front``: the command itself and, when a
    warm planner serves it, the planner's worker for it (the one whose stdin and stdout are
    the command's own open files, as kcmp(2) compares them)."""
    import ctypes
    import platform

    kcmp = {"x86_64": 312, "aarch64": 272}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    out = [front]
    for n in os.listdir("/proc"):
        if not n.isdigit() or int(n) == front or b"isolate.oci.warm" not in _cmdline(int(n)):
            continue
        if all(libc.syscall(kcmp, front, int(n), 0, fd, fd) == 0 for fd in (0, 1)):  # KCMP_FILE
            out.append(int(n))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def cgroup_dirs(parent: str, name: str) -> list[str]:
    """The directories of cgroup ``<parent>/<name>`` in every hierarchy."""
    return [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{parent}/{name}")]


def mounts_under(path: Path) -> list[str]:
    """This mount namespace's mounts whose mount point or source lies under ``path`` (others'
    tests make mounts of their own meanwhile)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split()
        source = line.split(" - ", 1)[1].split()[1] if " - " in line else ""
        if any(p == str(path) or p.startswith(f"{path}/") for p in (f[3], f[4], source)):
            out.append(line)
    return out


def holders_of(path: Path) -> list[int]:
    """Pids holding the flock of directory ``path``: /proc/<pid>/fdinfo/<fd> lists the locks its
    open file owns (a process that merely has the directory open shows none)."""
    try:
        want = os.stat(path)
    except FileNotFoundError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    s = os.stat(f"/proc/{entry}/fd/{fd}")
                    if (s.st_dev, s.st_ino) == (want.st_dev, want.st_ino) and \
                            "\nlock:" in Path(f"/proc/{entry}/fdinfo/{fd}").read_text():
                        out.append(int(entry))
                        break
    return sorted(out)


def set_config(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    config = json.loads((bundle / "config.json").read_text())
    edit(config)
    (bundle / "config.json").write_text(json.dumps(config, indent=2))


@contextlib.contextmanager
def subreaper() -> Iterator[Callable[[], list[int]]]:
    """Make this process the subreaper of what it starts (as conmon and containerd's shim are).

    Yields a function that reaps the zombies reparented here and returns the
    pids of the live processes that are still this process's children, but
    those it had already (another test's fixture, say a registry it serves).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    assert libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    before: set[int] = set()

    def children() -> list[int]:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        me = str(os.getpid())
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if stat[1] == me and stat[0] not in ("Z", "X") and int(entry) not in before:
                    out.append(int(entry))
        return out

    before.update(children())

    try:
        yield children
    finally:
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)
        children()


# --- a caller in another cgroup -------------------------------------------------------


def test_delete_from_another_cgroup(make_bundle: Callable[..., Path], oci_cgroup_parent: str,
                                    tmp_path: Path) -> None:
    """Without linux.cgroupsPath the container's group sits under its creator's own cgroup
    (``<own>/isolate/<id>``); later calls come from another cgroup and must still find it,
    from the paths state.json recorded (they fail with "no such cgroup" when they look
    under their own)."""
    import isolate
    from isolate.cgroup import KNOWN_CONTROLLERS, Cgroup, detect

    root = tmp_path / "state"
    bundle = make_bundle(["sleep", "30"], edit=lambda c: c["linux"].pop("cgroupsPath"))
    # Every hierarchy the container's group is made in, named ones (name=systemd) included.
    controllers = sorted(c for c in detect().v1 if c in KNOWN_CONTROLLERS or c.startswith("name="))
    a = Cgroup.create("creator", parent=oci_cgroup_parent, controllers=controllers)
    b = Cgroup.create("other", parent=oci_cgroup_parent, controllers=controllers)
    made: list[str] = []
    try:
        def in_cgroup(cg: Cgroup, *args: str) -> subprocess.CompletedProcess[bytes]:
            with open(tmp_path / "out", "w+b") as out:
                r = isolate.run([OCI, "--root", str(root), *args], cgroup=cg, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, timeout=ANSWER)
                out.seek(0)
                r.stdout = out.read()
            return r

        r = in_cgroup(a, "create", "--bundle", str(bundle), "c1")
        assert r.returncode == 0, r.stdout
        paths = json.loads((root / "c1" / "state.json").read_text())["cgroup"]["paths"]
        # v1: under the creator's group; the unified hierarchy of a hybrid host holds no
        # processes in inner groups, so its group is <mount>/isolate/c1 (Cgroup's rule).
        v2 = detect().v2
        shared = f"{v2.mount}/isolate/c1" if v2 is not None else None
        made = [os.path.dirname(p) for p in paths if p != shared]   # <creator>/isolate, made by create
        assert paths and all(f"/{oci_cgroup_parent}/creator/isolate/c1" in p or p == shared for p in paths), paths
        pid = json.loads(in_cgroup(b, "state", "c1").stdout)["pid"]
        assert alive(pid)
        r = in_cgroup(b, "ps", "--format", "json", "c1")
        assert r.returncode == 0 and json.loads(r.stdout) == [pid], r.stdout
        assert in_cgroup(b, "pause", "c1").returncode == 0
        assert json.loads(in_cgroup(b, "state", "c1").stdout)["status"] == "paused"
        assert in_cgroup(b, "resume", "c1").returncode == 0
        r = in_cgroup(b, "delete", "--force", "c1")
        assert r.returncode == 0, r.stdout
        assert not alive(pid)
        assert [p for p in paths if os.path.exists(p)] == []
        assert os.listdir(root) == []
        assert in_cgroup(b, "list", "-q").stdout == b""
    finally:
        if (root / "c1").exists():
            oci(root, "delete", "--force", "c1")
        for d in made:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
        a.close()
        b.close()


# --- a lock held by a process that outlived its runtime -----------------------------------

HOLD_LOCK = """
import fcntl, os, sys, time
state_dir, *groups = sys.argv[1:]
for g in groups:
    with open(os.path.join(g, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_lock_held_by_the_containers_own_process_blocks_nothing(make_bundle: Callable[..., Path],
                                                                   tmp_path: Path) -> None:
    """A process of the container holding the state directory's lock (what a runtime that
    leaks its locked fd into the container leaves when it dies) never makes a call hang:
    ``state`` and ``list`` take no lock, ``start`` names the holder, ``delete --force`` kills it."""
    root = tmp_path / "state"
    bundle = make_bundle(["sleep", "30"])
    assert oci(root, "create", "--bundle", str(bundle), "c1").returncode == 0
    st = json.loads((root / "c1" / "state.json").read_text())
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root / "c1"), *st["cgroup"]["paths"]],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert holders_of(root / "c1") == [holder.pid]
        assert status(root, "c1") == "created"
        assert oci(root, "list", "-q").stdout == "c1\n"
        r = oci(root, "start", "c1")
        assert r.returncode == 1 and f"its own process pid {holder.pid}" in r.stderr, r.stderr
        r = oci(root, "delete", "--force", "c1")
        assert r.returncode == 0, r.stderr
        assert holder.wait(timeout=ANSWER) == -signal.SIGKILL
        assert not alive(st["pid"])
        assert [p for p in st["cgroup"]["paths"] if os.path.exists(p)] == []
        assert os.listdir(root) == []
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


# --- a create killed at a known point ------------------------------------------------------


def test_create_killed_before_its_process_exists(make_bundle: Callable[..., Path], oci_cgroup_parent: str,
                                                 tmp_path: Path) -> None:
    """``create`` killed after making the cgroup and the state directory, before the process
    exists (here: stuck connecting to a console socket whose backlog is full).  The half-made
    container is recognised (its owner is dead): ``state`` says stopped, ``list`` shows it,
    a second ``create`` says what to run, ``delete --force`` removes all of it, and the id
    works again."""
    root = tmp_path / "state"
    bundle = make_bundle(["sleep", "30"], edit=lambda c: c["process"].update(terminal=True))
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener, filler:
        listener.bind(path)
        listener.listen(0)
        filler.connect(path)            # the backlog is full: the runtime's connect() blocks
        p = start_create(root, bundle, "c1", "--console-socket", path)
        try:
            deadline = time.monotonic() + ANSWER
            while "unix_wait_for_peer" not in [wchan(pid) for pid in runtime_pids(p.pid)]:
                assert p.poll() is None and time.monotonic() < deadline, "create never reached connect()"
                time.sleep(0.01)
        finally:
            p.kill()
            p.wait()
    groups = cgroup_dirs(oci_cgroup_parent, "bundle")
    assert groups, "create had made no cgroup before connect()"
    assert status(root, "c1") == "stopped"
    assert oci(root, "list", "-q").stdout == "c1\n"
    set_config(bundle, lambda c: c["process"].update(terminal=False))
    r = oci(root, "create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1 and f"`delete --force c1` removes it" in r.stderr, r.stderr
    r = oci(root, "delete", "--force", "c1")
    assert r.returncode == 0, r.stderr
    assert cgroup_dirs(oci_cgroup_parent, "bundle") == []
    assert os.listdir(root) == []
    assert oci(root, "create", "--bundle", str(bundle), "c1").returncode == 0
    assert status(root, "c1") == "created"
    assert oci(root, "delete", "--force", "c1").returncode == 0
    assert os.listdir(root) == []


def test_create_killed_in_a_hook_leaves_a_container_delete_removes(make_bundle: Callable[..., Path],
                                                                    oci_cgroup_parent: str,
                                                                    tmp_path: Path) -> None:
    """``create`` killed while a createRuntime hook runs: the process waits at its exec gate and
    outlives the runtime.  It can never start (``state``: stopped), and ``delete --force`` kills
    it and removes its cgroup."""
    root = tmp_path / "state"
    hook_pid = tmp_path / "hook.pid"

    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {"createRuntime": [{"path": "/bin/sh",
                                         "args": ["sh", "-c", f'echo $$ > "{hook_pid}"; exec sleep 30']}]}

    bundle = make_bundle(["sleep", "30"], edit=edit)
    p = start_create(root, bundle, "c1")
    try:
        deadline = time.monotonic() + ANSWER
        while not hook_pid.exists() or not hook_pid.read_text().strip():
            assert p.poll() is None and time.monotonic() < deadline, "the hook never ran"
            time.sleep(0.01)
    finally:
        p.kill()
        p.wait()
    os.kill(int(hook_pid.read_text()), signal.SIGKILL)          # the hook we made sleep
    st = json.loads((root / "c1" / "state.json").read_text())
    # The creator is dead, but its state names the group: isolate.gc() leaves it (and the
    # process at its gate) to delete, which a shim runs with the state it knows.
    isolate.gc()
    assert cgroup_dirs(oci_cgroup_parent, "bundle") != []
    assert alive(st["pid"])                                     # held at the exec gate ...
    assert holders_of(root / "c1") == []                        # ... without the runtime's lock
    assert status(root, "c1") == "stopped"
    r = oci(root, "start", "c1")
    assert r.returncode == 1 and "cannot start a container that is stopped" in r.stderr, r.stderr
    r = oci(root, "create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1 and "`delete --force c1` removes it" in r.stderr, r.stderr
    assert oci(root, "delete", "--force", "c1").returncode == 0
    assert not alive(st["pid"])
    assert cgroup_dirs(oci_cgroup_parent, "bundle") == []
    assert os.listdir(root) == []


def test_a_state_directory_without_state_json_is_removed(make_bundle: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    """What an interrupted create of an older isolate-oci left (a directory with only exec.fifo),
    and the private directory of a create that died before naming its container: ``delete
    --force`` removes both, ``create`` then works."""
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    (root / "c1").mkdir(mode=0o700)
    os.mkfifo(root / "c1" / "exec.fifo", 0o600)
    dead = subprocess.Popen(["true"])                   # a pid that has exited
    dead.wait()
    (root / f"~{dead.pid}.1.0badc0de").mkdir()
    assert status(root, "c1") == "missing"
    assert oci(root, "list", "-q").stdout == ""
    bundle = make_bundle(["sleep", "30"])
    r = oci(root, "create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1 and "`delete --force c1` removes it" in r.stderr, r.stderr
    assert oci(root, "delete", "--force", "c1").returncode == 0
    assert os.listdir(root) == []
    assert oci(root, "create", "--bundle", str(bundle), "c1").returncode == 0
    assert oci(root, "delete", "--force", "c1").returncode == 0


def test_the_state_directory_appears_whole(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    """A container's directory appears in ``--root`` by a rename, with state.json (naming its
    creator) already inside: never as an empty directory that a killed create would leave."""
    in_create, in_moved_to, in_cloexec = 0x100, 0x80, 0o2000000
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(in_cloexec)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.inotify_add_watch(fd, str(root).encode(), in_create | in_moved_to) >= 0
        bundle = make_bundle(["sleep", "30"])
        assert oci(root, "create", "--bundle", str(bundle), "c1").returncode == 0
        events = []
        data = os.read(fd, 65536)
        while data:
            _, mask, _, size = struct.unpack_from("iIII", data)
            name = data[16:16 + size].rstrip(b"\0").decode()
            events.append((name, "moved_to" if mask & in_moved_to else "create"))
            data = data[16 + size:]
    finally:
        os.close(fd)
    assert [e for e in events if e[0] == "c1"] == [("c1", "moved_to")], events
    assert oci(root, "delete", "--force", "c1").returncode == 0


# --- a create killed at random points ---------------------------------------------------------

KILLS = 100


def test_create_killed_at_random_points(make_bundle: Callable[..., Path], oci_cgroup_parent: str,
                                        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """SIGKILL ``create`` after a random delay, ``KILLS`` times (seeded), the delays spread over
    the whole length of a create (measured first).  After each kill: no process that outlived
    it holds the state lock; ``state``, ``list`` and ``delete --force`` answer; then nothing is
    left: no state directory, no cgroup, no process, no mount."""
    rng = random.Random(20240513)
    root = tmp_path / "state"
    bundle = make_bundle(["sleep", "30"])

    def create_config(cid: str) -> None:
        set_config(bundle, lambda c: c["linux"].update(cgroupsPath=f"/{oci_cgroup_parent}/{cid}"))

    durations = []
    for i in range(6):
        create_config(f"m{i}")
        t0 = time.monotonic()
        p = start_create(root, bundle, f"m{i}")
        assert p.wait(timeout=ANSWER) == 0
        durations.append(time.monotonic() - t0)
        assert oci(root, "delete", "--force", f"m{i}").returncode == 0
    length = max(durations[1:])         # the first one warms the page cache
    seen: collections.Counter[str] = collections.Counter()
    with subreaper() as children:
        for i in range(KILLS):
            cid = f"k{i}"
            create_config(cid)
            # One delay in each of KILLS equal slices of a create's length.
            delay = length * (i + rng.random()) / KILLS
            p = start_create(root, bundle, cid)
            time.sleep(delay)
            p.kill()
            p.wait()
            where = f"kill {i} after {delay * 1000:.1f} ms"
            # The spawn's clone holds a copy of create's fds from clone to its execveat of
            # the child program (a few system calls, nothing that waits): killed in that
            # window, create leaves the lock to it until then, and to nothing after.
            deadline = time.monotonic() + ANSWER
            while holders_of(root / cid) and time.monotonic() < deadline:
                time.sleep(0.001)
            assert holders_of(root / cid) == [], f"{where}: a process that outlived create keeps the lock"
            seen[status(root, cid)] += 1
            assert oci(root, "list", "--format", "json").returncode == 0, where
            r = oci(root, "delete", "--force", cid)
            assert r.returncode == 0, f"{where}: {r.stderr}"
            # Processes the kill orphaned that end on their own (a child program whose
            # parent vanished reads EOF on its go-ahead pipe and exits) get a moment.
            deadline = time.monotonic() + 5
            while (left := children()) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert left == [], f"{where}: processes left: {left}"
            assert not (root / cid).exists() and os.listdir(root) == [], f"{where}: {os.listdir(root)}"
            assert cgroup_dirs(oci_cgroup_parent, cid) == [], where
            assert mounts_under(tmp_path) == [], where
    # What state said after each kill (missing: killed before the directory appeared;
    # stopped: half-made; created: killed after it finished), for the run's report.
    request.node.user_properties.append(("create_length_ms", round(length * 1000, 1)))
    request.node.user_properties.append(("state_after_kill", dict(seen)))
