"""Escapes through the OCI runtime (issue 12: escapes 2, 4 and 5), each done for real.

Every attack goes through the real command line (``isolate-oci`` next to
``sys.executable``), with a busybox bundle (conftest's ``make_bundle``) and,
where busybox cannot do it, ``oci_probe.c``: a static C program the test
builds into the bundle's rootfs, so the attacker's program is the image's own.
Each attack also runs against runc and crun, and the table printed at the end of
the run (``comparison``) says which of them stopped it; the isolate case asserts
that it was stopped.

Escape 5: a startContainer hook is a program of the image; it must run as the
container's process would (credentials, capabilities, no_new_privs, seccomp,
rlimits, umask, cgroup), not with the runtime's privileges, so it cannot read
or write a host file through open_by_handle_at.

Escape 2 (CVE-2024-21626 class): a working directory given as a magic link
(``/proc/self/fd/N``), directly or through a symlink the container planted in
place of its configured cwd, must not land the process in a host directory.

Escape 4 (TIOCSTI, CVE-2017-5226 class): a process started without a terminal
must not share the caller's session, whose terminal it could type into.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tty
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from isolate._registry import proc_start_time

pytestmark = [pytest.mark.root]

OCI = str(Path(sys.executable).parent / "isolate-oci")
TOOLS = ("isolate", "runc", "crun")
HERE = Path(__file__).parent
TIMEOUT = 60
# The default spec's capabilities (runc's `spec`), as a /proc/<pid>/status mask.
CAPS = {"CAP_AUDIT_WRITE": 29, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10}
CAP_MASK = sum(1 << bit for bit in CAPS.values())


# --- the runtimes -------------------------------------------------------------------


@dataclass
class Runtime:
    """One OCI runtime's command line with its own --root; ``cleanup`` force-deletes what it made."""

    name: str
    argv: list[str]
    ids: set[str] = field(default_factory=set)

    def command(self, *args: str) -> list[str]:
        """The full command line for ``args`` (a verb and its arguments)."""
        if args and args[0] in ("run", "create"):
            self.ids.add(args[-1])
        return [*self.argv, *args]

    def __call__(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        if "stdout" not in kw and "stderr" not in kw:
            kw["capture_output"] = True
        return subprocess.run(self.command(*args), text=True, timeout=TIMEOUT, check=False, **kw)

    def ok(self, *args: str, **kw: Any) -> str:
        """Run ``args``; fail the test (naming the runtime) if it does not succeed."""
        r = self(*args, **kw)
        assert r.returncode == 0, f"{self.name} {' '.join(args)}: {r.returncode} {r.stderr}"
        return r.stdout or ""

    def cleanup(self) -> None:
        for cid in sorted(self.ids):
            init = self._init(cid)
            self("delete", "--force", cid)
            # crun without cgroups (--cgroup-manager=disabled) and without a pid
            # namespace leaves the init of a force-deleted container running: end it,
            # by pid, if it is still the same process (its start time).
            if init is not None and proc_start_time(init[0]) == init[1]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(init[0], signal.SIGKILL)

    def _init(self, cid: str) -> tuple[int, int] | None:
        r = self("state", cid)
        try:
            pid = int(json.loads(r.stdout)["pid"])
        except (ValueError, KeyError, TypeError):
            return None
        start = proc_start_time(pid) if pid > 0 else None
        return (pid, start) if start is not None else None




@pytest.fixture
def runtime(tmp_path: Path, oci_cgroup_parent: str) -> Iterator[Callable[[str], Runtime]]:
    """``runtime(name)``: isolate-oci, runc or crun, each with a state root under ``tmp_path``.

    crun 1.8 refuses hybrid cgroup hosts; as in the benchmarks (cases.crun_view) it
    runs in a mount namespace of ours whose /sys/fs/cgroup is a cgroup2 mount, with
    ``--cgroup-manager=disabled``.  A runtime that cannot be found fails the test.
    (``oci_cgroup_parent``: its check of leftovers runs after the containers are deleted.)
    """
    made: list[Runtime] = []
    holders: list[subprocess.Popen[bytes]] = []

    def get(name: str) -> Runtime:
        root = str(tmp_path / f"state-{name}")
        if name == "isolate":
            rt = Runtime(name, [OCI, "--root", root])
        else:
            exe = shutil.which(name)
            assert exe is not None, f"{name} is not installed: the comparison cannot run"
            flags: list[str] = []
            prefix: list[str] = []
            if name == "crun" and _hybrid():
                holder = subprocess.Popen(
                    ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     "mount -t cgroup2 cgroup2 /sys/fs/cgroup && echo ready && exec sleep 100000"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                holders.append(holder)
                assert holder.stdout is not None and holder.stdout.readline() == b"ready\n", \
                    "no mount namespace with cgroup2 at /sys/fs/cgroup could be made for crun"
                prefix = ["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "--"]
                flags = ["--cgroup-manager=disabled"]
            rt = Runtime(name, [*prefix, exe, *flags, "--root", root])
        made.append(rt)
        return rt

    try:
        yield get
    finally:
        for rt in made:
            rt.cleanup()
        for holder in holders:
            holder.kill()
            holder.wait()
            assert holder.stdout is not None
            holder.stdout.close()


def detached(rt: Runtime, *args: str, **kw: Any) -> None:
    """A verb that leaves a container holding our stdio (create, run --detach): its stdout
    is /dev/null and its stderr a file, so nothing waits for the container to close a pipe."""
    with tempfile.TemporaryFile("w+") as err:
        r = rt(*args, stdout=subprocess.DEVNULL, stderr=err, **kw)
        err.seek(0)
        assert r.returncode == 0, f"{rt.name} {' '.join(args)}: {r.returncode} {err.read()}"


def _hybrid() -> bool:
    from isolate.cgroup import detect

    return detect().kind == "hybrid"


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """oci_probe.c built static (it runs in a busybox image and on the host)."""
    out = tmp_path_factory.mktemp("probe") / "oci_probe"
    subprocess.run(["gcc", "-static", "-O1", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(HERE / "oci_probe.c")], check=True)
    return out


def bundle_for(tool: str, make_bundle: Callable[..., Path], args: list[str],
               edit: Callable[[dict[str, Any]], None] | None = None, *, name: str | None = None) -> Path:
    """conftest's ``make_bundle`` for ``tool`` (its own rootfs copy and cgroup, both called
    ``name``, default ``tool``), readable by all three.

    The config says ociVersion 1.0.2: crun 1.8 refuses the 1.2.0 of ``isolate-oci spec``.
    """
    def edit_all(c: dict[str, Any]) -> None:
        c["ociVersion"] = "1.0.2"
        if edit is not None:
            edit(c)

    return make_bundle(args, edit=edit_all, name=name or tool)


def _report(text: str) -> dict[str, str]:
    """The probe's "key value" lines (keys end before the first blank or tab)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.replace("\t", " ").partition(" ")
        out[key.rstrip(":")] = value.strip()
    return out


# --- escape 5: startContainer hooks -------------------------------------------------

HOOK_SECCOMP = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    # A harmless syscall answered with a chosen errno: the hook's filter is this one.
    "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EBADFD}],
}
HOOK_RLIMIT = (123, 456)


@pytest.mark.parametrize("tool", TOOLS)
def test_start_container_hook_runs_as_the_containers_process(
        tool: str, runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path], probe: Path,
        tmp_path: Path, comparison: Callable[[str, str, bool, str], None]) -> None:
    """Tried: a startContainer hook that is the image's own program opens a host file by
    its handle (open_by_handle_at, which needs CAP_DAC_READ_SEARCH) to read and append
    to it, and reports what it runs as.
    Stopped by: the hook runs as the container's process would: its user, groups,
    umask, capabilities (the config's: no CAP_DAC_READ_SEARCH, so EPERM),
    no_new_privs, rlimits, seccomp filter (the config's, seen by its errno for
    sysinfo) and the container's cgroup."""
    host = tmp_path / "host"
    host.mkdir()
    secret = host / "secret"
    secret.write_text("host secret\n")
    handle = subprocess.run([str(probe), "handle", str(secret)], capture_output=True, text=True,
                            check=True).stdout.split()

    def edit(c: dict[str, Any]) -> None:
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [1001, 1002], "umask": 0o027}
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": HOOK_RLIMIT[0], "hard": HOOK_RLIMIT[1]}]
        c["process"]["noNewPrivileges"] = True
        # Every set: ambient ones (what a non-root user keeps across execve) must be inheritable.
        c["process"]["capabilities"] = {k: sorted(CAPS) for k in ("bounding", "effective", "permitted",
                                                                  "inheritable", "ambient")}
        c["linux"]["seccomp"] = HOOK_SECCOMP
        c["hooks"] = {"startContainer": [{"path": "/probe", "args": [
            "probe", "hook", handle[0], handle[1], "/srv/hook.out"]}]}

    # The container's own process records its cgroup for the comparison, after the hook.
    bundle = bundle_for(tool, make_bundle, ["sh", "-c", "cat /proc/self/cgroup > /srv/init.cgroup"], edit)
    shutil.copy(probe, bundle / "rootfs" / "probe")
    os.chmod(bundle / "rootfs" / "srv", 0o777)
    rt = runtime(tool)
    rt.ok("run", "--bundle", str(bundle), "hooked")
    out = bundle / "rootfs" / "srv" / "hook.out"
    assert out.exists(), f"{tool}: the hook did not run"
    text = out.read_text()
    r = _report(text)
    assert r.get("done") == "1", f"{tool}: the hook did not finish: {text}"
    init_cgroup = (bundle / "rootfs" / "srv" / "init.cgroup").read_text().splitlines()
    hook_cgroup = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("/proc/self/cgroup ")]

    seen = {
        "open_by_handle_at read": r["read-errno"], "open_by_handle_at write": r["write-errno"],
        "Uid": r["Uid"].split(), "Gid": r["Gid"].split(), "Groups": r["Groups"].split(),
        "Umask": r["Umask"], "CapEff": int(r["CapEff"], 16), "CapPrm": int(r["CapPrm"], 16),
        "CapBnd": int(r["CapBnd"], 16), "CapAmb": int(r["CapAmb"], 16), "NoNewPrivs": r["NoNewPrivs"], "Seccomp": r["Seccomp"],
        "sysinfo errno": r["sysinfo"], "Max open files": r["Max"].split()[2:4],
        "cgroup is the container's": hook_cgroup == init_cgroup,
    }
    want = {
        "open_by_handle_at read": str(errno.EPERM), "open_by_handle_at write": str(errno.EPERM),
        "Uid": ["1000"] * 4, "Gid": ["1000"] * 4, "Groups": ["1001", "1002"], "Umask": "0027",
        "CapEff": CAP_MASK, "CapPrm": CAP_MASK, "CapBnd": CAP_MASK, "CapAmb": CAP_MASK, "NoNewPrivs": "1", "Seccomp": "2",
        "sysinfo errno": str(errno.EBADFD), "Max open files": [str(v) for v in HOOK_RLIMIT],
        "cgroup is the container's": True,
    }
    stopped = r["read-errno"] != "0" and r["write-errno"] != "0" and secret.read_text() == "host secret\n"
    wrong = {k: v for k, v in seen.items() if v != want[k]}
    comparison("startContainer hook: host file via open_by_handle_at", tool, stopped,
               f"read errno {r['read-errno']}, write errno {r['write-errno']}; differs from the "
               f"container's process: {wrong or 'nothing'}")
    if tool == "isolate":
        assert secret.read_text() == "host secret\n"
        assert "read-data" not in r, r
        assert seen == want


def test_a_start_container_hook_past_its_timeout_is_killed_with_what_it_started(
        runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path]) -> None:
    """A hook that outlives its timeout fails start; it and the processes it started (its
    session) are killed, and the container's own process is left as it was (created)."""
    def edit(c: dict[str, Any]) -> None:
        c["hooks"] = {"startContainer": [{"path": "/bin/sh", "timeout": 1, "args": [
            "sh", "-c", "sleep 1000.5 & exec sleep 1000.6"]}]}

    bundle = bundle_for("isolate", make_bundle, ["sleep", "300"], edit)
    rt = runtime("isolate")
    detached(rt, "create", "--bundle", str(bundle), "c1")
    r = rt("start", "c1")
    assert (r.returncode, r.stderr) == (1, "isolate-oci: start: hooks.startContainer[0] (/bin/sh): "
                                           "timed out after 1 s\n")
    assert json.loads(rt.ok("state", "c1"))["status"] == "created"
    assert [int(p) for p in rt.ok("ps", "--format", "json", "c1").strip("[]\n").split(",")] == \
        [json.loads(rt.ok("state", "c1"))["pid"]]


# --- escape 2: working directories through magic links -------------------------------

FDS = range(3, 21)


@dataclass
class Escape:
    """The would-be host target of a cwd attack and where its writes landed."""

    tmp: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        # The marker directory: the runtime's cwd, and an fd the caller leaves open in it
        # (not close-on-exec, as a careless shim would), so /proc/self/fd/N names it.
        self.marker = self.tmp / "marker"
        self.marker.mkdir()
        (self.marker / "keep").write_text("host\n")
        self.fd = os.open(self.marker, os.O_RDONLY | os.O_DIRECTORY)
        os.set_inheritable(self.fd, True)

    def close(self) -> None:
        os.close(self.fd)

    def script(self, name: str) -> list[str]:
        """sh writing ``name`` in its cwd and, should the cwd be outside the root, in the
        marker directory through ``..`` from there."""
        climb = "../" * 16 + str(self.marker).lstrip("/")
        return ["sh", "-c", f"echo escaped > {name}-{self.token}; echo escaped > {climb}/{name}-{self.token}"]

    def landed(self, name: str) -> tuple[list[Path], list[Path]]:
        """(files written on the host, files written inside a bundle's rootfs) for ``name``."""
        pattern = f"{name}-{self.token}"
        found = sorted(self.tmp.rglob(pattern)) + sorted(Path("/").glob(pattern))
        inside = [p for p in found if p.is_relative_to(self.tmp) and "rootfs" in p.relative_to(self.tmp).parts]
        return [p for p in found if p not in inside], inside

    def run(self, rt: Runtime, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``rt`` with the marker directory as its cwd and the marker fd open."""
        return rt(*args, cwd=self.marker, pass_fds=[self.fd], **kw)


@pytest.fixture
def escape(tmp_path: Path) -> Iterator[Escape]:
    e = Escape(tmp_path)
    try:
        yield e
    finally:
        e.close()


def _outcome(escape: Escape, name: str, r: subprocess.CompletedProcess[str]) -> str:
    """"host" (the attack wrote on the host), "inside" (it stayed in the root) or "refused: ..."."""
    host, inside = escape.landed(name)
    if host:
        return f"host: {[str(p) for p in host]}"
    if inside:
        return "inside"
    return f"refused: {r.returncode} {r.stderr.strip()}"


def _judge(tool: str, attack: str, escape: Escape, outcomes: dict[str, str],
           comparison: Callable[[str, str, bool, str], None]) -> None:
    escaped = {k: v for k, v in outcomes.items() if v.startswith("host")}
    comparison(attack, tool, not escaped, f"escaped with {sorted(escaped)}: {escaped}" if escaped else
               f"each refused or stayed inside: {outcomes}")
    if tool == "isolate":
        assert not escaped, outcomes
        assert sorted(p.name for p in escape.marker.iterdir()) == ["keep"]
        for what, outcome in outcomes.items():
            # Refused with one line naming the step (entering or making the cwd), or done inside.
            assert outcome == "inside" or (
                outcome.startswith("refused: 1 isolate-oci:") and "\n" not in outcome
                and ("chdir" in outcome or "mkdir" in outcome)), (what, outcome)


def _sleeping(tool: str, make_bundle: Callable[..., Path], rt: Runtime, cid: str,
              edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A running container ``cid`` (``sleep``); its stdio is not ours to wait on."""
    bundle = bundle_for(tool, make_bundle, ["sleep", "300"], edit)
    detached(rt, "run", "--detach", "--bundle", str(bundle), cid)
    return bundle


@pytest.mark.parametrize("tool", TOOLS)
def test_exec_cwd_through_proc_self_fd_stays_in_the_container(
        tool: str, runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path], escape: Escape,
        comparison: Callable[[str, str, bool, str], None]) -> None:
    """Tried: ``exec --cwd /proc/self/fd/N`` for every N from 3 to 20 (the runtime's
    state directory, namespace and cgroup fds, and a directory fd its caller left open),
    then write a file there and, through ``..``, in the host's marker directory.
    Stopped by: the cwd is opened inside the container's root with
    RESOLVE_NO_MAGICLINKS: /proc/self/fd/N is refused (ELOOP), or names no file."""
    rt = runtime(tool)
    _sleeping(tool, make_bundle, rt, "c1")
    outcomes = {}
    for n in FDS:
        r = escape.run(rt, "exec", "--cwd", f"/proc/self/fd/{n}", "c1", *escape.script(f"fd{n}"))
        outcomes[f"fd {n}"] = _outcome(escape, f"fd{n}", r)
    _judge(tool, "exec --cwd /proc/self/fd/N", escape, outcomes, comparison)


PLANTED = [f"/proc/self/fd/{n}" for n in FDS] + [
    "../../../../../../../..", "/", "/proc/self/root", "/proc/1/root", "/proc/self/cwd"]


@pytest.mark.parametrize("tool", TOOLS)
def test_exec_into_a_planted_cwd_symlink_stays_in_the_container(
        tool: str, runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path], escape: Escape,
        comparison: Callable[[str, str, bool, str], None]) -> None:
    """Tried: the container replaces its configured cwd (/work) with a symlink to
    /proc/self/fd/N (N from 3 to 20), a ``..`` chain, ``/``, /proc/self/root,
    /proc/1/root or /proc/self/cwd; then the operator runs a plain ``exec`` (no --cwd)
    that writes a file in its cwd and, through ``..``, in the host's marker directory.
    Stopped by: the cwd is resolved inside the root (symlinks and ``..`` stay in it) and
    magic links are refused."""
    rt = runtime(tool)
    _sleeping(tool, make_bundle, rt, "c1", edit=lambda c: c["process"].update(cwd="/work"))
    outcomes = {}
    for i, target in enumerate(PLANTED):
        # The container's own process plants the link (exec'd with a harmless cwd).
        rt.ok("exec", "--cwd", "/", "c1", "sh", "-c", f"rm -rf /work && ln -s {target} /work")
        r = escape.run(rt, "exec", "c1", *escape.script(f"link{i}"))
        outcomes[target] = _outcome(escape, f"link{i}", r)
    _judge(tool, "exec into a cwd the container made a symlink", escape, outcomes, comparison)


