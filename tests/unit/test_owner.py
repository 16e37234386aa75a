"""Owner records (isolate._owner, _registry, _reclaim) without privileges: the journal, the
test of life, and what a reclaim removes, with overlay-work directories (plain directories) as
the things made.

Dead owners are real: a forked child makes its records, then SIGKILLs itself."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isolate import _idalloc, _owner, _reclaim, _registry
from isolate.cli.__main__ import main as cli_main


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private registry for the test; this process keeps its own home elsewhere."""
    reg = tmp_path / "reg" / "owners"
    monkeypatch.setattr(_registry, "REGISTRY", str(reg))
    # and its own id blocks: a block another run left for gc is not this test's to find
    monkeypatch.setattr(_idalloc, "STATE_DIR", str(tmp_path / "reg" / "userns"))
    yield reg


def _in_child(fn: object, *, die: bool = True) -> tuple[int, int]:
    """Run ``fn()`` in a forked child that then SIGKILLs itself (``die``) or waits for its
    stdin pipe to close.  Returns (pid, write end of that pipe or -1)."""
    r, w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            os.close(done_r)
            fn()  # type: ignore[operator]
            os.write(done_w, b"x")
            if die:
                os.kill(os.getpid(), signal.SIGKILL)
            os.read(r, 1)
        finally:
            os._exit(0)
    os.close(r)
    os.close(done_w)
    assert os.read(done_r, 1) == b"x", "the child failed"
    os.close(done_r)
    if die:
        os.waitpid(pid, 0)
        os.close(w)
        return pid, -1
    return pid, w


def _make_work(path: Path, *, made: bool = True) -> None:
    rec = _owner.record("overlay")
    rec.pending(str(path), role="overlay-work")
    path.mkdir()
    if made:
        rec.made(str(path), "overlay-work")
    rec.flush()


def _homes(reg: Path) -> list[str]:
    return sorted(os.listdir(reg)) if reg.exists() else []


def test_a_killed_owners_work_directory_is_reclaimed_and_a_live_owners_is_not(
        registry: Path, tmp_path: Path) -> None:
    dead = tmp_path / "dead-work"
    live = tmp_path / "live-work"
    dead_pid, _ = _in_child(lambda: (_make_work(dead), (dead / "scratch").write_text("x")))
    live_pid, keep = _in_child(lambda: _make_work(live), die=False)
    try:
        dry = _owner.gc(dry_run=True)
        assert [(f.kind, f.path, f.pid) for f in dry] == [("overlay-work", str(dead), dead_pid)]
        assert dead.is_dir()                          # a dry run removes nothing
        found = _owner.gc()
        assert found == dry
        assert not dead.exists() and live.is_dir()
        assert len(_homes(registry)) == 1             # the dead owner's directory went too
        assert _owner.gc() == []
    finally:
        os.close(keep)
        os.waitpid(live_pid, 0)
    # Now the second owner is gone too.
    assert [f.path for f in _owner.gc()] == [str(live)]
    assert _homes(registry) == []


