"""The ``isolate-oci`` front end's side of the planner protocol, against a fake planner.

The fake planner, here in the test, listens where the front end looks for
its planner (``ISOLATE_OCI_PLANNER_DIR``, the context key in the name) and
plays the worker: it reads the REQUEST, sends real packed plans (SPAWN),
releases them, waits for them (WAIT) and ends the call (EXIT).  What is
checked is what a client sees: the spawned process is the front end's child,
its output and exit status, the front end's own exit status.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from isolate import _ops as O
from isolate import _plan as P
from isolate._spawn import CHILD_PROGRAM
from isolate.oci import warm

FRONT = str(Path(sys.executable).parent / "isolate-oci")


def front_python() -> str:
    """The interpreter the front end runs: the #! line of the ``isolate`` script next to it."""
    line = (Path(FRONT).parent / "isolate").read_bytes().split(b"\n", 1)[0]
    return line[2:].split()[0].decode()


class FakePlanner:
    """A listening socket where the front end looks, and the test as its worker."""

    def __init__(self, tmp: Path, env: dict[str, str], mode: int = 0o600) -> None:
        self.dir = tmp / "planners"
        self.dir.mkdir(mode=0o700)
        self.env = {**env, "ISOLATE_OCI_PLANNER": "1", "ISOLATE_OCI_PLANNER_DIR": str(self.dir)}
        key = warm.context_key(front=FRONT, python=front_python(), environ=self.env)
        self.path = self.dir / warm.socket_name(key)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(str(self.path))
        os.chmod(self.path, mode)
        self.listener.listen(4)
        self.listener.settimeout(20)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, **kw: object) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen([FRONT, *args], env=self.env, **kw)  # type: ignore[call-overload]
        return self.proc

    def accept(self) -> tuple[warm.Channel, warm.Message]:
        conn, _ = self.listener.accept()
        conn.settimeout(20)
        ch = warm.Channel(conn)
        req = ch.recv()
        assert req is not None and req.type == warm.REQUEST
        return ch, req

    def close(self) -> None:
        self.listener.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()


@pytest.fixture
def planner(tmp_path: Path) -> Iterator[FakePlanner]:
    env = {k: v for k, v in os.environ.items() if k != "ISOLATE_OCI_PLANNER"}
    p = FakePlanner(tmp_path, env)
    yield p
    p.close()


def request_fields(req: warm.Message) -> tuple[list[str], dict[str, str], int, dict[int, int], int]:
    """argv, env, umask, {number in the front end: our fd}, and the cwd's fd of a REQUEST (its fds:
    the cwd, the lifeline, the numbered ones)."""
    version, umask, argc, envc, n_fds = warm.REQUEST_HEAD.unpack_from(req.body)
    assert version == warm.FRONT_VERSION
    numbers = struct.unpack_from(f"={n_fds}i", req.body, warm.REQUEST_HEAD.size)
    strings = req.body[warm.REQUEST_HEAD.size + 4 * n_fds:].split(b"\0")[:-1]
    assert len(strings) == argc + envc and len(req.fds) == n_fds + 2       # the cwd, the lifeline
    env = dict(s.decode().partition("=")[::2] for s in strings[argc:])
    return ([s.decode() for s in strings[:argc]], env, umask, dict(zip(numbers, req.fds[2:])),
            req.fds[0])


def spawn(ch: warm.Channel, plan: P.Plan, fds: list[int] = [], *, hold: bool = False
          ) -> tuple[tuple[int, ...], list[int]]:
    data, sent = plan.pack().wire(fds, hold=hold)
    helper = os.fsencode(CHILD_PROGRAM)
    head = warm.SPAWN_HEAD.pack(warm.KEEP_OOM, warm.KEEP_PERSONALITY, len(helper), len(data))
    ch.send(warm.SPAWN, head + helper + data, sent)
    m = ch.recv()
    assert m is not None and m.type == warm.SPAWNED
    return warm.SPAWNED_BODY.unpack(m.body), m.fds


def wait(ch: warm.Channel, pid: int) -> int:
    ch.send(warm.WAIT, warm.PAIR.pack(pid, 0))
    m = ch.recv()
    assert m is not None and m.type == warm.WAITED
    status, err = warm.PAIR.unpack(m.body)
    assert err == 0
    return os.waitstatus_to_exitcode(status)


def ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError("no PPid")


def test_the_request_carries_argv_env_umask_cwd_and_fds(planner: FakePlanner, tmp_path: Path) -> None:
    r, w = os.pipe()
    old = os.umask(0o027)
    try:
        proc = planner.start("state", "a b", pass_fds=[w], cwd=tmp_path)
    finally:
        os.umask(old)
    os.close(w)
    ch, req = planner.accept()
    argv, env, umask, fds, cwd = request_fields(req)
    assert argv == ["state", "a b"]
    assert env == planner.env
    assert umask == 0o027
    assert os.path.samestat(os.fstat(cwd), os.stat(tmp_path))
    assert {0, 1, 2, w} <= set(fds)
    os.write(fds[w], b"through the front end's fd\n")
    req.close()
    ch.send(warm.EXIT, warm.PAIR.pack(3, 0))
    assert proc.wait(timeout=20) == 3
    # The front end keeps nothing of the caller's open past stdio: the pipe ends with us.
    assert os.read(r, 100) == b"through the front end's fd\n" and os.read(r, 100) == b""
    os.close(r)


