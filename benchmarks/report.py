"""Machine description, results.md, results.json and the PNG charts."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import isolate


def _first_line(argv: list[str]) -> str | None:
    exe = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe] + argv[1:], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout or r.stderr).strip().splitlines()
    return text[0] if text else None


def cgroup_layout() -> str:
    """'hybrid (...)', 'unified (...)' or 'legacy (...)', from /proc/self/mounts."""
    v1: list[str] = []
    v2: list[tuple[str, str]] = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup":
                opts = [o for o in parts[3].split(",") if o not in ("rw", "ro", "nosuid", "nodev",
                                                                      "noexec", "relatime")]
                v1.append(",".join(o for o in opts if not o.startswith("name=")) or opts[-1])
            elif parts[2] == "cgroup2":
                try:
                    ctrl = Path(parts[1], "cgroup.controllers").read_text().split()
                except OSError:
                    ctrl = []
                v2.append((parts[1], " ".join(ctrl) or "no controllers"))
    v2s = "; ".join(f"cgroup2 at {m} ({c})" for m, c in v2)
    if v1 and v2:
        return f"hybrid: v1 {', '.join(sorted(set(v1)))}; {v2s}"
    if v2:
        return f"unified: {v2s}"
    return f"legacy v1: {', '.join(sorted(set(v1)))}" if v1 else "no cgroup filesystem mounted"


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    from isolate import _spawn

    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem / (1 << 30), 1),
        "cgroups": cgroup_layout(),
        "python": platform.python_version(),
        "isolate": isolate.__version__,
        "clone3": _spawn.clone3_available(),
        "euid": os.geteuid(),
        "loadavg_start": os.getloadavg(),
        "tools": {t: _first_line([t, "--version"]) for t in ("unshare", "bwrap", "runc", "crun")},
    }


# --- markdown ------------------------------------------------------------------


def _case_rows(rows: list[dict[str, Any]], unit: Callable[[float], str] | None = None) -> list[str]:
    """Table lines (case, median, p10, p90, n, ratio) of timed cases, values shown by ``unit``
    (default: ns as ms); a skipped one says why."""
    show = unit or _ms
    out = []
    for r in rows:
        if r["stats"] is None:
            out.append(f"| {r['name']} | skipped: {r['skipped']} | | | | |")
            continue
        st = r["stats"]
        out.append(f"| {r['name']} | {show(st['median'])} | {show(st['p10'])} | {show(st['p90'])} | "
                   f"{st['n']} | {_x(r['ratio'])} |")
    return out


def _ms(ns: float | None) -> str:
    return "–" if ns is None else f"{ns / 1e6:.3f}"


def _x(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def markdown(res: dict[str, Any]) -> str:
    """results.md: machine, the latency table, each curve's table, targets."""
    m = res["machine"]
    out = ["# isolate benchmark results", ""]
    out.append(f"`{res['command']}` — {m['date_utc']}, {res['seconds']:.0f} s"
               + (" (quick mode: few samples, not for comparison)" if res["quick"] else ""))
    out += ["", "| machine | |", "|---|---|",
            f"| kernel | {m['kernel']} ({m['arch']}) |",
            f"| CPU | {m['cpu']}, {m['cpus_usable']} of {m['cpus']} CPUs usable |",
            f"| memory | {m['memory_gib']} GiB |",
            f"| cgroups | {m['cgroups']} |",
            f"| Python | {m['python']}, isolate {m['isolate']}, clone3 {'yes' if m['clone3'] else 'no'}, "
            f"euid {m['euid']} |",
            "| tools | " + "; ".join(f"{k}: {v or 'not found'}" for k, v in m["tools"].items()) + " |",
            f"| load average | {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end |",
            ""]
    lat = res.get("latency")
    if lat:
        out += ["## Start /bin/true and wait", "",
                f"Cases interleaved (A B C … A B C …), {lat['rounds']} rounds after {lat['warmup']} "
                "warm-up rounds; after a pooled case, an untimed wait until its pool has refilled, "
                "so that the pool's thread works on no other row's clock. Times in ms; ratio = median / median of `subprocess.run`; "
                "CPU = this thread + reaped children (kernel workers not included: see the network "
                "namespace table).", "",
                "| case | median | p10 | p90 | n | ratio | CPU |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in lat["rows"]:
            if r["stats"] is None:
                continue
            s = r["stats"]
            out.append(f"| {r['name']} | {_ms(s['median'])} | {_ms(s['p10'])} | {_ms(s['p90'])} | "
                       f"{s['n']} | {_x(r['ratio'])} | {_ms(r['cpu_median_ns'])} |")
        skipped = [r for r in lat["rows"] if r["skipped"]]
        if skipped:
            out += ["", "Skipped:", ""]
            out += [f"- {r['name']}: {r['skipped']}" for r in skipped]
        notes = [r for r in lat["rows"] if r["note"] and r["stats"]]
        if notes:
            out += ["", "Notes:", ""] + [f"- {r['name']}: {r['note']}" for r in notes]
        out.append("")
    runs = res.get("target_runs")
    if runs:
        out += ["## Target comparisons, each run on its own", "",
                "The rows each target divides, with its references, interleaved as above but without "
                "the rest of the table (there some thirty cases take turns, each once per quarter "
                "second, while the kernel still tears down the namespaces and cgroups of the cases "
                "before it). The targets below use these runs where they have both rows.", ""]
        for run_name, table in runs.items():
            out += [f"**{run_name}** ({table['rounds']} rounds after {table['warmup']} warm-up)", "",
                    "| case | median | p10 | p90 | n | ratio |", "|---|---:|---:|---:|---:|---:|"]
            out += _case_rows(table["rows"])
            out.append("")
    rl = res.get("rootless")
    if rl:
        out += ["## As an ordinary user", "",
                "isolate and bwrap started by the same unprivileged user (made for the run, with "
                "/etc/subuid ranges), interleaved in one Python of that user "
                f"({rl['rounds']} rounds after {rl['warmup']} warm-up); ratio = median / median of "
                "that user's `subprocess.run`. The command's start-up row is the interpreter and "
                "imports `isolate run` pays before it starts anything.", "",
                "| case | median | p10 | p90 | n | ratio |", "|---|---:|---:|---:|---:|---:|"]
        out += _case_rows(rl["rows"])
        out.append("")
    en = res.get("engines")
    if en and "ctr" in en:
        out += ["## Container engines", "",
                "A container per `ctr run --rm` (a containerd of the run's own, its runc shim running "
                "the runtime) and per `podman run --rm --network none` (podman with a store of its "
                "own, conmon), `/bin/true` in a busybox root filesystem given as a directory; the "
                f"runtimes take turns ({en['rounds']} rounds after {en['warmup']} warm-up); ratio = "
                "median / median of runc.", "",
                "| case | median | p10 | p90 | n | ratio |", "|---|---:|---:|---:|---:|---:|"]
        out += _case_rows(en["ctr"] + en["podman"])
        out.append("")
    elif en:
        out += ["## Container engines", "", f"skipped: {en['skipped']}", ""]
    im = res.get("images")
    if im and "pull" in im:
        out += ["## Images", "",
                f"An image of {im['compressed_bytes'] / 1e6:.0f} MB (compressed, 5 layers) pulled from "
                "a registry on 127.0.0.1 (Debian's docker-registry, started for the run) into an empty "
                f"store each time, the three ways interleaved ({im['rounds']} rounds); ratio = median / "
                "median of skopeo copy + umoci unpack.", "",
                "| case | median | p10 | p90 | n | ratio |", "|---|---:|---:|---:|---:|---:|"]
        out += _case_rows(im["pull"])
        second = im["second"]
        out += ["", f"A second image sharing all but its top layer, pulled into the store holding the "
                f"first: the registry served {len(second['downloaded'])} blob(s) "
                f"({', '.join(d[:19] for d in second['downloaded'])}); its new layer and config are "
                f"{', '.join(d[:19] for d in second['expected'])}.", "",
                f"Starting `Container.run([\"/bin/true\"])` on the pulled image and on the same tree "
                f"unpacked by umoci, with an overlay ({im['start_rounds']} rounds after 10 warm-up, "
                "interleaved); ratio = median / median of the directory root.", "",
                "| case | median | p10 | p90 | n | ratio |", "|---|---:|---:|---:|---:|---:|"]
        out += _case_rows(im["start"])
        out.append("")
    elif im:
        out += ["## Images", "", f"skipped: {im['skipped']}", ""]
    nt = res.get("net")
    if nt and "start" in nt:
        out += ["## Container networking", "",
                "Everything in a fake host (a network namespace with an upstream behind it: "
                "tests/net/fakehost.py), the machine's network untouched; the runtime state of both "
                "(isolate's ISOLATE_NET_DIR, podman's runroot) on a tmpfs, as /run usually is. "
                "Start a container on a "
                "static-busybox image and run /bin/true: podman "
                f"{nt['podman']} with a CNI bridge network of its own (runc) against isolate, all "
                f"interleaved ({nt['rounds']} rounds after {nt['warmup']} warm-up); times in ms, "
                "ratio = median / median of podman. After each pooled start, an untimed wait until the "
                "pool has refilled.", "",
                "| case | median | p10 | p90 | n | ratio |", "|---|---:|---:|---:|---:|---:|"]
        out += _case_rows(nt["start"])
        notes = [r for r in nt["start"] if r["note"]]
        if notes:
            out += ["", "Notes:", ""] + [f"- {r['name']}: {r['note']}" for r in notes]
        out += ["", f"TCP throughput, one iperf3 stream (`iperf3 -J {' '.join(nt['iperf_args'])}`), "
                f"the four paths interleaved ({nt['iperf_rounds']} rounds after one untimed run each); "
                "Gbit/s the receiver saw; ratio = median / median of the hand-made veth path in the "
                "same direction.", "",
                "| path | median | p10 | p90 | n | ratio |", "|---|---:|---:|---:|---:|---:|"]
        out += _case_rows(nt["throughput"], lambda bits: f"{bits / 1e9:.2f}")
        out.append("")
    elif nt:
        out += ["## Container networking", "", f"skipped: {nt['skipped']}", ""]
    t = res.get("targets")
    if t:
        out += ["## Targets (ratios from this run)", "", "| target | measured | met |", "|---|---:|:---:|"]
        for row in t:
            met = "–" if row["value"] is None else ("yes" if row["met"] else "**no**")
            val = "–" if row["value"] is None else f"{row['value']:.2f}"
            out.append(f"| {row['target']} | {val} | {met} |")
        out.append("")
    nc = res.get("netns_cpu")
    if nc:
        out += ["## Network namespace: latency and total CPU per spawn", "",
                f"{nc['spawns']} spawns in a row per mode (CPU measured over these), then a quarter as many "
                "paced 10 ms apart (latency only). CPU = this process (every thread, so the "
                "pool's) + reaped children + every kernel worker (where `cleanup_net` tears a "
                "namespace down), waited for until the workers go quiet. The pool is created and closed "
                "inside the measured window, so its spare namespaces are counted too. Kernel-worker CPU is "
                "host-wide and has clock-tick resolution.", "",
                "| mode | median ms, back to back | median ms, one every 10 ms | process CPU ms "
                "| kworker CPU ms | total CPU ms |",
                "|---|---:|---:|---:|---:|---:|"]
        for name, v in nc["modes"].items():
            if "skipped" in v:
                out.append(f"| {name} | skipped: {v['skipped']} | | | | |")
                continue
            out.append(f"| {name} | {_ms(v['latency']['median'])} | {_ms(v['latency_paced']['median'])} | "
                       f"{_ms(v['process_cpu_per_spawn_ns'])} | "
                       f"{_ms(v['kworker_cpu_per_spawn_ns'])} | {_ms(v['total_cpu_per_spawn_ns'])} |")
        out.append("")
    rss = res.get("rss")
    if rss:
        names = list(rss["points"][0]["cases"])
        out += ["## Latency against the parent's resident memory", "",
                "Median ms; the parent grows a touched bytearray between levels.", "",
                "| RSS MiB | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for p in rss["points"]:
            out.append(f"| {p['rss_mib']:.0f} | " + " | ".join(_ms(p["cases"][n]["median"]) for n in names) + " |")
        out.append("| ratio last/first | " + " | ".join(_x(rss["ratio_last_to_first"].get(n)) for n in names) + " |")
        out.append("")
    thr = res.get("threads")
    if thr:
        counts = list(next(iter(thr["cases"].values())))
        out += ["## Throughput with threads spawning at once", "",
                f"Spawns per second (median of {thr['reps']} runs of {thr['seconds']} s).", "",
                "| case | " + " | ".join(f"{k} thread{'s' if k != '1' else ''}" for k in counts)
                + " | 2 vs 1 |", "|---|" + "---:|" * (len(counts) + 1)]
        for name, per in thr["cases"].items():
            out.append(f"| {name} | " + " | ".join(f"{per[k]['median']:.0f}" for k in counts)
                       + f" | {_x(thr['speedup_2_vs_1'].get(name))} |")
        out.append("")
    mc = res.get("mounts")
    if mc:
        out += ["## Latency against mounts in the plan", "",
                "tmpfs mounts in a new mount namespace; ms.", "",
                "| mounts | spawn median | p10 | p90 | plan build + pack (Python) |", "|---:|---:|---:|---:|---:|"]
        for p in mc["points"]:
            s = p["spawn"]
            out.append(f"| {p['mounts']} | {_ms(s['median'])} | {_ms(s['p10'])} | {_ms(s['p90'])} | "
                       f"{_ms(p['build_and_pack']['median'])} |")
        out.append("")
    ph = res.get("phases")
    if ph:
        variants = ph["variants"]
        keys = list(next(iter(variants.values())))
        out += ["## Phases (median ms)", "",
                "From the C core's CLOCK_MONOTONIC stamps (`spawn(timings=True)`) and Python clocks "
                "around the call. \"python\" is everything in `spawn()` outside the C stamps: building "
                "and packing the plan (timing mode bypasses the plan cache and names every op, so this "
                "is more than a normal spawn pays), and the Process object. The child's ops are "
                "grouped from per-op stamps; \"execve\" runs from the last op to the parent seeing "
                "the exec.", "",
                "| phase | " + " | ".join(variants) + " |", "|---|" + "---:|" * len(variants)]
        for k in keys:
            out.append(f"| {k} | " + " | ".join(_ms(variants[v][k]["median"]) for v in variants) + " |")
        out.append("")
    mem = res.get("memory")
    if mem:
        out += ["## Memory", "", "Peak RSS (GNU time `%M`, the largest of 3 runs) and wall time (the smallest) of one command-line run of /bin/true, interpreter start-up included:", "",
                "| command | peak RSS MiB | wall s (GNU time, 10 ms resolution) |", "|---|---:|---:|"]
        for name, v in mem["peak_rss"].items():
            if "kib" in v:
                out.append(f"| {name} | {v['kib'] / 1024:.1f} | {v['wall_s']:.2f} |")
            else:
                out.append(f"| {name} | skipped: {v['skipped']} | |")
        e = mem["embedding"]
        out += ["", f"A long-running embedding process: after {e['spawns']} spawns "
                f"(pid+mnt+uts+ipc) its RSS grew {e['rss_growth_bytes'] / 1024:.0f} KiB "
                f"({e['rss_growth_per_spawn_bytes']:.1f} bytes per spawn). With {e['live']} sandboxes "
                f"(full namespaces) alive at once it holds {e['parent_rss_per_live_bytes'] / 1024:.1f} KiB "
                f"of RSS ({e['python_heap_per_live_bytes'] / 1024:.1f} KiB of Python objects, by "
                f"tracemalloc) and {e['parent_fds_per_live']:.0f} fd per sandbox; the kernel's Slab + "
                f"KernelStack + PageTables grew about {e['kernel_per_live_bytes'] / 1024:.0f} KiB per "
                "sandbox (host-wide, noisy)."]
        ce = e.get("container", {})
        if "live" in ce:
            out.append(f"With {ce['live']} `isolate.Container`s (host rootfs, defaults) running, it holds "
                       f"{ce['parent_rss_per_live_bytes'] / 1024:.1f} KiB of RSS "
                       f"({ce['python_heap_per_live_bytes'] / 1024:.1f} KiB of Python objects) and "
                       f"{ce['parent_fds_per_live']:.1f} fds per container.")
        elif ce:
            out.append(f"Live Container measurement skipped: {ce['skipped']}")
        out.append("")
    charts = res.get("charts") or []
    if charts:
        out += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    return "\n".join(out)


# --- charts ----------------------------------------------------------------------

COLORS = {"baseline": "#777777", "isolate": "#1f77b4", "container": "#2ca02c", "external": "#d62728"}


def charts(res: dict[str, Any], outdir: Path) -> list[str]:
    """Write the PNGs; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    title_machine = f"{res['machine']['cpu']}, {res['machine']['cpus_usable']} CPUs, Linux {res['machine']['kernel']}"
    lat = res.get("latency")
    if lat:
        rows = [r for r in lat["rows"] if r["stats"]]
        fig, ax = plt.subplots(figsize=(13, 0.36 * len(rows) + 1.8))
        y = list(range(len(rows)))[::-1]
        med = [r["stats"]["median"] / 1e6 for r in rows]
        lo = [m - r["stats"]["p10"] / 1e6 for m, r in zip(med, rows)]
        hi = [r["stats"]["p90"] / 1e6 - m for m, r in zip(med, rows)]
        ax.barh(y, med, xerr=[lo, hi], color=[COLORS.get(r["group"], "#999") for r in rows],
                error_kw={"elinewidth": 0.8, "capsize": 2})
        ax.set_yticks(y)
        ax.set_yticklabels([r["name"] for r in rows], fontsize=8)
        for yi, m, r in zip(y, med, rows):
            # Right of the p90 whisker, so the label never sits on a bar or a whisker.
            ax.text(r["stats"]["p90"] / 1e6 * 1.08, yi,
                    f"{m:.2f} ms ({r['ratio']:.2f}×)" if r["ratio"] else f"{m:.2f} ms",
                    va="center", fontsize=7)
        from matplotlib.patches import Patch

        groups = [g for g in COLORS if any(r["group"] == g for r in rows)]
        ax.legend(handles=[Patch(color=COLORS[g], label=g) for g in groups], fontsize=7,
                  loc="upper right")
        ax.set_xscale("log")
        ax.set_xlabel("ms to start /bin/true and wait (median, bars p10–p90; log scale)")
        ax.set_title(f"Start /bin/true and wait — {title_machine}", fontsize=9)
        ax.set_xlim(right=max(r["stats"]["p90"] for r in rows) / 1e6 * 3)
        fig.tight_layout()
        fig.savefig(outdir / "latency.png", dpi=110)
        plt.close(fig)
        written.append("latency.png")
    rss = res.get("rss")
    if rss:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        xs = [p["rss_mib"] for p in rss["points"]]
        for name in rss["points"][0]["cases"]:
            ax.plot(xs, [p["cases"][name]["median"] / 1e6 for p in rss["points"]], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")  # fork's page-table copy would flatten every other line
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:.0f}" for x in xs])
        ax.set_xlabel("parent resident memory (MiB)")
        ax.set_ylabel("ms (median, log scale)")
        ax.set_title("Spawn latency against parent RSS", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(outdir / "rss.png", dpi=110)
        plt.close(fig)
        written.append("rss.png")
    thr = res.get("threads")
    if thr:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, per in thr["cases"].items():
            ks = [int(k) for k in per]
            ax.plot(ks, [per[str(k)]["median"] for k in ks], marker="o", label=name)
        ax.set_xticks(ks)
        ax.set_xlabel(f"threads spawning at once ({res['machine']['cpus_usable']} CPUs)")
        ax.set_ylabel("spawns per second")
        ax.set_title("Throughput against threads", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(outdir / "threads.png", dpi=110)
        plt.close(fig)
        written.append("threads.png")
    mc = res.get("mounts")
    if mc:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        xs = [p["mounts"] for p in mc["points"]]
        ax.errorbar(xs, [p["spawn"]["median"] / 1e6 for p in mc["points"]],
                    yerr=[[(p["spawn"]["median"] - p["spawn"]["p10"]) / 1e6 for p in mc["points"]],
                          [(p["spawn"]["p90"] - p["spawn"]["median"]) / 1e6 for p in mc["points"]]],
                    marker="o", label="spawn + wait (new mnt namespace)")
        ax.plot(xs, [p["build_and_pack"]["median"] / 1e6 for p in mc["points"]], marker="s",
                label="plan build + pack (Python)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tmpfs mounts in the plan")
        ax.set_ylabel("ms (median)")
        ax.set_title("Latency against mounts", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(outdir / "mounts.png", dpi=110)
        plt.close(fig)
        written.append("mounts.png")
    ph = res.get("phases")
    if ph:
        variants = ph["variants"]
        keys = list(next(iter(variants.values())))
        fig, ax = plt.subplots(figsize=(9, 0.5 * len(variants) + 2.2))
        y = list(range(len(variants)))[::-1]
        left = [0.0] * len(variants)
        cmap = plt.get_cmap("tab20")
        for i, k in enumerate(keys):
            w = [variants[v][k]["median"] / 1e6 for v in variants]
            ax.barh(y, w, left=left, color=cmap(i), label=k)
            left = [a + b for a, b in zip(left, w)]
        ax.set_yticks(y)
        ax.set_yticklabels(list(variants), fontsize=8)
        ax.set_xlabel("ms (median of each phase)")
        ax.set_title("Where a spawn's time goes", fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
        fig.tight_layout()
        fig.savefig(outdir / "phases.png", dpi=110)
        plt.close(fig)
        written.append("phases.png")
    return written


def write(res: dict[str, Any], outdir: Path) -> None:
    """results.json (every sample), the charts, then results.md (which links them)."""
    outdir.mkdir(parents=True, exist_ok=True)
    res["charts"] = charts(res, outdir)
    with open(outdir / "results.json", "w") as f:
        json.dump(res, f, indent=1, default=str)
        f.write("\n")
    (outdir / "results.md").write_text(markdown(res))
    print(f"wrote {outdir}/results.md, results.json, " + ", ".join(res["charts"]), file=sys.stderr)
