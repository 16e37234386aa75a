"""Root's default user namespace: a block of 65536 host ids per container (``userns="auto"``).

Each live container holds a block no other live one has; it is given back at
``close()``, taken back after its owner is killed (by the next process that
allocates, and by ``isolate gc``), but never while a process still runs with
its ids; concurrent allocations from several processes never share a block;
an exhausted reserve is a clear error; ``identity`` and ``keep-id`` map what
they say.  Most tests use a private block directory (and reserve files), so
that blocks held by anything else on the host change nothing they assert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import isolate
from isolate import _idalloc
from isolate.errors import ConfigError, UnsupportedError
from isolate.idmap import IdMap

pytestmark = pytest.mark.root

B = _idalloc.BUILTIN_START


@pytest.fixture
def blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private block directory for this test (removed empty at the end)."""
    state = tmp_path / "userns"
    monkeypatch.setattr(_idalloc, "STATE_DIR", str(state))
    yield state
    left = sorted(p.name for p in state.iterdir()) if state.exists() else []
    assert left == [], f"blocks left behind: {left}"


def _maps(pid: int) -> tuple[str, str]:
    """/proc/<pid>/uid_map and gid_map, whitespace collapsed."""
    return tuple(" ".join(Path(f"/proc/{pid}/{m}").read_text().split())  # type: ignore[return-value]
                 for m in ("uid_map", "gid_map"))


def _owner(state: Path, uid: int) -> str | None:
    try:
        return (state / str(uid)).read_text().split()[2]
    except FileNotFoundError:
        return None


def test_two_live_containers_get_disjoint_blocks_freed_on_close(blocks: Path) -> None:
    with isolate.Container() as a, isolate.Container() as b:
        a.start(["sleep", "1000"])
        b.start(["sleep", "1000"])
        assert a.pid is not None and b.pid is not None
        ua, ga = _maps(a.pid)
        ub, gb = _maps(b.pid)
        assert (ua, ga) == (f"0 {B} 65536", f"0 {B} 65536")
        assert (ub, gb) == (f"0 {B + 65536} 65536", f"0 {B + 65536} 65536")
        assert a.id_block == (B, B) and b.id_block == (B + 65536, B + 65536)
        me = f"{os.getpid()}-"
        assert sorted(p.name for p in blocks.iterdir()) == [str(B), str(B + 65536)]
        assert all((_owner(blocks, u) or "").startswith(me) for u in (B, B + 65536))
        # Its root inside is the first id of its block outside.
        st = Path(f"/proc/{a.pid}/status").read_text()
        assert f"Uid:\t{B}\t{B}\t{B}\t{B}" in st, st
    assert list(blocks.iterdir()) == []
    # The freed block is the next one handed out.
    with isolate.Container() as c:
        assert c.id_block == (B, B)


def test_the_default_reads_and_runs_the_hosts_usr_read_only_as_an_unprivileged_root(blocks: Path) -> None:
    with isolate.Container() as c:
        r = c.run(["sh", "-c", "id -u; /usr/bin/test -x /usr/bin/env && /usr/bin/env true && "
                   "head -c 4 /usr/bin/env | od -c | head -1; stat -c '%u %U' /usr; "
                   "cat /proc/self/uid_map; touch /usr/x 2>&1 || true"], timeout=60)
    assert r.returncode == 0, r
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "0"                                 # root inside
    assert "E   L   F" in lines[1]                         # /usr readable, and it ran
    assert lines[2] == "0 root"                            # an idmapped bind: its real owner
    assert lines[3].split() == ["0", str(B), "65536"]      # ... while root is not host root
    assert "Read-only file system" in lines[4], r


