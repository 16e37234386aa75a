"""RootFS on the real kernel: host binds, images, overlays, binds, tmpfs, /dev, /proc, /sys."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import isolate
from isolate import RootFS
from isolate import rootfs as rootfs_mod
from support import shares_a_master

pytestmark = [pytest.mark.root]

BUSYBOX = shutil.which("busybox")


def sh(script: str, rootfs: RootFS | None = None, **options: object) -> isolate.Result:
    with isolate.Container(rootfs=rootfs if rootfs is not None else "host", **options) as c:
        return c.run(["/bin/sh", "-c", script], timeout=60)


def mounts_of(result: isolate.Result) -> dict[str, str]:
    """mount point -> 'options fstype' from a printed /proc/self/mountinfo."""
    out = {}
    for line in result.stdout.decode().splitlines():
        f = line.split()
        if len(f) > 6 and "-" in f:
            out[f[4]] = f"{f[5]} {f[f.index('-') + 1]}"
    return out


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A one-binary image: a static busybox and its sh, ls, cat links."""
    if BUSYBOX is None:
        pytest.skip("busybox-static is not installed (.ci/packages.txt lists it)")
    root = tmp_path / "image"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for name in ("sh", "ls", "cat", "touch", "mkdir", "grep", "echo", "stat", "rm"):
        os.symlink("busybox", root / "bin" / name)
    (root / "etc").mkdir()
    (root / "etc" / "image-release").write_text("test image\n")
    os.chmod(tmp_path, 0o755)
    return root


def test_host_root_is_read_only_with_writable_tmp_and_home() -> None:
    r = sh("cat /proc/self/mountinfo; touch /new 2>/dev/null; echo root=$?; "
           "touch /tmp/a && echo tmp=0; touch /root/a && echo home=0; ls -ld /bin")
    assert r.returncode == 0, r
    m = mounts_of(r)
    assert m["/"].startswith("ro,")
    assert m["/usr"].startswith("ro,")
    assert m["/tmp"].split()[1] == "tmpfs" and m["/tmp"].startswith("rw,")
    assert b"root=1" in r.stdout and b"tmp=0" in r.stdout and b"home=0" in r.stdout
    if Path("/bin").is_symlink():   # merged /usr: the same symlink inside
        assert f"-> {os.readlink('/bin')}".encode() in r.stdout


def test_minimal_etc_and_dev() -> None:
    r = sh("ls /etc; ls /dev; ls -l /dev/ptmx; echo x > /dev/null && echo null=ok; "
           "head -c 4 /dev/zero | wc -c; cat /proc/self/mountinfo")
    assert r.returncode == 0, r
    out = r.stdout.decode()
    assert "passwd" in out and "ld.so.cache" in out
    for node in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx"):
        assert f"\n{node}\n" in out
    assert "pts/ptmx" in out and "null=ok" in out
    m = mounts_of(r)
    assert m["/dev/pts"].split()[1] == "devpts"
    assert m["/proc"].split()[1] == "proc"
    assert m["/sys"].startswith("ro,") and m["/sys"].split()[1] == "sysfs"
    assert m["/proc/sys"].startswith("ro,")
    assert m["/proc/acpi"].startswith("ro,") if "/proc/acpi" in m else True


def test_etc_files_copied_or_bound_read_only_match_the_host() -> None:
    # Small files are copies, large ones (mime.types) read-only binds: either
    # way the sandbox reads the host's content and cannot change it.
    names = [n for n in ("passwd", "ld.so.cache", "mime.types") if Path("/etc", n).is_file()]
    script = "; ".join(f"md5sum /etc/{n}; echo x >> /etc/{n} 2>/dev/null; echo w=$?" for n in names)
    r = sh(script + "; cat /proc/self/mountinfo")
    assert r.returncode == 0, r
    import hashlib

    for n in names:
        assert hashlib.md5(Path("/etc", n).read_bytes()).hexdigest().encode() in r.stdout, n
    assert r.stdout.count(b"w=0") == 0
    if "mime.types" in names and Path("/etc/mime.types").stat().st_size > rootfs_mod.ETC_COPY_MAX:
        assert mounts_of(r)["/etc/mime.types"].startswith("ro,")


