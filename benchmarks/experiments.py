"""The measurements: interleaved latency, scaling curves, phases, memory, netns CPU.

Each function returns plain data (lists and dicts of numbers and strings)
that ``report.py`` turns into results.json, results.md and the charts.
Times are in nanoseconds throughout.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import isolate
from isolate import _ops as O
from isolate import _plan as P

from . import cases as C
from .stats import (cpu_ns, kworker_cpu_ns, meminfo, percentile, process_cpu_ns, rss_bytes,
                    settle_kworkers, summary)

MiB = 1 << 20
Log = Callable[[str], None]


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def open_cases(stack: contextlib.ExitStack, selected: Sequence[C.Case], log: Log
               ) -> tuple[list[tuple[C.Case, C.Iteration]], dict[str, str]]:
    """Set up every case; returns the runnable ones and {name: skip reason} for the rest."""
    ready, skipped = [], {}
    for c in selected:
        try:
            fn = stack.enter_context(c.setup())
        except C.Skip as e:
            skipped[c.name] = str(e)
            log(f"  skip  {c.name}: {e}")
            continue
        ready.append((c, fn))
    return ready, skipped


def interleaved(fns: Sequence[tuple[str, C.Iteration]], rounds: int, warmup: int,
                failed: dict[str, str] | None = None) -> dict[str, dict[str, list[int]]]:
    """Run A B C ... A B C ... ``rounds`` times (after ``warmup`` untimed rounds).

    Returns {name: {"wall": [ns...], "cpu": [ns...]}}.  A case that raises is
    dropped from the following rounds and its error recorded in ``failed``.
    An iteration with a ``settle`` attribute (a pooled case, see
    ``cases.settled``) is followed by that call, untimed.
    """
    out: dict[str, dict[str, list[int]]] = {name: {"wall": [], "cpu": []} for name, _ in fns}
    live = list(fns)
    with _gc_off():
        for r in range(warmup + rounds):
            for name, fn in list(live):
                c0 = cpu_ns()
                t0 = time.perf_counter_ns()
                try:
                    fn()
                except Exception as e:  # one broken case must not end the run
                    live.remove((name, fn))
                    if failed is not None:
                        failed[name] = f"failed during the run: {type(e).__name__}: {e}"
                    continue
                t1 = time.perf_counter_ns()
                c1 = cpu_ns()
                if r >= warmup:
                    out[name]["wall"].append(t1 - t0)
                    out[name]["cpu"].append(c1 - c0)
                settle = getattr(fn, "settle", None)
                if settle is not None:
                    settle()    # untimed: see cases.settled
            gc.collect()
    return out


def latency(selected: Sequence[C.Case], rounds: int, warmup: int, log: Log) -> dict[str, Any]:
    """The main table: every case, interleaved."""
    with contextlib.ExitStack() as stack:
        ready, skipped = open_cases(stack, selected, log)
        log(f"  {len(ready)} cases x {rounds} rounds (+{warmup} warm-up), interleaved")
        failed: dict[str, str] = {}
        t0 = time.monotonic()
        samples = interleaved([(c.name, fn) for c, fn in ready], rounds, warmup, failed)
        elapsed = time.monotonic() - t0
    skipped.update(failed)
    rows = []
    for c in selected:
        s = samples.get(c.name, {"wall": [], "cpu": []})
        rows.append({"name": c.name, "group": c.group, "note": c.note,
                     "skipped": skipped.get(c.name) if not s["wall"] or c.name in failed else None,
                     "wall_ns": s["wall"], "cpu_ns": s["cpu"],
                     "stats": summary(s["wall"]) if s["wall"] else None,
                     "cpu_median_ns": percentile(s["cpu"], 50) if s["cpu"] else None})
    base = next((r["stats"]["median"] for r in rows if r["name"] == "subprocess.run" and r["stats"]), None)
    for r in rows:
        r["ratio"] = r["stats"]["median"] / base if base and r["stats"] else None
    return {"rounds": rounds, "warmup": warmup, "seconds": elapsed, "rows": rows}


# --- scaling curves --------------------------------------------------------------


def _fork_exec() -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(C.TRUE, [C.TRUE])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


#: The RSS section's spawns with a memory limit and with a user change (issue 13).
RSS_LIMITED = "isolate.spawn pid+mnt into a 512 MiB memory cgroup"
RSS_USER = "isolate.spawn user=65534"


def _scaling_cases(limited: Any = None) -> list[tuple[str, C.Iteration]]:
    env = dict(os.environ)

    def posix_spawn() -> None:
        os.waitpid(os.posix_spawn(C.TRUE, [C.TRUE], env), 0)
    core = frozenset(C.CORE)
    cases: list[tuple[str, C.Iteration]] = [
        ("subprocess.run", lambda: subprocess.run([C.TRUE], check=True)),
        ("os.posix_spawn + waitpid", posix_spawn),
        ("os.fork + execv", _fork_exec),
        ("isolate.spawn (no namespace)", lambda: C.spawn_wait()),
        ("isolate.spawn pid+mnt+uts+ipc", lambda: C.spawn_wait(namespaces=core)),
        (RSS_USER, lambda: C.spawn_wait(user=65534, group=65534, groups=[]))]
    if limited is not None:
        cases.append((RSS_LIMITED, lambda: C.spawn_wait(namespaces={"pid", "mnt"}, cgroup=limited)))
    return cases


def rss_curve(levels_mib: Sequence[int], rounds: int, log: Log) -> dict[str, Any]:
    """Latency against this process's resident memory (a touched bytearray as ballast)."""
    with contextlib.ExitStack() as stack:
        parent = stack.enter_context(C.cgroup_parent(f"isolate-bench-rss-{os.getpid()}"))
        limited = stack.enter_context(isolate.Cgroup.create(
            "limited", parent=parent, limits=isolate.Limits(memory_max=512 << 20)))
        return _rss_curve(_scaling_cases(limited), levels_mib, rounds, log)


