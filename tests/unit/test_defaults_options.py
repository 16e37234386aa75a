"""The options behind the default sandbox's guarantees (issue 12), without a process.

The attacks themselves are in tests/security/test_defaults.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import isolate
from isolate import _ops as O
from isolate._planner_root import RootContext
from isolate.rootfs import RootFS


def ctx() -> RootContext:
    return RootContext(new=b"/newroot", old=b"/oldroot", stage=b"/tmp", chroot=False, userns=True,
                new_net=True, new_pid=True, console=None)


def tmpfs_sizes(rootfs: RootFS) -> dict[bytes, str | None]:
    """Every tmpfs the root mounts: target -> its size option (None: none)."""
    out = {}
    for op in rootfs._ops(ctx()):
        if isinstance(op, O.RootMount) and op.fstype == b"tmpfs" or (
                isinstance(op, O.RootMount) and op.source == b"shm"):
            out[op.target] = dict(op.options).get("size")
    return out


# --- tmpfs sizes -------------------------------------------------------------------------


def test_every_writable_tmpfs_of_the_host_root_is_bounded() -> None:
    sizes = tmpfs_sizes(RootFS.host(home="/root"))
    assert sizes[b"tmp"] == "512m" and sizes[b"root"] == "256m" and sizes[b"dev/shm"] == "64m"
    assert sizes[b"dev"] == "64k"


def test_tmpfs_sizes_can_be_changed_or_lifted() -> None:
    r = RootFS.host(home="/home/u", tmp_size="1g", home_size=8 << 20).mount_options("/dev/shm", size="1m")
    sizes = tmpfs_sizes(r)
    assert sizes[b"tmp"] == "1g" and sizes[b"home/u"] == str(8 << 20) and sizes[b"dev/shm"] == "1m"
    # None: tmpfs's own default (half of RAM), for a caller who wants it.
    sizes = tmpfs_sizes(RootFS.host(home="/root", tmp_size=None, home_size=None))
    assert sizes[b"tmp"] is None and sizes[b"root"] is None


def test_the_overlay_upper_tmpfs_is_bounded() -> None:
    def upper_size(r: RootFS) -> str | None:
        (op,) = [op for op in r._ops(ctx()) if isinstance(op, O.RootMount) and op.target == b"/ovl"]
        return dict(op.options).get("size")

    assert upper_size(RootFS.host().overlay()) == "1g"
    assert upper_size(RootFS.host().overlay(size="64m")) == "64m"
    assert upper_size(RootFS.host().overlay(size=None)) is None


@pytest.mark.parametrize("option", ["tmp_size", "home_size"])
@pytest.mark.parametrize("value", [0, -1, "lots", True])
def test_bad_sizes_name_the_option(option: str, value: object) -> None:
    with pytest.raises(isolate.ConfigError, match=option):
        RootFS.host(home="/root", **{option: value})  # type: ignore[arg-type]


# --- output ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 1.5, "1m", True])
def test_bad_max_output_is_refused_before_anything_runs(value: object) -> None:
    with pytest.raises(isolate.ConfigError, match="max_output"):
        isolate.run(["/bin/true"], capture_output=True, max_output=value)  # type: ignore[arg-type]
    with isolate.Container() as c, pytest.raises(isolate.ConfigError, match="max_output"):
        c.run(["/bin/true"], max_output=value)  # type: ignore[arg-type]
    assert c.process is None


def test_capture_keeps_the_first_bytes_and_says_it_truncated() -> None:
    from isolate._io import _Capture

    cap = _Capture(10)
    for chunk in (b"0123", b"4567", b"89ab", b"cd"):
        cap.add(chunk)
    assert (cap.value(), cap.truncated) == (b"0123456789", True)
    exact = _Capture(4)
    exact.add(b"0123")
    assert (exact.value(), exact.truncated) == (b"0123", False)
    unlimited = _Capture(None)
    unlimited.add(b"x" * 100)
    assert (unlimited.value(), unlimited.truncated) == (b"x" * 100, False)


def test_result_reports_truncation() -> None:
    r = isolate.Result(args=["x"], returncode=0, stdout=b"", stderr=b"", wall_time=0.0, cpu_time=0.0,
                       peak_memory=None, oom_killed=False, timed_out=False, root_mode="none",
                       truncated=True)
    assert r.to_dict()["truncated"] is True
    from isolate.container import DEFAULT_MAX_OUTPUT

    assert DEFAULT_MAX_OUTPUT == 32 << 20


# --- hostname ----------------------------------------------------------------------------


def test_default_hostname_is_the_name_or_a_fixed_one() -> None:
    with isolate.Container() as a, isolate.Container() as b:
        assert a.hostname == b.hostname == "isolate"       # one plan for every unnamed container
    with isolate.Container(name="ci_job#7") as c:
        assert c.hostname == "ci-job-7"
    with isolate.Container(name="x", hostname="given") as c:
        assert c.hostname == "given"
    with isolate.Container(hostname=None) as c:
        assert c.hostname is None                           # the uts namespace keeps what it has
    with isolate.Container(namespaces=isolate.DEFAULT_NAMESPACES - {"uts"}) as c:
        assert c.hostname is None


@given(st.text(max_size=200))
def test_hostname_for_any_name_is_a_valid_hostname(name: str) -> None:
    from isolate.container import hostname_for

    h = hostname_for(name)
    assert 0 < len(h.encode()) <= 64 and h.isascii()
    for label in h.split("."):
        assert 0 < len(label) <= 63 and not label.startswith("-") and not label.endswith("-")
        assert all(c.isalnum() or c == "-" for c in label)


# --- users and groups --------------------------------------------------------------------


def image(tmp_path: Path, passwd: str, group: str) -> Path:
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(passwd)
    (root / "etc/group").write_text(group)
    return root


def test_users_resolve_in_the_image_with_docker_rules(tmp_path: Path) -> None:
    from isolate._userdb import NOGROUP, resolve, rootfs_db

    root = image(tmp_path, "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/srv/app:/bin/sh\n",
                 "root:x:0:\napp:x:1001:\ndev:x:2000:app,other\nops:x:2001:other\n")
    db = rootfs_db(RootFS.from_directory(root))
    app = resolve(db, "app")
    assert (app.uid, app.gid, app.groups, app.home) == (1000, 1001, (2000,), "/srv/app")
    assert resolve(db, 1000).gid == 1001                       # by uid, the same entry
    assert resolve(db, "app", group="ops").groups == ()       # an explicit group: no /etc/group groups
    assert resolve(db, "app", groups=["ops", 7]).groups == (2001, 7)
    unknown = resolve(db, 4321)
    assert (unknown.gid, unknown.groups, unknown.home) == (NOGROUP, (), None)   # never gid 0
    assert resolve(db, None).gid == 0 and resolve(db, "root").groups == ()
    with pytest.raises(isolate.ConfigError, match="user: no such user 'nosuch'"):
        resolve(db, "nosuch")
    with pytest.raises(isolate.ConfigError, match="group: no such group 'nosuch'"):
        resolve(db, "app", group="nosuch")
    with pytest.raises(isolate.ConfigError, match=r"groups\[1\]: no such group"):
        resolve(db, "app", groups=["dev", "nosuch"])


@pytest.mark.parametrize("link", ["/etc/hostile", "../../../../../../etc/hostile",
                                  "/proc/self/root/etc/hostile", "../etc/../../../../etc/hostile"])
def test_the_images_passwd_is_read_inside_it(tmp_path: Path, link: str) -> None:
    """An image's /etc/passwd that is a symlink out of it is resolved inside the image."""
    from isolate._userdb import read_in_root

    host = Path("/etc/hostile")
    assert not host.exists()
    root = image(tmp_path, "", "")
    (root / "etc/passwd").unlink()
    (root / "etc/passwd").symlink_to(link)
    # The same path inside the image: what a RESOLVE_IN_ROOT lookup finds.
    inside = root / "proc/self/root/etc" if link.startswith("/proc") else root / "etc"
    inside.mkdir(parents=True, exist_ok=True)
    (inside / "hostile").write_text("evil:x:0:0::/:/bin/sh\n")
    assert read_in_root(os.fsencode(root), "etc/passwd") == b"evil:x:0:0::/:/bin/sh\n"
    (inside / "hostile").unlink()
    assert read_in_root(os.fsencode(root), "etc/passwd") is None


