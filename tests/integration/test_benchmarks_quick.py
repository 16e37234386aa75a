"""The benchmark suite still works: ``python -m benchmarks.run --quick`` writes a results folder
that parses.  Asserts nothing about speed (timing lives in benchmarks/, not in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import planner_pids, runtime_dirs

from isolate.oci.warm import socket_dir

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.root, pytest.mark.slow]


#: What was on the host before the run and after it: runtime_dirs() and the planners' pids.
LEFT: dict[str, tuple[set[Path], set[int]]] = {}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path[1:]))
    # The session's planners' directory, and the default one (callers that drop the variable).
    dirs = [Path(os.environ["ISOLATE_OCI_PLANNER_DIR"]), Path(socket_dir({}) or "/nonexistent")]

    def planners() -> set[int]:
        return {pid for d in dirs if d.is_dir() for pid in planner_pids(d)}

    LEFT["before"] = (runtime_dirs(), planners())
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--phases", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    LEFT["after"] = (runtime_dirs(), planners())
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_the_run_leaves_no_state_directory_or_planner(results: Path) -> None:
    """runc, crun, isolate and ip netns keep what they make on first use (/run/runc, the owner
    registries, the /run/netns mount ...); isolate-oci's calls start warm planners. The run
    removes what it made and ends what it started."""
    (dirs_before, planners_before), (dirs_after, planners_after) = LEFT["before"], LEFT["after"]
    assert dirs_after <= dirs_before, sorted(dirs_after - dirs_before)
    assert planners_after <= planners_before, sorted(planners_after - planners_before)


def test_json_has_every_sample_and_the_machine(results: Path) -> None:
    data = json.loads((results / "results.json").read_text())
    m = data["machine"]
    assert m["kernel"] == os.uname().release
    assert m["cgroups"]
    rows = {r["name"]: r for r in data["latency"]["rows"]}
    base = rows["subprocess.run"]
    assert base["ratio"] == pytest.approx(1.0)
    assert len(base["wall_ns"]) == base["stats"]["n"] == data["latency"]["rounds"]
    spawned = rows["isolate.spawn pid+mnt+uts+ipc"]
    assert spawned["skipped"] is None
    assert all(isinstance(x, int) and x > 0 for x in spawned["wall_ns"])
    assert spawned["stats"]["p10"] <= spawned["stats"]["median"] <= spawned["stats"]["p90"]
    # A case the host cannot run says why instead of vanishing.
    for r in data["latency"]["rows"]:
        if r["stats"] is None:
            assert r["skipped"], r["name"]


def test_every_section_is_present(results: Path) -> None:
    data = json.loads((results / "results.json").read_text())
    assert [p["mounts"] for p in data["mounts"]["points"]] == list(data["config"]["mounts"])
    assert set(data["threads"]["cases"]["subprocess.run"]) == {str(k) for k in data["config"]["threads"]}
    assert len(data["rss"]["points"]) == len(data["config"]["rss_levels"])
    assert data["rss"]["points"][-1]["rss_mib"] >= data["config"]["rss_levels"][-1] * 0.9
    assert data["phases"]["variants"]["pid+mnt+uts+ipc"]["clone3 (pipes, stack, namespaces)"]["median"] > 0
    assert data["memory"]["embedding"]["spawns"] == data["config"]["spawns_for_growth"]
    assert {t["target"] for t in data["targets"]}
    # Each target's comparison also runs on its own, with the rows it divides.
    runs = data["target_runs"]
    assert set(runs) == {"container", "cgroup", "oci"}
    # isolate and bwrap as an ordinary user (benchmarks/as_user.py): every isolate row timed.
    rootless = {r["name"]: r for r in data["rootless"]["rows"]}
    assert all(rootless[n]["stats"] and len(rootless[n]["wall_ns"]) == data["config"]["rounds"]
               for n in rootless if "bwrap" not in n), rootless
    assert any(t["target"].startswith("rootless isolate.Container") for t in data["targets"])
    assert "bwrap --unshare-all" in {r["name"] for r in runs["container"]["rows"]}
    # A container per ctr run --rm and podman run --rm (benchmarks/engines.py): isolate-oci's and
    # runc's rows timed, crun's timed or skipped with its error (it refuses a hybrid cgroup layout).
    engines = {r["name"]: r for r in data["engines"]["ctr"] + data["engines"]["podman"]}
    for name, row in engines.items():
        assert row["stats"] or ("crun" in name and row["skipped"]), row
    assert len(engines) == 6, sorted(engines)
    assert any(t["target"].startswith("podman run --rm, isolate-oci") for t in data["targets"])
    # Container networking (benchmarks/net.py), in a fake host: each row timed, or skipped with a
    # reason; the hand-made veth path needs no isolate networking, so it is always measured.
    net = data["net"]
    if "skipped" not in net:
        rows = net["start"] + net["throughput"]
        assert all(r["stats"] or r["skipped"] for r in rows), rows
        assert {r["name"]: r for r in rows}["hand-made veth namespace -> upstream (routed)"]["stats"]


def test_markdown_and_charts_are_written(results: Path) -> None:
    md = (results / "results.md").read_text()
    data = json.loads((results / "results.json").read_text())
    assert "| subprocess.run |" in md
    assert data["machine"]["kernel"] in md
    assert {"latency.png", "rss.png", "threads.png", "mounts.png", "phases.png"} <= set(data["charts"])
    for name in data["charts"]:
        assert (results / name).read_bytes().startswith(PNG_MAGIC), name
        assert f"]({name})" in md