def test_the_next_make_beside_a_dead_owners_things_reclaims_them_once(
        registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _in_child(lambda: (_make_work(tmp_path / "a" / "w"), _make_work(tmp_path / "b" / "w")))
    monkeypatch.setattr(_reclaim, "_reclaimed", set())
    monkeypatch.setattr(_reclaim, "_asked", set())
    assert _owner.reclaim_once([str(tmp_path / "a")]) is True
    assert not (tmp_path / "a" / "w").exists()
    assert (tmp_path / "b" / "w").is_dir()            # another parent: left for gc
    assert _owner.reclaim_once([str(tmp_path / "a")]) is False
    assert [f.path for f in _owner.gc()] == [str(tmp_path / "b" / "w")]


def test_forget_has_reclaim_once_look_again(registry: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The OCI planner's workers are forks of a process that looked already (it planned a
    container): ``forget`` has each look for itself."""
    (tmp_path / "a").mkdir()
    monkeypatch.setattr(_reclaim, "_reclaimed", set())
    monkeypatch.setattr(_reclaim, "_asked", set())
    assert _owner.reclaim_once([str(tmp_path / "a")]) is False       # nothing there yet
    _in_child(lambda: _make_work(tmp_path / "a" / "w"))
    assert _owner.reclaim_once([str(tmp_path / "a")]) is False       # looked already
    assert (tmp_path / "a" / "w").is_dir()
    _reclaim.forget()
    assert _owner.reclaim_once([str(tmp_path / "a")]) is True
    assert not (tmp_path / "a" / "w").exists()


def test_a_live_pid_with_another_start_time_is_not_the_owner(
        registry: Path, tmp_path: Path) -> None:
    # Owner directories as a crashed owner would leave them (no lock held), named after a
    # process that runs now (this one): with another start time it is a different process.
    me = _owner.proc_start_time(os.getpid())
    assert me is not None
    for start, name in ((me + 1, "reused"), (me, "running")):
        path = tmp_path / name
        path.mkdir()
        home = registry / f"{os.getpid()}-{start}-{_owner.boot_id()}"
        home.mkdir(parents=True)
        st_ = path.stat()
        (home / _owner.JOURNAL).write_text(
            f'{{"id": 1, "kind": "overlay"}}\n'
            f'{{"id": 1, "made": ["{path}", "overlay-work", {st_.st_dev}, {st_.st_ino}]}}\n')
    found = _owner.gc()
    assert [f.path for f in found] == [str(tmp_path / "reused")]
    assert (tmp_path / "running").is_dir()            # the same start time: it is alive


def test_only_what_the_owner_made_is_removed(registry: Path, tmp_path: Path) -> None:
    # The dead owner's directory was removed and another one put at the same path since
    # (made while the first existed: another inode).
    other = tmp_path / "other"
    _in_child(lambda: _make_work(other))
    (tmp_path / "replacement").mkdir()
    other.rmdir()
    (tmp_path / "replacement").rename(other)
    assert _owner.gc() == []
    assert other.is_dir()
    assert _homes(registry) == []                     # the dead one's record is done with


def test_a_path_a_live_owner_made_again_is_theirs(registry: Path, tmp_path: Path) -> None:
    # Made again by a live owner, and the file system gave it the freed inode number: the
    # device and inode match the dead owner's record, the live owner's record settles it.
    mine = tmp_path / "mine"
    _in_child(lambda: _make_work(mine))

    def claim() -> None:
        rec = _owner.record("overlay")
        rec.pending(str(mine), role="overlay-work")
        rec.made(str(mine), "overlay-work")        # the same inode, as a reuse would give
        rec.flush()

    live_pid, keep = _in_child(claim, die=False)
    try:
        assert _owner.gc() == []
        assert mine.is_dir()
    finally:
        os.close(keep)
        os.waitpid(live_pid, 0)


def test_a_path_left_pending_is_removed_only_if_empty_and_unclaimed(
        registry: Path, tmp_path: Path) -> None:
    empty, full, claimed = tmp_path / "empty", tmp_path / "full", tmp_path / "claimed"
    _in_child(lambda: (_make_work(empty, made=False), _make_work(full, made=False),
                       _make_work(claimed, made=False)))
    (full / "f").write_text("someone's")
    claimed.rmdir()                      # made again by a live owner that records it
    live_pid, keep = _in_child(lambda: _make_work(claimed), die=False)
    try:
        assert [f.path for f in _owner.gc()] == [str(empty)]
        assert full.is_dir() and claimed.is_dir()
    finally:
        os.close(keep)
        os.waitpid(live_pid, 0)


def test_a_thing_a_live_process_uses_stays(registry: Path, tmp_path: Path) -> None:
    # An overlay's holder (the container's first process) outlives the owner.
    path = tmp_path / "w"
    holder_pid, keep = _in_child(lambda: None, die=False)
    _in_child(lambda: (_make_work(path), _last_record().holder(holder_pid)))
    try:
        assert _owner.gc() == []
        assert path.is_dir()
    finally:
        os.close(keep)
        os.waitpid(holder_pid, 0)
    assert [f.path for f in _owner.gc()] == [str(path)]


def _last_record() -> _owner.Record:
    home = _owner._me
    assert home is not None
    return next(r for r in reversed(list(home.live.values())) if r.kind == "overlay")


def test_a_cleared_record_is_never_reclaimed(registry: Path, tmp_path: Path) -> None:
    path = tmp_path / "w"

    def make_and_hand_over() -> None:
        _make_work(path)
        _last_record().clear()

    _in_child(make_and_hand_over)
    assert _owner.gc() == []
    assert path.is_dir()


def test_a_registry_others_can_write_is_refused(registry: Path, tmp_path: Path) -> None:
    registry.mkdir(parents=True)
    registry.chmod(0o777)
    with pytest.raises(PermissionError, match="only it can write"):
        _owner.gc()
    # Making something still works; the record is just not kept (warned once).
    monkey_home = _owner._me
    try:
        _owner._me = None
        monkey_warned = _owner._warned
        _owner._warned = False
        with pytest.warns(RuntimeWarning, match="cannot keep owner records"):
            rec = _owner.record("overlay")
        rec.pending(str(tmp_path / "x"), role="overlay-work")
        rec.clear()
    finally:
        _owner._me = monkey_home
        _owner._warned = monkey_warned
    assert os.listdir(registry) == []


def test_the_registry_is_private(registry: Path, tmp_path: Path) -> None:
    _in_child(lambda: _make_work(tmp_path / "w"))
    mode = stat.S_IMODE(registry.stat().st_mode)
    assert mode == 0o700
    home = next(registry.iterdir())
    assert stat.S_IMODE((home / _owner.JOURNAL).stat().st_mode) == 0o600


def test_isolate_gc_prints_one_line_per_thing_and_exits_0(
        registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pid, _ = _in_child(lambda: (_make_work(tmp_path / "w1"), _make_work(tmp_path / "w2")))
    assert cli_main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"would remove overlay-work {tmp_path}/w{i} (owner pid {pid}, started at "
                   f"tick {_tick(out[i - 1])}, gone)" for i in (1, 2)]
    assert (tmp_path / "w1").is_dir()
    assert cli_main(["gc"]) == 0
    assert [line.replace("removed ", "would remove ") for line in
            capsys.readouterr().out.splitlines()] == out
    assert not (tmp_path / "w1").exists()
    assert cli_main(["gc"]) == 0
    assert capsys.readouterr().out == ""


def _tick(line: str) -> str:
    return line.split("started at tick ")[1].split(",")[0]


def test_owner_names_round_trip() -> None:
    o = _owner.Owner(123, 456789, "abc")
    assert _owner.Owner.parse(o.name) == o
    assert _owner.Owner.parse("." + o.name) == o
    for junk in ("records", "1-2", "a-2-x", "1-b-x", "1-2-", "1-2-x-y"):
        assert _owner.Owner.parse(junk) is None


PATHS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).map(
    lambda s: "/" + s.replace("\0", "")) | st.binary(min_size=1, max_size=20).map(
    lambda b: "/x/" + os.fsdecode(b.replace(b"\0", b"")))


@settings(max_examples=60, deadline=None)
@given(paths=st.lists(PATHS, min_size=1, max_size=5, unique=True),
       roles=st.lists(st.sampled_from(_reclaim._ORDER), min_size=5, max_size=5),
       made=st.lists(st.booleans(), min_size=5, max_size=5))
def test_the_journal_reads_back_what_was_written(tmp_path_factory: pytest.TempPathFactory,
                                                 paths: list[str], roles: list[str],
                                                 made: list[bool]) -> None:
    # Any path (quotes, newlines, undecodable bytes as surrogates) comes back the same.
    d = tmp_path_factory.mktemp("home")
    dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(_owner.JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600, dir_fd=dir_fd)
    home = _owner._Home(os.getpid(), str(d), dir_fd, fd)
    saved = _owner._me
    _owner._me = home
    try:
        kept = _owner.Record(home, "overlay")
        gone = _owner.Record(home, "cgroup")
        gone.pending("/gone", role="cgroup")
        for i, p in enumerate(paths):
            kept.pending(p, role=roles[i])   # type: ignore[arg-type]
            if made[i]:
                kept.made_ids(p, roles[i], 7, 100 + i, probe="tasks" if i % 2 else "")  # type: ignore[arg-type]
        kept.flush()
        gone.clear()
    finally:
        _owner._me = saved
        home.close()
    (rec,) = _reclaim._records(str(d), _owner.Owner(1, 2, "b"))
    assert rec.kind == "overlay"
    assert sorted(rec.entries) == sorted((p, roles[i]) for i, p in enumerate(paths))
    for i, p in enumerate(paths):
        e = rec.entries[(p, roles[i])]
        assert e.ids == ((7, 100 + i) if made[i] else None)
        assert e.probe == ("tasks" if made[i] and i % 2 else "")


def test_a_line_cut_short_by_a_kill_is_ignored(tmp_path: Path) -> None:
    (tmp_path / _owner.JOURNAL).write_text(
        '{"id": 1, "kind": "overlay"}\n{"id": 1, "pending": ["/a", "overlay-work"]}\n'
        '{"id": 1, "made": ["/a", "overlay-wo')
    (rec,) = _reclaim._records(str(tmp_path), _owner.Owner(1, 2, "b"))
    assert rec.entries[("/a", "overlay-work")].ids is None


def test_leave_removes_the_directory_of_an_owner_with_nothing_left(
        registry: Path, tmp_path: Path) -> None:
    def make_remove_leave(path: Path, leave: bool) -> None:
        _make_work(path)
        path.rmdir()
        _last_record().clear()
        if leave:
            _owner.leave()           # what a program ending with os._exit calls first

    _in_child(lambda: make_remove_leave(tmp_path / "a", True))
    assert _homes(registry) == []
    # Without it (os._exit, SIGKILL) an empty directory stays: gc removes it, reporting nothing.
    _in_child(lambda: make_remove_leave(tmp_path / "b", False))
    assert len(_homes(registry)) == 1
    assert _owner.gc() == []
    assert _homes(registry) == []
    # A record still open at leave(): the directory stays for gc.
    _in_child(lambda: (_make_work(tmp_path / "c"), _owner.leave()))
    assert [f.path for f in _owner.gc()] == [str(tmp_path / "c")]
