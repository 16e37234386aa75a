"""The default sandbox, handed to untrusted code (issue 12): privileges, hostname, the
host's memory, the caller's memory, and the caller's terminal (escape 4, TIOCSTI).

Each test performs the attack for real against ``isolate.Container()`` and
``isolate run``, asserts what stopped it, and runs the same attack against
runc and bwrap where they can run it (``comparison``; a competitor that
cannot be run fails the test).  Attacks stay harmless: a root-only file of
our own, tmpfs mounts that vanish with the sandbox, a pty of our own.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tty
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import isolate
from isolate.oci.features import default_spec
from isolate.rootfs import RootFS
from isolate.seccomp import OCI_DEFAULT_CAPS

PY = "/usr/bin/python3"
ISOLATE = str(Path(sys.executable).parent / "isolate")
RUNC = shutil.which("runc") or "/usr/sbin/runc"
BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
NOBODY = 65534
MIB = 1 << 20

pytestmark = [pytest.mark.root]

Compare = Callable[[str, str, bool, str], None]


def _need(path: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: .ci/install-deps installs it")


# --- running the same code under runc and bwrap ------------------------------------------


class Runc:
    """runc running Python code in bundles whose root is the host's /usr (read-only) with the
    usual symlinks: ``runc spec``'s defaults but for the root and the process (no user
    namespace, the OCI default capabilities, no seccomp filter)."""

    def __init__(self, base: Path, cgroup_parent: str) -> None:
        self.base, self.state, self.cgroup_parent = base, base / "state", cgroup_parent
        self.ids: list[str] = []

    def argv(self, code: str, *, user: tuple[int, int] | None = None,
             binds: tuple[tuple[str, str], ...] = ()) -> list[str]:
        """The command line of ``runc run`` for a new bundle running ``code``."""
        cid = f"defaults-{uuid.uuid4().hex[:8]}"
        bundle = self.base / cid
        root = bundle / "rootfs"
        (root / "etc").mkdir(parents=True)
        for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"),
                             ("sbin", "usr/sbin")):
            (root / name).symlink_to(target)
        for name in ("passwd", "group"):
            shutil.copy(f"/etc/{name}", root / "etc" / name)
        config = copy.deepcopy(default_spec())
        config["process"].update(terminal=False, args=[PY, "-c", code])
        config["linux"]["cgroupsPath"] = f"/{self.cgroup_parent}/{cid}"
        config["root"] = {"path": "rootfs", "readonly": True}
        config["hostname"] = "runc"                     # as `runc spec` writes it
        config["linux"].pop("seccomp", None)            # as `runc spec` writes it
        config["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr",
                                 "options": ["rbind", "ro"]})
        for src, dst in binds:
            config["mounts"].append({"destination": dst, "type": "bind", "source": src,
                                     "options": ["bind", "ro"]})
        if user is not None:
            config["process"]["user"] = {"uid": user[0], "gid": user[1]}
        (bundle / "config.json").write_text(json.dumps(config))
        self.ids.append(cid)
        return [RUNC, "--root", str(self.state), "run", "--bundle", str(bundle), cid]

    def run(self, code: str, **options: Any) -> subprocess.CompletedProcess[bytes]:
        """``code`` run by runc, its output captured."""
        return subprocess.run(self.argv(code, **options), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60, check=False)

    def cleanup(self) -> None:
        for cid in self.ids:
            if (self.state / cid).exists():
                subprocess.run([RUNC, "--root", str(self.state), "delete", "--force", cid], check=False,
                               capture_output=True)


@pytest.fixture
def runc(tmp_path_factory: pytest.TempPathFactory, oci_cgroup_parent: str) -> Iterator[Runc]:
    """A ``Runc``; its containers are deleted afterwards (their cgroups checked by
    ``oci_cgroup_parent``)."""
    _need(RUNC)
    base = tmp_path_factory.mktemp("runc")
    base.chmod(0o755)
    r = Runc(base, oci_cgroup_parent)
    yield r
    r.cleanup()


def bwrap_argv(*options: str) -> list[str]:
    """bwrap with the host's /usr as the root, /proc, /dev and every namespace."""
    _need(BWRAP)
    return [BWRAP, "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
            "--ro-bind", "/etc/passwd", "/etc/passwd", "--ro-bind", "/etc/group", "/etc/group",
            "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--die-with-parent", *options]