@pytest.mark.parametrize("tool", TOOLS)
def test_run_with_process_cwd_through_proc_self_fd_stays_in_the_container(
        tool: str, runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path], escape: Escape,
        comparison: Callable[[str, str, bool, str], None]) -> None:
    """Tried: a config whose process.cwd is /proc/self/fd/N (N from 3 to 20; the attack
    of CVE-2024-21626 on runc's create), run in the foreground.
    Stopped by: create makes and enters the cwd inside the root without magic links."""
    rt = runtime(tool)
    bundle = bundle_for(tool, make_bundle, ["true"])
    config = json.loads((bundle / "config.json").read_text())
    outcomes = {}
    for n in FDS:
        config["process"]["cwd"] = f"/proc/self/fd/{n}"
        config["process"]["args"] = escape.script(f"run{n}")
        (bundle / "config.json").write_text(json.dumps(config))
        r = escape.run(rt, "run", "--bundle", str(bundle), f"r{n}")
        rt("delete", "--force", f"r{n}")
        outcomes[f"fd {n}"] = _outcome(escape, f"run{n}", r)
    _judge(tool, "run with process.cwd /proc/self/fd/N", escape, outcomes, comparison)


# The CLI with isolate.process.launch wrapped: before each spawn, every fd this process has open,
# with its close-on-exec flag and target, is appended to $FD_AUDIT as one JSON line.
FD_AUDIT = r"""
import json, os, sys
import isolate._enter, isolate.container, isolate.process

real = isolate.process.launch

def audit(*args, **kwargs):
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            with open(f"/proc/self/fdinfo/{name}") as f:
                flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        except (OSError, StopIteration):
            continue        # the listing's own fd
        fds[name] = {"cloexec": bool(flags & os.O_CLOEXEC), "target": target}
    with open(os.environ["FD_AUDIT"], "a") as f:
        f.write(json.dumps({"argv": [str(a) for a in args[0].args], "fds": fds}) + "\n")
    return real(*args, **kwargs)

# launch(): where every process starts (spawn, Container, exec_into).
isolate.process.launch = isolate.container.launch = isolate._enter.launch = audit
from isolate.cli.oci import main
sys.exit(main(sys.argv[1:]))
"""


