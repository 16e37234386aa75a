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

from .cases import remove_cgroups
from .stats import sample_rows

RUNTIMES = ("isolate-oci", "runc", "crun")
CTR = "ctr run --rm, {}"
PODMAN = "podman run --rm, {}"


def _tests_on_path() -> None:
    here = Path(__file__).resolve().parents[1] / "tests"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))


def _wait_gone(text: str, timeout: float) -> None:
    """Wait until no process's command line contains ``text`` (at most ``timeout`` seconds)."""
    from engines import processes_mentioning

    deadline = time.monotonic() + timeout
    while processes_mentioning({text}) and time.monotonic() < deadline:
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
    from engines import Containerd, podman_files, runtime_path
    from support import make_busybox_rootfs

    runtimes = {name: path for name in RUNTIMES if (path := runtime_path(name))}
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
            out["ctr"] = sample_rows(samples, CTR.format("runc"), skipped, "engines")
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
        out["podman"] = sample_rows(samples, PODMAN.format("runc"), skipped, "engines")
        for base, argv, env in podmans.values():
            subprocess.run([*argv, "rm", "--all", "--force"], env=env, cwd=base, capture_output=True,
                           check=False, timeout=60)
        # conmon runs podman's exit command (a runtime delete among it) after podman run returns:
        # wait for those to end, so that no runtime makes its default state directory (podman
        # passes no --root) after benchmarks.run's clean-up has looked.
        _wait_gone(str(work), 30)
        out["seconds"] = time.monotonic() - t0
        return out
    finally:
        remove_cgroups(f"/{parent}")
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
