"""The ``engines`` section: a container per ``ctr run --rm`` and per ``podman run --rm``, by runtime.

containerd's shim and conmon call the runtime several times per container
(create, start, delete; podman also state), so this is where a runtime's
per-call start-up shows.  Each engine runs ``/bin/true`` in a busybox root
filesystem given as a directory (``ctr run --rootfs``, ``podman run
--rootfs``: no image, no snapshot), its container's cgroup below a parent of
the run's own; the runtimes take turns, round by round:

- ``ctr run --rm``: one containerd of the run's own (tests/engines.py), the
  runtime named by ``--runc-binary`` (containerd's runc shim runs it).
- ``podman run --rm --network none``: podman with a store of its own
  (tests/engines.py), the runtime named by ``--runtime``.

A runtime that cannot run here (crun refuses a hybrid cgroup layout) is
listed as skipped, with its error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .stats import summary

RUNTIMES = ("isolate-oci", "runc", "crun")
CTR = "ctr run --rm, {}"
PODMAN = "podman run --rm, {}"
STATE_DIRS = ("/run/isolate-oci", "/run/runc", "/run/crun")


def _tests_on_path() -> None:
    here = Path(__file__).resolve().parents[1] / "tests"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))


def runtime_path(name: str) -> str | None:
    """``name`` beside the running interpreter (the install's console scripts), else on $PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _rows(samples: dict[str, list[int]], skipped: dict[str, str], base: str) -> list[dict[str, Any]]:
    rows = [{"name": name, "group": "engines", "note": "", "wall_ns": wall, "cpu_ns": [],
             "skipped": None if wall else skipped.get(name, "not run"),
             "stats": summary(wall) if wall else None, "cpu_median_ns": None}
            for name, wall in samples.items()]
    ref = next((r["stats"]["median"] for r in rows if r["name"] == base and r["stats"]), None)
    for r in rows:
        r["ratio"] = r["stats"]["median"] / ref if ref and r["stats"] else None
    return rows


def _remove_cgroup_tree(name: str) -> None:
    """rmdir ``/<name>`` and what is below it (empty by now), in every hierarchy."""
    with open("/proc/self/mounts") as f:
        mounts = [m.split()[1] for m in f if m.split()[2] in ("cgroup", "cgroup2")]
    for mnt in mounts:
        top = os.path.join(mnt, name)
        for d, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _wait_gone(text: str, timeout: float) -> None:
    """Wait until no process's command line contains ``text`` (at most ``timeout`` seconds)."""
    needle = text.encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = False
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and needle in Path("/proc", entry, "cmdline").read_bytes():
                    left = True
                    break
            except OSError:
                continue
        if not left:
            return
        time.sleep(0.05)


def _timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str]:
    s = time.perf_counter_ns()
    r = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    took = time.perf_counter_ns() - s
    return (took, "") if r.returncode == 0 else (-1, (r.stderr.strip() or r.stdout.strip())[-300:])


def _take_turns(ways: dict[str, Callable[[int], tuple[int, str]]], rounds: int, warmup: int,
                log: Callable[[str], None]) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Each way once per round, in turn; a way that fails is dropped with its error."""
    samples: dict[str, list[int]] = {name: [] for name in ways}
    skipped: dict[str, str] = {}
    for i in range(warmup + rounds):
        for name, fn in ways.items():
            if name in skipped:
                continue
            took, err = fn(i)
            if took < 0:
                skipped[name] = err.splitlines()[-1] if err else "failed"
                samples[name] = []
                log(f"    {name}: skipped ({skipped[name]})")
            elif i >= warmup:
                samples[name].append(took)
    return samples, skipped


def engines(rounds: int, warmup: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The section's result: ``ctr`` and ``podman`` rows (ratios to runc's)."""
    tools = ("containerd", "ctr", "containerd-shim-runc-v2", "podman", "conmon", "runc")
    missing = [t for t in tools if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        return {"skipped": "needs root" if os.geteuid() != 0 else f"missing: {', '.join(missing)}"}
    _tests_on_path()
    from engines import Containerd, podman_files
    from support import make_busybox_rootfs

    runtimes = {name: path for name in RUNTIMES if (path := runtime_path(name))}
    # podman passes the runtimes no --root: their default state directories, removed at the end
    # (empty) if this run made them.
    states = [d for d in STATE_DIRS if not os.path.exists(d)]
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="isolate-engines-", dir="/tmp"))   # podman: runroot ≤ 50 chars
    parent = f"isolate-bench-engines-{os.getpid()}"
    out: dict[str, Any] = {"rounds": rounds, "warmup": warmup}
    try:
        rootfs = make_busybox_rootfs(work / "rootfs")
        log(f"  ctr run --rm: {len(runtimes)} runtimes x {rounds} rounds after {warmup} warm-up")
        (work / "containerd").mkdir()
        daemon = Containerd(work / "containerd")
        try:
            def ctr(name: str, path: str) -> Callable[[int], tuple[int, str]]:
                def run(i: int) -> tuple[int, str]:
                    cid = f"{name}-{i}"
                    daemon.ids.append(cid)
                    return _timed(daemon.ctr("run", "--rm", "--rootfs", "--runc-binary", path,
                                             "--runc-root", str(work / "containerd" / f"state-{name}"),
                                             "--fifo-dir", str(work / "containerd" / "fifo"),
                                             "--cgroup", f"/{parent}/ctr-{cid}", str(rootfs), cid,
                                             "/bin/true"))
                return run

            samples, skipped = _take_turns({CTR.format(n): ctr(n, p) for n, p in runtimes.items()},
                                           rounds, warmup, log)
            out["ctr"] = _rows(samples, skipped, CTR.format("runc"))
        finally:
            shims = daemon.close()
            if shims:
                log(f"  containerd shims left running, killed: {shims}")

        log(f"  podman run --rm: {len(runtimes)} runtimes x {rounds} rounds after {warmup} warm-up")
        podmans = {}
        for k, (name, path) in enumerate(runtimes.items()):
            base = work / f"p{k}"
            base.mkdir()
            podmans[name] = (base, *podman_files(base, path))

        def podman(name: str) -> Callable[[int], tuple[int, str]]:
            base, argv, env = podmans[name]
            return lambda i: _timed([*argv, "run", "--rm", "--network", "none", "--cgroup-parent",
                                     f"/{parent}", "--rootfs", str(rootfs), "/bin/true"], env, base)

        samples, skipped = _take_turns({PODMAN.format(n): podman(n) for n in runtimes}, rounds, warmup,
                                       log)
        out["podman"] = _rows(samples, skipped, PODMAN.format("runc"))
        for name, (base, argv, env) in podmans.items():
            subprocess.run([*argv, "rm", "--all", "--force"], env=env, cwd=base, capture_output=True,
                           check=False, timeout=60)
        # conmon runs podman's exit command (a runtime delete among it) after podman run returns:
        # wait for those to end, so that no runtime makes its state directory after the clean-up.
        _wait_gone(str(work), 30)
        out["seconds"] = time.monotonic() - t0
        return out
    finally:
        _remove_cgroup_tree(parent)
        for d in states:
            try:
                os.rmdir(d)
            except OSError:
                pass
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