# --- 1. privileges -----------------------------------------------------------------------

PRIVILEGE_PROBE = textwrap.dedent("""
    import json, os, sys
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"):
            out[key] = value.split()
    for name, call in (("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0)),
                       ("setgroups", lambda: os.setgroups([0])),
                       ("read", lambda: open("/secret", "rb").read()),
                       ("read group's", lambda: open("/groupsecret", "rb").read())):
        try:
            call()
            out[name] = 0
        except OSError as e:
            out[name] = e.errno
    print("RESULT " + json.dumps(out))
""")


def _privilege_result(stdout: bytes) -> dict[str, Any]:
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise AssertionError(f"the probe printed no result: {stdout!r}")


def _privileges_dropped(r: dict[str, Any], caller_groups: set[int]) -> tuple[bool, str]:
    """Whether a non-root sandbox user got nothing back: no capability, no root id, no group
    0 or of the caller, no way to become root or read root's file."""
    bad = []
    for k in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        if int(r[k][0], 16):
            bad.append(f"{k} {r[k][0]}")
    if "0" in r["Gid"]:
        bad.append(f"Gid {r['Gid']}")
    groups = {int(g) for g in r["Groups"]}
    if groups & ({0} | caller_groups):
        bad.append(f"Groups {sorted(groups)}")
    for k in ("setuid", "setgid", "setgroups", "read", "read group's"):
        if r[k] == 0:
            bad.append(f"{k} worked")
    return not bad, ", ".join(bad) or f"Uid {r['Uid'][0]} Gid {r['Gid'][0]} Groups {sorted(groups)}"


CALLER_GROUP = 4242       # a supplementary group of the caller, which no sandbox may keep


@pytest.fixture
def secrets() -> Iterator[tuple[Path, Path]]:
    """A file only root can read (0600 root:root) and one only root and the caller's group
    ``CALLER_GROUP`` can (0640 root:4242), in a directory anyone may traverse."""
    d = Path(f"/var/tmp/isolate-secrets-{uuid.uuid4().hex}")
    d.mkdir(mode=0o755)
    root_only, group_only = d / "secret", d / "groupsecret"
    for f, mode in ((root_only, 0o600), (group_only, 0o640)):
        f.write_text("secret\n")
        os.chown(f, 0, CALLER_GROUP if f is group_only else 0)
        f.chmod(mode)
    yield root_only, group_only
    shutil.rmtree(d)