def test_a_plan_is_cloned_by_the_front_end_as_its_child(planner: FakePlanner) -> None:
    proc = planner.start("run", "x", stdout=subprocess.PIPE)
    ch, req = planner.accept()
    _, _, _, fds, _ = request_fields(req)
    # The child's stdout: a pipe of ours, passed as a per-spawn fd, made fd 1 by the plan.
    r, w = os.pipe()
    plan = P.Plan(ops=[O.FdMap(pairs=((P.SpawnFd(0), 1),)), O.Exec(candidates=(b"/bin/echo",))],
                  argv=[b"echo", b"from", b"the plan"], envp=[b"A=1"], fd_names=("stdout",))
    (rc, stage, pid, _, held, report_len, *_), pidfds = spawn(ch, plan, [w])
    os.close(w)
    assert (rc, stage, held, report_len) == (0, 0, 0, 0)
    assert ppid(pid) == proc.pid
    assert len(pidfds) == 1
    assert wait(ch, pid) == 0
    assert os.read(r, 100) == b"from the plan\n"
    os.close(r)
    for fd in pidfds:
        os.close(fd)
    # An exit status comes back as the kernel gave it.
    plan = P.Plan(ops=[O.Exec(candidates=(b"/bin/sh",))], argv=[b"sh", b"-c", b"exit 7"], envp=None)
    (rc, _, pid, *_), pidfds = spawn(ch, plan)
    assert rc == 0 and wait(ch, pid) == 7
    for fd in pidfds:
        os.close(fd)
    req.close()
    ch.send(warm.EXIT, warm.PAIR.pack(0, 0))
    assert proc.wait(timeout=20) == 0
    assert proc.stdout is not None and proc.stdout.read() == b""


def test_a_held_spawn_waits_for_release_or_dies_with_abandon(planner: FakePlanner) -> None:
    proc = planner.start("create", "x")
    ch, req = planner.accept()
    req.close()
    plan = P.Plan(ops=[O.Exec(candidates=(b"/bin/sh",))], argv=[b"sh", b"-c", b"exit 5"], envp=None)
    (rc, _, pid, _, held, *_), pidfds = spawn(ch, plan, hold=True)
    assert rc == 0 and held == 1
    # Held before its first op: the child program, waiting for its go-ahead.
    assert ppid(pid) == proc.pid and Path(f"/proc/{pid}/status").exists()
    ch.send(warm.RELEASE)
    m = ch.recv()
    assert m is not None and m.type == warm.RELEASED
    rc, _, _, _, held, report_len, *_ = warm.SPAWNED_BODY.unpack(m.body)
    assert (rc, held, report_len) == (0, 0, 0)
    assert wait(ch, pid) == 5
    for fd in pidfds:
        os.close(fd)
    (rc, _, pid, _, held, *_), pidfds = spawn(ch, plan, hold=True)
    assert held == 1
    ch.send(warm.ABANDON)
    m = ch.recv()
    assert m is not None and m.type == warm.ABANDONED
    assert not Path(f"/proc/{pid}").exists()        # killed and reaped
    for fd in pidfds:
        os.close(fd)
    ch.send(warm.EXIT, warm.PAIR.pack(0, 0))
    assert proc.wait(timeout=20) == 0


def test_a_failed_op_comes_back_as_the_childs_report(planner: FakePlanner) -> None:
    proc = planner.start("create", "x")
    ch, req = planner.accept()
    req.close()
    plan = P.Plan(ops=[O.Chdir(path_=b"/no/such/dir"), O.Exec(candidates=(b"/bin/true",))],
                  argv=[b"true"], envp=None)
    (rc, _, pid, _, held, report_len, *report), pidfds = spawn(ch, plan)
    assert (rc, held, report_len, pidfds) == (0, 0, P.REPORT_STRUCT.size, [])
    err = P.decode_report(plan, P.REPORT_STRUCT.pack(*report))
    assert err.errno == 2 and "step 0" in str(err)
    ch.send(warm.EXIT, warm.PAIR.pack(1, 0))
    assert proc.wait(timeout=20) == 1


def test_a_planner_gone_mid_call_is_one_line_and_status_1(planner: FakePlanner) -> None:
    proc = planner.start("create", "x", stderr=subprocess.PIPE)
    ch, req = planner.accept()
    req.close()
    plan = P.Plan(ops=[O.Exec(candidates=(b"/bin/sleep",))], argv=[b"sleep", b"30"], envp=None)
    (rc, _, pid, _, held, *_), pidfds = spawn(ch, plan, hold=True)
    assert held == 1
    ch.sock.close()
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None
    assert proc.stderr.read() == b"isolate-oci: the planner ended before the command did\n"
    # The held child had its go-ahead socket closed with the front end: it is gone.
    import select

    assert select.select([pidfds[0]], [], [], 10)[0] == [pidfds[0]]
    os.close(pidfds[0])


@pytest.mark.parametrize("mode,dir_mode", [(0o644, 0o700), (0o660, 0o700), (0o600, 0o755)])
def test_a_socket_others_may_reach_is_not_used(tmp_path: Path, mode: int, dir_mode: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ISOLATE_OCI_PLANNER"}
    p = FakePlanner(tmp_path, env, mode=mode)
    os.chmod(p.dir, dir_mode)
    try:
        proc = p.start("--version", stdout=subprocess.PIPE)
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None and proc.stdout.read().startswith(b"isolate-oci version ")
        # What did connect (a planner the front end started, seeing ours listen) sent nothing.
        p.listener.settimeout(0)
        while True:
            try:
                conn, _ = p.listener.accept()
            except BlockingIOError:
                break
            conn.settimeout(10)
            assert warm.Channel(conn).recv() is None
            conn.close()
    finally:
        p.close()
