"""isolate as an ordinary user (issue 16): spawn, run, Container and ``isolate run``.

Every test runs the real thing as the user tests/rootless.py makes (its own
uid, /etc/subuid and /etc/subgid ranges, a login's environment) and checks
the outcome from outside, as root: the user namespace a caller without root
gets by itself, the subordinate ids a non-root user inside runs as (the
host's /proc/<pid>/status, owners of files written through a bind), the
error when the ranges are missing, the probe's rows and the test suite
itself collected and run as that user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.userns]

REPO = Path(__file__).resolve().parents[2]
NS = '{"pid", "mnt", "net", "uts", "ipc"}'


@pytest.fixture(scope="module")
def no_ranges() -> Iterator[Any]:
    """A second user, without /etc/subuid and /etc/subgid ranges."""
    if os.geteuid() != 0:
        pytest.skip("making a user for the rootless tests needs root")
    from rootless import rootless_user

    with rootless_user("isotn", subids=False) as user:
        yield user


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def _map_lines(text: str) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in text.strip().splitlines()]


# --- a user namespace without asking for one -----------------------------------------


def test_spawn_without_user_gets_a_user_namespace(rootless: Any) -> None:
    out = _ok(rootless.python_run(f"""
import json, os, isolate
r = isolate.run(["sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/pid; "
                 "cat /proc/self/uid_map"], namespaces={NS}, capture_output=True, check=True)
print(json.dumps([r.stdout.decode(), os.readlink("/proc/self/ns/user"), os.readlink("/proc/self/ns/pid")]))
"""))
    inside, own_user, own_pid = json.loads(out)
    uid, user_ns, pid_ns, *maps = inside.splitlines()
    assert uid == "0"
    assert user_ns != own_user and pid_ns != own_pid
    assert _map_lines("\n".join(maps)) == [[0, rootless.uid, 1]]


def test_container_without_user_gets_a_user_namespace(rootless: Any) -> None:
    out = _ok(rootless.python_run(f"""
import isolate
with isolate.Container(namespaces={NS}) as c:
    r = c.run(["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map"])
assert r.returncode == 0, r
print(r.stdout.decode(), end="")
"""))
    uid, *maps = out.splitlines()
    assert uid == "0"
    assert _map_lines("\n".join(maps)) == [[0, rootless.uid, 1], [0, rootless.gid, 1]]


def test_cli_run_as_a_user(rootless: Any) -> None:
    out = _ok(rootless.run(["isolate", "run", "--", "sh", "-c", "id -u; cat /proc/self/uid_map"]))
    uid, *maps = out.splitlines()
    assert uid == "0"
    assert _map_lines("\n".join(maps)) == [[0, rootless.uid, 1]]


def test_joining_namespaces_the_user_owns_still_works(rootless: Any) -> None:
    out = _ok(rootless.python_run("""
import json, os, isolate
from isolate import Namespace
holder = isolate.spawn(["sleep", "60"], namespaces={"user", "net", "uts"}, hostname="held")
try:
    join = [Namespace.of(holder.pid, t) for t in ("user", "net", "uts")]
    r = isolate.run(["sh", "-c", "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/mnt"],
                    join=join, namespaces={"mnt"}, capture_output=True, check=True)
    want = os.readlink(f"/proc/{holder.pid}/ns/net")
    for ns in join:
        ns.close()
finally:
    holder.kill()
    holder.wait()
print(json.dumps([r.stdout.decode(), want, os.readlink("/proc/self/ns/mnt")]))
"""))
    inside, want_net, own_mnt = json.loads(out)
    host, net, mnt = inside.splitlines()
    assert (host, net) == ("held", want_net)
    assert mnt != own_mnt


def test_new_pid_namespace_and_container_inside_a_joined_user_namespace(rootless: Any) -> None:
    # A user namespace and a network namespace made ahead (as a pool makes them): a new pid
    # namespace and a whole Container are made inside them (before: ConfigError for pid,
    # and mknod EPERM building the Container's /dev).
    out = _ok(rootless.python_run("""
import json, os, isolate
from isolate import Namespace
holder = isolate.spawn(["sleep", "60"], namespaces={"user", "net"})
try:
    user, net = (Namespace.of(holder.pid, t) for t in ("user", "net"))
    want = [os.readlink(f"/proc/{holder.pid}/ns/{t}") for t in ("user", "net")]
    r = isolate.run(["sh", "-c", "echo $$; readlink /proc/self/ns/user /proc/self/ns/net /proc/self/ns/pid"],
                    join=[user, net], namespaces={"pid", "mnt"}, capture_output=True, check=True)
    with isolate.Container(join=[user, net], namespaces={"pid", "mnt", "uts", "ipc"}) as c:
        rc = c.run(["sh", "-c", "echo $$; id -u; ls /dev/null; readlink /proc/self/ns/user"])
    user.close(); net.close()
finally:
    holder.kill()
    holder.wait()
print(json.dumps([r.stdout.decode(), rc.returncode, rc.stdout.decode(), want,
                  os.readlink("/proc/self/ns/pid")]))