def test_the_images_passwd_must_be_a_small_regular_file(tmp_path: Path) -> None:
    from isolate._userdb import read_in_root

    root = image(tmp_path, "", "")
    (root / "etc/passwd").unlink()
    (root / "etc/passwd").symlink_to("/dev/zero")
    (root / "dev").mkdir()
    os.mkfifo(root / "dev/zero")
    with pytest.raises(isolate.ConfigError, match="not a regular file"):
        read_in_root(os.fsencode(root), "etc/passwd")
    (root / "etc/group").write_bytes(b"x" * 100)
    with pytest.raises(isolate.ConfigError, match="larger than"):
        read_in_root(os.fsencode(root), "etc/group", limit=99)
    (root / "etc/loop").symlink_to("loop")
    with pytest.raises(isolate.ConfigError, match="symbolic links"):
        read_in_root(os.fsencode(root), "etc/loop")


def test_ids_given_in_full_read_no_database(tmp_path: Path) -> None:
    """An OCI config gives uid, gid and additional gids: the image's files are never
    opened then (a FIFO at /etc/passwd would refuse a lookup)."""
    from isolate._userdb import resolve, rootfs_db

    root = image(tmp_path, "", "")
    for name in ("passwd", "group"):
        (root / "etc" / name).unlink()
        os.mkfifo(root / "etc" / name)
    db = rootfs_db(RootFS.from_directory(root))
    ident = resolve(db, 1000, 1000, [5])
    assert (ident.uid, ident.gid, ident.groups, ident.home) == (1000, 1000, (5,), None)
    with isolate.Container(rootfs=RootFS.from_directory(root), user=0, group=0, groups=[]) as c:
        assert c._r._credentials(None) == {"user": 0, "group": 0, "groups": ()}
    with pytest.raises(isolate.ConfigError, match="not a regular file"):
        resolve(db, 1000)


