"""Container root that is not host root (issue 16): idmapped binds, and no setuid-root file
planted on the host through them.

With a user namespace mapping container root to an unprivileged host range
(``IdMap(inside=0, outside=200000, count=65536)`` here, as H4a's default
will), host binds are idmapped mounts: a host file owned by uid N shows as
owned by N inside, and container root writes in a root-owned directory as
host root.  So every test of the second half plants, by every route we know,
a setuid-root, setgid-root or file-capability file in a read-write bind of a
root-owned host directory, then checks the directory from the host.  The
same attacks with the guard turned off (``seccomp=None``, CAP_SETFCAP given
back) succeed: that is what the guard stops.  crun, given the same bundle
with an ``idmap`` bind, is compared and the table printed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import compare

import isolate
from isolate import Container, IdMap, RootFS
from isolate.seccomp import OCI_DEFAULT_CAPS

pytestmark = [pytest.mark.root, pytest.mark.userns]

MAP = [IdMap(inside=0, outside=200000, count=65536)]
PY = "/usr/bin/python3"
CRUN = shutil.which("crun") or "/usr/bin/crun"


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A root-owned directory (0755) on the host's ext4, removed afterwards."""
    d = Path("/var/tmp") / f"isolate-userns-root-{uuid.uuid4().hex}"
    d.mkdir(mode=0o755)
    os.chown(d, 0, 0)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def run(root: RootFS, argv: list[str], **options: Any) -> isolate.Result:
    with Container(rootfs=root, uid_map=MAP, gid_map=MAP, **options) as c:
        return c.run(argv, timeout=60)


def mountinfo_line(out: str, target: str) -> str:
    return next(line for line in out.splitlines() if line.split()[4:5] == [target])


# --- idmapped binds work ---------------------------------------------------------------