def _rss_curve(fns: list[tuple[str, C.Iteration]], levels_mib: Sequence[int], rounds: int,
               log: Log) -> dict[str, Any]:
    ballast: list[bytearray] = []
    points = []
    try:
        for level in levels_mib:
            need = level * MiB - rss_bytes()
            if need > 0:
                b = bytearray(need)
                b[::4096] = b"\1" * len(range(0, need, 4096))  # make every page resident
                ballast.append(b)
            actual = rss_bytes()
            log(f"  RSS {actual / MiB:.0f} MiB (target {level})")
            samples = interleaved(fns, rounds, warmup=2)
            points.append({"target_mib": level, "rss_mib": actual / MiB,
                           "cases": {n: summary(s["wall"]) | {"wall_ns": s["wall"]}
                                     for n, s in samples.items()}})
    finally:
        ballast.clear()
        gc.collect()
    ratios = {}
    if len(points) >= 2:
        for name in points[0]["cases"]:
            ratios[name] = points[-1]["cases"][name]["median"] / points[0]["cases"][name]["median"]
    return {"points": points, "ratio_last_to_first": ratios}


def thread_throughput(thread_counts: Sequence[int], seconds: float, reps: int, log: Log
                      ) -> dict[str, Any]:
    """Spawns per second with N threads spawning at once."""
    core = frozenset(C.CORE)
    fns: list[tuple[str, C.Iteration]] = [
        ("subprocess.run", lambda: subprocess.run([C.TRUE], check=True)),
        ("isolate.spawn (no namespace)", lambda: C.spawn_wait()),
        ("isolate.spawn pid+mnt+uts+ipc", lambda: C.spawn_wait(namespaces=core))]
    results: dict[str, dict[int, list[float]]] = {n: {k: [] for k in thread_counts} for n, _ in fns}
    for _ in range(reps):
        for k in thread_counts:
            for name, fn in fns:
                counts = [0] * k
                stop = threading.Event()
                barrier = threading.Barrier(k + 1)
                errors: list[BaseException] = []

                def worker(i: int, fn: C.Iteration = fn) -> None:
                    barrier.wait()
                    try:
                        while not stop.is_set():
                            fn()
                            counts[i] += 1
                    except BaseException as e:  # surfaced below, in the main thread
                        errors.append(e)
                threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
                for t in threads:
                    t.start()
                barrier.wait()
                t0 = time.perf_counter()
                time.sleep(seconds)
                stop.set()
                for t in threads:
                    t.join()
                elapsed = time.perf_counter() - t0
                if errors:
                    raise errors[0]
                results[name][k].append(sum(counts) / elapsed)
    out = {name: {str(k): {"median": percentile(v, 50), "samples": v} for k, v in per.items()}
           for name, per in results.items()}
    speedup = {}
    if 1 in thread_counts and 2 in thread_counts:
        for name in out:
            speedup[name] = out[name]["2"]["median"] / out[name]["1"]["median"]
    for name in out:
        log(f"  {name}: " + ", ".join(f"{k} thr {out[name][str(k)]['median']:.0f}/s"
                                      for k in thread_counts))
    return {"seconds": seconds, "reps": reps, "cases": out, "speedup_2_vs_1": speedup}


