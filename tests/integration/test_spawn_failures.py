"""Each op made to fail at its step: the right exception, the right step, nothing left behind.

The autouse leak check (tests/conftest.py) asserts after every test here that
no fd, mount, child or zombie is left.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import isolate
from isolate import _ops as O
from isolate import _plan as P
from isolate import errors
from isolate._record import replace

pytestmark = pytest.mark.root

NOPE = b"/nonexistent-isolate-test/x"


class FileAsNamespace:
    """A regular file posing as a namespace: setns must refuse it."""

    def __init__(self, type_: str) -> None:
        self.type = type_
        self.fd = os.open("/etc/hostname", os.O_RDONLY | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self.fd


# (id, spawn options, expected exception, expected errno, the failing op's class)
CASES = [
    ("unshare", dict(ops=[O.Unshare(flags=0x1)]), errors.NamespaceError, errno.EINVAL, O.Unshare),
    ("mount", dict(namespaces={"mnt"}, ops=[O.Mount(b"proc", NOPE, b"proc")]), errors.MountError,
     errno.ENOENT, O.Mount),
    ("bind", dict(namespaces={"mnt"}, ops=[O.Bind(NOPE, b"/tmp")]), errors.MountError,
     errno.ENOENT, O.Bind),
    ("mount_setattr", dict(namespaces={"mnt"}, ops=[O.MountSetattr(NOPE, attr_set=1)]),
     errors.MountError, errno.ENOENT, O.MountSetattr),
    ("mkdir", dict(ops=[O.Mkdir(NOPE)]), errors.MountError, errno.ENOENT, O.Mkdir),
    ("mknod", dict(ops=[O.Mknod(NOPE, mode=P.lib.S_IFIFO | 0o600)]), errors.MountError,
     errno.ENOENT, O.Mknod),
    ("symlink", dict(ops=[O.Symlink(b"/", NOPE)]), errors.MountError, errno.ENOENT, O.Symlink),
    ("write_file", dict(ops=[O.WriteFile(NOPE, b"x")]), errors.MountError, errno.ENOENT, O.WriteFile),
    ("pivot_root", dict(namespaces={"mnt"}, ops=[O.PivotRoot(NOPE)]), errors.MountError,
     errno.ENOENT, O.PivotRoot),
    ("chroot", dict(ops=[O.Chroot(NOPE)]), errors.MountError, errno.ENOENT, O.Chroot),
    ("sethostname", dict(namespaces={"uts"}, ops=[O.SetHostname(b"x" * 100)]),
     errors.NamespaceError, errno.EINVAL, O.SetHostname),
    ("setdomainname", dict(namespaces={"uts"}, ops=[O.SetDomainname(b"x" * 100)]),
     errors.NamespaceError, errno.EINVAL, O.SetDomainname),
    ("chdir", dict(cwd=NOPE), errors.MountError, errno.ENOENT, O.Chdir),
    ("setrlimit", dict(ops=[O.SetRlimit(7, 10, 5)]), errors.IdentityError, errno.EINVAL, O.SetRlimit),
    ("setsid", dict(ops=[O.SetPgid(), O.SetSid()]), errors.IdentityError, errno.EPERM, O.SetSid),
    ("setpgid", dict(ops=[O.SetSid(), O.SetPgid()]), errors.IdentityError, errno.EPERM, O.SetPgid),
    ("setctty", dict(stdin=isolate.DEVNULL, ops=[O.SetCtty(fd=0)]), errors.IdentityError,
     errno.ENOTTY, O.SetCtty),
    ("fdmap", dict(ops=[O.FdMap(((1000, 5),))]), errors.IdentityError, errno.EBADF, O.FdMap),
    ("setgroups", dict(namespaces={"user"}, ops=[O.SetGroups((99999,))]), errors.IdentityError,
     errno.EINVAL, O.SetGroups),
    ("setresgid", dict(ops=[O.SetResUid(65534, 65534, 65534), O.SetResGid(4321, 4321, 4321)]),
     errors.IdentityError, errno.EPERM, O.SetResGid),
    ("setresuid", dict(ops=[O.SetResUid(65534, 65534, 65534), O.SetResUid(0, 0, 0)]),
     errors.IdentityError, errno.EPERM, O.SetResUid),
    ("keepcaps", dict(ops=[O.KeepCaps(2)]), errors.IdentityError, errno.EINVAL, O.KeepCaps),
    ("cap_bound", dict(ops=[O.SetResUid(65534, 65534, 65534), O.CapBound(drop=1, last_cap=40)]),
     errors.IdentityError, errno.EPERM, O.CapBound),
    ("capset", dict(ops=[O.SetResUid(65534, 65534, 65534), O.CapSet(1, 1, 0)]),
     errors.IdentityError, errno.EPERM, O.CapSet),
    ("cap_ambient", dict(ops=[O.CapAmbient(raise_=1 << 21, last_cap=40)]), errors.IdentityError,
     errno.EPERM, O.CapAmbient),
    ("pdeathsig", dict(ops=[O.PdeathSig(1000)]), errors.IdentityError, errno.EINVAL, O.PdeathSig),
    ("seccomp", dict(no_new_privs=True, seccomp=b"\xff" * 8), errors.IdentityError, errno.EINVAL,
     O.Seccomp),
    ("loopback", dict(namespaces={"user"}, ops=[O.LoopbackUp()]), errors.NamespaceError,
     errno.EPERM, O.LoopbackUp),
    ("execve", dict(executable=NOPE), errors.ExecError, errno.ENOENT, O.Exec),
    # No namespace is on its way (the plan does not make one late): nothing to receive it from.
    ("netns_join", dict(ops=[O.NetnsJoin()]), errors.NamespaceError, errno.EBADF, O.NetnsJoin),
]


@pytest.mark.parametrize("options,exc,err,opcls", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_failing_op_raises_its_error_at_its_step(options: dict, exc: type, err: int, opcls: type) -> None:
    with pytest.raises(errors.SetupError) as info:
        isolate.run(["/bin/true"], **options)
    e = info.value
    assert type(e) is exc
    assert e.errno == err
    # run() adds stdio and process-group steps, so compare by op, not by index.
    options = {k: v for k, v in options.items() if k != "stdin"}
    plan = isolate.process.build_plan(["/bin/true"], process_group=True, **options)
    assert e.op in [op.describe() for op in plan.ops if type(op) is opcls], (e, plan.ops)
    part = f" {e.substep}:" if e.substep else ""   # the failing part of an op that has parts
    assert str(e).startswith(f"step {e.step} ({e.op}):{part} [Errno {err}]")


def test_setns_in_the_child_refuses_a_file_that_is_not_a_namespace() -> None:
    fake = FileAsNamespace("uts")
    try:
        with pytest.raises(errors.NamespaceError) as info:
            isolate.run(["/bin/true"], join=[fake])
        assert info.value.errno == errno.EINVAL
        assert info.value.op.startswith("setns uts")
    finally:
        os.close(fake.fd)


def test_parent_side_join_refuses_a_file_that_is_not_a_namespace() -> None:
    # A joined network namespace is entered by the spawning thread around the clone.
    fake = FileAsNamespace("net")
    before = {n: os.stat(f"/proc/thread-self/ns/{n}").st_ino for n in ("net", "pid_for_children")}
    try:
        with pytest.raises(errors.SpawnError) as info:
            isolate.run(["/bin/true"], join=[fake])
        assert info.value.errno == errno.EINVAL
        assert info.value.stage == "enter network namespace"
        after = {n: os.stat(f"/proc/thread-self/ns/{n}").st_ino for n in before}
        assert after == before
    finally:
        os.close(fake.fd)


def test_a_joined_pid_namespace_that_is_not_one_fails_at_the_fork() -> None:
    # A joined pid namespace is entered by the child program before it forks (Fork):
    # the caller's own namespaces never change.
    fake = FileAsNamespace("pid")
    before = {n: os.stat(f"/proc/thread-self/ns/{n}").st_ino for n in ("net", "pid_for_children")}
    try:
        with pytest.raises(errors.NamespaceError) as info:
            isolate.run(["/bin/true"], join=[fake])
        assert info.value.errno == errno.EINVAL
        assert info.value.op == f"fork into pid namespace (fd {fake.fd})"
        after = {n: os.stat(f"/proc/thread-self/ns/{n}").st_ino for n in before}
        assert after == before
    finally:
        os.close(fake.fd)


def _late_netns_plan() -> P.Plan:
    plan = isolate.process.build_plan(["/bin/true"], namespaces={"mnt", "net"},
                                      ops=[O.Mount(b"tmpfs", b"/tmp", b"tmpfs")] * 4)
    assert plan.flags & P.PLAN_NETNS_LATE
    return plan


def test_a_late_network_namespace_plan_never_execs_without_entering_it() -> None:
    # The namespace is not made at clone: a plan that lost its join must not run the
    # program in the caller's network namespace.
    plan = _late_netns_plan()
    plan = replace(plan, ops=[op for op in plan.ops if type(op) is not O.NetnsJoin])
    with pytest.raises(errors.ExecError) as info:
        isolate._spawn.execute(plan.pack())
    assert info.value.errno == errno.EINVAL and info.value.op.startswith("execve")


def test_a_network_namespace_the_parent_cannot_make_fails_at_the_join(tmp_path: Path) -> None:
    # In a user namespace of its own whose network namespace limit is 0, the parent's
    # thread gets ENOSPC making it: the child reports that errno at its join step.
    script = tmp_path / "limit.py"
    script.write_text(
        "import isolate\n"
        "from isolate import _ops as O\n"
        "open('/proc/sys/user/max_net_namespaces', 'w').write('0')\n"
        "try:\n"
        "    isolate.run(['/bin/true'], namespaces={'mnt', 'net'},\n"
        "                ops=[O.Mount(b'tmpfs', b'/tmp', b'tmpfs')] * 4)\n"
        "except isolate.errors.NamespaceError as e:\n"
        "    print(e.errno, e.op)\n")
    r = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, str(script)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{errno.ENOSPC} enter the new network namespace\n", r


def test_a_held_late_network_namespace_plan_makes_it_after_the_release() -> None:
    # A held child (before_release) gets its namespace thread only once released.
    plan = _late_netns_plan()
    seen: list[int] = []
    s = isolate._spawn.execute(plan.pack(), before_release=seen.append)
    try:
        _, status = os.waitpid(s.pid, 0)
    finally:
        os.close(s.pidfd)
    assert seen == [s.pid] and os.waitstatus_to_exitcode(status) == 0


def _kill_while_held(pid: int) -> None:
    """Kill a held child and wait, without reaping it, until it is gone (its sockets closed)."""
    os.kill(pid, 9)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


@pytest.mark.parametrize("late_netns", [False, True], ids=["plain", "late-netns"])
def test_a_held_child_killed_before_its_release_reports_its_death(late_netns: bool) -> None:
    # A memory cgroup's OOM killer can take a held child before its go-ahead: the
    # spawn then returns it as one that died before execve (its wait status is
    # SIGKILL), as it does unheld, not "release child: [Errno 32] Broken pipe".
    plan = _late_netns_plan() if late_netns else isolate.process.build_plan(
        ["/bin/true"], namespaces={"pid", "mnt"})
    before = set(os.listdir("/proc/self/fd"))
    s = isolate._spawn.execute(plan.pack(), before_release=_kill_while_held)
    try:
        _, status = os.waitpid(s.pid, 0)
    finally:
        os.close(s.pidfd)
    assert os.waitstatus_to_exitcode(status) == -9
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_caller_without_proc_still_gets_a_late_network_namespace(tmp_path: Path) -> None:
    # The parent's thread cannot open /proc/thread-self/ns/net in a mount namespace
    # without /proc: the child then makes the namespace itself (and brings lo up).
    script = tmp_path / "noproc.py"
    script.write_text(
        "import isolate\n"
        "from isolate import _ops as O\n"
        "r = isolate.run(['ip', '-o', 'link'], namespaces={'mnt', 'net'}, capture_output=True,\n"
        "                ops=[O.Mount(b'tmpfs', b'/tmp', b'tmpfs')] * 4)\n"
        "print(r.returncode, r.stdout.decode().strip())\n")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"umount -l /proc && {sys.executable} {script}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    code, line = r.stdout.strip().split(" ", 1)
    assert code == "0" and line.count("\n") == 0, r.stdout          # one interface
    assert ": lo: <" in line and ",UP" in line, r.stdout                  # lo, up


def test_execveat_on_a_bad_fd() -> None:
    plan = isolate.process.build_plan(["/bin/true"])
    plan = replace(plan, ops=(*plan.ops[:-1], O.ExecAt(fd=1000)))
    with pytest.raises(errors.ExecError) as info:
        isolate._spawn.execute(plan.pack())
    assert info.value.errno == errno.EBADF


def test_execveat_runs_a_program_from_an_fd() -> None:
    fd = os.open("/bin/sh", os.O_RDONLY | os.O_CLOEXEC)
    try:
        plan = isolate.process.build_plan(["sh", "-c", "exit 5"], keep_fds=[0, 1, 2])
        plan = replace(plan, ops=(*plan.ops[:-1], O.ExecAt(fd=fd)))
        s = isolate._spawn.execute(plan.pack())
        _, status = os.waitpid(s.pid, 0)
        os.close(s.pidfd)
        assert os.waitstatus_to_exitcode(status) == 5
    finally:
        os.close(fd)


def test_a_failed_spawn_closes_the_pipes_it_made() -> None:
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(errors.ExecError):
            isolate.run(["/nonexistent"], capture_output=True, input=b"x")
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_held_plan_that_fails_before_its_fork_closes_its_sockets() -> None:
    # iso_spawn has one way out: a child that reported a failure before the
    # fork leaves nothing open, whether or not the caller asked to hold it
    # (the go-ahead socket stayed open here, one per spawn).
    fake = FileAsNamespace("user")
    try:
        before = set(os.listdir("/proc/self/fd"))
        for _ in range(5):
            plan = P.Plan(ops=[O.SetNs(fd=fake.fd, nstype=P.NSTYPES["user"]), O.Fork(),
                               O.Exec((b"/bin/true",))],
                          argv=[b"true"], envp=None, flags=P.PLAN_FORK)
            with pytest.raises(errors.NamespaceError) as info:
                isolate._spawn.execute(plan.pack(), before_release=lambda pid: None)
            assert info.value.step == 0 and info.value.errno == errno.EINVAL
        assert set(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(fake.fd)


def test_parent_side_map_failure_is_a_spawn_error_and_kills_the_child() -> None:
    # A gid_map the kernel refuses (two lines mapping the same outside id are
    # caught in Python, so use an id above the kernel's range via a raw plan).
    plan = isolate.process.build_plan(["/bin/true"], namespaces={"user"})
    plan = replace(plan, gid_map=b"0 4294967295 1\n")
    with pytest.raises(errors.SpawnError) as info:
        isolate._spawn.execute(plan.pack())
    assert info.value.stage == "gid_map"
    assert info.value.errno == errno.EINVAL


def test_thousand_spawns_leave_no_fds_or_zombies() -> None:
    for _ in range(1000):
        isolate.run(["/bin/true"], namespaces={"pid"})


def test_eight_threads_spawning_at_once() -> None:
    errors_: list[BaseException] = []
    codes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(40):
                r = isolate.run(["sh", "-c", f"exit {(n + i) % 7}"], namespaces={"pid", "uts"},
                                capture_output=True)
                with lock:
                    codes.append(r.returncode - (n + i) % 7)
        except BaseException as e:  # collected and re-raised below
            errors_.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a spawning thread hung"
    assert not errors_
    assert codes == [0] * 320


RELOAD = """\
import os, sys, threading, isolate
from isolate import _spawn