def test_a_root_owned_rw_bind_is_writable_by_container_root_and_files_land_as_host_root(
        host_dir: Path) -> None:
    r = run(RootFS.host().bind(host_dir, "/data"),
            ["sh", "-c", "stat -c '%u:%g' /data && echo hello > /data/made && mkdir /data/sub "
                         "&& cat /proc/self/mountinfo"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[0] == "0:0"       # the host's root shows as root
    made = host_dir / "made"
    assert made.read_text() == "hello\n"
    st = made.stat()
    assert (st.st_uid, st.st_gid) == (0, 0), "container root writes as host root through the idmap"
    assert (host_dir / "sub").stat().st_uid == 0
    line = mountinfo_line(r.stdout.decode(), "/data")
    assert "idmapped" in line and "nosuid" in line and "nodev" in line, line


def test_identity_maps_keep_plain_binds(host_dir: Path) -> None:
    """Container root that is host root (an identity map) needs no idmap: control for the
    test above."""
    ident = [IdMap(inside=0, outside=0, count=65536)]
    with Container(rootfs=RootFS.host().bind(host_dir, "/data"), uid_map=ident, gid_map=ident) as c:
        r = c.run(["sh", "-c", "grep ' /data ' /proc/self/mountinfo"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "idmapped" not in r.stdout.decode()


def test_usr_shows_root_inside_and_stays_read_only() -> None:
    r = run(RootFS.host(), ["sh", "-c", "stat -c '%u:%g %a' /usr/bin/passwd /usr; "
                                        "touch /usr/x 2>&1; cat /proc/self/mountinfo"])
    out = r.stdout.decode()
    lines = out.splitlines()
    assert lines[0] == "0:0 4755", out
    assert lines[1] == "0:0 755", out
    assert "Read-only file system" in out
    assert "idmapped" in mountinfo_line(out, "/usr")


def test_a_read_only_bind_stays_read_only(host_dir: Path) -> None:
    r = run(RootFS.host().bind(host_dir, "/ro", readonly=True),
            [PY, "-c", "import os\ntry:\n    open('/ro/x', 'w')\nexcept OSError as e:\n    print(e.errno)\n"
                       "print(os.stat('/ro').st_uid)"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == [str(30), "0"]        # EROFS; root shows as root
    assert list(host_dir.iterdir()) == []


def test_a_tmpfs_bind_is_idmapped_on_this_kernel() -> None:
    """tmpfs supports idmapped mounts from Linux 6.3."""
    d = Path("/dev/shm") / f"isolate-userns-root-{uuid.uuid4().hex}"
    d.mkdir(mode=0o755)
    try:
        r = run(RootFS.host().bind(d, "/shm"),
                ["sh", "-c", "echo x > /shm/f && stat -c %u /shm && grep ' /shm ' /proc/self/mountinfo"])
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert out.splitlines()[0] == "0"
        assert "idmapped" in out, out
        assert (d / "f").stat().st_uid == 0
    finally:
        shutil.rmtree(d)


def test_a_filesystem_that_refuses_the_idmap_gets_a_plain_bind() -> None:
    """sysfs cannot be idmapped (EINVAL): the bind falls back to a plain one, and the
    container starts."""
    r = run(RootFS.host().bind("/sys/kernel/mm", "/mm", readonly=True),
            ["sh", "-c", "ls /mm >/dev/null && grep ' /mm ' /proc/self/mountinfo"])
    assert r.returncode == 0, r.stderr
    assert "idmapped" not in r.stdout.decode()


@pytest.mark.parametrize("readonly", [True, False])
def test_an_image_owned_by_host_root_is_root_inside(busybox_rootfs: Path, tmp_path: Path,
                                                     readonly: bool) -> None:
    """An image unpacked by root: owned by root inside, read-only as asked, and a read-write
    one writable by container root (files land as host root; not nosuid: the image's own
    setuid programs work inside, and the guard still refuses new ones)."""
    image = tmp_path / "image"
    shutil.copytree(busybox_rootfs, image, symlinks=True)
    root = RootFS.from_directory(image, readonly=readonly)
    r = run(root, ["/bin/sh", "-c", "stat -c %u /bin/busybox; touch /made; echo $?; "
                                    "touch /s && chmod 4755 /s; cat /proc/self/mountinfo"])
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "0", r.stdout
    top = mountinfo_line(r.stdout.decode(), "/")
    assert "idmapped" in top and ("ro," in top) is readonly and "nosuid" not in top.split()[5], top
    if readonly:
        assert lines[1] != "0" and not (image / "made").exists()
    else:
        assert lines[1] == "0" and (image / "made").stat().st_uid == 0
        assert not (image / "s").stat().st_mode & stat.S_ISUID


def test_the_child_gets_no_fd_of_the_prepared_mounts(host_dir: Path) -> None:
    r = run(RootFS.host().bind(host_dir, "/data"), [PY, "-c", "import os; print(sorted(os.listdir('/proc/self/fd')))"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "['0', '1', '2', '3']"     # 3: the listing itself


# --- the setuid-planting attack ----------------------------------------------------------

# Run inside as container root, in /data (the rw bind of a root-owned host directory).
# Each route prints "<name> ok" or "<name> <errno>".
ATTACKS = textwrap.dedent(r"""
    import ctypes, os, stat, struct, subprocess, tarfile, io
    libc = ctypes.CDLL(None, use_errno=True)
    os.chdir("/data")
    def attempt(name, fn):
        try:
            fn()
            print(name, "ok")
        except OSError as e:
            print(name, e.errno)
    def call(rc):
        if rc < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    def touch(p):
        with open(p, "w") as f:
            f.write("#!/bin/sh\n")
    def chmod(p, m):
        touch(p); os.chmod(p, m)
    def fchmod(p, m):
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o755)
        try:
            os.fchmod(fd, m)
        finally:
            os.close(fd)
    def fchmodat2(p, m):
        touch(p); call(libc.syscall(452, -100, p.encode(), m, 0))
    def openat2(p, m):
        how = struct.pack("QQQ", os.O_WRONLY | os.O_CREAT, m, 0)
        fd = libc.syscall(437, -100, p.encode(), how, len(how))
        call(fd); os.close(fd)
    def creat(p, m):
        fd = libc.creat(p.encode(), m); call(fd); os.close(fd)
    def run(*argv):
        r = subprocess.run(argv, capture_output=True)
        if r.returncode:
            raise OSError(1, r.stderr.decode().strip())
    def untar(p):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo(p); info.mode = 0o6755; info.size = 2
            t.addfile(info, io.BytesIO(b"x\n"))
        open("/tmp/setuid.tar", "wb").write(buf.getvalue())
        run("tar", "-xpf", "/tmp/setuid.tar", "-C", "/data")
    # security.capability, v2 (VFS_CAP_REVISION_2 | effective), permitted: CAP_SETUID.
    CAP = struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0)
    def setxattr(p):
        touch(p); os.setxattr(p, "security.capability", CAP)
    def nested_setxattr(p):
        touch(p)
        call(libc.unshare(0x10000000))          # CLONE_NEWUSER
        os.setxattr(p, "security.capability", CAP)
    attempt("chmod-4755", lambda: chmod("chmod-4755", 0o4755))
    attempt("chmod-2755", lambda: chmod("chmod-2755", 0o2755))
    attempt("fchmod-6755", lambda: fchmod("fchmod-6755", 0o6755))
    attempt("fchmodat2-4755", lambda: fchmodat2("fchmodat2-4755", 0o4755))
    attempt("open-4755", lambda: os.close(os.open("open-4755", os.O_WRONLY | os.O_CREAT, 0o4755)))
    attempt("openat2-4755", lambda: openat2("openat2-4755", 0o4755))
    attempt("creat-2755", lambda: creat("creat-2755", 0o2755))
    attempt("mknod-4755", lambda: os.mknod("mknod-4755", stat.S_IFREG | 0o4755))
    attempt("mkdir-6755", lambda: os.mkdir("mkdir-6755", 0o6755))
    attempt("install-m-4755", lambda: run("install", "-m", "4755", "/bin/true", "/data/install-m-4755"))
    attempt("cp-p-passwd", lambda: run("cp", "-p", "/usr/bin/passwd", "/data/cp-p-passwd"))
    attempt("tar-xp", lambda: untar("tar-xp"))
    attempt("setxattr-capability", lambda: setxattr("setxattr-capability"))
    attempt("setcap", lambda: (touch("setcap"), run("setcap", "cap_setuid+ep", "/data/setcap")))
    attempt("nested-userns-setxattr", lambda: nested_setxattr("nested-userns-setxattr"))
""")


def planted(d: Path) -> list[str]:
    """What the host finds in ``d``: files setuid-root, setgid-root or with file capabilities."""
    found = []
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        if st.st_mode & stat.S_ISUID and st.st_uid == 0:
            found.append(f"{p.name}: setuid root")
        if st.st_mode & stat.S_ISGID and st.st_gid == 0:
            found.append(f"{p.name}: setgid root")
        if not p.is_symlink() and "security.capability" in os.listxattr(p):
            found.append(f"{p.name}: security.capability")
    return found


def attack(root: RootFS, **options: Any) -> dict[str, str]:
    r = run(root, [PY, "-c", ATTACKS], **options)
    assert r.returncode == 0, r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.decode().splitlines())


def test_no_file_made_inside_is_setuid_root_on_the_host(host_dir: Path,
                                                        request: pytest.FixtureRequest) -> None:
    results = attack(RootFS.host().bind(host_dir, "/data"))
    print(json.dumps(results, indent=1))
    found = planted(host_dir)
    compare(request, "plant a setuid-root file in a rw idmapped bind", "isolate", not found,
            "; ".join(found) or "every route refused")
    assert found == []
    # The attack was real: container root did write there, as host root.
    assert (host_dir / "chmod-4755").stat().st_uid == 0
    assert results["chmod-4755"] == "1" and results["fchmodat2-4755"] == "1"   # EPERM
    assert results["openat2-4755"] == "38"                                      # ENOSYS
    assert results["setxattr-capability"] == "1"                                # no CAP_SETFCAP
    assert results["nested-userns-setxattr"] == "1"                             # no unshare


def test_the_same_attack_succeeds_with_the_guard_turned_off(host_dir: Path) -> None:
    """seccomp=None and CAP_SETFCAP given back: the routes plant for real (what the
    default stops, and what turning it off means)."""
    results = attack(RootFS.host().bind(host_dir, "/data"), seccomp=None, capabilities=OCI_DEFAULT_CAPS)
    found = planted(host_dir)
    print(json.dumps(results, indent=1), found)
    for name in ("chmod-4755: setuid root", "chmod-2755: setgid root", "open-4755: setuid root",
                 "openat2-4755: setuid root", "mknod-4755: setuid root", "install-m-4755: setuid root",
                 "cp-p-passwd: setuid root", "tar-xp: setuid root",
                 "setxattr-capability: security.capability", "setcap: security.capability"):
        assert name in found, found


def test_a_container_whose_root_is_host_root_keeps_setuid_files(host_dir: Path) -> None:
    """The guard is for containers whose root is not host root; with an identity map
    container root is host root anyway, and chmod u+s works as in Docker."""
    ident = [IdMap(inside=0, outside=0, count=65536)]
    with Container(rootfs=RootFS.host().bind(host_dir, "/data"), uid_map=ident, gid_map=ident) as c:
        r = c.run(["sh", "-c", "touch /data/f && chmod 4755 /data/f"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert (host_dir / "f").stat().st_mode & stat.S_ISUID


# --- crun, the same bundle with an idmapped bind -----------------------------------------


def test_crun_with_an_idmap_bind_lets_the_plant_through(host_dir: Path, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    """crun honours the OCI ``idmap`` mount option (podman's ``:idmap`` volumes): container
    root writes as host root there and chmod 4755 is allowed by its default profile."""
    from isolate.oci.features import default_spec

    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    config = default_spec()
    config["ociVersion"] = "1.0.2"                  # Debian's crun 1.8 knows no later one
    config["root"] = {"path": "rootfs", "readonly": True}
    config["process"]["args"] = ["/usr/bin/sh", "-c", "touch /data/crun-f && chmod 4755 /data/crun-f"]
    config["process"]["terminal"] = False
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    config["linux"].pop("resources", None)
    config["mounts"] = [m for m in config["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    for src in ("/usr", "/lib", "/lib64", "/bin"):
        if os.path.isdir(src) and not os.path.islink(src):
            config["mounts"].append({"destination": src, "type": "bind", "source": src,
                                     "options": ["rbind", "ro", "idmap"]})
        elif os.path.islink(src):
            (bundle / "rootfs" / src.lstrip("/")).symlink_to(os.readlink(src))
    config["mounts"].append({"destination": "/data", "type": "bind", "source": str(host_dir),
                             "options": ["rbind", "rw", "idmap"]})
    for m in config["mounts"]:
        point = bundle / "rootfs" / m["destination"].lstrip("/")
        if not point.is_symlink():
            point.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(config))
    state = tmp_path / "state"
    cid = f"h4b-{uuid.uuid4().hex[:8]}"
    # crun 1.8 refuses hybrid cgroup hosts: it runs in a mount namespace of its own whose
    # /sys/fs/cgroup is a cgroup2 mount, without cgroups (as test_oci_escapes.py does).
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"', "sh", CRUN,
                        "--cgroup-manager=disabled", "--root", str(state), "run", "--bundle",
                        str(bundle), cid], capture_output=True, text=True, timeout=60)
    subprocess.run([CRUN, "--root", str(state), "delete", "-f", cid], capture_output=True)
    assert r.returncode == 0, r.stderr
    f = host_dir / "crun-f"
    found = planted(host_dir)
    compare(request, "plant a setuid-root file in a rw idmapped bind", "crun", not found,
            "; ".join(found) or "refused")
    print(f"crun: {oct(f.stat().st_mode)} uid {f.stat().st_uid}: {found}")
    assert found == ["crun-f: setuid root"]
