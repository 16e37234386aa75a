"""Run the benchmark suite and write a results folder.

    python -m benchmarks.run [--quick] [--phases] [--out DIR] [--sections a,b,...]
    python -m benchmarks.run --sections rootless     # isolate as a user beside bwrap
    python -m benchmarks.run --sections images       # pull and run an image beside skopeo+umoci, podman
    python -m benchmarks.run --sections net          # bridged containers beside podman, iperf3 beside a veth
    python -m benchmarks.run --sections engines      # ctr run --rm and podman run --rm, by OCI runtime

Writes DIR/results.md (tables), DIR/results.json (every sample) and PNG
charts.  ``--quick`` takes under a minute and proves the suite works; its
numbers are too few to compare.  Needs root for most isolate cases (as the
library itself does); cases the host cannot run are listed as skipped, with
the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import as_user as U
from . import cases as C
from . import engines as EN
from . import experiments as E
from . import images as I
from . import net as N
from . import net_host as NH
from . import report

SECTIONS = ("latency", "targets", "engines", "rootless", "images", "net", "netns", "mounts", "threads", "memory",
            "rss")

#: Each issue's target comparison, run on its own (``targets`` section): the rows a
#: target divides, and its references, interleaved without the rest of the
#: table.  In the full table some thirty cases take turns, each once per
#: quarter second, with the kernel still tearing down the namespaces and
#: cgroups of the cases before it: a comparison of a few rows is steadier.
TARGET_RUNS: dict[str, tuple[str, ...]] = {
    "container": ("subprocess.run", "isolate.Container host rootfs, no user ns",
                  "isolate.Container host rootfs", "hand-written C spawn of the Container's shape",
                  "bwrap --unshare-all", "crun run", "runc run"),
    "cgroup": ("subprocess.run", "isolate.spawn (no namespace)",
               "isolate.spawn into a new Cgroup (memory+pids+cpu limits)",
               "isolate.spawn into a Cgroup from CgroupPool (memory+pids+cpu limits)"),
    "oci": ("subprocess.run", "python -I -S, import isolate._native (isolate-oci's floor)",
            "isolate.oci.runtime.run", "isolate-oci run", "isolate-oci run (no planner)", "runc run",
            "crun run", "isolate-oci create+start+state+delete", "runc create+start+state+delete",
            "crun create+start+state+delete"),
}


@dataclass(frozen=True)
class Config:
    """How many samples each section takes."""

    rounds: int
    warmup: int
    rss_levels: tuple[int, ...]
    rss_rounds: int
    threads: tuple[int, ...]
    thread_seconds: float
    thread_reps: int
    mounts: tuple[int, ...]
    mount_rounds: int
    phase_rounds: int
    spawns_for_growth: int
    live_sandboxes: int
    netns_spawns: int
    image_mb: int
    image_rounds: int
    image_starts: int
    net_rounds: int
    net_warmup: int
    engine_rounds: int
    engine_warmup: int
    iperf_rounds: int
    iperf_args: tuple[str, ...]


FULL = Config(rounds=300, warmup=10, rss_levels=(50, 128, 256, 512, 1024, 2048), rss_rounds=60,
              threads=(1, 2, 4), thread_seconds=1.0, thread_reps=6, mounts=(1, 10, 100, 1000),
              mount_rounds=25, phase_rounds=100, spawns_for_growth=3000, live_sandboxes=100,
              netns_spawns=400, image_mb=100, image_rounds=5, image_starts=100,
              net_rounds=40, net_warmup=5, engine_rounds=40, engine_warmup=3, iperf_rounds=8,
              iperf_args=("-t", "3", "-O", "1"))
QUICK = Config(rounds=6, warmup=1, rss_levels=(50, 200), rss_rounds=3, threads=(1, 2),
               thread_seconds=0.3, thread_reps=1, mounts=(1, 10, 100), mount_rounds=2,
               phase_rounds=2, spawns_for_growth=100, live_sandboxes=5, netns_spawns=15,
               image_mb=8, image_rounds=1, image_starts=3,
               net_rounds=2, net_warmup=1, engine_rounds=2, engine_warmup=1, iperf_rounds=1,
               iperf_args=("-n", "50M"))


def _find(table: dict[str, Any], name: str) -> dict[str, Any] | None:
    for r in table.get("rows", []):
        if r["name"] == name and r["stats"]:
            return r
    return None


def _row(res: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _find(res.get("latency", {}), name)


def _pair(res: dict[str, Any], a: str, b: str, run: str | None) -> tuple[Any, Any]:
    """Rows ``a`` and ``b`` from the target run ``run`` if it has both, else from the table:
    a ratio never divides rows of two different runs."""
    t = res.get("target_runs", {}).get(run) if run else None
    if t is not None and _find(t, a) and _find(t, b):
        return _find(t, a), _find(t, b)
    return _row(res, a), _row(res, b)


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, as ratios from this run (None where a row is missing)."""
    out: list[dict[str, Any]] = []

    def add(target: str, value: float | None, limit: float, at_least: bool = False) -> None:
        met = None if value is None else (value >= limit if at_least else value <= limit)
        out.append({"target": target, "value": value, "limit": limit, "met": met})

    def ratio(a: str, b: str, run: str | None = None) -> float | None:
        ra, rb = _pair(res, a, b, run)
        return ra["stats"]["median"] / rb["stats"]["median"] if ra and rb else None

    def added_ms(a: str, b: str, run: str | None = None) -> float | None:
        ra, rb = _pair(res, a, b, run)
        return (ra["stats"]["median"] - rb["stats"]["median"]) / 1e6 if ra and rb else None  # ns

    core = "isolate.spawn " + "+".join(C.CORE)
    full = "isolate.spawn " + "+".join(C.FULL)
    add("isolate.spawn pid+mnt+uts+ipc ≤ 1.2× subprocess.run", ratio(core, "subprocess.run"), 1.2)
    shapes = [("Container (pid+mnt+uts+ipc+net+cgroup)", "isolate.Container host rootfs, no user ns",
               "isolate.Container host rootfs, net from NetnsPool"),
              ("Container (defaults, with user ns)", "isolate.Container host rootfs", None),
              ("spawn, full namespaces + rootfs plan",
               full + ", rootfs plan (ro /usr, /proc, /dev, pivot_root)",
               full + ", rootfs plan, net from NetnsPool")]
    for label, row, pooled in shapes:
        if not _row(res, row) and not _find(res.get("target_runs", {}).get("container", {}), row):
            continue
        add(f"{label} ≤ 0.5× bwrap --unshare-all", ratio(row, "bwrap --unshare-all", "container"), 0.5)
        for rt in ("crun", "runc"):
            add(f"{label} ≤ 0.15× {rt} run", ratio(row, f"{rt} run", "container"), 0.15)
        if pooled is not None:
            add(f"{label}, pooled net ≤ 1.6× subprocess.run", ratio(pooled, "subprocess.run"), 1.6)
    # The floor on this machine: the same shape spawned by a hand-written C program.
    cref = "hand-written C spawn of the Container's shape"
    add("hand-written C spawn of that shape ≤ 0.5× bwrap --unshare-all (the floor)",
        ratio(cref, "bwrap --unshare-all", "container"), 0.5)
    for rt in ("crun", "runc"):
        add(f"hand-written C spawn of that shape ≤ 0.15× {rt} run (the floor)",
            ratio(cref, f"{rt} run", "container"), 0.15)
    add("Container (pid+mnt+uts+ipc+net+cgroup) ≤ 1.0× the hand-written C spawn",
        ratio("isolate.Container host rootfs, no user ns", cref, "container"), 1.0)
    for label, row in (("new Cgroup", "isolate.spawn into a new Cgroup (memory+pids+cpu limits)"),
                       ("Cgroup from CgroupPool",
                        "isolate.spawn into a Cgroup from CgroupPool (memory+pids+cpu limits)")):
        add(f"{label}: create + memory/pids/cpu limits + spawn into + remove adds ≤ 0.3 ms "
            "to isolate.spawn (value in ms)", added_ms(row, "isolate.spawn (no namespace)", "cgroup"), 0.3)
    rl = res.get("rootless")
    if rl:
        # Both run by the same ordinary user, back to back in one run (benchmarks/as_user.py).
        for label, row in (("isolate.Container", U.CONTAINER), ("isolate run", U.CLI),
                           ("isolate.run pid+mnt+uts+ipc+net", U.SPAWN)):
            a, b = _find(rl, row), _find(rl, U.BWRAP)
            add(f"rootless {label} ≤ 0.5× bwrap --unshare-all (both as a user)",
                a["stats"]["median"] / b["stats"]["median"] if a and b else None, 0.5)
    im = res.get("images")
    if im and "pull" in im:
        def im_ratio(rows: list[dict[str, Any]], a: str, b: str) -> float | None:
            ra, rb = _find({"rows": rows}, a), _find({"rows": rows}, b)
            return ra["stats"]["median"] / rb["stats"]["median"] if ra and rb else None
        mb = im["compressed_bytes"] / 1e6
        add(f"isolate pull of a {mb:.0f} MB image ≤ 0.5× skopeo copy + umoci unpack",
            im_ratio(im["pull"], I.PULL, I.SKOPEO), 0.5)
        add(f"isolate pull of a {mb:.0f} MB image ≤ 1.0× podman pull",
            im_ratio(im["pull"], I.PULL, I.PODMAN), 1.0)
        second = im["second"]
        add("a second image sharing all but one layer: blobs downloaded beyond its new layer and "
            "config (count)", float(len(set(second["downloaded"]) - set(second["expected"]))
                                    + len(set(second["expected"]) - set(second["downloaded"]))), 0.0)
        add("Container on RootFS.from_image ≤ 1.1× on RootFS.from_directory(unpacked).overlay()",
            im_ratio(im["start"], I.FROM_IMAGE, I.FROM_DIR), 1.1)
    nt = res.get("net")
    if nt and "start" in nt:
        def net_row(rows: list[dict[str, Any]], name: str) -> float | None:
            r = _find({"rows": rows}, name)
            return r["stats"]["median"] if r else None

        bridged, podman = net_row(nt["start"], NH.BRIDGED), net_row(nt["start"], NH.PODMAN)
        pooled, none = net_row(nt["start"], NH.POOLED), net_row(nt["start"], NH.NONE)
        add("bridged Container start ≤ 0.5× podman run --rm --network bridge (CNI), same image",
            bridged / podman if bridged and podman else None, 0.5)
        if pooled is None and net_row(nt["start"], NH.PLAIN_POOL):
            # Until NetnsPool(network=) exists: the namespace pooled, attached at start.
            pooled = net_row(nt["start"], NH.PLAIN_POOL)
            label = "NetnsPool() (attached at start: this isolate has no NetnsPool(network=))"
        else:
            label = "NetnsPool(network='bridge')"
        add(f"bridged Container, namespace from {label}, adds ≤ 1 ms to net='none' (value in ms)",
            (pooled - none) / 1e6 if pooled and none else None, 1.0)
        for label, a, b in (("container -> upstream (bridge + NAT)", NH.BRIDGE_OUT, NH.VETH_OUT),
                            ("host -> container's published port (DNAT)", NH.PUBLISHED_IN, NH.VETH_IN)):
            va, vb = net_row(nt["throughput"], a), net_row(nt["throughput"], b)
            add(f"iperf3 {label} ≥ 0.9× the hand-made veth path", va / vb if va and vb else None,
                0.9, at_least=True)
    add("isolate-oci run ≤ 0.6× runc run", ratio("isolate-oci run", "runc run", "oci"), 0.6)
    add("isolate-oci create+start+state+delete ≤ runc's",
        ratio("isolate-oci create+start+state+delete", "runc create+start+state+delete", "oci"), 1.0)
    en = res.get("engines")
    if en and "ctr" in en:
        for key, label in (("ctr", EN.CTR), ("podman", EN.PODMAN)):
            r = _find({"rows": en[key]}, label.format("isolate-oci"))
            add(f"{label.format('isolate-oci')} per container ≤ runc's", r["ratio"] if r else None, 1.0)
    add("CPython start-up + the C binding's import alone ≤ 0.6× runc run (isolate-oci's floor)",
        ratio("python -I -S, import isolate._native (isolate-oci's floor)", "runc run", "oci"), 0.6)
    add("full namespaces, pooled net ≤ 1.6× subprocess.run",
        ratio(full + ", net from NetnsPool", "subprocess.run"), 1.6)
    rss = res.get("rss", {}).get("ratio_last_to_first", {})
    levels = res.get("rss", {}).get("points", [])
    span = f"{levels[-1]['target_mib']} MiB / {levels[0]['target_mib']} MiB" if levels else "2 GiB / 50 MiB"
    add(f"isolate.spawn pid+mnt+uts+ipc at {span} RSS ≤ 1.15×", rss.get(core), 1.15)
    add(f"{E.RSS_LIMITED} at {span} RSS ≤ 1.15×", rss.get(E.RSS_LIMITED), 1.15)
    add(f"{E.RSS_USER} at {span} RSS ≤ 1.15×", rss.get(E.RSS_USER), 1.15)
    sp = res.get("threads", {}).get("speedup_2_vs_1", {})
    add("isolate.spawn pid+mnt+uts+ipc, 2 threads ≥ 1.7× 1 thread", sp.get(core), 1.7, at_least=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse the options, run the sections, write the folder."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a check that the suite works (< 1 minute)")
    ap.add_argument("--phases", action="store_true", help="also break a spawn down into phases")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/latest"),
                    help="results folder (default: benchmarks/results/latest)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--rounds", type=int, help="rounds of the latency table (overrides the mode's)")
    ap.add_argument("--cases", help="only latency cases whose name contains one of these "
                    "comma-separated texts")
    args = ap.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    for s in sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r} (known: {', '.join(SECTIONS)})")
    cfg = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            ap.error("--rounds must be >= 1")
        cfg = Config(**{**cfg.__dict__, "rounds": args.rounds})

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # What runc, crun, isolate and ``ip netns`` make on first use and keep, and the warm
    # planners isolate-oci's calls start: removed at the end unless they were there before.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support import planner_pids, remove_runtime_dirs, runtime_dirs, stop_planners

    from isolate.oci.warm import socket_dir

    # Planners go to ISOLATE_OCI_PLANNER_DIR, and to the default directory from callers that
    # do not pass the environment on (podman's conmon).
    planners = {Path(d) for d in (socket_dir(), socket_dir({})) if d}
    kept = frozenset(pid for d in planners if d.is_dir() for pid in planner_pids(d))
    dirs_before = runtime_dirs()
    try:
        return _run(args, argv, sections, cfg, log)
    finally:
        for d in planners:
            if d.is_dir():
                stop_planners(d, keep=kept)
        remove_runtime_dirs(dirs_before)


