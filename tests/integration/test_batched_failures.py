"""A batched op that fails names the failing entry and the part of it that failed.

``RootMkdirs``, ``RootBinds`` and ``RootMasks`` make many entries in one op
(one root fd for all): the child reports the entry's index and the sub-step
(open source, clone, setattr, open target, move ...), and the error reads
``step N (bind A on B, entry 3 of 5): open target: [Errno 2] ...``.  Each test
makes the kernel refuse one entry for real, in a mount namespace of the
child's own, under a temporary directory.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import isolate
from isolate import _ops as O
from isolate import _plan as P
from isolate import _ops_root as R
from isolate import errors

pytestmark = pytest.mark.root


def fail(*ops: P.Op) -> errors.SetupError:
    """Run ``ops`` in a new mount namespace; the SetupError they end in."""
    with pytest.raises(errors.SetupError) as info:
        isolate.run(["/bin/true"], namespaces={"mnt"}, ops=list(ops))
    return info.value


def b(path: Path) -> bytes:
    return os.fsencode(path)


def message(e: errors.SetupError) -> str:
    where = f", entry {e.entry + 1} of {e.entries}" if e.entry is not None else ""
    return f"step {e.step} ({e.op}{where}): {e.substep}: [Errno {e.errno}] {os.strerror(e.errno)}"


# --- RootMkdirs ---------------------------------------------------------------------


def test_mkdirs_names_the_entry_it_could_not_create(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("host\n")
    op = R.RootMkdirs(b(tmp_path), b"etc", (
        (b"a", R.ENTRY_DIR, 0o755, None), (b"resolv.conf", R.ENTRY_FILE, 0o644, None),
        (b"hostname", R.ENTRY_CONTENTS, 0o644, b"box\n"), (b"b", R.ENTRY_DIR, 0o755, None)))
    e = fail(op)
    assert type(e) is errors.MountError and e.errno == errno.EEXIST
    assert (e.entry, e.entries, e.substep) == (2, 4, "create")
    assert e.op == f"write file {tmp_path}/etc/hostname" and e.filename == f"{tmp_path}/etc/hostname"
    assert str(e) == (f"step {e.step} (write file {tmp_path}/etc/hostname, entry 3 of 4): "
                      "create: [Errno 17] File exists")
    # The entries before it were made, none after it, and the file was not touched.
    assert (tmp_path / "etc" / "a").is_dir() and (tmp_path / "etc" / "resolv.conf").is_file()
    assert not (tmp_path / "etc" / "b").exists()
    assert (tmp_path / "etc" / "hostname").read_text() == "host\n"


def test_mkdirs_without_its_directory_fails_before_any_entry(tmp_path: Path) -> None:
    op = R.RootMkdirs(b(tmp_path), b"missing", ((b"a", R.ENTRY_DIR, 0o755, None),))
    e = fail(op)
    assert e.errno == errno.ENOENT and e.entry is None and e.substep == "open directory"
    assert e.op == op.describe()
    assert str(e) == message(e)


# --- RootBinds ----------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("src/a", "src/b", "dst/a", "dst/b"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "dst" / "file").write_text("")
    return tmp_path


def binds(tree: Path, *pairs: tuple[bytes, bytes], **kw: int) -> R.RootBinds:
    return R.RootBinds(b(tree / "src"), b(tree / "dst"), pairs, **kw)  # type: ignore[arg-type]


def test_binds_name_a_source_that_cannot_be_opened(tree: Path) -> None:
    e = fail(binds(tree, (b"a", b"a"), (b"missing", b"b")))
    assert (e.errno, e.entry, e.entries, e.substep) == (errno.ENOENT, 1, 2, "open source")
    assert e.op == f"bind {tree}/src/missing on {tree}/dst/b" and e.filename == f"{tree}/dst/b"
    assert str(e) == message(e)


def test_binds_name_a_target_that_cannot_be_opened(tree: Path) -> None:
    e = fail(binds(tree, (b"a", b"a"), (b"b", b"b"), (b"a", b"missing/x")))
    assert (e.errno, e.entry, e.entries, e.substep) == (errno.ENOENT, 2, 3, "open target")
    assert str(e) == (f"step {e.step} (bind {tree}/src/a on {tree}/dst/missing/x, entry 3 of 3): "
                      "open target: [Errno 2] No such file or directory")


def test_binds_name_a_mount_that_cannot_be_cloned(tree: Path) -> None:
    # An unbindable mount cannot be copied by open_tree(OPEN_TREE_CLONE).
    unbindable = b(tree / "src" / "b")
    e = fail(O.Mount(b"tmpfs", unbindable, b"tmpfs"),
             O.Mount(None, unbindable, None, P.lib.MS_UNBINDABLE),
             binds(tree, (b"a", b"a"), (b"b", b"b")))
    assert (e.errno, e.entry, e.substep) == (errno.EINVAL, 1, "clone")
    assert str(e) == message(e)


def test_binds_name_attributes_the_kernel_refuses(tree: Path) -> None:
    e = fail(binds(tree, (b"a", b"a"), attr_set=1 << 30))
    assert (e.errno, e.entry, e.entries, e.substep) == (errno.EINVAL, 0, 1, "setattr")
    assert str(e) == message(e)


def test_binds_name_a_target_the_mount_cannot_move_onto(tree: Path) -> None:
    # A directory cannot be mounted on a regular file: move_mount() says EINVAL.
    e = fail(binds(tree, (b"a", b"a"), (b"b", b"file")))
    assert (e.entry, e.substep) == (1, "move") and e.errno == errno.EINVAL
    assert e.op == f"bind {tree}/src/b on {tree}/dst/file"
    assert str(e) == message(e)


# --- RootMasks ----------------------------------------------------------------------


def test_masks_name_the_path_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "c").write_text("")
    os.symlink("loop", tmp_path / "loop")
    op = R.RootMasks(b(tmp_path), (b"a", b"missing", b"loop", b"c"), b"dev/null", null_root=b"/")
    e = fail(op)
    assert (e.errno, e.entry, e.entries, e.substep) == (errno.ELOOP, 2, 4, "open target")
    assert e.op == f"mask {tmp_path}/loop (null device: /dev/null)"
    assert e.filename == f"{tmp_path}/loop"
    assert str(e) == message(e)


def test_masks_refuse_a_null_device_that_is_not_one_before_any_entry(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "null").write_text("")
    e = fail(R.RootMasks(b(tmp_path), (b"a",), b"null"))
    assert (e.errno, e.entry, e.substep) == (errno.ENODEV, None, "check null device")
    assert str(e) == message(e)