def mount_curve(counts: Sequence[int], rounds: int, log: Log) -> dict[str, Any]:
    """Latency against the number of tmpfs mounts in the plan (new mnt namespace)."""
    with tempfile.TemporaryDirectory(prefix="isolate-bench-mounts-") as d:
        dirs = []
        for i in range(max(counts)):
            p = os.path.join(d, str(i))
            os.mkdir(p)
            dirs.append(os.fsencode(p))
        plans = {n: [O.Mount(b"tmpfs", dirs[i], b"tmpfs", 0, b"size=64k") for i in range(n)]
                 for n in counts}
        ns = frozenset({"mnt"})
        fns = [(str(n), (lambda ops=ops: C.spawn_wait(namespaces=ns, ops=ops)))
               for n, ops in plans.items()]
        spawn = interleaved(fns, rounds, warmup=1)

        def pack(ops: list[P.Op]) -> None:
            # Planned and packed anew each time: the cost of a spawn of a new shape.
            from isolate._planner import FdLayout, Host, plan_process

            spec, iso, _ = isolate.process.specs([C.TRUE], namespaces=ns)
            plan_process(spec, iso, FdLayout(), Host.of(spec), ops).plan.pack()
        python = interleaved([(str(n), (lambda ops=ops: pack(ops))) for n, ops in plans.items()],
                             rounds, warmup=1)
    points = []
    for n in counts:
        points.append({"mounts": n, "spawn": summary(spawn[str(n)]["wall"]),
                       "build_and_pack": summary(python[str(n)]["wall"]),
                       "wall_ns": spawn[str(n)]["wall"]})
        log(f"  {n:5d} mounts: {points[-1]['spawn']['median'] / 1e6:.2f} ms "
            f"(plan build + pack {points[-1]['build_and_pack']['median'] / 1e6:.3f} ms)")
    return {"points": points}


# --- phases ------------------------------------------------------------------------


def _phase_sample(**options: Any) -> dict[str, int]:
    t0 = time.monotonic_ns()
    p = isolate.spawn([C.TRUE], timings=True, **options)
    t1 = time.monotonic_ns()
    try:
        select.select([p.pidfd], [], [])
        t2 = time.monotonic_ns()
        p.wait()
        t3 = time.monotonic_ns()
    finally:
        p.close()
    tm = p.timings
    assert tm is not None
    in_c = tm["clone"] + tm["id_maps"] + tm["release"] + tm["child_ops_and_exec"]
    out = {"python (plan, pack, Process)": (t1 - t0) - in_c,
           "clone3 (pipes, stack, namespaces)": tm["clone"],
           "id-map writes": tm["id_maps"],
           "release child": tm["release"]}
    out.update(_child_phases(tm))
    out["run + exit (until pidfd readable)"] = t2 - t1
    out["reap (wait4)"] = t3 - t2
    return out


def _child_phases(tm: dict[str, int]) -> dict[str, int]:
    """The child's ops grouped: mounts, pivot_root, execve, the rest (from per-op stamps)."""
    ops = {k: v for k, v in tm.items() if k.startswith("op ")}
    if not ops:
        return {"child ops + execve": tm["child_ops_and_exec"]}
    groups = {"child: mounts": 0, "child: pivot_root": 0, "child: execve": 0, "child: other ops": 0}
    for key, ns in ops.items():
        what = key.split(": ", 1)[1]
        if what.startswith("pivot_root") or what.startswith("stage the new root"):
            groups["child: pivot_root"] += ns
        elif what.startswith("execve"):
            groups["child: execve"] += ns
        elif what.split(" ", 1)[0] in ("mount", "bind", "remount", "mount_setattr", "mask",
                                       "set"):
            groups["child: mounts"] += ns
        else:
            groups["child: other ops"] += ns
    return groups