@pytest.mark.root   # plans a root caller's spawn (without root a user namespace is added)
def test_container_user_names_are_the_sandboxs(tmp_path: Path) -> None:
    root = image(tmp_path, "root:x:0:0::/root:/bin/sh\nnobody:x:4000:4001::/:/bin/sh\n",
                 "root:x:0:\nextra:x:4002:nobody\n")
    with isolate.Container(rootfs=RootFS.from_directory(root), user="nobody") as c:
        assert c._r._credentials(None) == {"user": 4000, "group": 4001, "groups": (4002,)}
        assert c._r._credentials(0) == {"user": 0, "group": 0, "groups": ()}
    with pytest.raises(isolate.ConfigError, match="no such user 'daemon'"):
        isolate.Container(rootfs=RootFS.from_directory(root), user="daemon")
    # A host root has the host's copy; no user: root with no supplementary groups.
    with isolate.Container(user="nobody") as c:
        assert c._r._credentials(None)["user"] == 65534 and c._r._credentials(None)["group"] == 65534
    # In a user namespace of its own, root of it, also for a process joining it (exec).
    with isolate.Container() as c:
        assert c._r._credentials(None) == {"user": 0, "group": None, "groups": ()}
    with isolate.Container(namespaces=isolate.DEFAULT_NAMESPACES - {"user"}) as c:
        assert c._r._credentials(None) == {"user": None, "group": None, "groups": ()}


def test_an_etc_bind_replaces_the_images_databases(tmp_path: Path) -> None:
    from isolate._userdb import resolve, rootfs_db

    root = image(tmp_path, "app:x:1000:1000::/:/bin/sh\n", "")
    mine = tmp_path / "passwd"
    mine.write_text("app:x:3000:3000::/:/bin/sh\n")
    r = RootFS.from_directory(root).bind(mine, "/etc/passwd")
    assert resolve(rootfs_db(r), "app").uid == 3000
    r = RootFS.host().tmpfs("/etc")
    with pytest.raises(isolate.ConfigError, match="missing or empty"):
        resolve(rootfs_db(r), "root2")


# --- isolate run -------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    from isolate.cli import run

    p = argparse.ArgumentParser()
    run.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["run", *argv])


def test_isolate_run_size_options() -> None:
    from isolate.cli.run import container_from_args

    c = container_from_args(parse("--tmp-size", "8m", "--home-size", "4m", "--shm-size", "2m",
                                  "--overlay", "--overlay-size", "16m", "--", "true"))
    assert c.rootfs is not None
    sizes = tmpfs_sizes(c.rootfs)
    assert sizes[b"tmp"] == str(8 << 20) and sizes[b"root"] == str(4 << 20)
    assert sizes[b"dev/shm"] == str(2 << 20) and c.rootfs.spec.overlay.size == str(16 << 20)
    c.close()
    with pytest.raises(isolate.ConfigError, match="--overlay-size needs --overlay"):
        container_from_args(parse("--overlay-size", "1m", "--", "true"))
    with pytest.raises(isolate.ConfigError, match="--tmp-size"):
        container_from_args(parse("--tmp-size", "lots", "--", "true"))


def test_isolate_run_user_group_hostname_and_session() -> None:
    from isolate.cli.run import container_from_args

    c = container_from_args(parse("--user", "nobody", "--group", "100", "--name", "a_b", "--", "true"))
    assert c._r._credentials(None) == {"user": 65534, "group": 100, "groups": ()}
    assert c.hostname == "a-b" and c.new_session and c.env["HOME"] == "/nonexistent"
    c.close()
    with pytest.raises(isolate.ConfigError, match="no such user 'nosuchuser'"):
        container_from_args(parse("--user", "nosuchuser", "--", "true"))
    if not os.isatty(0):
        with pytest.raises(isolate.ConfigError, match="--tty needs a terminal"):
            container_from_args(parse("--tty", "--", "true"))


# --- sessions ----------------------------------------------------------------------------


def test_a_sandbox_gets_a_session_of_its_own_unless_a_console_op_makes_one() -> None:
    from isolate._planner import FdLayout, Isolation, new_session
    from isolate.config import ProcessSpec

    cases = [(dict(namespaces={"pid"}), {}, (), True), (dict(join=("pid",)), {}, (), True),
             ({}, {}, (), False), (dict(namespaces={"pid"}), dict(new_session=False), (), False),
             (dict(namespaces={"pid"}), {}, (O.Console(fd=5, rows=0, cols=0),), False)]
    for iso, spec, extra, want in cases:
        got = new_session(ProcessSpec(args=("x",), **{"new_session": None, **spec}),
                          Isolation(**iso), FdLayout(), extra)
        assert got is want, (iso, spec, extra)
    # A console (Container.start(console_socket=...)) makes the session itself.
    assert new_session(ProcessSpec(args=("x",)), Isolation(), FdLayout(console=(0, 0, False))) is False