def helper_fds():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:isolate-child"):
                out.append(int(fd))
        except OSError:
            pass
    return out

isolate.run(["/bin/true"])
failed = []
for _ in range(200):
    for fd in helper_fds():
        os.close(fd)          # the caller closes the child program's memfd behind our back
    start = threading.Barrier(8)

    def spawn():
        start.wait()
        try:
            _spawn._load_child()
            isolate.run(["/bin/true"])
        except Exception as e:
            failed.append(repr(e))

    threads = [threading.Thread(target=spawn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print(len(failed), len(helper_fds()), failed[:3])
"""


def test_threads_that_reload_the_child_program_at_once_all_spawn() -> None:
    # Eight threads find the child program's memfd gone and load it again at once: one
    # loads it, all spawn, and one memfd is left.  Before, a thread that lost the race
    # recorded its own copy's inode for the winner's fd: spawns failed (about 1 round in
    # 10) and later loads left memfds behind.  In a process of its own: its fds are its own.
    env = {**os.environ, "PYTHONPATH": str(Path(isolate.__file__).resolve().parent.parent)}
    r = subprocess.run([sys.executable, "-c", RELOAD], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "0 1 []\n"


def test_spawn_releases_the_gil_while_waiting_for_exec() -> None:
    # A Python thread keeps running while another thread spawns a child whose
    # setup blocks (writing into a FIFO nobody reads until the thread opens it).
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        fifo = os.path.join(d, "fifo")
        os.mkfifo(fifo)
        got: list[bytes] = []

        def reader() -> None:
            with open(fifo, "rb") as f:
                got.append(f.read())

        t = threading.Thread(target=reader)
        t.start()
        isolate.run(["/bin/true"], ops=[O.WriteFile(fifo.encode(), b"hello", oflags=0)])
        t.join(timeout=30)
        assert got == [b"hello"]
