"""The ``tmpcopyup`` mount option (podman's ``--tmpfs`` and ``--read-only`` tmpfs mounts):
the tmpfs starts with a copy of the directory it covers in the image, as under runc.

Differential cases against runc (see test_differential.py): contents, owners and modes;
hostile images (the covered path a symlink out of the root, a symlink inside it to a host
file, ``..``) copy nothing of the host.  A directory over the bound is refused with an
error naming the mount and leaves nothing.  A podman case runs ``--tmpfs`` through both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_differential import CID, Case, Side, check, sides  # noqa: F401
from test_podman import IMAGE, Podman
from test_podman_resources import pair  # noqa: F401

from isolate import _copyup

pytestmark = [pytest.mark.root]

# Every entry below the directory: name, type, mode, owner, size; symlink targets; contents.
LISTING = ("cd {d} && find . | sort | while read f; do "
           "echo \"entry $(stat -c '%n %F %a %u %g' \"$f\")\"; "
           "[ -L \"$f\" ] && echo \"link $f -> $(readlink \"$f\")\"; "
           "[ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"data $f $(cat \"$f\")\"; done; "
           "echo \"root $(stat -c '%a %u %g' {d})\"; "
           "awk '$5 == \"{d}\" {{ print \"mount\", $6, $(NF - 2), $NF }}' /proc/self/mountinfo; "
           "echo new > {d}/new && echo \"writable $(cat {d}/new)\"")


def _tmpfs(dest: str, *options: str) -> Callable[[dict[str, Any], Path], None]:
    def edit(config: dict[str, Any], host: Path) -> None:
        config["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                                 "options": ["tmpcopyup", *options]})
    return edit


def _edits(*edits: Callable[[dict[str, Any], Path], None]) -> Callable[[dict[str, Any], Path], None]:
    def edit(config: dict[str, Any], host: Path) -> None:
        for e in edits:
            e(config, host)
    return edit


def _tree(rootfs: Path) -> None:
    d = rootfs / "srv" / "up"
    (d / "sub").mkdir(parents=True)
    (d / "file").write_text("hello\n")
    os.chmod(d / "file", 0o604)
    os.chown(d / "file", 1000, 2000)
    (d / "sub" / "inner").write_text("inner\n")
    os.chmod(d / "sub", 0o705)
    os.chown(d / "sub", 7, 8)
    (d / "run").write_text("#!/bin/sh\n")
    os.chmod(d / "run", 0o4755)
    os.symlink("file", d / "link")
    os.lchown(d / "link", 5, 6)
    os.symlink("/etc/passwd", d / "abs")
    os.chmod(d, 0o751)
    os.chown(d, 3, 4)


def _host(rootfs: Path) -> Path:
    """The side's host scratch directory (Side.host), from its bundle's rootfs."""
    return rootfs.parent.parent / "host"


def _hostile(rootfs: Path) -> None:
    host = _host(rootfs)
    (host / "secretdir").mkdir(exist_ok=True)
    (host / "secretdir" / "secret").write_text("host secret\n")
    (host / "hostfile").write_text("host file\n")
    (rootfs / "srv").mkdir(exist_ok=True)
    # The covered path itself a symlink leading out (absolute, and by ".."): resolved inside
    # the image, to its own /etc (busybox's few files), never the host's.
    os.symlink("/etc", rootfs / "srv" / "out")
    os.symlink("../../../../../../../../../etc", rootfs / "srv" / "dots")
    # A symlink inside the directory to a host file: copied as a symlink, never followed.
    (rootfs / "srv" / "in").mkdir()
    os.symlink(str(host / "hostfile"), rootfs / "srv" / "in" / "leak")
    (rootfs / "srv" / "in" / "mine").write_text("mine\n")


def _special(rootfs: Path) -> None:
    d = rootfs / "srv" / "up"
    d.mkdir(parents=True)
    os.mknod(d / "null", 0o620 | 0o020000, os.makedev(1, 3))
    os.chown(d / "null", 9, 10)


CASES = [
    Case("contents", LISTING.format(d="/srv/up"), _tmpfs("/srv/up", "mode=755", "size=1m", "nosuid", "nodev"),
         populate=_tree, want=("data ./file hello", "link ./link -> file", "writable new")),
    Case("readonly", LISTING.format(d="/srv/up").rsplit(";", 1)[0] + "; echo x > /srv/up/new 2>/dev/null || echo ro",
         _tmpfs("/srv/up", "ro", "mode=1777", "noexec"), populate=_tree, want=("data ./file hello", "ro")),
    # A device node: runc 1.1.5's copy fails on it (lchown of a file it never made): refused.
    Case("special", "echo started", _tmpfs("/srv/up", "mode=755"), populate=_special, status=1, error=True),
    Case("hostile", "; ".join(LISTING.format(d=d).rsplit(";", 1)[0] for d in ("/srv/out", "/srv/dots", "/srv/in"))
         + "; cat /srv/in/leak 2>/dev/null || echo no leak; ls /srv",
         _edits(_tmpfs("/srv/out"), _tmpfs("/srv/dots"), _tmpfs("/srv/in")), populate=_hostile,
         want=("link ./leak -> <base>/host/hostfile", "no leak", "data ./mine mine")),

]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_same_as_runc(case: Case, sides: tuple[Side, Side]) -> None:  # noqa: F811
    check(case, sides)
    for side in sides:
        assert side.bundle is not None
        # The image itself is untouched: nothing written through the tmpfs, nothing of the host.
        rootfs = side.bundle / "rootfs"
        assert not (rootfs / "srv" / "up" / "new").exists()
        assert not list(rootfs.rglob("secret")), side.name


def test_over_the_bound_is_refused_and_leaves_nothing(sides: tuple[Side, Side]) -> None:  # noqa: F811
    _, ours = sides
    bundle = ours.make_bundle(["true"], edit=lambda c: _tmpfs("/srv/big", "size=1m")(c, ours.host))
    big = bundle / "rootfs" / "srv" / "big"
    big.mkdir(parents=True)
    with open(big / "sparse", "wb") as f:
        f.truncate(_copyup.MAX_BYTES + 1)
    mounts = Path("/proc/self/mountinfo").read_text()
    p = ours("create", "--bundle", str(bundle), CID)
    err = p.stderr.decode()
    assert p.returncode != 0
    assert "/srv/big" in err and "copy_up" in err and str(_copyup.MAX_BYTES) in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (ours.root / CID).exists()
    assert ours.state() is None
    assert not list(Path("/sys/fs/cgroup").glob(f"*{ours.cgroups_path}"))
    assert Path("/proc/self/mountinfo").read_text() == mounts
    # Too many entries: refused alike.
    (big / "sparse").unlink()
    for i in range(_copyup.MAX_ENTRIES + 1):
        (big / str(i)).touch()
    p = ours("create", "--bundle", str(bundle), CID)
    assert p.returncode != 0 and f"more than {_copyup.MAX_ENTRIES} entries" in p.stderr.decode(), p.stderr
    assert not (ours.root / CID).exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*{ours.cgroups_path}"))


def _podman_listing(podman: Podman) -> tuple[int, list[str], str]:
    # busybox's /etc holds passwd and group: podman's --tmpfs (tmpcopyup) keeps them, writable.
    r = podman.run("--rm", "--tmpfs", "/etc", IMAGE, "sh", "-c",
                   "ls -ln /etc | awk 'NR > 1 { print $1, $3, $4, $9 }' | grep -v -e hosts -e hostname "
                   "-e resolv.conf; head -1 /etc/passwd; touch /etc/new && echo writable; "
                   "awk '$5 == \"/etc\" { print \"mount\", $6 }' /proc/self/mountinfo")
    return r.returncode, r.stdout.splitlines(), r.stderr


@pytest.mark.cgroup1
def test_podman_tmpfs_keeps_the_image_files(pair: tuple[Podman, Podman]) -> None:  # noqa: F811
    runc, ours = pair
    want = _podman_listing(runc)
    assert want[0] == 0 and "writable" in want[1] and any(line.endswith(" passwd") for line in want[1]), want
    got = _podman_listing(ours)
    assert got[:2] == want[:2], (want, got)


def test_copy_never_follows_a_symlink(tmp_path: Path) -> None:
    """The walk never follows a symlink: a directory entry that is a symlink to a host
    directory is copied as a symlink, whatever its name."""
    from isolate.config import TmpfsMount

    image = tmp_path / "image"
    (image / "d").mkdir(parents=True)
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "secret").write_text("x")
    os.symlink(str(tmp_path / "host"), image / "d" / "sub")
    fd = _copyup.copy_up(image, TmpfsMount(target=b"d", copy_up=True))
    try:
        assert os.readlink("sub", dir_fd=fd) == str(tmp_path / "host")
        top = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        try:
            assert os.listdir(top) == ["sub"]
        finally:
            os.close(top)
    finally:
        os.close(fd)


def test_a_fifo_is_refused_naming_the_mount(tmp_path: Path) -> None:
    from isolate.config import TmpfsMount
    from isolate.errors import ConfigError

    (tmp_path / "d" / "deep").mkdir(parents=True)
    os.mkfifo(tmp_path / "d" / "deep" / "fifo")
    with pytest.raises(ConfigError, match=r"^tmpfs on /d \(copy_up\): .*'fifo' is a fifo, which is not copied"):
        _copyup.copy_up(tmp_path, TmpfsMount(target=b"d", copy_up=True))