@pytest.mark.parametrize("umask", [0o022, None])
def test_callers_umask_does_not_change_the_roots_modes(umask: int | None) -> None:
    # A caller with umask 077 once made /etc 0700 and /etc/passwd 0600: an
    # unprivileged user inside could not look up a name.
    old = os.umask(0o077)
    try:
        r = sh("stat -c '%a %n' /etc /etc/passwd /tmp; umask; id -un", user=65534, group=65534,
               capabilities=[], umask=umask)
    finally:
        os.umask(old)
    assert r.returncode == 0, r
    out = r.stdout.decode().split("\n")
    assert out[:3] == ["755 /etc", "644 /etc/passwd", "1777 /tmp"], out
    assert out[3] == ("0022" if umask is not None else "0077")   # None keeps the caller's
    assert out[4] == "nobody"


def test_bind_from_under_the_stage_directory(tmp_path: Path) -> None:
    # A source under the stage (/tmp) would be covered by a new root mounted
    # there: the build stages it instead, and the file is the host's.
    d = tmp_path / "under-stage"
    d.mkdir()
    (d / "f").write_text("from the host's /tmp\n")
    r = sh("cat /data/f; ls /", rootfs=RootFS.host().bind(d, "/data", readonly=True))
    assert r.returncode == 0, r
    assert b"from the host's /tmp" in r.stdout and b"oldroot" not in r.stdout


def test_directory_rootfs(image: Path) -> None:
    r = sh("cat /etc/image-release; ls /; touch /x 2>/dev/null; echo rw=$?",
           rootfs=RootFS.from_directory(image))
    assert r.returncode == 0, r
    assert r.stdout.startswith(b"test image\n")
    assert b"usr" not in r.stdout.split()
    assert b"rw=1" in r.stdout


def test_directory_rootfs_writable(image: Path) -> None:
    r = sh("echo hi > /written && cat /written", rootfs=RootFS.from_directory(image, readonly=False))
    assert r.stdout == b"hi\n", r
    assert (image / "written").read_text() == "hi\n"


def test_overlay_on_tmpfs_leaves_image_untouched(image: Path) -> None:
    rootfs = RootFS.from_directory(image).overlay()
    r = sh("echo new > /etc/image-release && cat /etc/image-release && rm /bin/ls && echo ok",
           rootfs=rootfs)
    assert r.stdout == b"new\nok\n", r
    assert (image / "etc" / "image-release").read_text() == "test image\n"
    assert (image / "bin" / "ls").is_symlink()


def test_overlay_kept_upper_lists_changes(image: Path, tmp_path: Path) -> None:
    upper = tmp_path / "changes"
    upper.mkdir()
    rootfs = RootFS.from_directory(image).overlay(upper)
    r = sh("echo new > /etc/image-release; echo a > /added; rm /bin/cat; mkdir /d; echo b > /d/f",
           rootfs=rootfs)
    assert r.returncode == 0, r
    ch = rootfs.changes()
    assert ch.added == ("/added", "/d", "/d/f")
    assert ch.changed == ("/etc/image-release",)
    assert ch.deleted == ("/bin/cat",)
    assert (image / "bin" / "cat").is_symlink()
    assert not (upper / "work").exists()      # kernel scratch removed after the run


def test_overlay_over_host_root() -> None:
    r = sh("echo x > /usr/isolate-overlay-test && cat /usr/isolate-overlay-test",
           rootfs=RootFS.host().overlay(size="8m"))
    assert r.stdout == b"x\n", r
    assert not Path("/usr/isolate-overlay-test").exists()


