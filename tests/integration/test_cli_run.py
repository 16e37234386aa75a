"""``isolate run`` end to end: exit status, signals, errors, --json, options."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cgroup_leftovers

pytestmark = [pytest.mark.root]


def isolate_run(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "isolate", "run", *args], capture_output=True,
                          timeout=120, **kw)  # type: ignore[call-overload]


def test_exit_status_is_the_commands() -> None:
    r = isolate_run("--hostname", "box", "--", "sh", "-c", "echo hello from $(hostname); exit 3")
    assert r.returncode == 3, r
    assert r.stdout == b"hello from box\n"


def test_signal_gives_128_plus_n() -> None:
    r = isolate_run("--timeout", "0.5", "--", "sleep", "60")
    assert r.returncode == 128 + 9, r


def test_error_is_one_line_naming_the_step(tmp_path: Path) -> None:
    r = isolate_run("--cwd", "/does/not/exist", "--", "true")
    assert r.returncode == 125, r
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("isolate: step ") and "(chdir /does/not/exist): No such file" in lines[0]


def test_bad_option_is_a_config_error(tmp_path: Path) -> None:
    r = isolate_run("--bind", f"{tmp_path}/missing:/x", "--", "true")
    assert r.returncode == 125
    assert r.stderr.decode().startswith("isolate: bind source")
    r = isolate_run("--rootfs", str(tmp_path / "nope"), "--", "true")
    assert r.returncode == 125 and b"does not exist" in r.stderr


def test_json_result_to_file_and_stderr(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    r = isolate_run("--json", str(out), "--", "true")
    assert r.returncode == 0, r
    data = json.loads(out.read_text())
    assert data["returncode"] == 0 and data["timed_out"] is False and data["args"] == ["true"]
    r = isolate_run("--json", "--", "sh", "-c", "exit 2")
    assert json.loads(r.stderr.decode().splitlines()[-1])["returncode"] == 2


def test_bind_env_cwd_user(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "in").write_text("from host\n")
    os.chmod(tmp_path, 0o755)
    r = isolate_run("--bind", f"{src}:/data:ro", "--env", "GREETING=hi", "--cwd", "/data",
                    "--user", "1000", "--", "sh", "-c", "cat in; echo $GREETING $(id -u) $(pwd)")
    assert r.returncode == 0, r
    assert r.stdout == b"from host\nhi 1000 /data\n"


def test_overlay_makes_the_root_writable_without_touching_the_host() -> None:
    r = isolate_run("--overlay", "--", "sh", "-c", "echo x > /usr/isolate-cli-x && cat /usr/isolate-cli-x")
    assert r.returncode == 0 and r.stdout == b"x\n", r
    assert not Path("/usr/isolate-cli-x").exists()


def test_rootfs_directory(tmp_path: Path) -> None:
    busybox = "/usr/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed (.ci/packages.txt lists it)")
    image = tmp_path / "img"
    (image / "bin").mkdir(parents=True)
    (image / "bin" / "busybox").write_bytes(Path(busybox).read_bytes())
    os.chmod(image / "bin" / "busybox", 0o755)
    os.symlink("busybox", image / "bin" / "sh")
    os.chmod(tmp_path, 0o755)
    r = isolate_run("--rootfs", str(image), "--", "/bin/sh", "-c", "ls /bin /tmp")
    assert r.returncode == 0, r
    assert r.stdout.split()[:3] == [b"/bin:", b"busybox", b"sh"]


def test_net_host_and_rootfs(tmp_path: Path) -> None:
    r = isolate_run("--net", "host", "--", "sh", "-c", "readlink /proc/self/ns/net")
    assert r.stdout.decode().strip() == os.readlink("/proc/self/ns/net")


@contextlib.contextmanager
def running(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``isolate run ARGS`` in the background, once its command has printed ``ready``."""
    p = subprocess.Popen([sys.executable, "-m", "isolate", "run", *args], stdout=subprocess.PIPE)
    assert p.stdout is not None
    try:
        assert p.stdout.readline() == b"ready\n"
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


@pytest.mark.cgroup1
def test_sigterm_reaches_the_command_and_nothing_is_left(tmp_path: Path) -> None:
    # The command traps TERM: the signal sent to `isolate run` must reach it, and
    # the cgroup made for --memory must be gone when isolate exits.
    name = f"isolate-test-sig-{os.getpid()}"
    with running("--memory", "64m", "--name", name, "--",
                 "sh", "-c", "trap 'exit 7' TERM; sleep 30 & echo ready; wait") as p:
        p.terminate()
        assert p.wait(timeout=30) == 7
    assert cgroup_leftovers(name) == []


def test_second_signal_kills_a_command_that_ignores_the_first() -> None:
    # pid 1 of a pid namespace without a handler: the kernel drops SIGTERM.
    with running("--", "sh", "-c", "echo ready; exec sleep 30") as p:
        p.terminate()
        time.sleep(0.3)
        assert p.poll() is None, "pid 1 without a handler should have ignored SIGTERM"
        p.terminate()
        assert p.wait(timeout=30) == 128 + 9


def test_bad_values_are_named_before_anything_runs(tmp_path: Path) -> None:
    """``--memory -5m``, ``--pids 0`` and a ``--json`` file in a missing directory: one
    line naming the option and the value, status 125, and the command never runs."""
    marker = tmp_path / "ran"
    cmd = ["--bind", f"{tmp_path}:/out", "--", "touch", "/out/ran"]
    for args, says in ((["--memory", "-5m"], "--memory must be a positive size like 512m or 2g, got '-5m'"),
                       (["--pids", "0"], "--pids must be at least 1, got 0"),
                       (["--json", "/nonexistent/dir/r.json"],
                        "--json: '/nonexistent/dir' is not an existing directory")):
        r = isolate_run(*args, *cmd)
        assert r.returncode == 125, (args, r)
        err = r.stderr.decode()
        assert err.count("\n") == 1 and says in err, (args, err)
        assert not marker.exists(), args