def test_no_fd_of_the_runtime_is_inheritable_when_it_spawns(
        runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path], escape: Escape,
        tmp_path: Path) -> None:
    """Tried: leave a directory fd open (not close-on-exec) to isolate-oci create, start (a
    startContainer hook) and exec, as a careless caller would, and list every fd the
    runtime has when it starts each process.
    Holds: every fd from 3 up is close-on-exec by then (the caller's too, as runc's
    CloseExecFrom makes them), so once the child has exec'd its helper none is left for a
    path lookup to reach through /proc/self/fd/N: only fds the plan names."""
    log = tmp_path / "fds.jsonl"
    base = runtime("isolate").argv[1:]          # --root <state>
    bundle = bundle_for("isolate", make_bundle, ["sleep", "300"], lambda c: c.update(
        hooks={"startContainer": [{"path": "/bin/true"}]}))
    rt = Runtime("isolate", [sys.executable, "-c", FD_AUDIT, *base])
    env = {**os.environ, "FD_AUDIT": str(log)}
    try:
        detached(rt, "create", "--bundle", str(bundle), "c1", env=env, cwd=escape.marker, pass_fds=[escape.fd])
        for args in (("start", "c1"), ("exec", "c1", "true")):
            r = escape.run(rt, *args, env=env)
            assert r.returncode == 0, r.stderr
    finally:
        rt.cleanup()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [rec["argv"][0] for rec in records] == ["sleep", "/bin/true", "true"]
    marker_seen = 0
    for rec in records:
        leaky = {fd: v for fd, v in rec["fds"].items() if int(fd) >= 3 and not v["cloexec"]}
        assert not leaky, (rec["argv"], leaky)
        marker_seen += any(v["target"] == str(escape.marker) for v in rec["fds"].values())
    assert marker_seen == 3, records       # the caller's fd was there, close-on-exec