def test_binds_read_only_and_read_write(tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "f").write_text("ro data\n")
    os.chmod(tmp_path, 0o755)
    rootfs = RootFS.host().bind(ro, "/mnt/ro", readonly=True).bind(rw, "/mnt/rw")
    r = sh("cat /mnt/ro/f; touch /mnt/ro/g 2>/dev/null; echo ro=$?; echo w > /mnt/rw/out", rootfs=rootfs)
    assert r.stdout == b"ro data\nro=1\n", r
    assert (rw / "out").read_text() == "w\n"
    assert not (ro / "g").exists()


def test_bind_recursive_and_not() -> None:
    count = "grep -c ' /hostdev/pts ' /proc/self/mountinfo"
    host = sum(" /dev/pts " in line for line in open("/proc/self/mountinfo"))
    r1 = sh(count, rootfs=RootFS.host().bind("/dev", "/hostdev", readonly=True))
    assert int(r1.stdout) == host >= 1, r1
    # Without a user namespace: in one, the kernel refuses to bind a tree non-recursively
    # when that would reveal what its locked submounts cover (EINVAL).
    r2 = sh(count, rootfs=RootFS.host().bind("/dev", "/hostdev", readonly=True, recursive=False),
            namespaces=isolate.DEFAULT_NAMESPACES - {"user"})
    assert r2.stdout.strip() == b"0", r2


def test_bind_single_file(tmp_path: Path) -> None:
    f = tmp_path / "conf"
    f.write_text("setting=1\n")
    os.chmod(tmp_path, 0o755)
    r = sh("cat /opt/conf", rootfs=RootFS.host().bind(f, "/opt/conf", readonly=True))
    assert r.stdout == b"setting=1\n", r


def test_tmpfs_size() -> None:
    r = sh("df -k /scratch | tail -1", rootfs=RootFS.host().tmpfs("/scratch", size="2m"))
    assert r.returncode == 0, r
    assert r.stdout.split()[1] == b"2048"


def test_chroot_mode_is_stated(image: Path) -> None:
    with isolate.Container(rootfs=RootFS.from_directory(image), pivot_root=False) as c:
        r = c.run(["/bin/cat", "/etc/image-release"])
    assert r.stdout == b"test image\n", r
    assert r.root_mode == "chroot"


def test_host_root_without_user_namespace() -> None:
    ns = isolate.DEFAULT_NAMESPACES - {"user"}
    r = sh("cat /proc/self/uid_map; touch /x 2>/dev/null; echo rw=$?", namespaces=ns)
    assert r.stdout.split()[:3] == [b"0", b"0", b"4294967295"], r
    assert b"rw=1" in r.stdout


def test_missing_mount_point_in_read_only_image_fails_cleanly(image: Path) -> None:
    """A failure half-way (the cwd does not exist) raises the step's MountError; nothing stays."""
    with isolate.Container(rootfs=RootFS.from_directory(image), cwd="/nonexistent") as c:
        with pytest.raises(isolate.MountError) as info:
            c.run(["/bin/sh", "-c", "true"])
    assert "chdir" in info.value.op