def phases(rounds: int, log: Log) -> dict[str, Any]:
    """Where a spawn's time goes, from the C core's timestamps plus Python-side clocks."""
    core = frozenset(C.CORE)
    full = frozenset(C.FULL)
    # (name, spawn options, whether net comes from the pool)
    variants: list[tuple[str, dict[str, Any], bool]] = [
        ("no namespace", {}, False),
        ("pid+mnt+uts+ipc", {"namespaces": core}, False),
        ("pid+mnt+uts+ipc+user", {"namespaces": core | {"user"}}, False),
        ("full (+net+cgroup)", {"namespaces": full}, False),
    ]
    out: dict[str, dict[str, list[int]]] = {}
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(tempfile.TemporaryDirectory(prefix="isolate-bench-root-"))
        ops = C.rootfs_ops(os.fsencode(root))
        variants.append(("full + rootfs plan", {"namespaces": full, "ops": ops}, False))
        pool: isolate.NetnsPool | None = None
        try:
            pool = stack.enter_context(C.netns_pool())
        except C.Skip as e:
            log(f"  no pool: {e}")
        if pool is not None:
            others = full - {"net"}
            variants.append(("full, pooled net", {"namespaces": others}, True))
            variants.append(("full + rootfs plan, pooled net", {"namespaces": others, "ops": ops}, True))
        with _gc_off():
            for r in range(rounds + 2):
                for name, opts, from_pool in variants:
                    if from_pool:
                        assert pool is not None
                        with pool.take() as ns:
                            s = _phase_sample(join=[ns], **opts)
                    else:
                        s = _phase_sample(**opts)
                    if r >= 2:
                        for k, v in s.items():
                            out.setdefault(name, {}).setdefault(k, []).append(v)
                gc.collect()
    result = {name: {k: {"median": percentile(v, 50), "p10": percentile(v, 10),
                         "p90": percentile(v, 90)} for k, v in per.items()}
              for name, per in out.items()}
    return {"rounds": rounds, "variants": result}


# --- memory ------------------------------------------------------------------------


def _peak_rss_kib(argv: list[str]) -> tuple[int, float]:
    """Peak RSS of ``argv`` through GNU time (``%M``).

    A child's ``ru_maxrss`` starts from the high-water mark of the address
    space it execs from, and a CLONE_VM or fork child of this process starts
    from ours; GNU time's own small address space keeps that bias near 1 MiB
    (the /bin/true row shows it).
    """
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time is None:
        raise C.Skip("GNU time (/usr/bin/time, Debian package 'time') is needed to measure peak RSS")
    r = subprocess.run([gnu_time, "-f", "maxrss=%M wall=%e"] + argv, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines()
                 if ln.strip() and not ln.startswith(("Command exited", "maxrss="))]
        raise RuntimeError(f"{os.path.basename(argv[0])} exited with {r.returncode}"
                           + (f": {lines[-1].strip()}" if lines else ""))
    rss, wall = r.stderr.strip().rsplit("maxrss=", 1)[1].split(" wall=")
    return int(rss), float(wall)


