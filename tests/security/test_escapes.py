"""Escape attempts against the default container: each must fail, for a stated reason.

Each test says what it tried and asserts what stopped it (the errno the
kernel gave, or what the container saw instead of the host).
"""

from __future__ import annotations

import errno
import hashlib
import os
from typing import Any
import subprocess
import sys
from pathlib import Path

import pytest

import isolate
from support import shares_a_master

PY = "/usr/bin/python3"

pytestmark = [pytest.mark.root]


def run(argv: list[str], **options: Any) -> Any:
    """Run argv in a default container (options go to ``Container``); returns the Result."""
    if not os.path.exists(PY):
        pytest.skip(f"{PY} is needed inside the container for this attack")
    with isolate.Container(**options) as c:
        return c.run(argv, timeout=60)


def py(code: str, **options: Any) -> Any:
    """Run Python code inside a default container."""
    return run([PY, "-c", code], **options)


def _errno_of(result: isolate.Result) -> int:
    """The attacks below print the errno they got (0: the attack worked)."""
    assert result.returncode == 0, result
    return int(result.stdout.split()[-1])


def test_cannot_see_host_pids() -> None:
    """Tried: find a host process (a sleep with a unique argument) in /proc and signal it.
    Stopped by: the pid namespace and a fresh procfs (it is not there; kill gives ESRCH)."""
    host = subprocess.Popen(["sleep", "1000.4242"])
    try:
        r = py(
            "import os, glob\n"
            "needle = ('1000.' + '4242').encode()\n"
            "found = [p for p in glob.glob('/proc/[0-9]*/cmdline') if needle in open(p,'rb').read()]\n"
            "print(sorted(int(p.split('/')[2]) for p in glob.glob('/proc/[0-9]*')))\n"
            f"try:\n os.kill({host.pid}, 0); print('found' if found else 'visible', 0)\n"
            "except OSError as e: print('found' if found else 'hidden', e.errno)\n")
        assert b"hidden" in r.stdout, r
        assert _errno_of(r) == errno.ESRCH
        assert r.stdout.startswith(b"[1]"), r.stdout   # only itself, as pid 1
    finally:
        host.kill()
        host.wait()