def test_failure_half_way_removes_created_overlay_dirs(image: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper-kept"
    upper.mkdir()
    rootfs = RootFS.from_directory(image).overlay(upper)
    with isolate.Container(rootfs=rootfs, cwd="/nonexistent") as c:
        with pytest.raises(isolate.MountError):
            c.run(["/bin/sh", "-c", "true"])
    assert list(upper.iterdir()) == []


@pytest.mark.parametrize("userns", ["identity", "auto"])
def test_console_is_the_terminal_when_stdio_is_one(userns: str) -> None:
    """The terminal stdout is, bound on /dev/console.  Its node is the caller's (host root's,
    mode 0620): container root reopens it by path when it is host root (identity); with
    ids of its own (auto, root's default) only through the fds it was given."""
    if userns == "identity" and os.geteuid() != 0:
        pytest.skip("userns='identity' is root's")
    master, slave = os.openpty()
    try:
        with isolate.Container(userns=userns) as c:  # type: ignore[arg-type]
            r = c.run(["/bin/sh", "-c", "test -c /dev/console && (echo console > /dev/console) "
                       "2>/dev/null || echo refused; grep -c ' /dev/console ' /proc/self/mountinfo >&2"],
                      stdout=slave, stderr=isolate.PIPE, capture_output=False)
        assert r.returncode == 0, r
        assert r.stderr == b"1\n"
        want = b"console\n" if userns == "identity" or os.geteuid() != 0 else b"refused\n"
        assert os.read(master, 100).replace(b"\r", b"") == want
    finally:
        os.close(master)
        os.close(slave)
    with isolate.Container() as c:
        r = c.run(["/bin/sh", "-c", "test -e /dev/console; echo $?"])
    assert r.stdout == b"1\n"       # not a terminal: no console


def test_a_reused_host_root_is_shared_read_only_and_stays_so() -> None:
    # From its second start a RootFS's root (mount points and /etc's files) is one
    # read-only tmpfs made once, attached as a clone: nothing in the container,
    # even root with the default capabilities, can remount or change it.
    rootfs = RootFS.host()
    script = ("md5sum /etc/passwd; echo firmware=$(ls -A /sys/firmware | wc -l); mkdir /sys/firmware/x 2>/dev/null; "
              "echo x > /etc/passwd 2>/dev/null; echo w=$?; "
              "mount -o remount,rw / 2>/dev/null; echo m=$?; touch /x 2>/dev/null; echo t=$?; "
              "cat /proc/self/mountinfo")
    import hashlib

    digest = hashlib.md5(Path("/etc/passwd").read_bytes()).hexdigest().encode()
    namespaces = isolate.DEFAULT_NAMESPACES - {"user"}
    runs = [sh(script, rootfs, namespaces=namespaces) for _ in range(3)]
    assert shares_a_master(rootfs, namespaces=namespaces)
    for r in runs:
        assert r.returncode == 0, r
        assert digest in r.stdout
        assert b"w=0" not in r.stdout and b"m=0" not in r.stdout and b"t=0" not in r.stdout
        assert mounts_of(r)["/"].startswith("ro,")
        assert mounts_of(r)["/etc/ssl"].startswith("ro,")
        # The masked directories: one empty read-only tmpfs, also made once.
        assert b"firmware=0\n" in r.stdout and mounts_of(r)["/sys/firmware"].startswith("ro,")
    # A container that keeps CAP_SYS_ADMIN, or has its own user namespace, builds its own root.
    for options in ({"capabilities": None, "namespaces": namespaces}, {}):
        other = RootFS.host()
        for _ in range(2):
            assert sh("true", other, **options).returncode == 0
        assert not shares_a_master(other, **options), options



@pytest.mark.parametrize("userns", [True, False], ids=["userns", "no-userns"])
def test_dev_nodes_are_the_hosts_devices(userns: bool) -> None:
    # Made with mknod where the container may (no user namespace, as runc does),
    # else bound from the host's /dev: the same devices either way, all usable.
    namespaces = isolate.DEFAULT_NAMESPACES if userns else isolate.DEFAULT_NAMESPACES - {"user"}
    nodes = [n for n in rootfs_mod.DEV_NODES if n != "tty"]
    r = sh("; ".join(f"stat -c '%n %t:%T %F' /dev/{n}" for n in rootfs_mod.DEV_NODES)
           + '; echo x > /dev/null && echo "zero=$(head -c 4 /dev/zero | wc -c)"; '
           'echo "urandom=$(head -c 4 /dev/urandom | wc -c)"; cat /proc/self/mountinfo',
           namespaces=namespaces)
    assert r.returncode == 0, r
    for n in rootfs_mod.DEV_NODES:
        st = os.stat(f"/dev/{n}")
        assert f"/dev/{n} {os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x} character special file" \
            in r.stdout.decode()
    assert b"zero=4\n" in r.stdout and b"urandom=4\n" in r.stdout
    bound = [n for n in nodes if f"/dev/{n}" in mounts_of(r)]
    assert bound == (nodes if userns else [])
