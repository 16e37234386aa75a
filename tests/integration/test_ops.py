"""Each op family doing its job in a real child: mounts, files, root changes, tty, seccomp."""

from __future__ import annotations

import errno
import os
import platform
import struct
from pathlib import Path

import pytest

import isolate
from isolate import _ops as O
from isolate import _plan as P

pytestmark = pytest.mark.root


def sh(script: str, **kw: object) -> str:
    r = isolate.run(["sh", "-c", script], capture_output=True, **kw)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def b(p: object) -> bytes:
    return os.fsencode(str(p))


def test_recursive_read_only_bind_covers_submounts(tmp_path: Path) -> None:
    src, sub, dst = tmp_path / "src", tmp_path / "src" / "sub", tmp_path / "dst"
    src.mkdir()
    sub.mkdir()
    dst.mkdir()
    # sub is a mount of its own inside src: mount(2)'s MS_RDONLY would not reach it.
    out = sh(f"touch {dst}/a 2>&1 || echo ro-top; touch {dst}/sub/b 2>&1 || echo ro-sub; "
             f"grep ' {dst}/sub ' /proc/self/mountinfo | grep -c ' ro,'",
             namespaces={"mnt"},
             ops=[O.Mount(b"tmpfs", b(sub), b"tmpfs"), O.Bind(b(src), b(dst), recursive=True, readonly=True)])
    assert "ro-top" in out and "ro-sub" in out
    assert out.strip().endswith("1")
    assert not (src / "a").exists()


def test_mount_setattr_makes_a_tree_read_only(tmp_path: Path) -> None:
    out = sh(f"touch {tmp_path}/x 2>/dev/null && echo writable || echo read-only",
             namespaces={"mnt"},
             ops=[O.Mount(b"tmpfs", b(tmp_path), b"tmpfs"),
                  O.MountSetattr(b(tmp_path), attr_set=P.lib.MOUNT_ATTR_RDONLY)])
    assert out.strip() == "read-only"


def test_mounts_in_a_new_namespace_do_not_reach_the_host(tmp_path: Path) -> None:
    sh(f"mount -t tmpfs none {tmp_path} && touch {tmp_path}/inside", namespaces={"mnt"})
    assert not (tmp_path / "inside").exists()
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


def test_mkdir_mknod_symlink_and_write_file(tmp_path: Path) -> None:
    d = tmp_path / "d"
    out = sh(f"stat -c '%F %a' {d}; stat -c %F {d}/fifo; readlink {d}/link; cat {d}/file; "
             f"stat -c %a {d}/file",
             ops=[O.Mkdir(b(d), mode=0o750), O.Mkdir(b(d), exist_ok=True),
                  O.Mknod(b(d / "fifo"), mode=P.lib.S_IFIFO | 0o600),
                  O.Symlink(b"/target", b(d / "link")),
                  O.WriteFile(b(d / "file"), b"contents\n", mode=0o640)],
             umask=0)
    lines = out.split("\n")
    assert lines[0] == "directory 750"
    assert lines[1] == "fifo"
    assert lines[2] == "/target"
    assert lines[3] == "contents"
    assert lines[4] == "640"


def _busybox() -> str:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p):
            return p
    pytest.skip("busybox-static is not installed (.ci/packages.txt installs it)")


def test_pivot_root_detaches_the_old_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    bb = _busybox()
    ops = [O.Mount(b"tmpfs", b(root), b"tmpfs"), O.Mkdir(b(root / "bin")),
           O.Mknod(b(root / "bin/sh"), P.lib.S_IFREG | 0o755),
           O.Bind(bb.encode(), b(root / "bin/sh")),
           O.Mkdir(b(root / "proc")),
           O.PivotRoot(b(root))]
    r = isolate.run(["/bin/sh", "-c", "mount -t proc proc /proc; cat /proc/self/mountinfo; ls /; pwd"],
                    namespaces={"mnt", "pid"}, ops=ops, capture_output=True)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    mounts = [line.split()[4] for line in text.splitlines() if len(line.split()) > 6 and line.split()[4].startswith("/")]
    assert set(mounts) <= {"/", "/bin/sh", "/proc"}, mounts  # the host root is gone
    assert text.splitlines()[-1] == "/"
    assert not os.path.exists(root / "proc" / "1")


def test_chroot_changes_the_root(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "marker").write_text("inside\n")
    bb = _busybox()
    ops = [O.Mknod(b(tmp_path / "bin/sh"), P.lib.S_IFREG | 0o755), O.Bind(bb.encode(), b(tmp_path / "bin/sh")),
           O.Chroot(b(tmp_path))]
    r = isolate.run(["/bin/sh", "-c", "read x < /marker; echo $x"], namespaces={"mnt"}, ops=ops,
                    capture_output=True)
    assert r.stdout == b"inside\n"


def test_domainname_in_new_uts_namespace() -> None:
    assert sh("cat /proc/sys/kernel/domainname", namespaces={"uts"}, domainname="example.test").strip() == "example.test"


def test_tty_becomes_the_controlling_terminal() -> None:
    master, slave = os.openpty()
    try:
        p = isolate.spawn(["sh", "-c", "echo via-dev-tty > /dev/tty"], stdin=slave, stdout=slave,
                          stderr=slave, tty=True)
        os.close(slave)
        slave = -1
        assert p.wait(timeout=10) == 0
        assert b"via-dev-tty" in os.read(master, 1024)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def _deny_mkdir_filter() -> bytes:
    arch = platform.machine()
    if arch == "x86_64":
        audit_arch, nrs = 0xC000003E, (83, 258)  # mkdir, mkdirat
    elif arch == "aarch64":
        audit_arch, nrs = 0xC00000B7, (34, 34)
    else:
        pytest.skip(f"no syscall numbers for {arch} in this test")
    ins = struct.Struct("=HBBI")
    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    allow, kill, eperm = 0x7FFF0000, 0x80000000, 0x00050000 | errno.EPERM
    prog = [
        ins.pack(ld_w_abs, 0, 0, 4),            # A = arch
        ins.pack(jeq_k, 1, 0, audit_arch),      # wrong arch: kill
        ins.pack(ret_k, 0, 0, kill),
        ins.pack(ld_w_abs, 0, 0, 0),            # A = syscall nr
        ins.pack(jeq_k, 2, 0, nrs[0]),
        ins.pack(jeq_k, 1, 0, nrs[1]),
        ins.pack(ret_k, 0, 0, allow),
        ins.pack(ret_k, 0, 0, eperm),
    ]
    return b"".join(prog)


def test_seccomp_filter_is_loaded_last_and_enforced(tmp_path: Path) -> None:
    r = isolate.run(["mkdir", str(tmp_path / "x")], seccomp=_deny_mkdir_filter(), no_new_privs=True,
                    capture_output=True, ops=[O.Mkdir(b(tmp_path / "made-before-filter"))])
    assert r.returncode != 0 and b"Operation not permitted" in r.stderr
    assert (tmp_path / "made-before-filter").is_dir()
    assert not (tmp_path / "x").exists()
