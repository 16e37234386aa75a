"""RootFS mount flags, mqueue, the cgroup filesystem, masked and read-only paths on the real
kernel: what a process in the container sees in /proc/self/mountinfo, and what it can do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import isolate
from isolate import Cgroup, Limits, RootFS
from isolate.rootfs import OCI_MASKED_PATHS, OCI_READONLY_PATHS

pytestmark = [pytest.mark.root]

WITHOUT_USERNS = isolate.DEFAULT_NAMESPACES - {"user"}
NAMESPACES = [pytest.param(isolate.DEFAULT_NAMESPACES, id="userns"),
              pytest.param(WITHOUT_USERNS, id="no-userns")]


def sh(script: str, rootfs: RootFS, **options: object) -> isolate.Result:
    with isolate.Container(rootfs=rootfs, **options) as c:
        r = c.run(["/bin/sh", "-c", script], timeout=60)
    assert r.returncode == 0, r
    return r


def mounts(r: isolate.Result) -> dict[str, tuple[str, str, str]]:
    """mount point -> (per-mount flags, fstype, super options), the last mount on each point."""
    out = {}
    for line in r.stdout.decode().splitlines():
        f = line.split()
        if len(f) > 6 and "-" in f[6:]:
            sep = f.index("-")
            out[f[4]] = (f[5], f[sep + 1], f[sep + 3])
    return out


def flags(r: isolate.Result, point: str) -> set[str]:
    return set(mounts(r)[point][0].split(","))


def said(r: isolate.Result) -> set[str]:
    """What the script reported (lines that start with ": ", not mountinfo's)."""
    return {line[2:] for line in r.stdout.decode().splitlines() if line.startswith(": ")}


def attempt(what: str, command: str) -> str:
    return f'if ({command}) 2>/dev/null; then echo ": {what} ok"; else echo ": {what} denied"; fi'


@pytest.mark.parametrize("namespaces", NAMESPACES)
def test_tmpfs_and_bind_flags(tmp_path: Path, namespaces: frozenset[str]) -> None:
    (tmp_path / "data").mkdir()
    rootfs = (RootFS.host()
              .tmpfs("/ro", readonly=True, nosuid=False, nodev=False)
              .tmpfs("/noexec", noexec=True, atime="noatime", size="1m")
              .bind(tmp_path / "data", "/data", nosuid=True, nodev=True, noexec=True))
    r = sh("cat /proc/self/mountinfo; "
           + "; ".join([attempt("write /ro", "echo x > /ro/f"),
                        attempt("write /noexec", "cp /bin/true /noexec/t"),
                        attempt("exec /noexec", "/noexec/t"),
                        attempt("exec /tmp", "cp /bin/true /tmp/t && /tmp/t"),
                        attempt("write /data", "cp /bin/true /data/t"),
                        attempt("exec /data", "/data/t")]),
           rootfs, namespaces=namespaces)
    assert flags(r, "/ro") == {"ro", "relatime"}
    assert flags(r, "/noexec") == {"rw", "nosuid", "nodev", "noexec", "noatime"}
    assert {"rw", "nosuid", "nodev", "noexec"} <= flags(r, "/data")
    assert "size=1024k" in mounts(r)["/noexec"][2]
    assert said(r) == {"write /ro denied", "write /noexec ok", "exec /noexec denied", "exec /tmp ok",
                       "write /data ok", "exec /data denied"}
    assert (tmp_path / "data" / "t").exists()        # the bind is the host's directory


@pytest.mark.parametrize("namespaces", NAMESPACES)
def test_masked_and_read_only_paths(tmp_path: Path, namespaces: frozenset[str]) -> None:
    srv = tmp_path / "srv"
    (srv / "secretdir").mkdir(parents=True)
    (srv / "secretdir" / "f").write_text("secret\n")
    (srv / "secret").write_text("secret\n")
    (srv / "rw").mkdir()
    rootfs = (RootFS.host().bind(srv, "/srv")
              .mask_paths("/srv/secret", "/srv/secretdir", "/srv/absent/x")
              .readonly_paths("/srv/rw", "/srv/absent"))
    r = sh('echo ": secret $(wc -c < /srv/secret)"; echo ": secretdir $(ls -A /srv/secretdir | wc -l)"; '
           + "; ".join([attempt("write /srv/secretdir", "echo x > /srv/secretdir/g"),
                        attempt("write /srv/rw", "echo x > /srv/rw/g"),
                        attempt("write /srv", "echo x > /srv/g"),
                        attempt("exists /srv/absent", "test -e /srv/absent")]),
           rootfs, namespaces=namespaces)
    assert said(r) == {"secret 0", "secretdir 0", "write /srv/secretdir denied", "write /srv/rw denied",
                       "write /srv ok", "exists /srv/absent denied"}
    assert (srv / "secret").read_text() == "secret\n" and not (srv / "absent").exists()
    assert (srv / "g").exists() and not (srv / "rw" / "g").exists()


@pytest.mark.parametrize("namespaces", NAMESPACES)
def test_oci_default_masked_and_read_only_paths(namespaces: frozenset[str]) -> None:
    # Made by one op each list (RootMasks, RootBinds): every path the host has is
    # hidden (directories empty and read-only, files empty) or read-only, a
    # caller's masked directory beside them included.
    rootfs = RootFS.host().mask_paths("/usr/share")
    dirs = [p for p in OCI_MASKED_PATHS if os.path.isdir(p)] + ["/usr/share"]
    files = [p for p in OCI_MASKED_PATHS if os.path.isfile(p)]
    ro = [p for p in OCI_READONLY_PATHS if os.path.isdir(p)]
    r = sh("; ".join([f'echo ": {d} $(ls -A {d} | wc -l)"' for d in dirs]
                     + [f'echo ": {f} $(head -c 64 {f} | wc -c)"' for f in files]
                     + [attempt(f"write {d}", f"mkdir {d}/x") for d in dirs]
                     + ["cat /proc/self/mountinfo"]),
           rootfs, namespaces=namespaces)
    assert said(r) == {f"{p} 0" for p in dirs + files} | {f"write {d} denied" for d in dirs}
    for d in dirs + ro:
        assert "ro" in flags(r, d), d
    assert dirs[:-1] or files, "the host has none of the OCI default masked paths"


@pytest.mark.parametrize("namespaces", [
    pytest.param(isolate.DEFAULT_NAMESPACES, id="userns-own-ipc"),
    pytest.param(WITHOUT_USERNS, id="no-userns"),
])
def test_mqueue(namespaces: frozenset[str]) -> None:
    name = f"isolate-test-{os.getpid()}"
    # A queue made through the filesystem lives in the container's ipc namespace.
    r = sh(f'cat /proc/self/mountinfo; touch /dev/mqueue/{name} && echo ": $(head -c 7 /dev/mqueue/{name})"',
           RootFS.host().mqueue(), namespaces=namespaces)
    opts, fstype, _ = mounts(r)["/dev/mqueue"]
    assert fstype == "mqueue" and {"rw", "nosuid", "nodev", "noexec"} <= set(opts.split(","))
    assert said(r) == {"QSIZE:0"}
    assert not Path("/dev/mqueue", name).exists()


def test_mqueue_in_a_user_namespace_without_its_own_ipc_namespace() -> None:
    # The kernel refuses a user namespace the mount for the host's ipc namespace:
    # the host's /dev/mqueue is bound instead, and without one the start fails.
    namespaces = isolate.DEFAULT_NAMESPACES - {"ipc"}
    rootfs = RootFS.host().mqueue(readonly=True)
    if not os.path.ismount("/dev/mqueue"):
        with pytest.raises(isolate.MountError, match="bind read-only .*dev/mqueue"):
            sh("true", rootfs, namespaces=namespaces)
        return
    r = sh("cat /proc/self/mountinfo", rootfs, namespaces=namespaces)
    opts, fstype, _ = mounts(r)["/dev/mqueue"]
    assert fstype == "mqueue" and {"ro", "nosuid", "nodev", "noexec"} <= set(opts.split(","))


@pytest.mark.parametrize("namespaces", NAMESPACES + [
    # Pure v2 without a cgroup namespace: a bind of the directory instead of a cgroup2 mount.
    pytest.param(isolate.DEFAULT_NAMESPACES - {"cgroup"}, id="no-cgroupns")])
def test_cgroupfs_shows_the_containers_own_cgroup_read_only(cgroup_parent: str,
                                                            namespaces: frozenset[str]) -> None:
    with Cgroup.create("c", parent=cgroup_parent, limits=Limits(pids_max=37)) as cg:
        (mount, directory), = [(m, d) for m, d in cg.paths.items() if Path(d, "pids.max").exists()]
        pure_v2 = not any(line.split()[2] == "cgroup" for line in
                          Path("/proc/self/mounts").read_text().splitlines())
        inside = "/sys/fs/cgroup" if pure_v2 else f"/sys/fs/cgroup/{os.path.basename(mount)}"
        r = sh(f'cat /proc/self/mountinfo; echo ": $(cat {inside}/pids.max)"; '
               + attempt("write pids.max", f"echo 5 > {inside}/pids.max"),
               RootFS.host().cgroupfs(), namespaces=namespaces, cgroup=cg)
        assert Path(directory, "pids.max").read_text() == "37\n"
    assert said(r) == {"37", "write pids.max denied"}
    m = mounts(r)
    assert m[inside][1] in ("cgroup", "cgroup2")
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(m[inside][0].split(","))
    if not pure_v2:
        # runc's layout: a tmpfs holding one read-only bind per v1 hierarchy.
        assert m["/sys/fs/cgroup"][1] == "tmpfs" and "rw" in m["/sys/fs/cgroup"][0].split(",")
        below = [p for p in m if p.startswith("/sys/fs/cgroup/")]
        assert below and all(m[p][1] == "cgroup" and m[p][0].startswith("ro,") for p in below)


@pytest.mark.parametrize("namespaces", NAMESPACES)
def test_options_of_the_builtin_mounts(namespaces: frozenset[str]) -> None:
    rootfs = (RootFS.host()
              .mount_options("/proc", nosuid=False, nodev=False, noexec=False)
              .mount_options("/dev", atime="strictatime", size="1m")
              .mount_options("/dev/pts", gid=5)
              .mount_options("/dev/shm", noexec=True, size="1m"))
    r = sh("cat /proc/self/mountinfo; " + attempt("exec /dev/shm", "cp /bin/true /dev/shm/t && /dev/shm/t")
           + "; echo \": gid_map $(cat /proc/self/gid_map)\"", rootfs, namespaces=namespaces)
    m = mounts(r)
    assert flags(r, "/proc") == {"rw", "relatime"}
    assert flags(r, "/dev") == {"rw", "nosuid", "noexec"}          # strictatime shows no atime flag
    # devpts shows its gid as the host knows it: 5 inside, through the container's gid map.
    gid_map = next(s.split()[1:] for s in said(r) if s.startswith("gid_map"))
    host_gid5 = int(gid_map[1]) + 5 if gid_map else 5
    assert "size=1024k" in m["/dev"][2] and f"gid={host_gid5}" in m["/dev/pts"][2].split(","), r
    assert flags(r, "/dev/shm") == {"rw", "nosuid", "nodev", "noexec", "relatime"}
    assert "size=1024k" in m["/dev/shm"][2]
    assert said(r) - {s for s in said(r) if s.startswith("gid_map")} == {"exec /dev/shm denied"}