def peak_rss(log: Log) -> dict[str, Any]:
    """Peak RSS (KiB) of one command-line run of /bin/true per tool (the largest of 3)."""
    py = sys.executable
    full = sorted(C.FULL)
    cmds: list[tuple[str, Callable[[], list[str]]]] = [
        ("/bin/true", lambda: [C.TRUE]),
        ("python -c pass", lambda: [py, "-c", "pass"]),
        ("python: isolate.run(full namespaces)",
         lambda: [py, "-c", f"import isolate; isolate.run(['/bin/true'], namespaces={full!r}, check=True)"]),
    ]

    def isolate_cli() -> list[str]:
        import importlib.util

        from isolate.cli import __main__ as cli
        if "run" not in cli.COMMANDS or importlib.util.find_spec(f"isolate.cli.{cli.COMMANDS['run']}") is None:
            raise C.Skip("`isolate run` is not available in this version")
        return [py, "-m", "isolate", "run", "--", C.TRUE]
    cmds.append(("isolate run -- /bin/true", isolate_cli))
    cmds.append(("unshare --pid --mount --uts --ipc --fork",
                 lambda: [C.tool("unshare"), "--pid", "--mount", "--uts", "--ipc", "--fork", C.TRUE]))
    cmds.append(("bwrap --unshare-all", lambda: C.bwrap_argv(False)))
    out: dict[str, Any] = {}
    for name, make in cmds:
        try:
            argv = make()
            runs = [_peak_rss_kib(argv) for _ in range(3)]
            out[name] = {"kib": max(r[0] for r in runs), "wall_s": min(r[1] for r in runs)}
        except (C.Skip, RuntimeError) as e:
            out[name] = {"skipped": str(e)}
    for runtime in ("runc", "crun"):
        name = f"{runtime} run"
        try:
            exe = C.tool(runtime)
            with C.oci_bundle(runtime) as (bundle, state, _):
                argv = [exe, "--root", state, "run", "--bundle", bundle, f"isobench-rss-{os.getpid()}"]
                C.check_tool(argv)
                kib, wall = _peak_rss_kib(argv[:-1] + [argv[-1] + "-2"])
                out[name] = {"kib": kib, "wall_s": wall}
        except (C.Skip, RuntimeError) as e:
            out[name] = {"skipped": str(e)}
    for name, v in out.items():
        log(f"  {name}: " + (f"{v['kib'] / 1024:.1f} MiB" if "kib" in v else f"skipped ({v['skipped']})"))
    return out


def embedding_memory(spawns: int, live: int, log: Log) -> dict[str, Any]:
    """What a long-running embedding process pays: RSS growth per finished spawn, and per live sandbox."""
    core = frozenset(C.CORE)
    for _ in range(200):
        C.spawn_wait(namespaces=core)
    gc.collect()
    before = rss_bytes()
    for _ in range(spawns):
        C.spawn_wait(namespaces=core)
    gc.collect()
    after = rss_bytes()
    per_spawn = (after - before) / spawns

    sleep = shutil.which("sleep") or "/bin/sleep"
    fds0 = len(os.listdir("/proc/self/fd"))
    m0 = meminfo()
    r0 = rss_bytes()
    procs = []
    # RSS moves in pages and allocator arenas; tracemalloc counts the Python objects a sandbox keeps.
    tracemalloc.start()
    try:
        h0 = tracemalloc.get_traced_memory()[0]
        for _ in range(live):
            procs.append(isolate.spawn([sleep, "60"], namespaces=frozenset(C.FULL)))
        gc.collect()  # count what the sandboxes keep, not garbage awaiting collection
        h1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        time.sleep(0.2)
        r1 = rss_bytes()
        m1 = meminfo()
        fds1 = len(os.listdir("/proc/self/fd"))
    finally:
        tracemalloc.stop()
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
            p.close()
    kernel_keys = ("Slab", "KernelStack", "PageTables")
    kernel = sum(m1[k] - m0[k] for k in kernel_keys if k in m0) / live
    used = ((m0["MemAvailable"] - m1["MemAvailable"]) / live) if "MemAvailable" in m0 else None
    out = {"spawns": spawns, "rss_growth_bytes": after - before, "rss_growth_per_spawn_bytes": per_spawn,
           "live": live, "parent_rss_per_live_bytes": (r1 - r0) / live,
           "parent_fds_per_live": (fds1 - fds0) / live,
           "python_heap_per_live_bytes": (h1 - h0) / live,
           "kernel_per_live_bytes": kernel, "memavailable_drop_per_live_bytes": used}
    out["container"] = _live_containers(live, sleep)
    log(f"  after {spawns} spawns RSS grew {(after - before) / 1024:.0f} KiB "
        f"({per_spawn:.1f} B/spawn); per live sandbox: parent {(r1 - r0) / live / 1024:.1f} KiB, "
        f"{(fds1 - fds0) / live:.0f} fd, kernel ~{kernel / 1024:.0f} KiB")
    return out