def _as_caller_with_group(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` from a caller that has the supplementary group ``CALLER_GROUP``."""
    return subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                          preexec_fn=lambda: os.setgroups([CALLER_GROUP]))


@pytest.mark.parametrize("how", ["isolate run --user 65534", "Container(user=65534)",
                                 "Container(user=65534) without a user namespace",
                                 "Container(user='nobody', rootfs=image)"])
def test_a_non_root_user_gets_no_privileges(how: str, secrets: tuple[Path, Path], tmp_path: Path,
                                            comparison: Compare) -> None:
    """Tried: as a non-root sandbox user (the documented way to run untrusted code), become
    root with setuid(0)/setgid(0)/setgroups([0]), read a root-only (0600) file bound in,
    and look for capabilities, group 0 or the caller's supplementary group in
    /proc/self/status.  Was: gid 0 and the OCI capability set effective, setuid(0) worked.
    Stopped by: a non-root user gets empty effective, permitted, inheritable and ambient
    sets (the bounding set stays the OCI set), its group from the sandbox's /etc/passwd
    (65534 for nobody) and supplementary groups from its /etc/group, never the caller's."""
    probe = tmp_path / "probe.py"
    probe.write_text(PRIVILEGE_PROBE)
    probe.chmod(0o644)
    tmp_path.chmod(0o755)
    secret, groupsecret = map(str, secrets)
    if how.startswith("isolate run"):
        p = _as_caller_with_group([ISOLATE, "run", "--user", "65534", "--bind", f"{probe}:/probe.py:ro",
                                   "--bind", f"{secret}:/secret:ro",
                                   "--bind", f"{groupsecret}:/groupsecret:ro", "--", PY, "/probe.py"])
    else:
        image = None
        if "image" in how:
            # An image whose nobody is 4000:4001, also in group 4002 of its /etc/group.
            image = tmp_path / "image"
            for d in ("etc", "usr", "tmp"):
                (image / d).mkdir(parents=True)
            for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
                (image / name).symlink_to(target)
            (image / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nnobody:x:4000:4001::/:/bin/sh\n")
            (image / "etc/group").write_text("root:x:0:\nnobody:x:4001:\nextra:x:4002:nobody\n")
        code = textwrap.dedent(f"""
            import sys, isolate
            from isolate.rootfs import RootFS
            image = {str(image) if image else None!r}
            rootfs = (RootFS.host() if image is None
                      else RootFS.from_directory(image).bind("/usr", "/usr", readonly=True))
            rootfs.bind({str(probe)!r}, "/probe.py", readonly=True).bind({secret!r}, "/secret", readonly=True)
            rootfs.bind({groupsecret!r}, "/groupsecret", readonly=True)
            ns = isolate.DEFAULT_NAMESPACES - ({{"user"}} if "without" in {how!r} else set())
            user = "nobody" if image else 65534
            with isolate.Container(rootfs=rootfs, user=user, namespaces=ns) as c:
                r = c.run([{PY!r}, "/probe.py"], timeout=60)
            sys.stdout.buffer.write(r.stdout + r.stderr)
        """)
        p = _as_caller_with_group([sys.executable, "-c", code])
    r = _privilege_result(p.stdout)
    stopped, detail = _privileges_dropped(r, {CALLER_GROUP})
    comparison("non-root user regains root or capabilities", "isolate", stopped, f"{how}: {detail}")
    assert stopped, (how, detail, r)
    assert r["Uid"] == ["4000"] * 4 if "image" in how else r["Uid"] == [str(NOBODY)] * 4
    if "image" in how:
        assert r["Gid"] == ["4001"] * 4 and r["Groups"] == ["4002"], r     # the image's, not the host's
    else:
        assert r["Gid"] == [str(NOBODY)] * 4, r                            # the passwd entry's group
    bounding = OCI_DEFAULT_CAPS - ({"CAP_MKNOD"} if "without" in how else set())
    if "without" not in how:
        # Root's default user namespace gives container root ids of its own (userns "auto"):
        # the setid guard keeps CAP_SETFCAP out of it (docs/guides/sandboxing.md).
        bounding = bounding - {"CAP_SETFCAP"}
    assert int(r["CapBnd"][0], 16) == sum(1 << isolate._plan.CAPABILITIES[c] for c in bounding)


def test_runc_and_bwrap_drop_privileges_of_a_non_root_user(secrets: tuple[Path, Path], tmp_path: Path,
                                                          runc: Runc, comparison: Compare) -> None:
    """The same attack under runc (process.user 65534:65534) and bwrap (--uid/--gid 65534)."""
    probe = tmp_path / "probe.py"
    probe.write_text(PRIVILEGE_PROBE)
    tmp_path.chmod(0o755)
    binds = ((str(secrets[0]), "/secret"), (str(secrets[1]), "/groupsecret"))
    p = runc.run(PRIVILEGE_PROBE, user=(NOBODY, NOBODY), binds=binds)
    assert p.returncode == 0, p
    stopped, detail = _privileges_dropped(_privilege_result(p.stdout), set())
    comparison("non-root user regains root or capabilities", "runc", stopped, detail)
    b = _as_caller_with_group(bwrap_argv("--uid", str(NOBODY), "--gid", str(NOBODY),
                                         "--ro-bind", str(probe), "/probe.py",
                                         *(a for src, dst in binds for a in ("--ro-bind", src, dst)),
                                         PY, "/probe.py"))
    assert b.returncode == 0, b
    stopped, detail = _privileges_dropped(_privilege_result(b.stdout), {CALLER_GROUP})
    comparison("non-root user regains root or capabilities", "bwrap", stopped, detail)


def test_spawn_as_a_user_does_not_keep_group_0_or_the_callers_groups() -> None:
    """Tried: ``isolate.spawn(user=65534)`` from root with a supplementary group, no namespace:
    the process kept gid 0 and the caller's groups (``subprocess``'s ``user=`` does too).
    Stopped by: a changed uid gets its passwd group (65534 for a uid without an entry too)
    and its /etc/group groups."""
    code = textwrap.dedent("""
        import os, isolate
        os.setgroups([4242])
        r = isolate.run(["/bin/sh", "-c", "id -u; id -g; id -G"], user=65534, capture_output=True)
        print(r.stdout.decode().split())
        r = isolate.run(["/bin/sh", "-c", "id -u; id -g; id -G"], user=54321, capture_output=True)
        print(r.stdout.decode().split())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    nobody, unknown = (eval(line) for line in out.splitlines())
    assert nobody == ["65534", "65534", "65534"]
    assert unknown == ["54321", "65534", "65534"]      # no passwd entry: the overflow group, not 0


def test_an_unknown_user_is_named_in_the_error() -> None:
    """``isolate run --user nosuchuser`` used to fail with "tmpfs target must not be the root"."""
    p = subprocess.run([ISOLATE, "run", "--user", "nosuchuser", "--", "/bin/true"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 125
    assert "no such user 'nosuchuser'" in p.stderr, p.stderr
    p = subprocess.run([ISOLATE, "run", "--user", "65534", "--group", "nosuchgroup", "--", "/bin/true"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 125 and "no such group 'nosuchgroup'" in p.stderr, p.stderr


def test_group_option_sets_the_group_and_no_supplementary_groups() -> None:
    p = subprocess.run([ISOLATE, "run", "--user", "nobody", "--group", "100", "--", "/bin/sh", "-c",
                        "id -u; id -g; id -G"], capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["65534", "100", "100"], p


# --- 2. hostname -------------------------------------------------------------------------


HOSTNAME_PROBE = "import socket; print(socket.gethostname())"


def test_the_default_sandbox_does_not_show_the_hosts_name(runc: Runc, comparison: Compare) -> None:
    """Tried: read the hostname inside the default sandbox (it was the host's).
    Stopped by: a uts namespace with a hostname of its own: the container's name made a
    hostname, else "isolate"."""
    host = socket.gethostname()
    with isolate.Container() as c:
        default = c.run([PY, "-c", HOSTNAME_PROBE]).stdout.decode().strip()
    with isolate.Container(name="job_42.a") as c:
        named = c.run([PY, "-c", HOSTNAME_PROBE]).stdout.decode().strip()
    cli = subprocess.run([ISOLATE, "run", "--", PY, "-c", HOSTNAME_PROBE], capture_output=True,
                         text=True, timeout=60).stdout.strip()
    cli_named = subprocess.run([ISOLATE, "run", "--name", "box", "--", PY, "-c", HOSTNAME_PROBE],
                               capture_output=True, text=True, timeout=60).stdout.strip()
    stopped = host not in (default, named, cli, cli_named)
    comparison("sandbox learns the host's hostname", "isolate", stopped, f"{default!r}, {named!r}")
    assert (default, named, cli, cli_named) == ("isolate", "job-42.a", "isolate", "box")
    assert socket.gethostname() == host
    p = runc.run(HOSTNAME_PROBE)
    assert p.returncode == 0, p
    comparison("sandbox learns the host's hostname", "runc", p.stdout.decode().strip() != host,
               f"runc spec's hostname: {p.stdout.decode().strip()!r}")
    b = subprocess.run(bwrap_argv(PY, "-c", HOSTNAME_PROBE), capture_output=True, text=True, timeout=60)
    assert b.returncode == 0, b
    comparison("sandbox learns the host's hostname", "bwrap", b.stdout.strip() != host,
               f"--unshare-all without --hostname: {b.stdout.strip()!r}")


# --- 3. the host's memory: tmpfs sizes ----------------------------------------------------

FILL = textwrap.dedent("""
    import errno, os, sys
    path, cap = sys.argv[1], int(sys.argv[2])
    chunk = b"x" * (1 << 20)
    written, err = 0, 0
    try:
        with open(path, "wb", buffering=0) as f:
            while written < cap:
                written += f.write(chunk)
    except OSError as e:
        err = e.errno
    print(written, err, flush=True)
    sys.stdin.read()          # hold the tmpfs (and its pages) until the test has looked
""")


def _shmem() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem in /proc/meminfo")


def _fill(container: isolate.Container, path: str, cap: int) -> tuple[int, int, int]:
    """Write up to ``cap`` bytes to ``path`` inside the started container: (written, errno,
    growth of the host's Shmem while the sandbox holds what it wrote)."""
    before = _shmem()
    proc = container.start([PY, "-c", FILL, path, str(cap)], stdin=isolate.PIPE, stdout=isolate.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().split()
    grown = _shmem() - before
    proc.stdin.close()
    container.wait(timeout=60)
    assert len(line) == 2, line
    return int(line[0]), int(line[1]), grown


# Other agents share this machine: Shmem moves by their tmpfs too; allow that much noise.
SHMEM_SLACK = 192 * MIB


@pytest.mark.parametrize("target,bound", [("/tmp/fill", 512 * MIB), ("/root/fill", 256 * MIB),
                                          ("/dev/shm/fill", 64 * MIB), ("/usr/fill", 1024 * MIB)],
                         ids=["tmp", "home", "shm", "overlay"])
def test_tmpfs_writes_stop_at_their_bound(target: str, bound: int, comparison: Compare) -> None:
    """Tried: fill /tmp, $HOME, /dev/shm and an overlay's tmpfs upper layer of the default
    sandbox, 256 MiB past their default bound: each was half of RAM, so 2 GiB written
    inside raised the host's shared memory by 2 GiB with no limit set.
    Stopped by: bounded default sizes (512m, 256m, 64m, 1g): ENOSPC, and the host's
    Shmem grows by at most the bound."""
    rootfs = RootFS.host(home="/root")
    if "usr" in target:
        rootfs.overlay()
    with isolate.Container(rootfs=rootfs) as c:
        written, err, grown = _fill(c, target, bound + 256 * MIB)
    stopped = err == 28 and written <= bound
    comparison(f"fill the sandbox's {target.rsplit('/', 1)[0]} (host memory)", "isolate", stopped,
               f"{written >> 20} MiB written, errno {err}, Shmem +{grown >> 20} MiB")
    assert err == 28, (written, err)                 # ENOSPC
    assert bound - 8 * MIB <= written <= bound
    assert grown <= bound + SHMEM_SLACK, grown


def test_tmpfs_size_options_of_isolate_run() -> None:
    """``--tmp-size``, ``--home-size``, ``--shm-size``, ``--overlay-size`` bound the writes."""
    code = textwrap.dedent("""
        import os
        for path in ("/tmp/f", os.environ["HOME"] + "/f", "/dev/shm/f", "/usr/f"):
            n = 0
            try:
                with open(path, "wb", buffering=0) as f:
                    while n < 64 << 20:
                        n += f.write(b"x" * (1 << 20))
            except OSError as e:
                print(path.split("/")[1], n >> 20, e.errno)
    """)
    p = subprocess.run([ISOLATE, "run", "--tmp-size", "8m", "--home-size", "4m", "--shm-size", "2m",
                        "--overlay", "--overlay-size", "16m", "--", PY, "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.split("\n")[:4] == ["tmp 8 28", "root 4 28", "dev 2 28", "usr 16 28"], p


def test_runc_and_bwrap_shm_and_tmp(runc: Runc, comparison: Compare) -> None:
    """The same fills under runc (/dev/shm of ``runc spec``: 64m) and bwrap (--dev's /dev/shm,
    --tmpfs /tmp without --size)."""
    code = FILL.replace("sys.stdin.read()", "pass")
    p = runc.run(code.replace("sys.argv[1], int(sys.argv[2])", f"'/dev/shm/f', {320 * MIB}"))
    assert p.returncode == 0, p
    written, err = map(int, p.stdout.split())
    comparison("fill the sandbox's /dev/shm (host memory)", "runc", err == 28,
               f"{written >> 20} MiB written, errno {err}")
    for target in ("/dev/shm/f", "/tmp/f"):
        b = subprocess.run(bwrap_argv("--tmpfs", "/tmp", PY, "-c", code, target, str(320 * MIB)),
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert b.returncode == 0, b
        written, err = map(int, b.stdout.split())
        comparison(f"fill the sandbox's {target.rsplit('/', 1)[0]} (host memory)", "bwrap", err == 28,
                   f"{written >> 20} MiB written, errno {err}")


# --- 4. the caller's memory: output ----------------------------------------------------

FLOOD = textwrap.dedent("""
    import sys
    out = sys.stdout.buffer
    for i in range(600):
        out.write(b"%08d" % i * (1 << 17))         # 1 MiB blocks, each naming its index
    sys.stderr.write("done\\n")
""")

CALLER = textwrap.dedent("""
    import json, sys, isolate
    how = sys.argv[1]
    flood = [{py!r}, "-c", {flood!r}]
    if how == "Container.run":
        with isolate.Container() as c:
            r = c.run(flood, timeout=120)
        out, err, truncated, rc = r.stdout, r.stderr, r.truncated, r.returncode
    elif how == "Container.exec":
        with isolate.Container() as c:
            c.start(["sleep", "1000"])
            r = c.exec(flood, timeout=120)
            c.kill()
            c.wait()
        out, err, truncated, rc = r.stdout, r.stderr, r.truncated, r.returncode
    else:
        r = isolate.run(flood, namespaces={{"user", "pid", "mnt"}}, capture_output=True,
                        max_output=32 << 20, timeout=120)
        out, err, truncated, rc = r.stdout, r.stderr, r.truncated, r.returncode
    first = all(out[i << 20:(i + 1) << 20] == b"%08d" % i * (1 << 17) for i in range(len(out) >> 20))
    # VmHWM, not ru_maxrss: execve carries the forking parent's (pytest's) high-water
    # mark over into ru_maxrss, but VmHWM belongs to this process's own memory.
    peak = next(int(l.split()[1]) << 10 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps(dict(rc=rc, kept=len(out), err=err.decode(), truncated=truncated, first=first,
                          peak=peak)))
""").format(py=PY, flood=FLOOD)


@pytest.mark.parametrize("how", ["Container.run", "Container.exec", "isolate.run(max_output=32m)"])
def test_a_flood_of_output_does_not_exhaust_the_caller(how: str) -> None:
    """Tried: write 600 MB to stdout from the sandbox; the caller kept all of it (it grew to
    1.16 GiB).  Stopped by: ``max_output`` (32 MiB per stream by default for Container.run
    and exec): the rest is read and discarded, the run completes, ``truncated`` is set and
    the first 32 MiB are intact.  The caller's peak RSS (VmHWM) is measured in a process of
    its own."""
    p = subprocess.run([sys.executable, "-c", CALLER, how], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["rc"] == 0 and r["err"] == "done\n", r
    assert r["peak"] < 256 * MIB, f"the caller's peak RSS was {r['peak'] >> 20} MiB"
    assert r["truncated"] and r["kept"] == 32 << 20 and r["first"], r


def test_a_timed_out_run_keeps_the_output_read_so_far() -> None:
    """Issue 13's note: a timed-out run dropped the output it had already read."""
    code = "import sys, time; print('before', flush=True); sys.stderr.write('err\\n'); time.sleep(1000)"
    with isolate.Container() as c:
        r = c.run([PY, "-c", code], timeout=2)
    assert r.timed_out and r.stdout == b"before\n" and r.stderr == b"err\n", r
    with isolate.Container() as c:
        c.start(["sleep", "1000"])
        r = c.exec([PY, "-c", code], timeout=2)
        c.kill()
        c.wait()
    assert r.timed_out and r.stdout == b"before\n" and r.stderr == b"err\n", r
    with pytest.raises(subprocess.TimeoutExpired) as e:
        isolate.run([PY, "-c", code], namespaces={"pid"}, capture_output=True, timeout=2)
    assert e.value.output == b"before\n" and e.value.stderr == b"err\n"


# --- 5. the caller's terminal: TIOCSTI (escape 4) -------------------------------------------

MARKER = "echo ISOLATE-TIOCSTI-MARKER"

TIOCSTI_ATTACK = textwrap.dedent("""
    import ctypes, json, os
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_ioctl, TIOCSTI, TIOCLINUX, TIOCSCTTY = 16, 0x5412, 0x541C, 0x540E

    def ioctl(fd, request, arg):
        ctypes.set_errno(0)
        rc = libc.syscall(ctypes.c_long(SYS_ioctl), ctypes.c_long(fd), ctypes.c_ulong(request), arg)
        return 0 if rc == 0 else ctypes.get_errno()

    out = {"sid": os.getsid(0) == os.getpid()}
    fds = {"stdin": 0}
    try:
        fds["/dev/tty"] = os.open("/dev/tty", os.O_RDWR)
    except OSError as e:
        out["/dev/tty"] = e.errno
    for name, fd in fds.items():
        # The command is typed into the terminal's input, as the caller's shell would read it.
        out["tiocsti " + name] = [ioctl(fd, TIOCSTI, ctypes.c_char_p(bytes([c]))) for c in MARKER_BYTES]
        out["tiocsti high bits " + name] = ioctl(fd, 1 << 32 | TIOCSTI, ctypes.c_char_p(b"#"))
        out["tioclinux " + name] = ioctl(fd, TIOCLINUX, ctypes.c_char_p(bytes([3])))   # paste selection
    out["tiocsctty steal"] = ioctl(0, TIOCSCTTY, ctypes.c_long(1))
    print("RESULT " + json.dumps(out), flush=True)
""").replace("MARKER_BYTES", repr((MARKER + "\n").encode()))

# The caller: a session leader whose controlling terminal is the pty, like a shell in a
# terminal; it runs the command in the foreground, then reads what reached its input.
SHELL = textwrap.dedent("""
    import fcntl, json, os, subprocess, sys, termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    rc = subprocess.call(sys.argv[2:])
    os.set_blocking(0, False)
    try:
        got = os.read(0, 65536)
    except BlockingIOError:
        got = b""
    os.write(int(sys.argv[1]), json.dumps({"rc": rc, "input": got.decode(errors="replace")}).encode())
""")


def under_terminal(argv: list[str], timeout: float = 120) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``argv`` from a "shell" whose controlling terminal is a new pty (raw mode):
    (what the shell saw: its exit status and what arrived on its terminal's input,
    the attack's RESULT)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    r, w = os.pipe()
    try:
        shell = subprocess.Popen([sys.executable, "-c", SHELL, str(w), *argv], stdin=slave, stdout=slave,
                                 stderr=slave, pass_fds=(w,), start_new_session=True)
        os.close(w)
        w = -1
        shown = bytearray()
        deadline = time.monotonic() + timeout
        os.set_blocking(master, False)
        while shell.poll() is None and time.monotonic() < deadline:
            try:
                shown += os.read(master, 65536)
            except BlockingIOError:
                time.sleep(0.02)
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
            raise AssertionError(f"{argv} did not finish: {bytes(shown)!r}")
        try:
            while chunk := os.read(master, 65536):
                shown += chunk
        except (BlockingIOError, OSError):
            pass
        seen = json.loads(os.read(r, 65536) or b"{}")
    finally:
        for fd in (master, slave, r, w):
            if fd >= 0:
                os.close(fd)
    text = shown.decode(errors="replace")
    results = [line[7:] for line in text.splitlines() if line.startswith("RESULT ")]
    assert seen and results, (seen, text)
    return seen, json.loads(results[-1])


EPERM = 1


def _typed_in(seen: dict[str, Any]) -> bool:
    return "ISOLATE-TIOCSTI" in seen["input"] or "#" in seen["input"]


def test_tiocsti_from_isolate_run_types_nothing_into_the_callers_shell(comparison: Compare) -> None:
    """Tried (escape 4, bubblewrap's CVE-2017-5226): from ``isolate run`` under a terminal,
    push a command into the terminal's input with ioctl(TIOCSTI) (also with high bits set
    in the request, which the kernel drops) and TIOCLINUX, for the caller's shell to run.
    Stopped by: its own session, without a controlling terminal, and the default seccomp
    profile refusing both ioctls (EPERM)."""
    seen, r = under_terminal([ISOLATE, "run", "--", PY, "-c", TIOCSTI_ATTACK])
    stopped = not _typed_in(seen)
    comparison("TIOCSTI into the caller's terminal", "isolate", stopped, f"input {seen['input']!r}, {r}")
    assert stopped, seen
    assert seen["rc"] == 0 and r["sid"], (seen, r)
    assert r["tiocsti stdin"][0] == EPERM and r["tiocsti high bits stdin"] == EPERM
    assert r["tioclinux stdin"] == EPERM                        # the filter: a pty would say ENOTTY
    assert r["/dev/tty"] == 6                                   # ENXIO: no controlling terminal
    assert r["tiocsctty steal"] == EPERM


# argv: seccomp ("default" or "none"), session ("default" or "caller": new_session=False), command.
CONTAINER_UNDER_TERMINAL = textwrap.dedent("""
    import sys, isolate
    options = {"seccomp": "default" if sys.argv[1] == "default" else None}
    if sys.argv[2] == "caller":
        options["new_session"] = False
    with isolate.Container(**options) as c:
        sys.exit(c.run(sys.argv[3:], capture_output=False, timeout=60).returncode)
""")


def test_tiocsti_without_seccomp_is_stopped_by_the_session_alone() -> None:
    """The same attack from ``Container(seccomp=None)``: TIOCSTI on a terminal that is not
    the caller's controlling one fails (EPERM) without CAP_SYS_ADMIN, and a new session
    cannot steal it with TIOCSCTTY."""
    seen, r = under_terminal([sys.executable, "-c", CONTAINER_UNDER_TERMINAL, "none", "default",
                              PY, "-c", TIOCSTI_ATTACK])
    assert not _typed_in(seen), seen
    assert r["sid"] and set(r["tiocsti stdin"]) == {EPERM} and r["tiocsti high bits stdin"] == EPERM
    assert r["/dev/tty"] == 6 and r["tiocsctty steal"] == EPERM, r


@pytest.mark.parametrize("how", ["isolate run --tty", "Container(new_session=False)"])
def test_tiocsti_in_the_callers_session_is_stopped_by_the_filter_alone(how: str) -> None:
    """The terminal handed over (``isolate run --tty``, ``Container(new_session=False)``):
    the sandbox stays in the caller's session, the terminal is its controlling one, and
    only the default seccomp profile refuses TIOCSTI and TIOCLINUX."""
    argv = ([ISOLATE, "run", "--tty", "--", PY, "-c", TIOCSTI_ATTACK] if how.startswith("isolate")
            else [sys.executable, "-c", CONTAINER_UNDER_TERMINAL, "default", "caller", PY, "-c",
                  TIOCSTI_ATTACK])
    seen, r = under_terminal(argv)
    assert not _typed_in(seen), seen
    assert not r["sid"] and "/dev/tty" not in r, r          # the terminal is its controlling one
    for fd in ("stdin", "/dev/tty"):
        assert set(r["tiocsti " + fd]) == {EPERM} and r["tiocsti high bits " + fd] == EPERM, r
        assert r["tioclinux " + fd] == EPERM, r


def test_spawn_with_a_namespace_gets_its_own_session_and_a_plain_spawn_does_not() -> None:
    """``isolate.spawn``/``run`` creating or joining a namespace default to a new session;
    a plain spawn stays in the caller's, as with ``subprocess``."""
    code = "import os; print(os.getsid(0) == os.getpid())"
    seen, r = under_terminal([sys.executable, "-c", textwrap.dedent(f"""
        import json, isolate
        own = isolate.run([{PY!r}, "-c", {code!r}], namespaces={{"user", "pid"}}, capture_output=True)
        plain = isolate.run([{PY!r}, "-c", {code!r}], capture_output=True)
        print("RESULT " + json.dumps([own.stdout.decode().strip(), plain.stdout.decode().strip()]))
    """)])
    assert r == ["True", "False"], r
    seen, r = under_terminal([sys.executable, "-c", textwrap.dedent(f"""
        import isolate
        isolate.run([{PY!r}, "-c", {TIOCSTI_ATTACK!r}], namespaces={{"user", "pid", "mnt"}})
    """)])
    assert not _typed_in(seen) and set(r["tiocsti stdin"]) == {EPERM}, (seen, r)


@pytest.mark.parametrize("new_session", [False, True], ids=["default", "--new-session"])
def test_bwrap_tiocsti(new_session: bool, comparison: Compare) -> None:
    """The same attack under bwrap, without and with --new-session (its answer to CVE-2017-5226)."""
    options = ("--new-session",) if new_session else ()
    seen, r = under_terminal(bwrap_argv(*options, PY, "-c", TIOCSTI_ATTACK))
    comparison("TIOCSTI into the caller's terminal", "bwrap", not _typed_in(seen),
               f"{' '.join(options) or 'no --new-session'}: input {seen['input']!r}, {r}")
    if new_session:
        assert not _typed_in(seen), seen


def test_runc_tiocsti(runc: Runc, comparison: Compare) -> None:
    """The same attack under runc (terminal: false, so the process has the caller's stdio)."""
    seen, r = under_terminal(runc.argv(TIOCSTI_ATTACK))
    comparison("TIOCSTI into the caller's terminal", "runc", not _typed_in(seen),
               f"input {seen['input']!r}, {r}")
