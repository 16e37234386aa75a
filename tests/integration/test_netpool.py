"""NetnsPool: pre-made network namespaces, each handed out once, lo up, nothing left behind."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

import isolate

pytestmark = pytest.mark.root

# Run inside the joined namespace: lo must carry traffic, and it must be the only interface.
CHILD = r"""
import os, socket
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname(), timeout=5)
conn, _ = srv.accept(); cli.sendall(b"ping"); assert conn.recv(4) == b"ping"
ifaces = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
print(os.readlink("/proc/self/ns/net"), ",".join(ifaces))
"""


def _inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "isolate-netns-pool"]


def test_each_namespace_is_new_and_handed_out_once() -> None:
    host = os.stat("/proc/self/ns/net").st_ino
    with isolate.NetnsPool(size=3) as pool:
        # More than the pool holds at once: the thread must refill, never recycle.
        taken = [pool.take(timeout=10) for _ in range(8)]
        try:
            inodes = [_inode(ns.fileno()) for ns in taken]
            assert len(set(inodes)) == len(inodes)
            assert host not in inodes
            assert all(ns.type == "net" for ns in taken)
            assert pool.created >= len(taken)
        finally:
            for ns in taken:
                ns.close()


def test_joined_namespace_has_loopback_up_and_no_other_interface() -> None:
    with isolate.NetnsPool(size=2) as pool, pool.take() as ns:
        r = isolate.run([sys.executable, "-c", CHILD], join=[ns], namespaces={"pid"},
                        capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        link, ifaces = r.stdout.decode().split()
        assert link == f"net:[{_inode(ns.fileno())}]"
        assert ifaces == "lo"


def test_two_sandboxes_do_not_share_a_network_stack() -> None:
    # A port bound in one pooled namespace must be free in the next one.
    server = ("import socket,sys; s=socket.socket(); "
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0); "
              "s.bind(('127.0.0.1', 4567)); s.listen(); sys.stdout.write('bound'); sys.stdout.flush(); "
              "sys.stdin.read()")
    with isolate.NetnsPool(size=2) as pool, pool.take() as a, pool.take() as b:
        first = isolate.spawn([sys.executable, "-c", server], join=[a],
                              stdin=isolate.PIPE, stdout=isolate.PIPE)
        try:
            assert first.stdout is not None
            assert first.stdout.read(5) == b"bound"
            second = isolate.run([sys.executable, "-c", server], join=[b], input=b"",
                                 capture_output=True, timeout=30)
            assert second.returncode == 0, second.stderr
            assert second.stdout == b"bound"
        finally:
            first.communicate(b"", timeout=30)
            first.close()


def test_close_stops_the_thread_and_closes_every_fd() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    pool = isolate.NetnsPool(size=4)
    ns = pool.take()
    pool.close()
    assert not _pool_threads()
    # A namespace taken before close() stays usable, and is closed by its owner.
    r = isolate.run(["/bin/true"], join=[ns])
    assert r.returncode == 0
    ns.close()
    assert ns.closed
    with pytest.raises(ValueError):
        ns.fileno()
    assert set(os.listdir("/proc/self/fd")) == fds_before
    pool.close()  # idempotent


def test_namespaces_given_back_are_closed_by_the_pool() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    with isolate.NetnsPool(size=2) as pool:
        for _ in range(6):
            with pool.take() as ns:
                isolate.run(["/bin/true"], join=[ns], check=True)
    assert set(os.listdir("/proc/self/fd")) == fds_before
    assert not _pool_threads()


def _wait_ready(pool: isolate.NetnsPool, n: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while pool.ready < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return pool.ready >= n


def test_the_pool_refills_after_a_namespace_is_closed_or_when_it_runs_low() -> None:
    with isolate.NetnsPool(size=4) as pool:
        assert _wait_ready(pool, 4)
        with pool.take():
            pass
        assert _wait_ready(pool, 4)
        held = [pool.take() for _ in range(3)]  # below half: refilled without any close()
        try:
            assert _wait_ready(pool, 4)
        finally:
            for ns in held:
                ns.close()


def test_a_take_leaves_the_refill_to_the_close_while_half_the_pool_is_left() -> None:
    """The namespace taken for a spawn is replaced after it is closed, not during the spawn
    (the pool's thread would compete with it for the GIL and the CPUs)."""
    with isolate.NetnsPool(size=2) as pool:
        assert _wait_ready(pool, 2)
        with pool.take():
            time.sleep(0.3)
            assert pool.ready == 1
        assert _wait_ready(pool, 2)
        held = [pool.take(), pool.take()]          # none left: refilled without any close()
        try:
            assert _wait_ready(pool, 2)
        finally:
            for ns in held:
                ns.close()


def test_take_from_a_closed_pool_raises() -> None:
    pool = isolate.NetnsPool(size=1)
    pool.close()
    with pytest.raises(isolate.ConfigError, match="closed"):
        pool.take()


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "4", 5000])
def test_bad_size_is_refused_before_any_thread_starts(size: object) -> None:
    with pytest.raises(isolate.ConfigError, match="size"):
        isolate.NetnsPool(size=size)  # type: ignore[arg-type]
    assert not _pool_threads()


def test_without_cap_sys_admin_the_constructor_says_why() -> None:
    # Root with every capability dropped cannot create a network namespace either.
    code = ("import isolate\n"
            "try:\n    isolate.NetnsPool(size=1)\n"
            "except isolate.UnsupportedError as e:\n    print('unsupported:', e)\n")
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PATH": os.defpath}
    r = isolate.run([sys.executable, "-c", code], capabilities=(), env=env,
                    capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"unsupported:"), (r.stdout, r.stderr)
    assert b"CAP_SYS_ADMIN" in r.stdout