def test_cannot_see_the_callers_network_interfaces_without_a_user_namespace(tmp_path: Path) -> None:
    """Tried: from a container without a user namespace, whose network namespace is made
    while its root is built, find an interface of the caller's network namespace (a veth
    pair the test makes in a namespace of its own): in /sys/class/net (sysfs shows the
    namespace of whoever mounts it), /proc/net/dev and if_nameindex().
    Stopped by: the child enters its new namespace before it mounts sysfs, and runs
    nothing outside it; all three show lo alone."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import socket, subprocess, isolate\n"
        "subprocess.run(['ip', 'link', 'add', 'isoprobe0', 'type', 'veth', 'peer', 'name',\n"
        "                'isoprobe1'], check=True)\n"
        "print(sorted(n for _, n in socket.if_nameindex()))\n"
        "with isolate.Container(namespaces=isolate.DEFAULT_NAMESPACES - {'user'}) as c:\n"
        f"    r = c.run(['{PY}', '-c', 'import os, socket\\n'\n"
        "              'print(sorted(os.listdir(\"/sys/class/net\")))\\n'\n"
        "              'print(open(\"/proc/net/dev\").read().count(\":\"))\\n'\n"
        "              'print(sorted(n for _, n in socket.if_nameindex()))'])\n"
        "print(r.returncode, r.stderr)\n"
        "print(r.stdout.decode(), end='')\n")
    # The caller runs in a network namespace of the test's own: the host's is not touched.
    r = subprocess.run(["unshare", "--net", sys.executable, str(script)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    caller, status, sysfs, dev_lines, names = r.stdout.split("\n")[:5]
    assert "isoprobe0" in caller and "isoprobe1" in caller     # there is something to find
    assert status == "0 b''", r.stdout
    assert sysfs == "['lo']" and dev_lines == "1" and names == "['lo']", r.stdout


def test_proc_1_root_is_the_container_root(host_marker: Path) -> None:
    """Tried: reach the host's files through /proc/1/root.
    Stopped by: pid 1 is the container's own init, whose root is the container's."""
    r = py(f"import os; print(os.path.exists('/proc/1/root{host_marker}'), "
           "sorted(os.listdir('/proc/1/root')) == sorted(os.listdir('/')))")
    assert r.stdout.split() == [b"False", b"True"], r


def test_dotdot_and_chroot_escape(host_marker: Path) -> None:
    """Tried: the classic chroot escape (chroot into a subdirectory, fchdir out, cd .. many
    times, chroot .) with CAP_SYS_CHROOT, which the OCI default set keeps.
    Stopped by: pivot_root with the old root detached: above the new root there is nothing."""
    r = py(
        "import os\n"
        "fd = os.open('/', os.O_RDONLY)\n"
        "os.makedirs('/tmp/jail', exist_ok=True); os.chroot('/tmp/jail'); os.fchdir(fd)\n"
        "for _ in range(64): os.chdir('..')\n"
        "os.chroot('.')\n"
        f"print(os.path.exists('{host_marker}'), os.path.exists('/work'), os.path.exists('/var'))\n")
    assert r.stdout.split() == [b"False", b"False", b"False"], r
    assert r.root_mode == "pivot_root"


def test_chroot_mode_escape_is_refused(host_marker: Path) -> None:
    """Tried: the same escape where the root was entered with chroot (the initramfs fallback),
    under which the host tree still exists below the root.
    Stopped by: CAP_SYS_CHROOT is dropped in chroot mode, and seccomp then refuses chroot (EPERM)."""
    r = py(
        "import os\n"
        "os.makedirs('/tmp/jail', exist_ok=True)\n"
        "try:\n os.chroot('/tmp/jail'); print(0)\nexcept OSError as e: print(e.errno)\n"
        f"print(os.path.exists('{host_marker}'))\n", pivot_root=False)
    assert r.root_mode == "chroot"
    assert r.stdout.split() == [str(errno.EPERM).encode(), b"False"], r


def test_inherited_directory_fd_is_closed(host_marker: Path) -> None:
    """Tried: use a host directory fd the caller left inheritable (not in pass_fds).
    Stopped by: every fd that was not passed is closed at execve."""
    fd = os.open(host_marker.parent, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    try:
        r = py(f"import os\nprint(sorted(map(int, os.listdir('/proc/self/fd'))))\n"
               f"try:\n os.listdir({fd}); print(0)\nexcept OSError as e: print(e.errno)")
        open_fds = eval(r.stdout.splitlines()[0])   # noqa: S307 - our own output
        assert fd not in open_fds or fd < 3
        assert _errno_of(r) == errno.EBADF
    finally:
        os.close(fd)


def test_symlink_planted_at_mount_target_stays_inside(tmp_path: Path) -> None:
    """Tried: an image whose mount targets are symlinks out of it (CVE-2021-30465 class):
    /data -> /etc (absolute) and /up -> ../../../../../.. (relative).
    Stopped by: targets are opened with openat2(RESOLVE_IN_ROOT): both resolve inside the image."""
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "bin").mkdir()
    os.symlink("/usr/bin/busybox", image / "bin" / "sh")
    os.symlink("/etc", image / "data")
    os.symlink("../../../../../..", image / "up")
    src = tmp_path / "src"
    src.mkdir()
    (src / "marker").write_text("bound\n")
    rootfs = isolate.RootFS.from_directory(image).bind("/usr", readonly=True)
    rootfs.bind(src, "/data", readonly=True).tmpfs("/up/x", size="1m")
    with isolate.Container(rootfs=rootfs) as c:
        r = c.run(["/bin/sh", "-c", "cat /etc/marker; grep -c ' /x ' /proc/self/mountinfo"])
    assert r.returncode == 0, r
    assert r.stdout.split() == [b"bound", b"1"]
    # Nothing was created outside the image on the host either.
    assert not (tmp_path / "x").exists() and not Path("/x").exists()
    assert (image / "x").is_dir()


def test_cannot_overwrite_runtime_binary_via_proc_self_exe() -> None:
    """Tried: open /proc/self/exe and /proc/1/exe for writing (CVE-2019-5736 class).
    Stopped by: the binary is on a read-only bind and busy (EROFS / ETXTBSY); the runtime
    (this Python) is not in the container's pid namespace at all."""
    exe = os.path.realpath(PY)
    before = hashlib.sha256(Path(exe).read_bytes()).hexdigest()
    r = py("import os\nerrs = []\n"
           "for p in ('/proc/self/exe', '/proc/1/exe'):\n"
           " try:\n  open(p, 'r+b').close(); errs.append(0)\n"
           " except OSError as e: errs.append(e.errno)\n"
           "print(*errs)")
    assert r.returncode == 0, r
    errs = [int(x) for x in r.stdout.split()]
    assert all(e in (errno.EROFS, errno.ETXTBSY) for e in errs), errs
    assert hashlib.sha256(Path(exe).read_bytes()).hexdigest() == before


