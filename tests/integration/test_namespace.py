"""``Namespace`` on the real kernel: open, create/bind/remove, join, enter, and bad input."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import isolate
from isolate import ConfigError, Namespace, SpawnError, UnsupportedError
from isolate import namespace as nsmod

pytestmark = pytest.mark.root

TYPES = sorted(isolate.NAMESPACE_TYPES)
ENTERABLE = ["net", "uts", "ipc", "cgroup"]


def link(pid: int | str, t: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{t}")


def mountpoints() -> list[str]:
    return sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())


def inside(t: str, ns: list[Namespace] | Namespace, script: str | None = None) -> str:
    """Run a shell in the joined namespaces; by default it prints /proc/self/ns/<t>."""
    join = ns if isinstance(ns, list) else [ns]
    r = isolate.run(["sh", "-c", script or f"readlink /proc/self/ns/{t}"], join=join,
                    capture_output=True, check=True)
    return r.stdout.decode().strip()


@pytest.fixture(scope="module")
def holder() -> Iterator[isolate.Process]:
    """A process in a new namespace of every type (root inside maps to root outside)."""
    p = isolate.spawn(["sleep", "600"], namespaces=set(TYPES))
    try:
        yield p
    finally:
        p.kill()
        p.wait()
        p.close()


@pytest.fixture
def tmpdir_() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="isolate-test-ns-")
    try:
        yield d
    finally:
        os.rmdir(d)


# --- opening ----------------------------------------------------------------------


@pytest.mark.parametrize("t", TYPES)
def test_of_matches_the_proc_file_inode(t: str) -> None:
    with Namespace.of(os.getpid(), t) as ns:
        st = os.stat(f"/proc/{os.getpid()}/ns/{t}")
        assert (ns.type, ns.inode, ns.device) == (t, st.st_ino, st.st_dev)
        assert os.fstat(ns.fileno()).st_ino == st.st_ino


@pytest.mark.parametrize("t", TYPES)
def test_of_a_process_in_new_namespaces_sees_its_namespace(holder: isolate.Process, t: str) -> None:
    with Namespace.of(holder, t) as ns, Namespace.of(os.getpid(), t) as mine:
        assert ns.inode == os.stat(f"/proc/{holder.pid}/ns/{t}").st_ino
        assert ns.inode != mine.inode


def test_of_for_children_entries_name_the_plain_type(holder: isolate.Process) -> None:
    with Namespace.of(holder.pid, "pid_for_children") as p, Namespace.of(holder.pid, "time_for_children") as t:
        assert (p.type, t.type) == ("pid", "time")
        assert p.inode == os.stat(f"/proc/{holder.pid}/ns/pid").st_ino


@pytest.mark.parametrize("t", TYPES)
def test_from_path_reads_the_type_from_the_file(t: str) -> None:
    with Namespace.from_path(f"/proc/self/ns/{t}") as ns:
        assert ns.type == t
        assert ns.inode == os.stat(f"/proc/self/ns/{t}").st_ino
        assert ns.path == f"/proc/self/ns/{t}"


def test_from_path_refuses_another_type() -> None:
    with pytest.raises(ConfigError, match="is a net namespace, not uts"):
        Namespace.from_path("/proc/self/ns/net", type="uts")


def test_close_is_idempotent_and_fileno_then_fails() -> None:
    ns = Namespace.of(os.getpid(), "net")
    fd = ns.fileno()
    ns.close()
    ns.close()
    assert ns.closed
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(ConfigError, match="closed"):
        ns.fileno()


def test_dropping_an_open_namespace_warns() -> None:
    ns = Namespace.of(os.getpid(), "uts")
    fd = ns.fileno()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del ns
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)  # the descriptor is not leaked


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["netns", "", "NET", None, 3, "pid_for_children "])
def test_unknown_type_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="unknown namespace type"):
        Namespace.of(os.getpid(), bad)  # type: ignore[arg-type]


def test_create_with_unknown_type_makes_nothing(tmpdir_: str) -> None:
    with pytest.raises(ConfigError, match="'bogus'"):
        Namespace.create("bogus", os.path.join(tmpdir_, "x"))
    assert os.listdir(tmpdir_) == []


@pytest.mark.parametrize("pid", [0, -1, True, "1", 1.5, None])
def test_bad_pid_is_a_config_error(pid: object) -> None:
    with pytest.raises(ConfigError, match="pid"):
        Namespace.of(pid, "net")  # type: ignore[arg-type]


def test_missing_pid_is_a_config_error_naming_it() -> None:
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    with pytest.raises(ConfigError, match=f"no process with pid {pid}"):
        Namespace.of(pid, "net")


def test_exited_process_is_a_config_error() -> None:
    p = isolate.spawn(["true"])
    p.wait()
    with pytest.raises(ConfigError, match="exited"):
        Namespace.of(p, "net")


def test_zombie_is_a_config_error() -> None:
    p = isolate.spawn(["true"])
    # Exited but not reaped: /proc/<pid> exists, its namespaces are gone.
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    try:
        with pytest.raises(ConfigError, match=f"process {p.pid} has exited"):
            Namespace.of(p.pid, "net")
    finally:
        p.wait()


@pytest.mark.parametrize("make", ["regular", "dir", "fifo", "devnull", "missing", "nul",
                                  "proc_status"])
def test_path_that_is_not_a_namespace_is_a_config_error(tmpdir_: str, make: str) -> None:
    path = os.path.join(tmpdir_, "f")
    if make == "regular":
        Path(path).write_text("net:[4026531840]")
    elif make == "dir":
        os.mkdir(path)
    elif make == "fifo":
        os.mkfifo(path)  # must not block waiting for a writer
    elif make == "devnull":
        path = "/dev/null"
    elif make == "nul":
        path = "/proc/self/ns/net\0"
    elif make == "proc_status":
        path = "/proc/self/status"
    try:
        with pytest.raises(ConfigError) as e:
            Namespace.from_path(path)
        assert repr(path) in str(e.value)
    finally:
        if make == "dir":
            os.rmdir(path)
        elif make in ("regular", "fifo"):
            os.unlink(path)


def test_create_refuses_an_existing_file_and_a_missing_directory(tmpdir_: str) -> None:
    existing = os.path.join(tmpdir_, "taken")
    Path(existing).touch()
    try:
        with pytest.raises(ConfigError, match="already exists"):
            Namespace.create("net", existing)
        with pytest.raises(ConfigError, match="does not exist"):
            Namespace.create("net", os.path.join(tmpdir_, "no", "such"))
        with pytest.raises(ConfigError, match="only apply to a user namespace"):
            Namespace.create("net", os.path.join(tmpdir_, "n"),
                             uid_map=[isolate.IdMap(inside=0, outside=0)])
        with pytest.raises(ConfigError, match="overlap"):
            Namespace.create("user", os.path.join(tmpdir_, "u"),
                             uid_map=[isolate.IdMap(inside=0, outside=0, count=10),
                                      isolate.IdMap(inside=5, outside=100)])
        assert os.listdir(tmpdir_) == ["taken"]
    finally:
        os.unlink(existing)


# --- create / bind / remove ------------------------------------------------------------


@pytest.mark.parametrize("t", TYPES)
def test_create_binds_a_new_namespace_and_removes_everything(t: str) -> None:
    before = mountpoints()
    with Namespace.create(t) as ns:
        assert ns.type == t
        assert ns.path is not None and os.path.basename(ns.path) == t
        assert ns.inode != os.stat(f"/proc/self/ns/{t}").st_ino
        # The file is an nsfs bind mount that another opener sees as the same namespace.
        assert ns.path in mountpoints()
        with Namespace.from_path(ns.path) as again:
            assert (again.type, again.inode) == (t, ns.inode)
        path = ns.path
    assert not os.path.lexists(path)
    assert not os.path.lexists(os.path.dirname(path))
    assert mountpoints() == before


@pytest.mark.parametrize("t", ["net", "mnt", "pid"])
def test_create_at_a_given_path_removes_only_its_file(tmpdir_: str, t: str) -> None:
    path = os.path.join(tmpdir_, f"{t}ns")
    with Namespace.create(t, path) as ns:
        assert ns.path == path
        assert os.stat(path).st_ino == ns.inode
    assert os.listdir(tmpdir_) == []


@pytest.mark.parametrize("t", ["net", "pid", "user"])
def test_a_failed_bind_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmpdir_: str, t: str) -> None:
    def refuse(source: str | None, target: str, fstype: str | None, flags: int) -> None:
        raise PermissionError(1, "Operation not permitted", target)

    monkeypatch.setattr(nsmod, "_mount", refuse)
    with pytest.raises(SpawnError) as e:
        Namespace.create(t, os.path.join(tmpdir_, "x"))
    assert e.value.errno == 1
    assert os.listdir(tmpdir_) == []  # the leak guard checks children, mounts and fds


def test_a_namespace_bound_with_ip_netns_style_survives_its_creator(tmpdir_: str) -> None:
    # The helper child has exited: only the bind mount keeps the namespace alive.
    with Namespace.create("net", os.path.join(tmpdir_, "n")) as ns:
        out = inside("net", ns, "cat /proc/net/dev")
        ifaces = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
        assert ifaces == ["lo"]


def test_created_user_namespace_keeps_its_id_map() -> None:
    with Namespace.create("user", uid_map=[isolate.IdMap(inside=0, outside=0, count=1000)],
                          gid_map=[isolate.IdMap(inside=0, outside=0, count=1000)]) as ns:
        assert inside("user", ns, "cat /proc/self/uid_map").split() == ["0", "0", "1000"]


def test_created_pid_namespace_has_an_init_and_dies_on_close() -> None:
    with Namespace.create("pid") as ns:
        assert int(inside("pid", ns, "echo $$")) >= 2  # pid 1 is the namespace's idle init
        p = isolate.spawn(["sleep", "600"], join=[ns])
    # Closing killed the init, and with it every process in the namespace.
    assert p.wait(timeout=10) == -9
    p.close()


def test_created_mount_namespace_is_private_on_a_shared_parent(tmpdir_: str) -> None:
    before = mountpoints()
    nsmod._mount("tmpfs", tmpdir_, "tmpfs", 0)
    try:
        nsmod._mount(None, tmpdir_, None, isolate._plan.lib.MS_SHARED)
        os.mkdir(os.path.join(tmpdir_, "sub"))
        # A file straight on the shared mount point cannot be made private without
        # changing a mount we do not own.
        with pytest.raises(ConfigError, match="shared mount"):
            Namespace.create("mnt", os.path.join(tmpdir_, "m"))
        path = os.path.join(tmpdir_, "sub", "m")
        with Namespace.create("mnt", path) as ns:
            info = Path("/proc/self/mountinfo").read_text().splitlines()
            sub = [line for line in info if line.split()[4] == os.path.join(tmpdir_, "sub")]
            assert sub and "shared:" not in sub[-1].split(" - ")[0]
            # Inside, the copy of the shared tmpfs does not propagate back to the host.
            child = inside("mnt", ns, "cat /proc/self/mountinfo")
            lines = [line for line in child.splitlines() if line.split()[4] == tmpdir_]
            assert lines and all("shared:" not in line.split(" - ")[0] for line in lines)
        assert not os.path.exists(path)
    finally:
        if os.path.isdir(os.path.join(tmpdir_, "sub")):
            os.rmdir(os.path.join(tmpdir_, "sub"))
        nsmod._umount(tmpdir_)
    assert mountpoints() == before


# --- spawning into namespaces -----------------------------------------------------------


@pytest.mark.parametrize("t", TYPES)
def test_spawn_join_puts_the_child_in_that_namespace(holder: isolate.Process, t: str) -> None:
    with Namespace.of(holder, t) as ns:
        assert inside(t, ns) == link(holder.pid, t) == f"{t}:[{ns.inode}]"


@pytest.mark.parametrize("t", TYPES)
def test_spawn_join_a_created_namespace(t: str) -> None:
    with Namespace.create(t) as ns:
        assert inside(t, ns) == f"{t}:[{ns.inode}]"


def test_spawn_join_every_namespace_at_once_including_user(holder: isolate.Process) -> None:
    opened = [Namespace.of(holder, t) for t in TYPES]
    try:
        script = "; ".join(f"readlink /proc/self/ns/{t}" for t in TYPES)
        assert inside("", opened, script).split() == [link(holder.pid, t) for t in TYPES]
    finally:
        for ns in opened:
            ns.close()


def test_spawn_join_user_and_net_of_different_processes(holder: isolate.Process) -> None:
    with Namespace.of(holder, "user") as user, Namespace.create("net") as net:
        out = inside("", [user, net], "readlink /proc/self/ns/user /proc/self/ns/net").split()
        assert out == [link(holder.pid, "user"), f"net:[{net.inode}]"]


# --- entering --------------------------------------------------------------------------


@pytest.mark.parametrize("t", ENTERABLE)
def test_entered_moves_only_this_thread_and_back(t: str) -> None:
    mine = link("thread-self", t)
    seen: list[str] = []
    go = threading.Event()

    def look() -> None:
        go.wait()
        seen.append(link("thread-self", t))

    other = threading.Thread(target=look)
    other.start()
    try:
        with Namespace.create(t) as ns:
            with ns.entered() as same:
                assert same is ns
                assert link("thread-self", t) == f"{t}:[{ns.inode}]"
                go.set()
                other.join()
            assert link("thread-self", t) == mine
    finally:
        go.set()
        other.join()
    # A thread that already existed stayed where it was.
    assert seen == [mine]


def test_entered_uts_changes_the_hostname_and_restores_it() -> None:
    host = socket.gethostname()
    with Namespace.create("uts") as ns:
        with ns.entered():
            socket.sethostname("isolate-entered")
            assert socket.gethostname() == "isolate-entered"
        assert socket.gethostname() == host
        # The name stays with the namespace, as children joining it see.
        assert inside("uts", ns, "cat /proc/sys/kernel/hostname") == "isolate-entered"
    assert socket.gethostname() == host


def test_entered_net_sees_only_loopback_and_restores_on_error() -> None:
    host_ifaces = {name for _, name in socket.if_nameindex()}
    with Namespace.create("net") as ns:
        with pytest.raises(KeyError):
            with ns.entered():
                assert {name for _, name in socket.if_nameindex()} == {"lo"}
                raise KeyError("leave by exception")
        assert {name for _, name in socket.if_nameindex()} == host_ifaces


def test_entered_time_in_a_single_threaded_process() -> None:
    code = (
        "import os, isolate\n"
        "with isolate.Namespace.create('time') as ns:\n"
        "    before = os.readlink('/proc/self/ns/time')\n"
        "    with ns.entered():\n"
        "        print(os.readlink('/proc/self/ns/time') == f'time:[{ns.inode}]')\n"
        "    print(os.readlink('/proc/self/ns/time') == before)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]


def test_entered_time_with_threads_is_unsupported() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        with Namespace.create("time") as ns:
            mine = link("thread-self", "time")
            with pytest.raises(UnsupportedError, match="single-threaded"):
                with ns.entered():
                    pass
            assert link("thread-self", "time") == mine
    finally:
        stop.set()
        worker.join()


@pytest.mark.parametrize("t,why", [("mnt", "thread"), ("user", "single-threaded"),
                                   ("pid", "children")])
def test_entered_mnt_user_pid_is_unsupported_and_says_why(t: str, why: str) -> None:
    with Namespace.of(os.getpid(), t) as ns:
        with pytest.raises(UnsupportedError, match=why) as e:
            ns.entered()
        assert "join=" in str(e.value)
        assert link("thread-self", t) == f"{t}:[{ns.inode}]"


def test_entered_on_a_closed_namespace_is_a_config_error() -> None:
    ns = Namespace.of(os.getpid(), "uts")
    ns.close()
    with pytest.raises(ConfigError, match="closed"):
        with ns.entered():
            pass


def test_iproute2_sees_a_created_net_namespace() -> None:
    ip = shutil.which("ip")
    assert ip is not None, "iproute2 is in .ci/packages.txt"
    made_dir = not os.path.isdir("/run/netns")
    if made_dir:
        os.mkdir("/run/netns")
    try:
        with Namespace.create("net", "/run/netns/isolate-test-ip") as ns:
            r = subprocess.run([ip, "netns", "exec", "isolate-test-ip", "readlink",
                                "/proc/self/ns/net"], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == f"net:[{ns.inode}]"
            listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True,
                                    timeout=30).stdout
            assert "isolate-test-ip" in listed
    finally:
        if made_dir:
            os.rmdir("/run/netns")