def _live_containers(live: int, sleep: str) -> dict[str, Any]:
    """Parent RSS and fds per running ``isolate.Container`` (host rootfs, defaults)."""
    if not hasattr(isolate, "Container") or not hasattr(isolate, "RootFS"):
        return {"skipped": "isolate.Container is not available in this version"}
    containers: list[Any] = []
    try:
        rootfs = isolate.RootFS.host()
        with isolate.Container(rootfs=rootfs) as warm:  # one-time caches are not per container
            warm.run([C.TRUE])
        gc.collect()
        fds0, r0 = len(os.listdir("/proc/self/fd")), rss_bytes()
        tracemalloc.start()
        h0 = tracemalloc.get_traced_memory()[0]
        for _ in range(live):
            c = isolate.Container(rootfs=rootfs)
            containers.append(c)
            c.start([sleep, "60"])
        gc.collect()
        h1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        time.sleep(0.2)
        r1, fds1 = rss_bytes(), len(os.listdir("/proc/self/fd"))
    except Exception as e:  # reported, so the gap is visible
        return {"skipped": f"{type(e).__name__}: {e}"}
    finally:
        tracemalloc.stop()
        for c in containers:
            with contextlib.suppress(Exception):
                c.kill()
            c.close()
    return {"live": live, "parent_rss_per_live_bytes": (r1 - r0) / live,
            "parent_fds_per_live": (fds1 - fds0) / live, "python_heap_per_live_bytes": (h1 - h0) / live}


# --- network namespace CPU ------------------------------------------------------------


PACE = 0.01


def netns_cpu(spawns: int, log: Log) -> dict[str, Any]:
    """Latency and total CPU (this process + reaped children + kernel workers) per spawn,
    for no net namespace, a fresh one, and one from a NetnsPool (pool created and closed
    inside the measured window, so its thread's work is counted)."""
    others = frozenset(C.FULL) - {"net"}
    full = frozenset(C.FULL)

    def no_net() -> Iterator[C.Iteration]:
        yield lambda: C.spawn_wait(namespaces=others)

    def fresh() -> Iterator[C.Iteration]:
        yield lambda: C.spawn_wait(namespaces=full)

    def pooled() -> Iterator[C.Iteration]:
        with C.netns_pool(size=16) as pool:
            def it() -> None:
                with pool.take() as ns:
                    C.spawn_wait(namespaces=others, join=[ns])
            yield it
    modes = [("pid+mnt+uts+ipc+cgroup (no net)", no_net), ("+ fresh net namespace", fresh),
             ("+ net namespace from NetnsPool", pooled)]
    out: dict[str, Any] = {}
    for name, gen in modes:
        settle_kworkers()
        k0, p0, t0 = kworker_cpu_ns(), process_cpu_ns(), time.monotonic_ns()
        walls = []
        try:
            with contextlib.contextmanager(gen)() as fn:
                with _gc_off():
                    for _ in range(spawns):
                        a = time.perf_counter_ns()
                        fn()
                        walls.append(time.perf_counter_ns() - a)
        except C.Skip as e:
            out[name] = {"skipped": str(e)}
            continue
        t1 = time.monotonic_ns()
        p1 = process_cpu_ns()
        settle_kworkers()
        k1 = kworker_cpu_ns()
        # Paced: a sandbox every PACE seconds, so a pool has time to refill in between.
        paced = []
        with contextlib.contextmanager(gen)() as fn:
            for _ in range(max(spawns // 4, 3)):
                time.sleep(PACE)
                a = time.perf_counter_ns()
                fn()
                paced.append(time.perf_counter_ns() - a)
        out[name] = {"latency": summary(walls), "latency_paced": summary(paced),
                     "wall_per_spawn_ns": (t1 - t0) / spawns,
                     "process_cpu_per_spawn_ns": (p1 - p0) / spawns,
                     "kworker_cpu_per_spawn_ns": (k1 - k0) / spawns,
                     "total_cpu_per_spawn_ns": (p1 - p0 + k1 - k0) / spawns}
        v = out[name]
        log(f"  {name}: median {v['latency']['median'] / 1e6:.2f} ms "
            f"(paced {v['latency_paced']['median'] / 1e6:.2f} ms), CPU/spawn: process "
            f"{v['process_cpu_per_spawn_ns'] / 1e6:.2f} ms + kworkers {v['kworker_cpu_per_spawn_ns'] / 1e6:.2f} ms")
    return {"spawns": spawns, "modes": out}