# --- escape 4: typing into the caller's terminal ---------------------------------------


def _input_queue(fd: int) -> bytes:
    """What is waiting to be read on the terminal ``fd`` (raw mode: every byte; non-blocking)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""
    finally:
        os.set_blocking(fd, True)


@pytest.mark.parametrize("verb", ["run", "create", "exec"])
@pytest.mark.parametrize("tool", TOOLS)
def test_the_container_cannot_type_into_the_callers_terminal(
        tool: str, verb: str, runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path],
        probe: Path, tmp_path: Path, comparison: Callable[[str, str, bool, str], None]) -> None:
    """Tried: the runtime runs under a pseudo-terminal that is its controlling terminal
    (its caller's shell's, here a session made with ``setsid --ctty``) and is started
    without a terminal in the config (``run``; ``create`` then ``start``; ``exec`` without
    -t), so the container's process has that terminal as stdin; it pushes a command into
    the terminal's input queue with ioctl(TIOCSTI), where the caller's shell would read
    and run it, and tries TIOCLINUX.  The config has no seccomp filter, so nothing but the
    session stands in the way.
    Stopped by: the process gets a session of its own (no controlling terminal): TIOCSTI
    on a terminal that is not the caller's controlling one needs CAP_SYS_ADMIN (EPERM),
    and nothing arrives on the terminal's input queue."""
    rt = runtime(tool)
    typed = f"echo typed-{uuid.uuid4().hex[:8]}\n"
    attack = ["/probe", "tty", typed]

    def edit(c: dict[str, Any]) -> None:
        c["linux"].pop("seccomp", None)     # whatever the profile says about ioctl, it is not asked

    bundle = bundle_for(tool, make_bundle, ["sleep", "300"] if verb == "exec" else attack, edit)
    shutil.copy(probe, bundle / "rootfs" / "probe")
    out = tmp_path / "probe.out"
    if verb == "exec":
        detached(rt, "run", "--detach", "--bundle", str(bundle), "c1")
        steps = [rt.command("exec", "c1", *attack)]
    elif verb == "create":
        steps = [rt.command("create", "--bundle", str(bundle), "c1"), rt.command("start", "c1")]
    else:
        steps = [rt.command("run", "--bundle", str(bundle), "c1")]
    # The session leader (the caller's shell) stays until the probe is done: its terminal
    # stays the session's controlling terminal all along.
    script = " && ".join(shlex.join(s) for s in steps) + (
        f"; i=0; until grep -q '^done' {shlex.quote(str(out))} || [ $i -ge 300 ]; do sleep 0.1; "
        "i=$((i+1)); done")
    master, slave = os.openpty()
    try:
        tty.setraw(slave)                   # every byte readable at once, no echo
        with open(out, "w") as o, open(tmp_path / "err", "w+") as e:
            r = subprocess.run(["setsid", "--wait", "--ctty", "sh", "-c", script], stdin=slave, stdout=o,
                               stderr=e, timeout=TIMEOUT)
            e.seek(0)
            errors = e.read()
        queued = _input_queue(slave)
    finally:
        os.close(master)
        os.close(slave)
    report = _report(out.read_text())
    assert report.get("done") == "1", f"{tool} {verb}: the probe did not run: {r.returncode} {errors}"
    stopped = report["tiocsti-errno"] != "0" and not queued
    # runc in the foreground (run, exec) hands the process pipes it copies the terminal
    # through, never the terminal itself.
    how = "" if report["isatty"] == "1" else "stdin is not the terminal (the runtime copies it); "
    comparison(f"TIOCSTI into the caller's terminal ({verb})", tool, stopped,
               f"{how}TIOCSTI errno {report['tiocsti-errno']}, TIOCLINUX errno {report['tioclinux-errno']}, "
               f"controlling tty {report['ctty']}, own session {report['sid-is-pid']}, queued {queued!r}")
    if tool == "isolate":
        assert report["isatty"] == "1"      # stdin is the caller's terminal
        assert queued == b""
        assert report["tiocsti-errno"] == str(errno.EPERM)
        assert report["tioclinux-errno"] != "0"
        assert (report["ctty"], report["sid-is-pid"]) == ("0", "1")


