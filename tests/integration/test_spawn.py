"""Real spawns on the real kernel: namespaces, identity, stdio, waiting, timeouts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

import isolate
from isolate import _ops as O
from isolate import IdMap

pytestmark = pytest.mark.root


def sh(script: str, **kw: object) -> str:
    r = isolate.run(["sh", "-c", script], capture_output=True, check=True, **kw)
    return r.stdout.decode()


def ns_inode(pid: int | str, ns: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{ns}").st_ino


def test_new_pid_namespace_makes_the_child_pid_1() -> None:
    assert sh("echo $$", namespaces={"pid"}).strip() == "1"


def test_new_pid_namespace_hides_host_processes() -> None:
    # A fresh /proc in the new mount namespace lists only the sandbox's own processes.
    out = sh("mount -t proc proc /proc && for p in /proc/[0-9]*; do echo ${p#/proc/} $(cat $p/comm); done",
             namespaces={"pid", "mnt"})
    procs = dict(line.split(" ", 1) for line in out.splitlines())
    assert procs.get("1") == "sh"
    assert set(procs.values()) <= {"sh", "cat"}, procs


def test_hostname_is_set_in_new_uts_namespace_and_host_keeps_its_own() -> None:
    host = os.uname().nodename
    assert sh("hostname", namespaces={"uts"}, hostname="box-1").strip() == "box-1"
    assert os.uname().nodename == host


def test_new_net_namespace_has_only_loopback_up() -> None:
    out = sh("cat /proc/net/dev", namespaces={"net"})
    ifaces = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
    assert ifaces == ["lo"]
    flags = sh("cat /sys/class/net/lo/flags", namespaces={"net", "mnt"},
               ops=[O.Mount(b"sysfs", b"/sys", b"sysfs")])
    assert int(flags, 16) & 0x1  # IFF_UP


def test_every_namespace_type_is_new_in_the_child() -> None:
    names = sorted(isolate.NAMESPACES)
    script = "; ".join(f"stat -L -c %i /proc/self/ns/{n}" for n in names)
    out = sh(script, namespaces=set(names)).split()
    for name, ino in zip(names, out):
        assert int(ino) != ns_inode("self", name), name


def test_without_namespaces_the_child_shares_the_callers() -> None:
    out = sh("stat -L -c %i /proc/self/ns/net /proc/self/ns/mnt").split()
    assert [int(x) for x in out] == [ns_inode("self", "net"), ns_inode("self", "mnt")]


def test_uid_0_inside_maps_to_the_expected_host_uid() -> None:
    p = isolate.spawn(["sh", "-c", "id -u; read x"], namespaces={"user"}, stdin=isolate.PIPE,
                      stdout=isolate.PIPE,
                      uid_map=[IdMap(inside=0, outside=4242)], gid_map=[IdMap(inside=0, outside=4343)])
    with p:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == b"0"
        status = open(f"/proc/{p.pid}/status").read()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
        assert uid_line.split()[1:] == ["4242"] * 4
        assert gid_line.split()[1:] == ["4343"] * 4
        assert open(f"/proc/{p.pid}/uid_map").read().split() == ["0", "4242", "1"]
        p.stdin.write(b"\n")
        p.stdin.close()
    assert p.returncode == 0


def test_multi_range_maps_are_written_when_root() -> None:
    maps = [IdMap(inside=0, outside=100000, count=1000), IdMap(inside=1000, outside=5000, count=1)]
    out = sh("cat /proc/self/uid_map", namespaces={"user"}, uid_map=maps, gid_map=maps)
    assert [line.split() for line in out.splitlines()] == [["0", "100000", "1000"], ["1000", "5000", "1"]]


def test_default_user_namespace_maps_root_to_the_caller() -> None:
    out = sh("id -u; id -g; cat /proc/self/uid_map", namespaces={"user"}).split()
    assert out[:2] == ["0", "0"]
    assert out[2:] == ["0", str(os.geteuid()), "1"]


def test_user_group_groups_and_capabilities() -> None:
    out = sh("id -u; id -g; id -G; grep -E '^Cap(Eff|Bnd|Amb)' /proc/self/status",
             user=65534, group=65534, groups=[65534, 100], capabilities=["CAP_NET_BIND_SERVICE"])
    lines = out.split("\n")
    assert lines[0] == "65534" and lines[1] == "65534"
    assert sorted(lines[2].split()) == ["100", "65534"]
    caps = dict(line.split(":") for line in lines[3:6])
    bit = 1 << 10  # CAP_NET_BIND_SERVICE
    # A non-root user keeps capabilities only in its bounding set (as runc and Docker).
    assert {k: int(v.strip(), 16) for k, v in caps.items()} == {"CapEff": 0, "CapBnd": bit, "CapAmb": 0}
    out = sh("grep -E '^Cap(Eff|Bnd|Amb)' /proc/self/status", user=65534, group=65534, groups=[],
             capability_sets={k: ["CAP_NET_BIND_SERVICE"] for k in ("bounding", "effective", "permitted",
                                                                    "inheritable", "ambient")})
    caps = dict(line.split(":") for line in out.strip().split("\n"))
    assert {k: int(v.strip(), 16) for k, v in caps.items()} == {"CapEff": bit, "CapBnd": bit, "CapAmb": bit}


def test_no_new_privs_and_umask_and_rlimit_and_cwd(tmp_path) -> None:
    out = sh("grep NoNewPrivs /proc/self/status; umask; ulimit -n; pwd", no_new_privs=True,
             umask=0o027, rlimits={"nofile": (64, 128)}, cwd=tmp_path)
    lines = out.split("\n")
    assert lines[0].split() == ["NoNewPrivs:", "1"]
    assert lines[1] == "0027"
    assert lines[2] == "64"
    assert lines[3] == str(tmp_path)


def test_environment_is_exactly_what_was_given() -> None:
    out = isolate.run(["/usr/bin/env"], env={"A": "1", "B": "two words"}, capture_output=True).stdout
    assert sorted(out.decode().splitlines()) == ["A=1", "B=two words"]


def test_environment_defaults_to_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLATE_TEST_VAR", "xyz")
    assert "ISOLATE_TEST_VAR=xyz" in sh("env").splitlines()


def test_stdio_pipes_input_and_stderr_to_stdout() -> None:
    r = isolate.run(["sh", "-c", "cat; echo err >&2"], input=b"in", stdout=isolate.PIPE,
                    stderr=isolate.STDOUT)
    assert r.stdout == b"inerr\n" and r.stderr is None


def test_only_passed_fds_reach_the_child(tmp_path) -> None:
    f = open(tmp_path / "x", "w")
    r, w = os.pipe()
    os.set_inheritable(r, True)  # even inheritable fds are closed unless passed
    try:
        # The shell lists its own fds once it runs (not ls's, which has its directory open).
        out = sh("ls /proc/$$/fd; readlink /proc/$$/fd/9", pass_fds={9: f.fileno()})
        *fds, target = out.split()
        assert sorted(int(x) for x in fds) == [0, 1, 2, 9]
        assert target == str(tmp_path / "x")
    finally:
        f.close()
        os.close(r)
        os.close(w)


def test_overlapping_fd_map_swaps_stdout_and_stderr() -> None:
    r = isolate.run(["sh", "-c", "echo to-out; echo to-err >&2"], capture_output=True,
                    pass_fds={})
    assert r.stdout == b"to-out\n"
    # Swap: the child's 1 is our stderr pipe and its 2 our stdout pipe.
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    p = isolate.spawn(["sh", "-c", "echo A; echo B >&2"], stdout=err_w, stderr=out_w)
    os.close(out_w)
    os.close(err_w)
    p.wait()
    assert os.read(out_r, 100) == b"B\n" and os.read(err_r, 100) == b"A\n"
    os.close(out_r)
    os.close(err_r)


def test_exit_status_and_signal_like_subprocess() -> None:
    assert isolate.run(["sh", "-c", "exit 7"]).returncode == 7
    assert isolate.run(["sh", "-c", "kill -TERM $$"]).returncode == -signal.SIGTERM
    with pytest.raises(subprocess.CalledProcessError) as info:
        isolate.run(["false"], check=True)
    assert info.value.returncode == 1


def test_wait_timeout_then_kill_and_rusage() -> None:
    p = isolate.spawn(["sleep", "10"])
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.05)
    assert p.poll() is None
    p.kill()
    assert p.wait() == -signal.SIGKILL
    assert p.rusage is not None and p.pidfd == -1
    p.close()


def test_run_timeout_kills_the_whole_tree_without_pid_namespace() -> None:
    # A duration no other process on the machine uses marks the grandchild.
    marker = f"sleep 31.{os.getpid()}{time.monotonic_ns() % 100000}"
    with pytest.raises(subprocess.TimeoutExpired):
        isolate.run(["sh", "-c", f"{marker} & {marker}"], timeout=0.2)
    alive: list[str] = []
    for _ in range(100):
        alive = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).strip() == marker]
        if not alive:
            break
        time.sleep(0.01)
    assert not alive, "the background grandchild survived the timeout"


def _cmdline(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_run_timeout_kills_the_pid_namespace() -> None:
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        isolate.run(["sh", "-c", "sleep 30 & sleep 30"], namespaces={"pid"}, timeout=0.2)
    assert time.monotonic() - t0 < 10


def test_wait_async_through_the_pidfd() -> None:
    async def main() -> int:
        p = isolate.spawn(["sh", "-c", "exit 3"])
        return await p.wait_async()

    assert asyncio.run(main()) == 3


def test_send_signal_goes_through_the_pidfd() -> None:
    p = isolate.spawn(["sleep", "10"], namespaces={"pid"})
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL
    p.send_signal(signal.SIGKILL)  # after reaping: a no-op, never a recycled pid


def test_time_namespace_is_created() -> None:
    out = sh("stat -L -c %i /proc/self/ns/time", namespaces={"time"})
    assert int(out) != ns_inode("self", "time")


def test_cgroup_namespace_shows_root() -> None:
    out = sh("cat /proc/self/cgroup", namespaces={"cgroup"})
    assert all(line.endswith(":/") for line in out.splitlines())


def test_legacy_clone_fallback_works() -> None:
    from isolate import _plan as P
    from isolate._record import replace
    from isolate._spawn import execute
    from isolate.process import build_plan

    plan = build_plan(["/bin/sh", "-c", "exit $$"], namespaces={"pid", "uts"})
    plan = replace(plan, flags=plan.flags | P.PLAN_LEGACY_CLONE)
    s = execute(plan.pack())
    assert not s.clone3
    _, status = os.waitpid(s.pid, 0)
    os.close(s.pidfd)
    assert os.waitstatus_to_exitcode(status) == 1


def test_a_forked_child_is_the_callers_own_and_the_child_program_is_reaped() -> None:
    # Into a joined pid namespace the spawned process is forked by the child program
    # (Fork, CLONE_PARENT): it is our child, which waitpid can reap, in that namespace,
    # and the child program that forked it is gone, reaped by the spawn.
    from isolate import _plan as P
    from isolate._spawn import execute
    from isolate.process import build_plan

    holder = isolate.spawn(["sleep", "60"], namespaces={"pid"})
    try:
        with isolate.Namespace.of(holder.pid, "pid") as pidns:
            plan = build_plan(["/bin/sh", "-c", "exit $$"], join=[pidns], namespaces={"mnt"})
            assert plan.flags & P.PLAN_FORK and type(plan.ops[0]) is O.Fork
            s = execute(plan.pack())
        _, status = os.waitpid(s.pid, 0)
        os.close(s.pidfd)
        assert os.waitstatus_to_exitcode(status) == 2     # pid 2: the holder is pid 1 there
        # No zombie left to reap (the holder still runs): the child program was reaped.
        assert os.waitpid(-1, os.WNOHANG) == (0, 0)
    finally:
        holder.kill()
        holder.wait()


def test_die_with_parent_kills_the_child_when_the_parent_dies(tmp_path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import isolate, os, sys\n"
        "p = isolate.spawn(['sleep', '30'], die_with_parent=True, namespaces={'pid'})\n"
        "print(p.pid, flush=True)\n"
        "os._exit(0)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, check=True).stdout
    pid = int(out)
    for _ in range(200):
        if not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]:
            break
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_spawn_does_not_run_python_fork_hooks() -> None:
    calls: list[int] = []
    os.register_at_fork(after_in_child=lambda: calls.append(1), before=lambda: calls.append(2))
    isolate.run(["true"], namespaces={"pid"})
    assert calls == []


def test_joined_namespaces_entered_by_the_parent_thread_are_left_after_the_clone() -> None:
    # Join this process's own net and pid namespaces through fds; the spawning
    # thread enters them around the clone and must end up where it started.
    class Own:
        def __init__(self, type_: str, name: str) -> None:
            self.type = type_
            self.fd = os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)

        def fileno(self) -> int:
            return self.fd

    net, pid = Own("net", "net"), Own("pid", "pid")
    before = {n: os.stat(f"/proc/thread-self/ns/{n}").st_ino for n in ("net", "pid_for_children")}
    try:
        out = sh("stat -L -c %i /proc/self/ns/net /proc/self/ns/pid", join=[net, pid],
                 namespaces={"user"})
        assert [int(x) for x in out.split()] == [ns_inode("self", "net"), ns_inode("self", "pid")]
    finally:
        os.close(net.fd)
        os.close(pid.fd)
    assert {n: os.stat(f"/proc/thread-self/ns/{n}").st_ino for n in before} == before


def test_joining_a_time_namespace_works_from_a_threaded_process() -> None:
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with isolate.Namespace.create("time") as ns:
            out = sh("stat -L -c %i /proc/self/ns/time", join=[ns])
            assert int(out) == ns.inode
    finally:
        stop.set()
        t.join()
