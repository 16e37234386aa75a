"""Hostile images: symlinks in an image never lead the runtime out of it (issue 12, escape 3).

The class of runc's CVE-2025-31133: an image whose /dev was a symlink made the
runtime bind a host file read-write over /proc/keys, because the source of the
masks, ``<new root>/dev/null``, was looked up from the runtime's root.  For each
op that takes a path inside the new root (the mount points it makes, bind and
tmpfs targets, /dev with its nodes, links and the null device of the masks,
masked and read-only paths, /etc, the working directory, the console), the image
makes that path a symlink to a host directory (``Host``: marker files holding a
unique secret, under /var/tmp, which no container sees), written five ways:

- ``absolute``: the host path itself;
- ``dotdot``: ``../../..`` up to the root, then the host path;
- ``proc-self-root`` and ``proc-self-fd``: through /proc/self/root, and through
  /proc/self/fd/N, N an fd of the caller's on the host directory (the runtime's
  child holds the caller's fds while it builds the root);
- ``staging``: through the paths of the staging: ``/tmp/..`` where the new root is
  mounted right on /tmp, ``/oldroot`` where the host is kept there while the root is
  built at /newroot, ``/tmp/oldroot`` in chroot mode.

Where the link's target also exists inside the image (the image carries a mirror
of the host path: absolute, ``dotdot`` and ``staging`` links), the op must land in
the image and the container must work; a magic link is refused, with an error that
names the step.  Either way the host directory is as it was (no entry read, written
or created: compared, and watched with inotify), its secret appears in no output,
and nothing is mounted on the host (the autouse leak check).

Every attack runs through ``RootFS.from_directory`` + ``Container`` (the new root on
/tmp, staged at /newroot, and in chroot mode), ``isolate run --rootfs`` and an OCI
bundle under ``isolate-oci run``.  The same bundles go to runc and crun (and the /dev
attack to bwrap); the table printed at the end of the run says which stopped what.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import isolate
from isolate.errors import SetupError


import support as _TESTS
from support import base_config, compare

pytestmark = [pytest.mark.root]

BIN = Path(sys.executable).parent
ISOLATE = str(BIN / "isolate")
ISOLATE_OCI = str(BIN / "isolate-oci")
RUNC = shutil.which("runc") or "/usr/sbin/runc"
CRUN = shutil.which("crun") or "/usr/bin/crun"
BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"

KINDS = ("absolute", "dotdot", "proc-self-root", "proc-self-fd", "staging")
MAGIC = frozenset({"proc-self-root", "proc-self-fd"})
#: Where each staging keeps what the image may name: see ``link_for``.
STAGE_PREFIX = {"direct": "/tmp/..", "staged": "/oldroot", "chroot": "/tmp/oldroot"}
#: The new root as the runtime's errors name it, per staging.
NEW_ROOT = {"direct": "/tmp/", "staged": "/newroot/", "chroot": "/tmp/newroot/"}
#: A magic link is refused (ELOOP); ENOENT where the runtime's child no longer holds the fd.
REFUSED = (errno.ELOOP, errno.ENOENT)
MARKERS = ("null", "secret", "passwd", "ptmx", "console", "keys")

IN_ACCESS, IN_MODIFY, IN_OPEN, IN_CREATE = 0x1, 0x2, 0x20, 0x100


# --- the host directory an image points at -------------------------------------------


@dataclass
class Host:
    """A host directory the attacks aim at: marker files with ``secret``, watched.

    ``fd`` is an O_PATH fd of the directory, left open in this process (and passed to
    the runtimes it starts): what /proc/self/fd/N names in a ``proc-self-fd`` link.  ``events()``
    are the inotify events (name, mask) on its entries since ``watch()``.
    """

    base: Path
    dir: Path
    src: Path
    secret: str
    fd: int = -1
    _inotify: int = -1
    _before: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, tuple[int, bytes]]:
        """Every entry below ``dir`` (recursively): its mode and, for files, contents."""
        out: dict[str, tuple[int, bytes]] = {}
        for root, dirs, files in os.walk(self.dir):
            for name in dirs + files:
                p = Path(root, name)
                st = p.lstat()
                out[str(p.relative_to(self.dir))] = (
                    st.st_mode, p.read_bytes() if stat.S_ISREG(st.st_mode) else b"")
        return out

    def watch(self) -> None:
        """Start watching: forget earlier events, take the snapshot ``check`` compares."""
        self._before = self.snapshot()
        self.drain()

    def drain(self) -> list[tuple[str, int]]:
        """The inotify events since the last call: (entry name, mask) for entries of ``dir``."""
        out = []
        while True:
            try:
                data = os.read(self._inotify, 65536)
            except BlockingIOError:
                return out
            off = 0
            while off < len(data):
                _, mask, _, size = struct.unpack_from("iIII", data, off)
                name = data[off + 16:off + 16 + size].rstrip(b"\0").decode()
                off += 16 + size
                if name:
                    out.append((name, mask))

    def check(self, output: str) -> str | None:
        """What of the host directory was reached (read, written, created, shown in
        ``output`` or mounted over on the host) since ``watch()``, or None."""
        events = [(n, m) for n, m in self.drain() if m & (IN_ACCESS | IN_MODIFY | IN_OPEN | IN_CREATE)]
        if events:
            return f"{self.dir} reached: inotify events {events}"
        if self.snapshot() != self._before:
            return f"{self.dir} changed: {sorted(self.snapshot())}"
        if self.secret in output:
            return f"the host's secret leaked: {output[-300:]!r}"
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        if any(m == str(self.dir) or m.startswith(f"{self.dir}/") for m in mounts):
            return f"{self.dir} mounted over on the host"
        return None


def _inotify_init(path: Path) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    if libc.inotify_add_watch(fd, os.fsencode(path), IN_ACCESS | IN_MODIFY | IN_OPEN | IN_CREATE) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, "inotify_add_watch", str(path))
    return fd


@pytest.fixture
def host() -> Iterator[Host]:
    """A ``Host`` under /var/tmp (no container sees /var/tmp of the host)."""
    base = Path("/var/tmp") / f"isolate-hostile-{uuid.uuid4().hex[:12]}"
    base.mkdir(mode=0o711)
    secret = f"host-secret-{uuid.uuid4().hex}"
    h = Host(base=base, dir=base / "host", src=base / "src", secret=secret)
    h.dir.mkdir()
    h.src.mkdir()
    (h.src / "from-bind").write_text("the caller's bind\n")
    for name in MARKERS:
        text = f"root:x:0:0:{secret}:/{secret}:/bin/sh\n" if name == "passwd" else f"{secret}\n"
        (h.dir / name).write_text(text)
    h.fd = os.open(h.dir, os.O_PATH | os.O_DIRECTORY)
    h._inotify = _inotify_init(h.dir)
    try:
        h.watch()
        yield h
    finally:
        os.close(h._inotify)
        os.close(h.fd)
        shutil.rmtree(base)


# --- hostile images -----------------------------------------------------------------


def link_for(host: Host, kind: str, staging: str, sub: str = "") -> tuple[str, str | None]:
    """A symlink's text leading to ``host.dir/sub``, and the path inside the image where
    it resolves when the image is the root (None: a magic link, refused)."""
    target = str(host.dir / sub) if sub else str(host.dir)
    if kind == "absolute":
        return target, target.lstrip("/")
    if kind == "dotdot":
        return "../" * 24 + target.lstrip("/"), target.lstrip("/")
    if kind == "proc-self-root":
        return f"/proc/self/root{target}", None
    if kind == "proc-self-fd":
        return f"/proc/self/fd/{host.fd}" + (f"/{sub}" if sub else ""), None
    text = STAGE_PREFIX[staging] + target
    return text, os.path.normpath(text).lstrip("/")


def hostile_image(busybox: Path, dest: Path, host: Host, *, at: str, kind: str, staging: str,
                  sub: str = "", mirror_file: bool = False) -> bool:
    """Copy the busybox image to ``dest`` and make its path ``at`` a symlink to the host
    (see ``link_for``); where the link can resolve inside the image, give the image that
    path (a directory, or a file if ``mirror_file``).  Returns whether it did."""
    shutil.copytree(busybox, dest, symlinks=True)
    text, inside = link_for(host, kind, staging, sub)
    top = at.split("/")[0]
    # The mirror is made before the link, and never through it.  A link that goes
    # through itself ("/tmp/.." at /tmp) is a loop: no mirror, the runtime must refuse it.
    loop = text.startswith("/") and text.lstrip("/").split("/")[0] == top
    mirrored = inside is not None and not loop and inside.split("/")[0] != top
    if mirrored:
        assert inside is not None
        (dest / inside).parent.mkdir(parents=True, exist_ok=True)
        if mirror_file:
            (dest / inside).write_text("the image's own file\n")
        else:
            (dest / inside).mkdir(exist_ok=True)
    place = dest / at
    if place.is_dir() and not place.is_symlink():
        shutil.rmtree(place)
    elif place.exists() or place.is_symlink():
        place.unlink()
    place.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(text, place)
    return mirrored


def image_home(host: Host, tmp_path: Path, staging: str) -> Path:
    """Where an image lives for ``staging``: an image under the stage (/tmp) makes the
    Container stage its root (/newroot, host at /oldroot); elsewhere the root is built
    right on /tmp."""
    home = (tmp_path if staging == "staged" else host.base) / f"images-{uuid.uuid4().hex[:8]}"
    home.mkdir(mode=0o711)
    assert str(home).startswith("/tmp/") == (staging == "staged")
    return home


# --- the op families ------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One op family: which image path the attack replaces, and how an interface uses it.

    ``argv`` runs in the container and prints ``expect`` when the op landed inside the
    image.  ``step`` (``{new}``: the new root's path) is in the error a refused magic
    link gives, when ``magic_fails``.  ``container`` configures the ``RootFS`` and
    returns ``Container`` options; ``cli`` gives ``isolate run`` options; ``oci`` edits
    the config.json.
    """

    name: str
    at: str
    argv: tuple[str, ...]
    expect: str
    step: str
    sub: str = ""
    mirror_file: bool = False
    magic_fails: bool = True
    writable: bool = False
    container: Callable[[isolate.RootFS, Host], dict[str, Any]] = lambda r, h: {}
    cli: Callable[[Host], list[str]] = lambda h: []
    oci: Callable[[dict[str, Any], Host], None] = lambda c, h: None