def test_identity_and_keep_id_map_what_they_say(blocks: Path) -> None:
    for mode, want in (("identity", "0 0 4294967295"), ("keep-id", "0 0 1")):
        with isolate.Container(userns=mode) as c:  # type: ignore[arg-type]
            r = c.run(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u"], timeout=60)
            assert c.id_block is None
        assert r.returncode == 0, r
        uid_map, gid_map, uid = r.stdout.decode().splitlines()
        assert " ".join(uid_map.split()) == want and " ".join(gid_map.split()) == want, (mode, r)
        assert uid == "0"
    # Explicit maps override userns; nothing is allocated.
    m = [IdMap(inside=0, outside=3000000000, count=65536)]
    with isolate.Container(uid_map=m, gid_map=m) as c:
        r = c.run(["cat", "/proc/self/uid_map"], timeout=60)
        assert c.id_block is None
    assert r.stdout.split() == [b"0", b"3000000000", b"65536"]
    # The CLI's --userns.
    for mode, want in (("auto", ["0"]), ("identity", ["0", "0", "4294967295"]),
                       ("keep-id", ["0", "0", "1"])):
        out = subprocess.run([sys.executable, "-m", "isolate", "run", "--userns", mode, "--",
                              "cat", "/proc/self/uid_map"], capture_output=True, timeout=120)
        assert out.returncode == 0, out
        assert out.stdout.split()[:len(want)] == [w.encode() for w in want], (mode, out)
        if mode == "auto":
            assert int(out.stdout.split()[1]) >= B and out.stdout.split()[2] == b"65536", out
    with pytest.raises(ConfigError, match="userns must be one of"):
        isolate.Container(userns="root")  # type: ignore[arg-type]


def test_an_exhausted_reserve_is_refused_naming_the_files(blocks: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text(f"someone:100000:65536\nisolate:{1 << 30}:65536\n")
    subgid.write_text(f"isolate:{1 << 30}:100000\n")      # the remainder of a block is not used
    monkeypatch.setattr(_idalloc, "SUBUID", str(subuid))
    monkeypatch.setattr(_idalloc, "SUBGID", str(subgid))
    with isolate.Container() as a:
        assert a.id_block == (1 << 30, 1 << 30)
        with pytest.raises(UnsupportedError) as e:
            isolate.Container()
        assert str(subuid) in str(e.value) and str(subgid) in str(e.value), e.value
        assert "in use" in str(e.value)
        assert sorted(p.name for p in blocks.iterdir()) == [str(1 << 30)]   # nothing more
    with isolate.Container() as b:                         # freed: usable again
        assert b.id_block == (1 << 30, 1 << 30)
    subuid.write_text("isolate:nope:65536\n")
    with pytest.raises(ConfigError, match=f"{subuid}:1"):
        isolate.Container()


#: A caller in its own process, with the block directory and the owner registry of the
#: test: prints its container's block, then waits (until killed, or EOF on stdin).
CALLER = textwrap.dedent(r'''
    import sys
    from isolate import _idalloc, _registry
    _idalloc.STATE_DIR, _registry.REGISTRY = sys.argv[1], sys.argv[2]
    import isolate
    if sys.argv[3] == "nopid":     # its processes outlive it
        c = isolate.Container(rootfs=None, namespaces={"user"}, die_with_parent=False)
    else:
        c = isolate.Container()
    c.start(["sh", "-c", "sleep 1000 & echo $!; wait"], stdout=isolate.PIPE)
    print(c.id_block[0], c.pid, c.process.stdout.readline().decode().strip(), flush=True)
    sys.stdin.read()
    c.close()
''')


def _caller(state: Path, registry: Path, mode: str = "pid") -> tuple[subprocess.Popen[bytes], int, int, int]:
    p = subprocess.Popen([sys.executable, "-c", CALLER, str(state), str(registry), mode],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None
    uid, pid, sleeper = map(int, p.stdout.readline().split())
    return p, uid, pid, sleeper


def _end(p: subprocess.Popen[bytes]) -> None:
    """SIGKILL a caller and reap it (its pipes closed)."""
    p.kill()
    p.wait()
    for f in (p.stdin, p.stdout):
        if f is not None:
            f.close()


def _gone(pid: int) -> None:
    """Wait until ``pid`` has exited and its parent (init, once its own is gone) reaped it."""
    import select
    import time

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])
        while os.path.exists(f"/proc/{pid}") and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            time.sleep(0.01)      # a zombie still shows its ids
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _in_sub(state: Path, registry: Path, code: str) -> str:
    pre = ("import sys\nfrom isolate import _idalloc, _registry\n"
           f"_idalloc.STATE_DIR, _registry.REGISTRY = {str(state)!r}, {str(registry)!r}\n")
    out = subprocess.run([sys.executable, "-c", pre + code], capture_output=True, timeout=120)
    assert out.returncode == 0, out
    return out.stdout.decode()


def test_a_killed_owners_block_is_taken_back_by_the_next_start_and_by_gc(tmp_path: Path) -> None:
    state, registry = tmp_path / "userns", tmp_path / "owners"
    a, uid_a, pid_a, _ = _caller(state, registry)
    assert uid_a == B and _owner(state, B) == _owner_name(a.pid)
    _end(a)
    _gone(pid_a)                  # its container died with it (die_with_parent, pid namespace)
    assert (state / str(B)).exists()                  # nothing took it back yet
    # The next start, in another process, takes the dead owner's block back and gets it.
    b, uid_b, pid_b, _ = _caller(state, registry)
    assert uid_b == B and _owner(state, B) == _owner_name(b.pid)
    _end(b)
    _gone(pid_b)
    # isolate gc takes it back too, naming it and its owner.
    out = _in_sub(state, registry, "from isolate.cli.__main__ import main\nsys.exit(main(['gc']))")
    assert f"removed userns-range {state}/{B} (owner pid {b.pid}" in out, out
    assert list(state.iterdir()) == []


def _owner_name(pid: int) -> str:
    from isolate._registry import Owner, boot_id, proc_start_time

    return Owner(pid, proc_start_time(pid) or 0, boot_id()).name


def _processes_in(uid: int) -> list[tuple[int, int]]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                line = next(ln for ln in Path(f"/proc/{d}/status").read_text().splitlines()
                            if ln.startswith("Uid:"))
            except (OSError, StopIteration):
                continue
            u = int(line.split()[1])
            if uid <= u < uid + 65536:
                out.append((int(d), u))
    return out


def test_a_block_is_not_taken_back_while_a_process_runs_with_its_ids(tmp_path: Path) -> None:
    """A container without a pid namespace whose owner is killed leaves a process running
    with its ids: neither the next start nor gc takes the block back until it exits."""
    state, registry = tmp_path / "userns", tmp_path / "owners"
    a, uid_a, pid_a, sleeper = _caller(state, registry, "nopid")
    _end(a)
    try:
        assert any(pid == sleeper for pid, _ in _processes_in(uid_a))
        out = _in_sub(state, registry, "import isolate\nc = isolate.Container()\n"
                      "print(c.id_block[0])\nc.close()\n"
                      "from isolate.cli.__main__ import main\nsys.exit(main(['gc']))")
        assert out.split()[0] == str(uid_a + 65536), out      # not the one in use
        assert "userns-range" not in out, out
        assert (state / str(uid_a)).exists()
    finally:
        os.kill(sleeper, signal.SIGKILL)
        os.kill(pid_a, signal.SIGKILL)
    for pid, _ in _processes_in(uid_a):
        _gone(pid)
    out = _in_sub(state, registry, "from isolate.cli.__main__ import main\nsys.exit(main(['gc']))")
    assert f"removed userns-range {state}/{uid_a}" in out, out
    assert list(state.iterdir()) == []


#: Waits for the start file, then allocates N blocks at once with the others.
ALLOCATOR = textwrap.dedent(r'''
    import json, os, sys
    from isolate import _idalloc, _registry
    _idalloc.STATE_DIR, _registry.REGISTRY = sys.argv[1], sys.argv[2]
    start, n = sys.argv[3], int(sys.argv[4])
    while not os.path.exists(start):
        pass
    leases = [_idalloc.allocate() for _ in range(n)]
    print(json.dumps([l.block.uid for l in leases]), flush=True)
    sys.stdin.read()
    for l in leases:
        l.release(processes_gone=True)
''')


def test_concurrent_allocations_never_share_a_block(tmp_path: Path) -> None:
    state, registry, start = tmp_path / "userns", tmp_path / "owners", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", ALLOCATOR, str(state), str(registry),
                               str(start), "8"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for _ in range(6)]
    try:
        start.touch()
        got = {p.pid: json.loads(p.stdout.readline()) for p in procs}  # type: ignore[union-attr]
        every = [u for uids in got.values() for u in uids]
        assert len(every) == 48 and len(set(every)) == 48, got
        assert sorted(every) == [B + i * 65536 for i in range(48)]      # none skipped
        # The block directory and the owner registry agree on who holds what.
        for pid, uids in got.items():
            name = _owner_name(pid)
            assert all(_owner(state, u) == name for u in uids)
            journal = (registry / name / "records").read_text().splitlines()
            made = sorted(int(json.loads(ln)["made"][0].rsplit("/", 1)[1]) for ln in journal
                          if '"made"' in ln)
            assert made == sorted(uids), journal
    finally:
        for p in procs:
            p.communicate(b"")
    assert all(p.returncode == 0 for p in procs)
    assert list(state.iterdir()) == []
    assert list(registry.iterdir()) == []


def test_keep_id_and_identity_for_an_ordinary_user(rootless: Any) -> None:
    """keep-id runs a non-root caller's container as the caller's own id, mapped to itself
    (one line); identity, which would map every host id, is refused naming what to use."""
    r = rootless.run(["isolate", "run", "--userns", "keep-id", "--", "sh", "-c",
                      "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map"], check=True)
    uid, gid, uid_map, gid_map = r.stdout.splitlines()
    assert (uid, gid) == (str(rootless.uid), str(rootless.gid)), r
    assert uid_map.split() == [str(rootless.uid)] * 2 + ["1"], r
    assert gid_map.split() == [str(rootless.gid)] * 2 + ["1"], r
    r = rootless.python_run("import isolate\nwith isolate.Container(userns='keep-id') as c:\n"
                            " print(c.run(['id', '-u']).stdout.decode().strip(), c.id_block)\n",
                            check=True)
    assert r.stdout.split() == [str(rootless.uid), "None"], r
    r = rootless.run(["isolate", "run", "--userns", "identity", "--", "true"])
    assert r.returncode == 125 and "userns='identity'" in r.stderr and "needs root" in r.stderr, r