"""))
    run_out, c_rc, c_out, (want_user, want_net), own_pid = json.loads(out)
    pid1, user_ns, net_ns, pid_ns = run_out.split()
    assert (pid1, user_ns, net_ns) == ("1", want_user, want_net)
    assert pid_ns != own_pid
    assert c_rc == 0, c_out
    assert c_out.split() == ["1", "0", "/dev/null", want_user]


# --- more than one id: the user's subordinate ranges -----------------------------------


def _host_ids(pid: int) -> tuple[int, int]:
    """The real uid and gid of ``pid`` as the host sees them."""
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid"):
                ids[key] = int(value.split()[0])
    return ids["Uid"], ids["Gid"]


def _started(rootless: Any, argv: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``argv`` as the user; return it and the lines it printed before 'ready'."""
    p = subprocess.Popen(rootless.command(argv), env=rootless.env(), cwd=rootless.home,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    assert p.stdout is not None
    lines = []
    for line in p.stdout:
        if line.strip() == "ready":
            return p, lines
        lines.append(line.strip())
    _, err = p.communicate(timeout=120)
    raise AssertionError(f"exited {p.returncode} before it was ready: {lines} {err}")


def _finish(p: subprocess.Popen[str]) -> None:
    try:
        out, err = p.communicate("done\n", timeout=120)
    except (BrokenPipeError, ValueError):     # it had ended already
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, (out, err)


@pytest.mark.parametrize("how", ["run", "container"])
def test_user_1000_runs_as_a_subordinate_id(rootless: Any, how: str) -> None:
    # The process inside prints its pid as the caller's namespace sees it, then waits.
    sub_uid, sub_gid = rootless.subuid[0][0], rootless.subgid[0][0]
    start, end = {
        "run": ('p = isolate.spawn(argv, namespaces={"pid", "mnt"}, user=1000, group=1000, **io)',
                "pass"),
        "container": ("c = isolate.Container(user=1000, group=1000)\np = c.start(argv, **io)",
                      "c.close()"),
    }[how]
    code = f"""
import sys, isolate
argv = ["sh", "-c", "id -u; id -g; echo ready; read x"]
io = dict(stdin=isolate.PIPE, stdout=isolate.PIPE)
{start}
try:
    print(p.pid)
    for line in p.stdout:
        print(line.decode().strip(), flush=True)
        if line.startswith(b"ready"):
            break
    p.stdin.write(sys.stdin.readline().encode()); p.stdin.close()
    sys.exit(p.wait())
finally:
    {end}
"""
    p, lines = _started(rootless, [rootless.python, "-u", "-c", code])
    try:
        pid, uid, gid = int(lines[0]), lines[1], lines[2]
        assert (uid, gid) == ("1000", "1000")
        assert _host_ids(pid) == (sub_uid + 999, sub_gid + 999)
    finally:
        _finish(p)


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def test_cli_user_1000(rootless: Any) -> None:
    p, lines = _started(rootless, ["isolate", "run", "--user", "1000", "--", "sh", "-c",
                                   "id -u; cat /proc/self/uid_map; echo ready; exec sleep 600"])
    try:
        assert lines[0] == "1000"
        start, count = rootless.subuid[0]
        assert _map_lines("\n".join(lines[1:])) == [[0, rootless.uid, 1], [1, start, count]]
        # The sandbox's process: a child of the isolate command (setpriv exec'd it).
        (sandbox,) = _children(p.pid)
        assert _host_ids(sandbox) == (start + 999, rootless.subgid[0][0] + 999)
    finally:
        for pid in _children(p.pid):     # the sandbox, which this test started
            os.kill(pid, 9)
        p.communicate(timeout=120)


def test_files_written_through_a_bind_belong_to_the_subordinate_id(rootless: Any) -> None:
    out = rootless.home / "out"
    try:
        _ok(rootless.run(["sh", "-c", f"mkdir -m 777 {out}"]))
        _ok(rootless.run(["isolate", "run", "--user", "1000", "--group", "1000", "--bind",
                          f"{out}:/out", "--", "sh", "-c", "echo hi > /out/f; mkdir /out/d"]))
        for name in ("f", "d"):
            st = (out / name).stat()
            assert (st.st_uid, st.st_gid) == (rootless.subuid[0][0] + 999,
                                              rootless.subgid[0][0] + 999), name
        assert (out / "f").read_text() == "hi\n"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_explicit_subid_maps(rootless: Any) -> None:
    out = _ok(rootless.python_run("""
import isolate
uid_map, gid_map = isolate.subid_maps()
r = isolate.run(["cat", "/proc/self/uid_map", "/proc/self/gid_map"], namespaces={"user"},
                uid_map=uid_map, gid_map=gid_map, capture_output=True, check=True)
print(r.stdout.decode(), end="")
"""))
    (s_u, n_u), (s_g, n_g) = rootless.subuid[0], rootless.subgid[0]
    assert _map_lines(out) == [[0, rootless.uid, 1], [1, s_u, n_u], [0, rootless.gid, 1], [1, s_g, n_g]]


def test_a_user_outside_the_range_is_refused_before_spawning(rootless: Any) -> None:
    r = rootless.run(["isolate", "run", "--user", "70000", "--", "true"])
    assert r.returncode == 125, r
    assert "70000" in r.stderr and "/etc/subuid" in r.stderr, r.stderr


# --- no ranges: one clear error, nothing left behind ------------------------------------


def test_missing_ranges_error_names_files_user_and_fix(no_ranges: Any) -> None:
    r = no_ranges.run(["isolate", "run", "--user", "1000", "--", "id"])
    assert r.returncode == 125, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for part in ("/etc/subuid", "/etc/subgid", repr(no_ranges.name), "usermod --add-subuids",
                 "--add-subgids"):
        assert part in lines[0], lines[0]
    # One id needs no range.
    assert _ok(no_ranges.run(["isolate", "run", "--", "id", "-u"])).strip() == "0"


def test_missing_ranges_library_leaves_nothing(no_ranges: Any) -> None:
    out = _ok(no_ranges.python_run("""
import json, os, isolate
fds = sorted(os.listdir("/proc/self/fd"))
errors = []
for call in (lambda: isolate.run(["id"], namespaces={"pid", "mnt"}, user=1000),
             lambda: isolate.Container(user=1000)):
    try:
        call()
        errors.append(None)
    except isolate.UnsupportedError as e:
        errors.append(str(e))
children = open(f"/proc/self/task/{os.getpid()}/children").read().split()
print(json.dumps([errors, sorted(os.listdir("/proc/self/fd")) == fds, children]))
"""))
    errors, same_fds, children = json.loads(out)
    for e in errors:
        assert e is not None and "/etc/subuid" in e and "usermod" in e, e
    assert same_fds and children == []


# --- the probe as a user -----------------------------------------------------------------


IDMAP_TRY = r"""
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long        # every argument a full register: syscall(2) is variadic
# The user's home: a directory with no mounts below it (a clone of a tree with mounts
# below, such as /tmp while other tests run, fails with EINVAL for another reason).
home = os.path.expanduser("~").encode()
fd = libc.syscall(L(428), L(-100), home, L(1 | 0o2000000))          # open_tree(OPEN_TREE_CLONE)
ns = os.open("/proc/self/ns/user", os.O_RDONLY)
attr = ctypes.create_string_buffer(struct.pack("QQQQ", 0x100000, 0, 0, ns))  # MOUNT_ATTR_IDMAP
rc = libc.syscall(L(442), L(fd), b"", L(0x1000), attr, L(32))       # mount_setattr(AT_EMPTY_PATH)
print(fd >= 0, rc, ctypes.get_errno())
"""


def test_probe_rows_as_a_user(rootless: Any) -> None:
    out = _ok(rootless.run([rootless.python, "-m", "isolate", "probe", "--json"]))
    probe = json.loads(out)
    feats = probe["features"]
    assert probe["euid"] == rootless.uid
    # The new mount API works where isolate uses it: a rootless root's tmpfs and binds.
    assert feats["new_mount_api"]["available"], feats["new_mount_api"]
    assert feats["new_mount_api"]["details"]["in_user_namespace"] == "ok"
    for t in ("mnt", "pid", "net", "uts", "ipc", "cgroup", "time"):
        f = feats[f"namespace.{t}"]
        assert f["available"] and f["details"] == {"needs_user_namespace": True}, f
    # Idmapped mounts of the host's filesystems are refused to a user, as the row says.
    assert not feats["idmapped_mounts"]["available"]
    tried = _ok(rootless.run(["unshare", "--user", "--map-root-user", "--mount", rootless.python,
                              "-c", IDMAP_TRY]))
    assert tried.split() == ["True", "-1", "1"], tried
    assert feats["subids"]["available"] and feats["newidmap"]["available"]


def test_probe_without_ranges_says_how_to_add_them(no_ranges: Any) -> None:
    feats = json.loads(_ok(no_ranges.run([no_ranges.python, "-m", "isolate", "probe", "--json"])))
    f = feats["features"]["subids"]
    assert not f["available"] and "usermod --add-subuids" in f["how_to_enable"], f


# --- the test suite as a user ------------------------------------------------------------


@pytest.mark.slow
def test_the_suite_collects_and_unit_tests_pass_as_a_user(rootless: Any) -> None:
    copy = rootless.home / "repo"
    try:
        for name in ("src", "csrc", "tests", "docs", "benchmarks", "README.md", "pyproject.toml",
                     "setup.py", "MANIFEST.in", "LICENSE", ".clang-format"):
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.exists():
                shutil.copy(src, copy / name)
        subprocess.run(["chown", "-R", f"{rootless.uid}:{rootless.gid}", str(copy)], check=True)
        # pytest's temporary directories in the user's home, not /tmp/pytest-of-<user>.
        pytest_argv = [rootless.python, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                       f"--basetemp={rootless.home}/pytest"]
        r = rootless.run([*pytest_argv, "--collect-only", "tests"], cwd=copy, timeout=600)
        assert r.returncode == 0 and " error" not in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
        r = rootless.run([*pytest_argv, "-rs", "tests/unit"], cwd=copy, timeout=1200)
        assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
        assert " passed" in r.stdout and " failed" not in r.stdout
    finally:
        shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