def sh(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


def _bind(rootfs: isolate.RootFS, h: Host) -> dict[str, Any]:
    rootfs.bind(h.src, "/mnt/data/x")
    return {}


def _tmpfs(rootfs: isolate.RootFS, h: Host) -> dict[str, Any]:
    rootfs.tmpfs("/scratch")
    return {}


def _mask(rootfs: isolate.RootFS, h: Host) -> dict[str, Any]:
    rootfs.mask_paths("/secretfile")
    return {}


def _ro(rootfs: isolate.RootFS, h: Host) -> dict[str, Any]:
    rootfs.readonly_paths("/rodir")
    return {}


def _add_mount(mount: dict[str, Any]) -> Callable[[dict[str, Any], Host], None]:
    def edit(config: dict[str, Any], h: Host) -> None:
        config["mounts"].append({k: (v.replace("SRC", str(h.src)) if isinstance(v, str) else v)
                                 for k, v in mount.items()})
    return edit


def _linux_list(key: str, path: str) -> Callable[[dict[str, Any], Host], None]:
    def edit(config: dict[str, Any], h: Host) -> None:
        config["linux"][key] = [*config["linux"].get(key, []), path]
    return edit


def _oci_cwd(config: dict[str, Any], h: Host) -> None:
    config["process"]["cwd"] = "/work/sub"


def _oci_no_home(config: dict[str, Any], h: Host) -> None:
    # Without HOME in the config, the runtime reads the image's /etc/passwd for it.
    config["process"]["env"] = [e for e in config["process"]["env"] if not e.startswith("HOME=")]


DEV = Family(
    "/dev (its nodes, links, and the null device of the masks)", "dev",
    sh("cat /proc/keys; echo pwned >> /proc/keys; [ -c /dev/null ] && [ -c /dev/zero ] "
       "&& [ -L /dev/fd ] && [ -d /dev/pts ] && echo dev-ok"),
    "dev-ok", "mount tmpfs on {new}dev")

FAMILIES = {
    # /dev: the tmpfs, its nodes and links, and the null device the masks bind (CVE-2025-31133).
    "dev": DEV,
    # Mount points made for a bind, and the bind's target.
    "bind": Family(
        "bind target and its mount points", "mnt", sh("cat /mnt/data/x/from-bind"),
        "the caller's bind", "mkdir {new}mnt/data", container=_bind,
        cli=lambda h: ["--bind", f"{h.src}:/mnt/data/x"],
        oci=_add_mount({"destination": "/mnt/data/x", "type": "bind", "source": "SRC",
                        "options": ["rbind"]})),
    # A tmpfs's target (isolate run --rootfs mounts one on /tmp: see test_cli_tmp).
    "tmpfs": Family(
        "tmpfs target", "scratch",
        sh("touch /scratch/made && [ \"$(stat -f -c %T /scratch/)\" = tmpfs ] && echo tmpfs-ok"),
        "tmpfs-ok", "mount tmpfs on {new}scratch", container=_tmpfs,
        oci=_add_mount({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"})),
    # A masked path that is a file: the null device is bound over it.
    "mask": Family(
        "masked path", "secretfile", sh("cat /secretfile; echo pwned > /secretfile; echo mask-ok"),
        "mask-ok", "mask {new}secretfile", sub="secret", mirror_file=True, writable=True,
        container=_mask, oci=_linux_list("maskedPaths", "/secretfile")),
    # A read-only path: bound read-only onto itself.
    "readonly": Family(
        "read-only path", "rodir", sh("touch /rodir/new 2>/dev/null || echo ro-ok"), "ro-ok",
        "bind read-only {new}rodir", writable=True, container=_ro,
        oci=_linux_list("readonlyPaths", "/rodir")),
    # The working directory, made when missing (OCI runtimes make it; Container(make_cwd=True)).
    "cwd": Family(
        "working directory", "work", sh("pwd; ls -a; echo cwd-ok"), "cwd-ok", "mkdir /work/sub",
        container=lambda r, h: {"cwd": "/work/sub", "make_cwd": True}, oci=_oci_cwd),
    # /etc: nothing is written there in an image, and the OCI runtime reads its passwd for HOME.
    "etc": Family(
        "/etc/passwd (read for HOME)", "etc/passwd", sh("echo HOME=$HOME; echo etc-ok"), "etc-ok",
        "", sub="passwd", mirror_file=True, magic_fails=False, oci=_oci_no_home),
}

#: What ``isolate run --rootfs`` can express: /dev, --bind, --cwd (not made), the tmpfs on /tmp.
CLI_FAMILIES = {
    "dev": DEV,
    "bind": FAMILIES["bind"],
    "cwd": Family("working directory", "work", sh("pwd; ls -a; echo cwd-ok"), "cwd-ok", "chdir /work",
                  cli=lambda h: ["--cwd", "/work"]),
    "tmp": Family("tmpfs target", "tmp",
                  sh("touch /tmp/made && [ \"$(stat -f -c %T /tmp/)\" = tmpfs ] && echo tmp-ok"),
                  "tmp-ok", "mount tmpfs on {new}tmp"),
}


@dataclass
class Outcome:
    """What an attack gave: the exit status (None: the runtime refused to start it), and
    everything printed, with the runtime's error and its errno, if any."""

    status: int | None
    output: str
    errno: int | None = None

    def assert_contained(self, family: Family, mirrored: bool, kind: str, staging: str) -> None:
        """The container worked with the op inside the image, or the runtime refused the
        link with an error naming the step (a magic link; a path the image lacks)."""
        step = family.step.format(new=NEW_ROOT[staging])
        if kind == "proc-self-fd" and family.magic_fails and self.status == 0:
            # The child program holds none of the caller's fds (PLAN_CLOSE_FDS): the link
            # leads nowhere, and a path that is not there is not masked or made read-only.
            # (The host directory's watch, checked apart, says nothing of the host was touched.)
            return
        if kind in MAGIC and family.magic_fails:
            assert self.status is None and self.errno in REFUSED, f"a magic link was followed: {self}"
        elif mirrored or not family.magic_fails:
            assert self.status == 0 and family.expect in self.output, self
            return
        else:
            # A loop: the link goes through itself.
            assert self.status is None and self.errno == errno.ELOOP, self
        assert step in self.output, f"the error does not name the step ({step!r}): {self.output!r}"


# --- the three interfaces -------------------------------------------------------------


def run_container(image: Path, family: Family, host: Host, staging: str,
                  namespaces: frozenset[str] = isolate.DEFAULT_NAMESPACES) -> Outcome:
    """``family``'s attack on ``image`` through RootFS.from_directory + Container."""
    rootfs = isolate.RootFS.from_directory(image, readonly=not family.writable)
    opts = family.container(rootfs, host)
    try:
        with isolate.Container(rootfs=rootfs, namespaces=namespaces,
                               pivot_root=staging != "chroot", **opts) as c:
            r = c.run(list(family.argv), timeout=60)
    except SetupError as e:
        return Outcome(None, str(e), e.errno)
    return Outcome(r.returncode, (r.stdout + r.stderr).decode(errors="replace"))


def _errno_named(message: str) -> int | None:
    return next((code for code in (errno.ELOOP, errno.ENOENT, errno.ENODEV)
                 if os.strerror(code) in message), None)


def run_cli(image: Path, family: Family, host: Host) -> Outcome:
    """``isolate run --rootfs image [family's options] -- argv``."""
    p = subprocess.run([ISOLATE, "run", "--rootfs", str(image), *family.cli(host), "--",
                        *family.argv], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, pass_fds=[host.fd])
    if p.returncode == 125:
        assert p.stderr.startswith("isolate: step ") and p.stderr.count("\n") == 1, p.stderr
        return Outcome(None, p.stderr, _errno_named(p.stderr))
    return Outcome(p.returncode, p.stdout + p.stderr)


def oci_argv(runtime: str, state: Path, *args: str) -> list[str]:
    """``runtime --root state args``; crun, which refuses this hybrid cgroup host, runs in a
    mount namespace of its own with cgroup2 at /sys/fs/cgroup and no cgroup manager."""
    if runtime == "isolate":
        return [ISOLATE_OCI, "--root", str(state), *args]
    if runtime == "runc":
        return [RUNC, "--root", str(state), *args]
    return [UNSHARE, "--mount", "--propagation", "private", "sh", "-c",
            'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"', "sh",
            CRUN, "--cgroup-manager=disabled", "--root", str(state), *args]


def make_bundle(home: Path, name: str, config: dict[str, Any]) -> Path:
    """A bundle directory ``home/name`` with ``config`` (its rootfs is the caller's to make)."""
    bundle = home / name
    bundle.mkdir(mode=0o711)
    config["ociVersion"] = "1.0.2"       # crun 1.8 refuses newer versions
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def run_oci(runtime: str, bundle: Path, host: Host, cid: str) -> Outcome:
    """``runtime run`` of ``bundle``, then ``delete --force``."""
    state = bundle.parent / f"state-{runtime}"
    try:
        p = subprocess.run(oci_argv(runtime, state, "run", "--bundle", str(bundle), cid),
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                           pass_fds=[host.fd])
    finally:
        subprocess.run(oci_argv(runtime, state, "delete", "--force", cid), capture_output=True,
                       timeout=60)
    if runtime == "isolate" and p.returncode == 1 and p.stderr.startswith("isolate-oci: run: step "):
        assert p.stderr.count("\n") == 1, p.stderr
        return Outcome(None, p.stdout + p.stderr, _errno_named(p.stderr))
    return Outcome(p.returncode, p.stdout + p.stderr)


@pytest.fixture(scope="session")
def competitors(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """runc's and crun's versions, once each has run a plain busybox bundle here: no
    comparison row is recorded for a runtime that cannot run at all (the test fails)."""
    home = tmp_path_factory.mktemp("competitors")
    home.chmod(0o711)
    parent = f"isolate-test-competitors-{os.getpid()}"
    versions = {}
    try:
        for runtime in ("runc", "crun"):
            shutil.copytree(busybox_rootfs, home / runtime / "rootfs", symlinks=True)
            config = base_config(["echo", "plain-ok"], cgroups_path=f"/{parent}/{runtime}")
            config["ociVersion"] = "1.0.2"
            (home / runtime / "config.json").write_text(json.dumps(config))
            state, cid = home / f"state-{runtime}", f"plain-{os.getpid()}"
            p = subprocess.run(oci_argv(runtime, state, "run", "--bundle", str(home / runtime), cid),
                               capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            subprocess.run(oci_argv(runtime, state, "delete", "--force", cid), capture_output=True)
            if p.returncode != 0 or p.stdout != "plain-ok\n":
                pytest.fail(f"{runtime} cannot run a plain bundle here: {p.returncode} {p.stderr!r}")
            exe = RUNC if runtime == "runc" else CRUN
            versions[runtime] = subprocess.run([exe, "--version"], capture_output=True,
                                               text=True).stdout.split("\n")[0]
        yield versions
    finally:
        for path in _TESTS.cgroup_leftovers(parent):
            _TESTS.force_remove_cgroup(path)


def _row(problem: str | None, outcome: Outcome) -> tuple[bool, str]:
    """(stopped, detail) of a competitor's run: stopped when the host was not reached."""
    if problem is not None:
        return False, problem
    if outcome.status != 0:
        return True, f"refused: {outcome.output.strip().splitlines()[-1][-200:]}"
    return True, "ran contained"


# --- the tests --------------------------------------------------------------------------


CONTAINER_CASES = [(f, k, s) for f in FAMILIES for k in KINDS for s in ("direct", "staged", "chroot")]


@pytest.mark.parametrize("family,kind,staging", CONTAINER_CASES)
def test_container(family: str, kind: str, staging: str, host: Host, busybox_rootfs: Path,
                   tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """RootFS.from_directory + Container: the op lands in the image, or the link is refused."""
    fam = FAMILIES[family]
    image = image_home(host, tmp_path, staging) / "rootfs"
    mirrored = hostile_image(busybox_rootfs, image, host, at=fam.at, kind=kind, staging=staging,
                             sub=fam.sub, mirror_file=fam.mirror_file)
    host.watch()
    outcome = run_container(image, fam, host, staging)
    problem = host.check(outcome.output)
    compare(request, f"{fam.name}: {kind}", "isolate", problem is None, f"Container, {staging}")
    assert problem is None, problem
    outcome.assert_contained(fam, mirrored, kind, staging)
    if family == "dev" and outcome.status == 0:
        # The masks' null device is the container's own /dev/null: /proc/keys reads empty.
        assert outcome.output == "dev-ok\n", outcome


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("staging", ["direct", "staged", "chroot"])
def test_container_dev_without_user_namespace(kind: str, staging: str, host: Host,
                                              busybox_rootfs: Path, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    """The /dev attack where the devices are made with mknod (no user namespace), and (with
    pivot_root) sysfs and its masks come after the switch to the new root."""
    image = image_home(host, tmp_path, staging) / "rootfs"
    mirrored = hostile_image(busybox_rootfs, image, host, at="dev", kind=kind, staging=staging)
    host.watch()
    outcome = run_container(image, DEV, host, staging, namespaces=isolate.DEFAULT_NAMESPACES - {"user"})
    problem = host.check(outcome.output)
    compare(request, f"{DEV.name}: {kind}", "isolate", problem is None,
            f"Container without a user namespace, {staging}")
    assert problem is None, problem
    outcome.assert_contained(DEV, mirrored, kind, staging)
    if outcome.status == 0:
        assert outcome.output == "dev-ok\n", outcome


@pytest.mark.parametrize("kind", KINDS)
def test_container_without_dev(kind: str, host: Host, busybox_rootfs: Path, tmp_path: Path) -> None:
    """RootFS(dev=False): the image keeps its own /dev (here a symlink out), and the masks
    take the host's /dev/null, resolved in the host's root, never through the image."""
    image = image_home(host, tmp_path, "staged") / "rootfs"
    hostile_image(busybox_rootfs, image, host, at="dev", kind=kind, staging="staged")
    host.watch()
    with isolate.Container(rootfs=isolate.RootFS.from_directory(image, dev=False)) as c:
        r = c.run(list(sh("cat /proc/keys; echo pwned >> /proc/keys; echo keys-ok")), timeout=60)
    out = (r.stdout + r.stderr).decode(errors="replace")
    problem = host.check(out)
    assert problem is None, problem
    assert r.returncode == 0 and out == "keys-ok\n", r


@pytest.mark.parametrize("family,kind,staging",
                         [(f, k, s) for f in CLI_FAMILIES for k in KINDS for s in ("direct", "staged")])
def test_cli(family: str, kind: str, staging: str, host: Host, busybox_rootfs: Path,
             tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``isolate run --rootfs``: the same, and a refusal is one line naming the step (exit 125)."""
    fam = CLI_FAMILIES[family]
    image = image_home(host, tmp_path, staging) / "rootfs"
    mirrored = hostile_image(busybox_rootfs, image, host, at=fam.at, kind=kind, staging=staging,
                             sub=fam.sub, mirror_file=fam.mirror_file)
    host.watch()
    outcome = run_cli(image, fam, host)
    problem = host.check(outcome.output)
    compare(request, f"{fam.name}: {kind}", "isolate", problem is None, f"isolate run, {staging}")
    assert problem is None, problem
    # "/tmp/.." from an image whose own /tmp is the link goes through the link itself: a loop.
    outcome.assert_contained(fam, mirrored, kind, staging)
    if family == "dev" and outcome.status == 0:
        assert outcome.output == "dev-ok\n", outcome


OCI_CASES = [(f, k, s) for f in FAMILIES for k in KINDS for s in ("direct", "staged")]


@pytest.mark.parametrize("family,kind,staging", OCI_CASES)
def test_oci(family: str, kind: str, staging: str, host: Host, busybox_rootfs: Path, tmp_path: Path,
             oci_cgroup_parent: str, competitors: dict[str, str],
             request: pytest.FixtureRequest) -> None:
    """An OCI bundle under ``isolate-oci run``; the staged bundles also under runc and crun."""
    fam = FAMILIES[family]
    home = image_home(host, tmp_path, staging)
    runtimes = ["isolate"] + (["runc", "crun"] if staging == "staged" else [])
    mirrored = False
    outcome = Outcome(None, "")
    for runtime in runtimes:
        config = base_config(list(fam.argv), cgroups_path=f"/{oci_cgroup_parent}/{runtime}")
        fam.oci(config, host)
        bundle = make_bundle(home, runtime, config)
        m = hostile_image(busybox_rootfs, bundle / "rootfs", host, at=fam.at, kind=kind,
                          staging=staging, sub=fam.sub, mirror_file=fam.mirror_file)
        host.watch()
        o = run_oci(runtime, bundle, host, f"hostile-{os.getpid()}-{runtime}")
        problem = host.check(o.output)
        if runtime == "isolate":
            compare(request, f"{fam.name}: {kind}", "isolate", problem is None, f"isolate-oci, {staging}")
            assert problem is None, problem
            outcome, mirrored = o, m
        else:
            stopped, detail = _row(problem, o)
            compare(request, f"{fam.name}: {kind}", runtime, stopped, f"{competitors[runtime]}: {detail}")
    outcome.assert_contained(fam, mirrored, kind, staging)
    if family == "etc":
        # No passwd was read through the link: HOME is the fallback, "/".
        assert "HOME=/\n" in outcome.output, outcome
    if family == "dev" and outcome.status == 0:
        assert outcome.output == "dev-ok\n", outcome


@pytest.mark.parametrize("staging", ["direct", "staged"])
def test_oci_image_dev_null_names_a_proc_file(staging: str, host: Host, busybox_rootfs: Path,
                                              tmp_path: Path, oci_cgroup_parent: str,
                                              competitors: dict[str, str],
                                              request: pytest.FixtureRequest) -> None:
    """Tried: a config without a /dev mount (the image's /dev is used) and an image whose
    dev/null is a symlink to a procfs file: a runtime that binds "/dev/null" over the
    masked paths, or reopens it for the process's stdio, hands the container that file,
    read-write (CVE-2025-31133: with /proc/sys/kernel/core_pattern, a host escape).  The
    file here is the container's own domainname (its uts namespace), harmless.
    Stopped by: without a /dev of its own, the masks take the host's /dev/null, resolved
    in the host's root and checked to be 1:3; isolate reopens nothing by path."""
    attack = "config without /dev, image's dev/null -> a procfs file"
    before = Path("/proc/sys/kernel/domainname").read_text()
    # The report goes to a file of the image: a runtime may have replaced stdout.
    script = ("{ grep ' /proc/keys ' /proc/self/mountinfo; ls -l /proc/self/fd/; "
              "cat /proc/sys/kernel/domainname; } > /tmp/report 2>&1; echo report-ok")
    home = image_home(host, tmp_path, staging)
    ours = ""
    for runtime in ["isolate"] + (["runc", "crun"] if staging == "staged" else []):
        config = base_config(list(sh(script)), cgroups_path=f"/{oci_cgroup_parent}/{runtime}")
        config["mounts"] = [m for m in config["mounts"] if not m["destination"].startswith("/dev")]
        bundle = make_bundle(home, runtime, config)
        shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
        os.symlink("/proc/sys/kernel/domainname", bundle / "rootfs" / "dev" / "null")
        o = run_oci(runtime, bundle, host, f"devnull-{os.getpid()}-{runtime}")
        report_file = bundle / "rootfs" / "tmp" / "report"
        report = report_file.read_text() if report_file.exists() else ""
        handed = [line for line in report.splitlines()
                  if "/sys/kernel/domainname" in line or "-> /proc/sys/kernel/domainname" in line]
        if runtime == "isolate":
            compare(request, attack, runtime, not handed, f"isolate-oci, {staging}")
            assert o.status == 0 and o.output == "report-ok\n", o
            ours = report
        else:
            detail = f"handed {handed}" if handed else f"refused: {o.output.strip()[-160:]}"
            compare(request, attack, runtime, not handed, f"{competitors[runtime]}: {detail}")
    assert Path("/proc/sys/kernel/domainname").read_text() == before
    keys = ours.splitlines()[0].split()
    # /proc/keys is the null device (its root in mountinfo), and no fd is a procfs file.
    assert keys[3] == "/null" and keys[4] == "/proc/keys", ours
    assert "/proc/sys" not in ours, ours


# --- the device nodes an image carries ----------------------------------------------------


@contextlib.contextmanager
def loop_device(backing: Path) -> Iterator[int]:
    """A loop device over ``backing`` (a file of the test's): its st_rdev."""
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield os.stat(dev).st_rdev
    finally:
        subprocess.run(["losetup", "--detach", dev], check=True)


@pytest.mark.parametrize("how", ["container", "container-no-userns", "overlay-no-userns", "cli", "oci"])
def test_device_node_in_the_image_does_not_open(how: str, host: Host, busybox_rootfs: Path,
                                                tmp_path: Path, oci_cgroup_parent: str,
                                                competitors: dict[str, str],
                                                request: pytest.FixtureRequest) -> None:
    """Tried: an image carrying a block device node for a host disk (a loop device over a
    file of the host's that holds the secret) reads and writes the disk from inside.
    Stopped by: the image is mounted nodev, so its nodes never open; the container's
    devices are its own /dev's.  (runc and crun rely on their device cgroup.)"""
    disk = host.base / "disk.img"
    fresh = host.secret.encode() + b"\n" + bytes(8192)
    disk.write_bytes(fresh)
    script = "head -c 60 /disk; echo pwned | dd of=/disk bs=1 seek=4096 conv=notrunc; echo done"
    attack = "device node for a host disk in the image"
    home = image_home(host, tmp_path, "direct")
    with loop_device(disk) as rdev:
        def image(dest: Path) -> Path:
            shutil.copytree(busybox_rootfs, dest, symlinks=True)
            os.mknod(dest / "disk", 0o666 | stat.S_IFBLK, rdev)
            return dest

        if how != "cli" and how != "oci":
            # (An overlay mounted in a user namespace is nodev by the kernel's rule.)
            ns = isolate.DEFAULT_NAMESPACES - ({"user"} if how.endswith("no-userns") else set())
            rootfs = isolate.RootFS.from_directory(image(home / "rootfs"))
            if how.startswith("overlay"):
                rootfs.overlay()
            with isolate.Container(rootfs=rootfs, namespaces=ns) as c:
                r = c.run(list(sh(script)), timeout=60)
            out = (r.stdout + r.stderr).decode(errors="replace")
        elif how == "cli":
            p = subprocess.run([ISOLATE, "run", "--rootfs", str(image(home / "rootfs")), "--", *sh(script)],
                               capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            out = p.stdout + p.stderr
        else:
            out = ""
            for runtime in ("isolate", "runc", "crun"):
                config = base_config(list(sh(script)), cgroups_path=f"/{oci_cgroup_parent}/{runtime}")
                bundle = make_bundle(home, runtime, config)
                image(bundle / "rootfs")
                o = run_oci(runtime, bundle, host, f"disk-{os.getpid()}-{runtime}")
                reached = host.secret in o.output or disk.read_bytes() != fresh
                if runtime == "isolate":
                    out = o.output
                else:
                    # crun runs here without its cgroup manager (see oci_argv): no device
                    # cgroup, the defence runc and crun have against this node.
                    note = " (without a cgroup manager: no device cgroup)" if runtime == "crun" else ""
                    compare(request, attack, runtime, not reached,
                            f"{competitors[runtime]}{note}: {o.output.strip()[-160:]!r}")
                    disk.write_bytes(fresh)
        stopped = host.secret not in out and disk.read_bytes() == fresh
        compare(request, attack, "isolate", stopped, how)
        assert stopped, out
        assert "Permission denied" in out and "done\n" in out, out


# --- the console ------------------------------------------------------------------------


class ConsoleSocket:
    """A unix socket that receives the pty master a runtime sends (--console-socket)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.server.settimeout(60)
        self.masters: list[int] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.server.accept()
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
                self.masters += fds

    def read_until(self, marker: bytes) -> bytes:
        """What the master gives until ``marker`` or its end."""
        self.thread.join(60)
        out = b""
        while self.masters and marker not in out:
            try:
                chunk = os.read(self.masters[0], 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(OSError):
                self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(5)
        for fd in self.masters:
            os.close(fd)


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "staging"])
def test_oci_console_with_dev_symlink(kind: str, host: Host, busybox_rootfs: Path, tmp_path: Path,
                                      oci_cgroup_parent: str) -> None:
    """An image whose /dev is a symlink, run with a terminal: the pty is the container's
    (devpts of its own /dev) and /dev/console is bound from the pty's own fd."""
    home = image_home(host, tmp_path, "staged")
    config = base_config(list(sh("tty; stat -c '%t %T' /dev/console; cat /proc/keys; echo console-ok")),
                         cgroups_path=f"/{oci_cgroup_parent}/c")
    config["process"]["terminal"] = True
    bundle = make_bundle(home, "bundle", config)
    hostile_image(busybox_rootfs, bundle / "rootfs", host, at="dev", kind=kind, staging="staged")
    state, cid = home / "state", f"console-{os.getpid()}"
    console = ConsoleSocket(home / "console.sock")
    host.watch()
    try:
        p = subprocess.run(oci_argv("isolate", state, "create", "--bundle", str(bundle),
                                    "--console-socket", str(console.path), cid),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        subprocess.run(oci_argv("isolate", state, "start", cid), check=True, timeout=60)
        out = console.read_until(b"console-ok").decode(errors="replace").replace("\r", "")
    finally:
        console.close()
        subprocess.run(oci_argv("isolate", state, "delete", "--force", cid), capture_output=True)
    problem = host.check(out)
    assert problem is None, problem
    # The container's first pty, named where its /dev is (the image's mirror of the link),
    # and bound on /dev/console.
    tty, console_dev, last = out.split("\n")[:3]
    assert tty.endswith("/pts/0") and console_dev == "88 0" and last == "console-ok", out


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "proc-self-root", "proc-self-fd"])
def test_oci_exec_console_ptmx_replaced(kind: str, host: Host, busybox_rootfs: Path, tmp_path: Path,
                                        oci_cgroup_parent: str, competitors: dict[str, str],
                                        request: pytest.FixtureRequest) -> None:
    """Tried: a running container replaces its /dev/ptmx with a symlink to a host file
    (``proc-self-fd``: through an fd the runtime holds, here one its caller leaked to it),
    then an operator runs ``exec --tty --console-socket``, which opens /dev/ptmx inside
    the container, read-write.
    Stopped by: /dev/ptmx is resolved inside the container's root without magic links and
    must be the ptmx device (5:2); the exec fails, naming the console step."""
    text, _ = link_for(host, kind, "staged", "ptmx")
    home = image_home(host, tmp_path, "staged")
    script = f"rm -f /dev/ptmx && ln -s '{text}' /dev/ptmx && echo ready && exec sleep 300"
    attack = f"exec --tty, /dev/ptmx replaced by the container: {kind}"
    for runtime in ("isolate", "runc", "crun"):
        config = base_config(list(sh(script)), cgroups_path=f"/{oci_cgroup_parent}/{runtime}")
        bundle = make_bundle(home, runtime, config)
        shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
        state, cid = home / f"state-{runtime}", f"ptmx-{os.getpid()}-{runtime}"
        console = ConsoleSocket(home / f"{runtime}.sock")
        init = subprocess.Popen(oci_argv(runtime, state, "run", "--bundle", str(bundle), cid),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            assert init.stdout is not None and init.stdout.readline() == b"ready\n", runtime
            host.watch()
            # Detached, as a shim runs it: runc takes a console socket only so.
            p = subprocess.run(oci_argv(runtime, state, "exec", "--detach", "--tty", "--console-socket",
                                        str(console.path), cid, "true"),
                               capture_output=True, text=True, timeout=60, pass_fds=[host.fd])
            out = p.stdout + p.stderr
            problem = host.check(out)
        finally:
            console.close()
            subprocess.run(oci_argv(runtime, state, "kill", cid, "KILL"), capture_output=True)
            init.communicate(timeout=60)
            subprocess.run(oci_argv(runtime, state, "delete", "--force", cid), capture_output=True)
        if runtime == "isolate":
            compare(request, attack, runtime, problem is None, out.strip()[-200:])
            assert problem is None, problem
            assert p.returncode == 1 and out.startswith("isolate-oci: exec: step "), out
            assert "open a terminal on /dev/ptmx" in out and out.count("\n") == 1, out
            # proc-self-fd: ELOOP, or ENOENT where the caller's fd never reaches the child
            # program (it inherits only the fds its plan names).
            wanted = {"proc-self-root": (errno.ELOOP,), "proc-self-fd": (errno.ELOOP, errno.ENOENT)}
            assert any(os.strerror(e) in out for e in wanted.get(kind, (errno.ENOENT,))), out
        else:
            stopped, detail = _row(problem, Outcome(p.returncode, out))
            compare(request, attack, runtime, stopped, f"{competitors[runtime]}: {detail}")


def test_bwrap_dev_symlink(host: Host, busybox_rootfs: Path, tmp_path: Path,
                           request: pytest.FixtureRequest) -> None:
    """bwrap --dev on the images of the /dev attack (each kind, bwrap's own staging:
    /newroot with the host at /oldroot), next to isolate on the same images."""
    plain = image_home(host, tmp_path, "staged") / "plain"
    shutil.copytree(busybox_rootfs, plain, symlinks=True)
    bwrap = [BWRAP, "--unshare-all", "--die-with-parent", "--proc", "/proc", "--dev", "/dev"]
    p = subprocess.run([*bwrap[:3], "--bind", str(plain), "/", *bwrap[3:], *DEV.argv],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        pytest.fail(f"bwrap cannot run a plain image here: {p.returncode} {p.stderr!r}")
    for kind in KINDS:
        image = image_home(host, tmp_path, "staged") / "rootfs"
        mirrored = hostile_image(busybox_rootfs, image, host, at="dev", kind=kind, staging="staged")
        host.watch()
        p = subprocess.run([*bwrap[:3], "--bind", str(image), "/", *bwrap[3:], *DEV.argv],
                           capture_output=True, text=True, timeout=60, pass_fds=[host.fd])
        o = Outcome(p.returncode, p.stdout + p.stderr)
        stopped, detail = _row(host.check(o.output), o)
        compare(request, f"{DEV.name}: {kind}", "bwrap", stopped, f"bwrap 0.8: {detail}")
        host.watch()
        outcome = run_container(image, DEV, host, "staged")
        problem = host.check(outcome.output)
        assert problem is None, problem
        outcome.assert_contained(DEV, mirrored, kind, "staged")