def test_leaked_host_fd_as_cwd_is_refused(host_marker: Path) -> None:
    """Tried: start with cwd=/proc/self/fd/N where N is a host directory fd passed in
    (CVE-2024-21626 class).
    Stopped by: cwd is resolved inside the root with RESOLVE_NO_MAGICLINKS: setup fails
    (ELOOP) before the command runs."""
    fd = os.open(host_marker.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with isolate.Container(cwd=f"/proc/self/fd/{fd}") as c:
            with pytest.raises(isolate.MountError) as info:
                c.run(["/bin/sh", "-c", "ls"], pass_fds=[fd])
        assert info.value.errno in (errno.ELOOP, errno.EXDEV)
        assert "chdir" in info.value.op
    finally:
        os.close(fd)


def test_cannot_remount_root_read_write() -> None:
    """Tried: mount -o remount,rw / and then write to /.
    Stopped by: seccomp (mount is EPERM without CAP_SYS_ADMIN); the write then fails EROFS."""
    r = run(["/bin/sh", "-c", "mount -o remount,rw / 2>/dev/null; echo mount=$?; "
             "touch /pwned 2>/dev/null; echo touch=$?"])
    assert r.returncode == 0, r
    mount, touch = r.stdout.split()
    assert mount != b"mount=0" and touch == b"touch=1", r


def test_remount_without_seccomp_still_fails_without_cap_sys_admin() -> None:
    """Tried: the same remount (MS_REMOUNT|MS_BIND, clearing MS_RDONLY) with seccomp off.
    Stopped by: the dropped capability: the OCI default set has no CAP_SYS_ADMIN (EPERM)."""
    r = py("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
           "rc = libc.mount(None, b'/', None, 0x20 | 0x1000, None)\n"
           "print(ctypes.get_errno() if rc else 0)", seccomp=None)
    assert _errno_of(r) == errno.EPERM


def test_cannot_mount_anything() -> None:
    """Tried: mount a tmpfs over /tmp/x.
    Stopped by: seccomp's Docker profile (mount needs CAP_SYS_ADMIN): EPERM."""
    r = py("import ctypes, os\nos.mkdir('/tmp/x')\nlibc = ctypes.CDLL(None, use_errno=True)\n"
           "rc = libc.mount(b'none', b'/tmp/x', b'tmpfs', 0, None)\n"
           "print(ctypes.get_errno() if rc else 0)")
    assert _errno_of(r) == errno.EPERM


def test_cannot_mknod_a_device() -> None:
    """Tried: mknod a block device for the host's disk (CAP_MKNOD is in the OCI set).
    Stopped by: the user namespace: device nodes need CAP_MKNOD in the initial one (EPERM)."""
    r = py("import os\ntry:\n os.mknod('/tmp/sda', 0o600 | 0o60000, os.makedev(8, 0)); print(0)\n"
           "except OSError as e: print(e.errno)")
    assert _errno_of(r) == errno.EPERM


@pytest.mark.cgroup1
def test_cannot_open_a_made_device_without_a_user_namespace() -> None:
    """Tried: with the user namespace left out, mknod the host's first disk in /dev and /tmp,
    then read it: with the default capabilities, and with device rules in the cgroup.
    Stopped by: without device rules the default set lacks CAP_MKNOD (EPERM); with
    Limits.devices (deny by default) mknod works but open(2) is refused: by the device
    cgroup in /dev (EPERM), by the nodev mount in /tmp (EACCES)."""
    disks = [d for d in sorted(Path("/sys/block").iterdir()) if not d.name.startswith(("loop", "ram"))]
    if not disks:
        pytest.skip("this host has no block device to aim at")
    major, minor = (disks[0] / "dev").read_text().split(":")
    namespaces = isolate.DEFAULT_NAMESPACES - {"user"}
    attack = ("import os\nfor path in ('/dev/sdz', '/tmp/sdz'):\n"
              " try:\n"
              f"  os.mknod(path, 0o600 | 0o60000, os.makedev({major}, {minor.strip()}))\n"
              " except OSError as e: print('mknod', e.errno); continue\n"
              " try: os.close(os.open(path, os.O_RDONLY)); print('open', 0)\n"
              " except OSError as e: print('open', e.errno)\n")
    r = py(attack, namespaces=namespaces)
    assert r.returncode == 0, r
    assert r.stdout.decode().split("\n")[:2] == [f"mknod {errno.EPERM}"] * 2, r.stdout
    limits = isolate.Limits(pids_max=64, devices=isolate.DEFAULT_DEVICES)
    r = py(attack, namespaces=namespaces, limits=limits, name=f"isolate-test-mknod-{os.getpid()}")
    assert r.returncode == 0, r
    assert r.stdout.decode().split("\n")[:2] == [f"open {errno.EPERM}", f"open {errno.EACCES}"], r.stdout


def test_cannot_load_a_kernel_module() -> None:
    """Tried: finit_module(2) and init_module(2).
    Stopped by: seccomp (EPERM) before the kernel's CAP_SYS_MODULE check."""
    r = py("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nerrs = []\n"
           "for nr, args in ((313, (0, b'', 0)), (175, (None, 0, b''))):\n"
           " rc = libc.syscall(nr, *args); errs.append(ctypes.get_errno() if rc else 0)\n"
           "print(*errs)")
    assert r.returncode == 0, r
    assert [int(x) for x in r.stdout.split()] == [errno.EPERM, errno.EPERM]


def test_cannot_ptrace_outside() -> None:
    """Tried: PTRACE_ATTACH to a host process (a sleep started by the test).
    Stopped by: it is not in the container's pid namespace (ESRCH)."""
    host = subprocess.Popen(["sleep", "1000"])
    try:
        r = py(f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               f"rc = libc.ptrace(16, {host.pid}, None, None)\nprint(ctypes.get_errno() if rc else 0)")
        assert _errno_of(r) == errno.ESRCH
        assert host.poll() is None
    finally:
        host.kill()
        host.wait()


def test_cannot_write_proc_sys_or_sysfs() -> None:
    """Tried: write /proc/sysrq-trigger (where the kernel has it), /proc/sys/kernel/hostname
    and /sys/kernel/uevent_helper.
    Stopped by: the OCI read-only paths and a read-only sysfs (EROFS)."""
    targets = ["/proc/sys/kernel/hostname", "/sys/kernel/uevent_helper"]
    if os.path.exists("/proc/sysrq-trigger"):
        targets.append("/proc/sysrq-trigger")
    r = py("import sys\nerrs = []\n"
           f"for p in {targets!r}:\n"
           " try:\n  open(p, 'w').write('x'); errs.append(0)\n"
           " except OSError as e: errs.append(e.errno)\n"
           "print(*errs)")
    assert r.returncode == 0, r
    assert [int(x) for x in r.stdout.split()] == [errno.EROFS] * len(targets)


def test_nested_user_namespace_does_not_regain_capabilities() -> None:
    """Tried: unshare(CLONE_NEWUSER) to get a full capability set back.
    Stopped by: seccomp (unshare needs CAP_SYS_ADMIN in Docker's profile): EPERM."""
    r = py("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
           "rc = libc.unshare(0x10000000)\nprint(ctypes.get_errno() if rc else 0)")
    assert _errno_of(r) == errno.EPERM


def test_nested_user_namespace_without_seccomp_gains_nothing_outside() -> None:
    """Tried: with seccomp off and no capabilities, create a nested user + mount namespace
    (capabilities come back inside it) and remount the root read-write.
    Stopped by: the root's read-only flag is locked in namespaces below the one that made it."""
    r = py("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
           "assert libc.unshare(0x10000000 | 0x20000) == 0, ctypes.get_errno()\n"
           "rc = libc.mount(None, b'/', None, 0x20 | 0x1000, None)\n"
           "print(ctypes.get_errno() if rc else 0)",
           seccomp=None, capabilities=[])
    assert _errno_of(r) == errno.EPERM


def test_setuid_binary_does_not_raise_privileges(tmp_path: Path) -> None:
    """Tried: as uid 1000, run a setuid-root copy of id(1) bound into the container.
    Stopped by: no_new_privs: execve ignores the setuid bit (euid stays 1000)."""
    d = tmp_path / "suid"
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    suid = d / "id"
    suid.write_bytes(Path("/usr/bin/id").read_bytes())
    os.chmod(suid, 0o4755)
    rootfs = isolate.RootFS.host().bind(d, "/opt/suid", readonly=True)
    with isolate.Container(rootfs=rootfs, user=1000, cwd="/") as c:
        r = c.run(["/opt/suid/id", "-u"])
    assert r.returncode == 0, r
    assert r.stdout.strip() == b"1000"


def test_tmpfs_cannot_grow_past_its_size() -> None:
    """Tried: write 4 MiB into a 1 MiB tmpfs.
    Stopped by: the tmpfs size limit (ENOSPC); the file holds at most 1 MiB."""
    rootfs = isolate.RootFS.host().tmpfs("/data", size="1m")
    with isolate.Container(rootfs=rootfs) as c:
        r = c.run([PY, "-c",
                   "import errno\nf = open('/data/f', 'wb')\n"
                   "try:\n for _ in range(64): f.write(b'x' * 65536); f.flush()\n"
                   "except OSError as e: print(e.errno)\nelse: print(0)\n"
                   "import os; print(os.path.getsize('/data/f'))"])
    assert r.returncode == 0, r
    err, size = (int(x) for x in r.stdout.split())
    assert err == errno.ENOSPC
    assert size <= 1 << 20


_CG = [pytest.param("v1", marks=pytest.mark.cgroup1), pytest.param("v2", marks=pytest.mark.cgroupv2)]


@pytest.mark.parametrize("hierarchy", _CG)
def test_fork_bomb_is_held_by_pids(hierarchy: str) -> None:
    """Tried: start 200 sleeping processes under --pids 32.
    Stopped by: the pids controller: fork fails (EAGAIN) once 32 tasks exist."""
    script = ("import os, time\nn = 0\n"
              "for _ in range(200):\n"
              " try:\n  pid = os.fork()\n"
              " except OSError as e:\n  print('fork', e.errno); break\n"
              " if pid == 0:\n  time.sleep(30); os._exit(0)\n"
              " n += 1\nprint('children', n)")
    r = subprocess.run([sys.executable, "-m", "isolate", "run", "--pids", "32", "--timeout", "60",
                        "--name", f"isolate-test-pids-{os.getpid()}",
                        "--", PY, "-c", script], capture_output=True, timeout=120)
    assert r.returncode == 0, r
    out = r.stdout.split()
    assert out[:2] == [b"fork", str(errno.EAGAIN).encode()], r.stdout
    assert int(out[-1]) < 32


@pytest.mark.parametrize("hierarchy", _CG)
def test_memory_hog_is_killed_under_memory(hierarchy: str) -> None:
    """Tried: touch 512 MiB under --memory 64m.
    Stopped by: the memory controller's OOM killer (SIGKILL, Result.oom_killed)."""
    limits = isolate.Limits(memory_max=64 << 20)
    with isolate.Container(limits=limits, name=f"isolate-test-oom-{os.getpid()}") as c:
        r = c.run([PY, "-c", "b = bytearray(512 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1"])
    assert r.returncode == -9, r
    assert r.oom_killed
    assert r.peak_memory is None or r.peak_memory <= 80 << 20


@pytest.mark.parametrize("hierarchy", _CG)
def test_cannot_leave_its_cgroup(hierarchy: str) -> None:
    """Tried: leave the group, by writing 0 to the tasks/cgroup.procs files the child joined
    through (left open?) or to the root group of a cgroupfs mounted inside.
    Stopped by: the join's fds are close-on-exec; the cgroup namespace is rooted at the group,
    so the root a mount shows is the group itself; mounting needs CAP_SYS_ADMIN it lacks."""
    limits = isolate.Limits(pids_max=50)
    name = f"isolate-test-leave-{os.getpid()}"
    with isolate.Container(limits=limits, name=name) as c:
        r = c.run([PY, "-c",
                   "import os\n"
                   "fds = []\n"
                   "for f in os.listdir('/proc/self/fd'):\n"
                   " try: fds.append(os.readlink(f'/proc/self/fd/{f}'))\n"
                   " except OSError: pass   # listdir's own fd, closed by now\n"
                   "print(sum('cgroup' in t for t in fds))\n"
                   "print(all(ln.endswith(':/') for ln in open('/proc/self/cgroup').read().split()))\n"
                   "os.makedirs('/tmp/cg', exist_ok=True)\n"
                   "try:\n"
                   " import ctypes; libc = ctypes.CDLL(None, use_errno=True)\n"
                   " rc = libc.mount(b'cgroup', b'/tmp/cg', b'cgroup', 0, b'pids')\n"
                   " print(ctypes.get_errno() if rc else 0)\n"
                   "except OSError as e: print(e.errno)\n"], timeout=60)
        procs = c.cgroup.procs()
    assert r.returncode == 0, r
    leaked, at_root, mount_errno = r.stdout.split()
    assert leaked == b"0", r.stdout            # no cgroup file left open
    assert at_root == b"True", r.stdout        # its own group is / in its namespace
    assert int(mount_errno) == errno.EPERM, r.stdout
    assert procs == [], procs                  # (it had exited; nothing else was in the group)


def test_shared_root_cannot_be_changed_for_the_next_container() -> None:
    """Tried: in a container without a user namespace whose root is the shared read-only
    tmpfs (a RootFS started again), remount it read-write and rewrite /etc/passwd: with
    seccomp, without seccomp, and from a nested user + mount namespace without seccomp.
    Stopped by: no CAP_SYS_ADMIN (EPERM) and the locked read-only flag below; the next
    container reads the host's /etc/passwd."""
    rootfs = isolate.RootFS.host()
    namespaces = isolate.DEFAULT_NAMESPACES - {"user"}
    attack = ("import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
              "if sys.argv[1:] == ['nested']:\n"
              " assert libc.unshare(0x10000000 | 0x20000) == 0, ctypes.get_errno()\n"
              "rc = libc.mount(None, b'/', None, 0x20 | 0x1000, None)\n"
              "err = ctypes.get_errno() if rc else 0\n"
              "try:\n open('/etc/passwd', 'a').write('pwned::0:0::/:/bin/sh\\n')\n"
              "except OSError as e: print(e.errno, err)\nelse: print(0, err)")
    assert run(["/bin/true"], rootfs=rootfs, namespaces=namespaces).returncode == 0
    for argv, options in ((["x"], {}), (["x"], {"seccomp": None}),
                          (["nested"], {"seccomp": None, "capabilities": []})):
        r = run([PY, "-c", attack, *argv], rootfs=rootfs, namespaces=namespaces, **options)
        assert r.returncode == 0, r
        write, mount = (int(x) for x in r.stdout.split())
        assert write == errno.EROFS and mount == errno.EPERM, (argv, options, r)
    assert shares_a_master(rootfs, namespaces=namespaces)      # the attacks ran on the shared root
    r = run(["/bin/cat", "/etc/passwd"], rootfs=rootfs, namespaces=namespaces)
    assert r.stdout == Path("/etc/passwd").read_bytes()
