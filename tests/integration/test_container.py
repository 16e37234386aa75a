"""Container on the real kernel: run/start/wait/exec, results, limits, teardown."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import isolate

pytestmark = [pytest.mark.root]

_CG = [pytest.param("v1", marks=pytest.mark.cgroup1), pytest.param("v2", marks=pytest.mark.cgroupv2)]


def cg_name(tag: str) -> str:
    return f"isolate-test-{tag}-{os.getpid()}"


def test_run_result_and_defaults() -> None:
    with isolate.Container(hostname="box") as c:
        r = c.run(["/bin/sh", "-c", "echo $$ $(hostname) $HOME; id -u; echo err >&2; "
                   "grep -E 'NoNewPrivs|Seccomp:' /proc/self/status; ls /sys/class/net; exit 7"])
    assert r.returncode == 7
    lines = r.stdout.decode().split("\n")
    assert lines[0] == "1 box /root"
    assert lines[1] == "0"
    assert "NoNewPrivs:\t1" in r.stdout.decode() and "Seccomp:\t2" in r.stdout.decode()
    assert lines[-2] == "lo"                      # only loopback in the net namespace
    assert r.stderr == b"err\n"
    assert r.wall_time > 0 and r.cpu_time >= 0
    assert not r.timed_out and not r.oom_killed
    assert r.root_mode == "pivot_root"


def test_own_network_namespace_without_a_user_namespace() -> None:
    # Made while the root is built and entered before sysfs is mounted: private, lo up,
    # and /sys shows it, not the caller's; the socket it came through is not left open.
    with isolate.Container(namespaces=isolate.DEFAULT_NAMESPACES - {"user"}) as c:
        r = c.run(["/bin/sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net; "
                   "cat /sys/class/net/lo/flags; ls /proc/self/fd | tr '\\n' ' '"])
    assert r.returncode == 0, r
    ns, net, flags, fds = r.stdout.decode().split("\n")[:4]
    assert ns.startswith("net:[") and ns != os.readlink("/proc/self/ns/net")
    assert net == "lo"
    assert int(flags, 16) & 1                     # IFF_UP
    assert sorted(int(x) for x in fds.split()) in ([0, 1, 2], [0, 1, 2, 3])   # (3: ls's own)


def test_signal_gives_negative_returncode() -> None:
    # Without a pid namespace: as pid 1 the command would ignore signals it has no handler for.
    with isolate.Container(namespaces=isolate.DEFAULT_NAMESPACES - {"pid"}) as c:
        c.start(["/bin/sleep", "60"])
        c.process.send_signal(signal.SIGTERM)
        r = c.wait(30)
    assert r.returncode == -signal.SIGTERM
    assert not r.timed_out


def test_timeout_kills_everything() -> None:
    with isolate.Container() as c:
        r = c.run(["/bin/sh", "-c", "sleep 100 & sleep 100"], timeout=0.5)
    assert r.timed_out
    assert r.returncode == -signal.SIGKILL


def test_env_cwd_user_and_input() -> None:
    with isolate.Container(env={"A": "1", "PATH": "/usr/bin:/bin"}, cwd="/tmp", user=1000,
                           group=1000) as c:
        r = c.run(["/bin/sh", "-c", "echo $A $(pwd) $(id -u):$(id -g); cat"], input=b"piped")
    assert r.stdout == b"1 /tmp 1000:1000\npiped", r


def test_capabilities_none_and_default() -> None:
    with isolate.Container(capabilities=[]) as c:
        r = c.run(["/bin/grep", "CapEff", "/proc/self/status"])
    assert r.stdout.split()[-1] == b"0000000000000000"
    # The OCI set; as root, whose container's root is not host root by default (userns
    # "auto"), less CAP_SETFCAP (the setid guard: see docs/guides/sandboxing.md).
    oci = isolate.container.OCI_DEFAULT_CAPS
    for userns, want in (("auto", oci - ({"CAP_SETFCAP"} if os.geteuid() == 0 else set())),
                         ("identity", oci)):
        if userns == "identity" and os.geteuid() != 0:
            continue
        with isolate.Container(userns=userns) as c:  # type: ignore[arg-type]
            r = c.run(["/bin/grep", "CapBnd", "/proc/self/status"])
        bnd = int(r.stdout.split()[-1], 16)
        assert bnd == sum(1 << isolate._plan.CAPABILITIES[n] for n in want), userns


def test_seccomp_profile_and_off() -> None:
    prof = isolate.SeccompProfile(default_action="allow", rules=(
        isolate.SyscallRule(names=("mkdir", "mkdirat"), action="errno", errno=13),))
    with isolate.Container(seccomp=prof) as c:
        r = c.run(["/bin/sh", "-c", "mkdir /tmp/x 2>&1; echo $?"])
    assert b"Permission denied" in r.stdout
    with isolate.Container(seccomp=None) as c:
        r = c.run(["/bin/grep", "Seccomp:", "/proc/self/status"])
    assert r.stdout.split()[-1] == b"0"


def test_seccomp_without_no_new_privs_is_loaded_while_privileged() -> None:
    # The default set lacks CAP_SYS_ADMIN, which loading a filter needs without
    # no_new_privs: the filter goes in before capabilities are dropped (as runc).
    with isolate.Container(no_new_privs=False, user=65534, group=65534) as c:
        r = c.run(["/bin/grep", "-E", "^(Seccomp|NoNewPrivs|CapBnd|Uid):", "/proc/self/status"])
    fields = dict(line.split(b":", 1) for line in r.stdout.splitlines())
    assert fields[b"Seccomp"].strip() == b"2" and fields[b"NoNewPrivs"].strip() == b"0"
    assert fields[b"Uid"].split()[0] == b"65534"
    assert not int(fields[b"CapBnd"], 16) & (1 << isolate._plan.CAPABILITIES["CAP_SYS_ADMIN"])


def test_capability_sets_are_applied_exactly() -> None:
    sets = {"bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"], "effective": ["CAP_NET_RAW"],
            "permitted": ["CAP_NET_RAW", "CAP_CHOWN"], "inheritable": ["CAP_NET_RAW"],
            "ambient": ["CAP_NET_RAW", "CAP_CHOWN"]}       # CHOWN is not inheritable: not ambient
    with isolate.Container(capability_sets=sets, user=1000, group=1000) as c:
        r = c.run(["/bin/grep", "^Cap", "/proc/self/status"])
    got = {k.decode(): int(v, 16) for k, v in (line.split(b":") for line in r.stdout.splitlines())}
    bit = {n: 1 << isolate._plan.CAPABILITIES[n] for n in ("CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL")}
    assert got == {"CapBnd": bit["CAP_CHOWN"] | bit["CAP_NET_RAW"] | bit["CAP_KILL"],
                   "CapPrm": bit["CAP_NET_RAW"], "CapEff": bit["CAP_NET_RAW"],
                   "CapInh": bit["CAP_NET_RAW"], "CapAmb": bit["CAP_NET_RAW"]}


def test_start_exec_and_wait() -> None:
    with isolate.Container(hostname="box") as c:
        c.start(["/bin/sh", "-c", "echo ready > /tmp/flag; exec sleep 60"])
        for _ in range(200):
            r = c.exec(["/bin/cat", "/tmp/flag"])
            if r.returncode == 0:
                break
            time.sleep(0.01)
        assert r.stdout == b"ready\n"
        r = c.exec(["/bin/sh", "-c", "hostname; echo $$; readlink /proc/1/exe; "
                    "grep -c . /proc/self/uid_map"])
        host, pid, exe, _ = r.stdout.decode().split()
        assert host == "box" and int(pid) > 1 and exe.endswith("sleep")
        c.kill()
        res = c.wait()
    assert res.returncode == -signal.SIGKILL


def test_pass_fds_and_other_fds_closed(tmp_path: Path) -> None:
    r_fd, w_fd = os.pipe()
    try:
        with isolate.Container() as c:
            r = c.run(["/bin/sh", "-c", "echo through >&5; ls /proc/self/fd"], pass_fds={5: w_fd})
        os.close(w_fd)
        w_fd = -1
        assert os.read(r_fd, 100) == b"through\n"
        assert sorted(int(x) for x in r.stdout.split()) in ([0, 1, 2, 3, 5], [0, 1, 2, 5])
    finally:
        os.close(r_fd)
        if w_fd >= 0:
            os.close(w_fd)


def test_namespaces_subset_and_host_net() -> None:
    with isolate.Container(net="host") as c:
        r = c.run(["/bin/sh", "-c", "readlink /proc/self/ns/net"])
    assert r.stdout.strip().decode() == os.readlink("/proc/self/ns/net")


def test_no_rootfs_keeps_host_tree() -> None:
    with isolate.Container(rootfs=None, cwd="/work") as c:
        r = c.run(["/bin/sh", "-c", "pwd; test -d /work && echo host"])
    assert r.stdout == b"/work\nhost\n"
    assert r.root_mode == "none"


def test_teardown_on_exception_kills_container() -> None:
    c = isolate.Container()
    with pytest.raises(RuntimeError):
        with c:
            c.start(["/bin/sleep", "60"])
            pid = c.pid
            raise RuntimeError("boom")
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert c.process is not None and c.process.returncode == -signal.SIGKILL


def test_exec_needs_running_container() -> None:
    with isolate.Container() as c:
        with pytest.raises(RuntimeError):
            c.exec(["/bin/true"])


def test_setup_failure_leaves_nothing(tmp_path: Path) -> None:
    """A step failing half-way (a missing program) raises and leaves no process or mount."""
    with isolate.Container() as c:
        with pytest.raises(isolate.ExecError):
            c.run(["/nonexistent/program"])
        assert c.process is None or c.process.returncode is not None


@pytest.mark.parametrize("hierarchy", _CG)
def test_limits_pause_resume_and_stats(hierarchy: str) -> None:
    limits = isolate.Limits(memory_max=256 << 20, pids_max=64)
    with isolate.Container(limits=limits, name=cg_name("pause")) as c:
        c.start(["/bin/sh", "-c", "while :; do echo x > /tmp/t; done"])
        c.pause()
        assert c.cgroup.procs()
        c.resume()
        c.kill()
        r = c.wait()
        assert r.returncode == -signal.SIGKILL
        assert r.peak_memory is not None and r.peak_memory > 0
        assert r.cpu_time > 0


@pytest.mark.parametrize("hierarchy", _CG)
def test_setup_failure_with_limits_removes_cgroup(hierarchy: str) -> None:
    limits = isolate.Limits(pids_max=16)
    name = cg_name("fail")
    with isolate.Container(limits=limits, name=name) as c:
        with pytest.raises(isolate.ExecError):
            c.run(["/nonexistent"])
        assert c.cgroup is None


def test_join_a_pooled_network_namespace() -> None:
    ns = isolate.DEFAULT_NAMESPACES - {"user", "net"}
    with isolate.NetnsPool(size=1) as pool, pool.take() as net:
        with isolate.Container(namespaces=ns, join=[net]) as c:
            r = c.run(["/bin/sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net"])
        inode = os.readlink(f"/proc/self/fd/{net.fileno()}")
    assert r.stdout.split() == [inode.encode(), b"lo"], r


def test_pooled_network_namespace_with_a_new_user_namespace() -> None:
    # The parent thread enters the pooled namespace around the clone, so it combines
    # with the default new user namespace; lo was brought up by the pool.
    with isolate.NetnsPool(size=1) as pool, pool.take() as net:
        with isolate.Container(net=net) as c:
            r = c.run(["/bin/sh", "-c", "readlink /proc/self/ns/net; cat /proc/net/dev; "
                       "cat /proc/self/uid_map"])
        inode = os.readlink(f"/proc/self/fd/{net.fileno()}")
    lines = r.stdout.decode().splitlines()
    assert lines[0] == inode, r
    assert [line.split(":")[0].strip() for line in lines[3:-1]] == ["lo"]
    # A user namespace of its own: root inside, its own block of host ids (userns="auto").
    assert lines[-1].split()[0] == "0" and int(lines[-1].split()[1]) >= 65536, r


def test_join_pid_with_a_new_user_namespace_is_refused() -> None:
    with isolate.Namespace.create("pid") as pid:
        with pytest.raises(isolate.ConfigError, match="user"):
            isolate.Container(join=[pid])


def test_container_dies_with_its_parent() -> None:
    """SIGKILL the Python process that started a container: PR_SET_PDEATHSIG (set by the
    spawning thread's child) takes the container's pid 1, and with it the pid namespace."""
    import subprocess
    import sys

    code = ("import isolate, sys\n"
            "c = isolate.Container()\n"
            "c.start(['/bin/sh', '-c', 'sleep 100 & exec sleep 100'])\n"
            "print(c.pid, flush=True)\n"
            "sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        pid = int(parent.stdout.readline())
        assert os.path.exists(f"/proc/{pid}")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        parent.kill()
        parent.wait()
        for _ in range(500):
            if not any(os.path.exists(f"/proc/{p}") for p in [pid, *children]):
                break
            time.sleep(0.01)
        assert not any(os.path.exists(f"/proc/{p}") for p in [pid, *children])
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        parent.stdin.close()


@pytest.mark.userns
def test_unprivileged_caller_gets_the_same_sandbox() -> None:
    """A caller without root (uid 65534 here) maps root inside to itself and still gets
    the host root, /proc, /dev, /tmp and the hostname."""
    import shutil
    import subprocess
    import sys

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop to an unprivileged user")
    code = ("import isolate\n"
            "with isolate.Container(hostname='box') as c:\n"
            "    r = c.run(['/bin/sh', '-c', 'id -u; hostname; cat /proc/self/uid_map; "
            "touch /tmp/x && echo tmp'])\n"
            "print(r.returncode, r.stdout.decode().split())\n")
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0 ['0', 'box', '0', '65534', '1', 'tmp']"


def test_net_takes_a_pooled_namespace() -> None:
    ns = isolate.DEFAULT_NAMESPACES - {"user"}
    with isolate.NetnsPool(size=1) as pool, pool.take() as net:
        with isolate.Container(namespaces=ns, net=net) as c:
            r = c.run(["/bin/readlink", "/proc/self/ns/net"])
        assert r.stdout.strip() == os.readlink(f"/proc/self/fd/{net.fileno()}").encode()