def _run(args: argparse.Namespace, argv: list[str] | None, sections: list[str], cfg: Config,
         log: Callable[[str], None]) -> int:
    """The sections asked for, the targets, the results folder."""
    started = time.monotonic()
    res: dict[str, Any] = {"command": "python -m benchmarks.run " + " ".join(argv if argv is not None
                                                                              else sys.argv[1:]),
                           "quick": args.quick, "config": cfg.__dict__, "machine": report.machine()}
    if os.geteuid() != 0:
        log("note: not root; cases that need privileges will be skipped")
    if "latency" in sections:
        log("latency:")
        wanted = [w for w in (args.cases or "").split(",") if w]
        selected = [c for c in C.REGISTRY if not wanted or any(w in c.name for w in wanted)
                    or c.name == "subprocess.run"]
        res["latency"] = E.latency(selected, cfg.rounds, cfg.warmup, log)
    if "targets" in sections:
        log("target comparisons, each run on its own:")
        names = {c.name: c for c in C.REGISTRY}
        res["target_runs"] = {}
        for run_name, rows in TARGET_RUNS.items():
            log(f" {run_name}:")
            res["target_runs"][run_name] = E.latency([names[n] for n in rows if n in names],
                                                     cfg.rounds, cfg.warmup, log)
    if "engines" in sections:
        log("engines (a container per ctr run --rm and podman run --rm, by runtime):")
        res["engines"] = EN.engines(cfg.engine_rounds, cfg.engine_warmup, log)
    if "rootless" in sections:
        log("rootless (isolate and bwrap as an ordinary user):")
        res["rootless"] = U.rootless(cfg.rounds, cfg.warmup, log)
    if "images" in sections:
        log("images (a registry on loopback; isolate, skopeo + umoci, podman):")
        res["images"] = I.images(cfg.image_rounds, cfg.image_starts, log, total_mb=cfg.image_mb)
    if "net" in sections:
        log("net (a fake host; isolate beside podman's CNI bridge, iperf3 beside a hand-made veth):")
        res["net"] = N.net(cfg.net_rounds, cfg.net_warmup, cfg.iperf_rounds, list(cfg.iperf_args), log)
    if "netns" in sections:
        log("network namespace CPU:")
        res["netns_cpu"] = E.netns_cpu(cfg.netns_spawns, log)
    if "mounts" in sections:
        log("mounts:")
        res["mounts"] = E.mount_curve(cfg.mounts, cfg.mount_rounds, log)
    if args.phases:
        log("phases:")
        res["phases"] = E.phases(cfg.phase_rounds, log)
    if "threads" in sections:
        log("threads:")
        res["threads"] = E.thread_throughput(cfg.threads, cfg.thread_seconds, cfg.thread_reps, log)
    if "memory" in sections:
        log("memory:")
        res["memory"] = {"peak_rss": E.peak_rss(log),
                         "embedding": E.embedding_memory(cfg.spawns_for_growth, cfg.live_sandboxes, log)}
    if "rss" in sections:
        log("parent RSS:")
        res["rss"] = E.rss_curve(cfg.rss_levels, cfg.rss_rounds, log)
    res["targets"] = targets(res)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["seconds"] = time.monotonic() - started
    report.write(res, args.out)
    for t in res["targets"]:
        if t["value"] is not None:
            log(f"  {'ok  ' if t['met'] else 'MISS'} {t['target']}: {t['value']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