@pytest.mark.parametrize("tool", TOOLS)
def test_a_cwd_through_a_host_process_stays_in_the_container(
        tool: str, runtime: Callable[[str], Runtime], make_bundle: Callable[..., Path], escape: Escape,
        comparison: Callable[[str, str, bool, str], None]) -> None:
    """Tried: a container sharing the host's pid namespace (as Kubernetes' hostPID) sees a
    host process in its /proc (a sleep whose cwd is the host's marker directory) but may
    not follow its /proc/<pid>/cwd itself (no CAP_SYS_PTRACE); it replaces its own cwd
    with a symlink to that /proc/<pid>/cwd and waits for the operator's plain ``exec``,
    whose setup runs with every capability until it drops them.  And a config whose
    process.cwd is that /proc/<pid>/cwd, run.
    Stopped by: the cwd is resolved inside the container's root and /proc/<pid>/cwd, a
    magic link, is refused, whatever fds the process holds."""
    host = subprocess.Popen(["sleep", "300"], cwd=escape.marker)
    try:
        host_dir = f"/proc/{host.pid}/cwd"

        def no_pidns(c: dict[str, Any]) -> None:
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
            c["process"]["cwd"] = "/work"

        rt = runtime(tool)
        _sleeping(tool, make_bundle, rt, "c1", edit=no_pidns)
        # The container itself may not go there: the runtime is what it needs.
        r = rt("exec", "--cwd", "/", "c1", *escape.script("self")[:2], f"cd {host_dir} && {escape.script('self')[2]}")
        assert r.returncode != 0 and escape.landed("self") == ([], []), (tool, r)
        outcomes = {}
        rt.ok("exec", "--cwd", "/", "c1", "sh", "-c", f"rm -rf /work && ln -s {host_dir} /work")
        r = escape.run(rt, "exec", "c1", *escape.script("exec"))
        outcomes["exec into the planted link"] = _outcome(escape, "exec", r)

        def with_cwd(c: dict[str, Any]) -> None:
            no_pidns(c)
            c["process"]["cwd"] = host_dir

        bundle = bundle_for(tool, make_bundle, escape.script("run"), with_cwd, name=f"{tool}-run")
        r = escape.run(rt, "run", "--bundle", str(bundle), "r1")
        rt("delete", "--force", "r1")
        outcomes["run with that cwd"] = _outcome(escape, "run", r)
    finally:
        host.kill()
        host.wait()
    _judge(tool, "cwd through /proc/<host pid>/cwd (no pid namespace)", escape, outcomes, comparison)
