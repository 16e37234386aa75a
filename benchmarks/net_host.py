"""The timing half of the ``net`` section, run inside the fake host (``benchmarks/net.py``).

Started as a script by ``net.py`` under ``nsenter --net=<fake host>`` with
``ISOLATE_NET_DIR`` set, so that podman, iperf3 and isolate all see the fake
host's network and nothing else.  Reads its plan (JSON) from ``argv[1]`` and
prints ``{"start": {...}, "throughput": {...}, "skipped": {...}, "failed":
{...}}`` as JSON: samples in ns (starts) and bits per second (iperf3), per
row name; rows that could not run at all (and why); starts that failed (how
many, the last error), not timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any, Callable

# Row names (net.py imports them: one spelling for the worker, the report and the targets).
PODMAN = "podman run --rm --network bridge (CNI bridge)"
BRIDGED = "Container(net='bridge')"
POOLED = "Container(net='bridge', netns_pool=NetnsPool(network='bridge'))"
PLAIN_POOL = "Container(net='bridge', netns_pool=NetnsPool()): attached at start"
NONE = "Container(net='none')"
START_ROWS = (PODMAN, BRIDGED, POOLED, PLAIN_POOL, NONE)
POOLED_ROWS = (POOLED, PLAIN_POOL)

VETH_OUT = "hand-made veth namespace -> upstream (routed)"
BRIDGE_OUT = "Container(net='bridge') -> upstream (bridge + NAT)"
VETH_IN = "host -> hand-made veth namespace's address"
PUBLISHED_IN = "host -> Container's published port (DNAT)"
THROUGHPUT_ROWS = (VETH_OUT, BRIDGE_OUT, VETH_IN, PUBLISHED_IN)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:300]


def _iperf(argv: list[str], run: Callable[[list[str]], str] | None = None) -> float:
    """bits per second the receiver saw, from ``iperf3 -J`` started by ``argv``."""
    if run is None:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {r.returncode}: {(r.stdout + r.stderr).strip()[-300:]}")
        out = r.stdout
    else:
        out = run(argv)
    doc = json.loads(out)
    if "error" in doc:
        raise RuntimeError(f"iperf3: {doc['error']}")
    return float(doc["end"]["sum_received"]["bits_per_second"])


def main(plan: dict[str, Any]) -> dict[str, Any]:
    """Time the starts, then the throughput, interleaved round by round."""
    skipped: dict[str, str] = {}
    out: dict[str, Any] = {"start": {n: [] for n in START_ROWS},
                           "throughput": {n: [] for n in THROUGHPUT_ROWS}, "skipped": skipped}
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    podman_env = plan["podman_env"]

    def podman() -> None:
        r = subprocess.run(plan["podman_run"], env=podman_env, **quiet)  # type: ignore[call-overload]
        if r.returncode != 0:
            raise RuntimeError(f"podman run exited {r.returncode}: {r.stderr.decode().strip()[-300:]}")

    starts: dict[str, Callable[[], None]] = {PODMAN: podman}
    pools: list[Any] = []
    try:
        import isolate
        from isolate.images import Store

        root = isolate.RootFS.from_image(plan["image"], store=Store(plan["store"]))

        def container(**kw: Any) -> Callable[[], None]:
            def start() -> None:
                with isolate.Container(rootfs=root, **kw) as c:
                    r = c.run(["/bin/true"])
                    if r.returncode != 0:
                        raise RuntimeError(f"/bin/true exited {r.returncode}: {r.stderr!r}")
            return start

        starts[NONE] = container(net="none")
        starts[BRIDGED] = container(net="bridge")
        makers: tuple[tuple[str, Callable[[], Any]], ...] = (
            (POOLED, lambda: isolate.NetnsPool(2, network="bridge")),
            (PLAIN_POOL, lambda: isolate.NetnsPool(2)))
        for name, make in makers:
            try:
                pool = make()
                pools.append(pool)
                starts[name] = container(net="bridge", netns_pool=pool)
            except Exception as e:  # noqa: BLE001 - the row says why it is missing
                skipped[name] = _one_line(e)
    except Exception as e:  # noqa: BLE001
        for n in (BRIDGED, POOLED, PLAIN_POOL, NONE):
            skipped.setdefault(n, _one_line(e))
    # A way that fails once (no networking in this isolate yet) is dropped, with its error.
    for name in list(starts):
        try:
            starts[name]()
        except Exception as e:  # noqa: BLE001
            skipped[name] = _one_line(e)
            del starts[name]

    def refilled() -> None:
        # Untimed: the pool's thread makes (and attaches) the next namespace off the clock,
        # as the latency table does after a pooled case.
        deadline = time.monotonic() + 5
        while any(p.ready < p.size for p in pools) and time.monotonic() < deadline:
            time.sleep(0.002)

    # A start that fails is not timed but counted, with its error: the row says so (a race
    # in the library under test should show, not end the run).
    failed: dict[str, list[str]] = {}
    try:
        for i in range(plan["warmup"] + plan["rounds"]):
            for name, fn in starts.items():
                t0 = time.perf_counter_ns()
                try:
                    fn()
                    dt = time.perf_counter_ns() - t0
                except Exception as e:  # noqa: BLE001
                    failed.setdefault(name, []).append(_one_line(e))
                    dt = None
                if name in POOLED_ROWS:
                    refilled()
                if dt is not None and i >= plan["warmup"]:
                    out["start"][name].append(dt)
    finally:
        for p in pools:
            p.close()

    out["failed"] = {n: {"count": len(errs), "last": errs[-1]} for n, errs in failed.items()}
    throughput(plan, out, skipped)
    return out


def throughput(plan: dict[str, Any], out: dict[str, Any], skipped: dict[str, str]) -> None:
    """iperf3 through each path, interleaved round by round; the servers run already
    (upstream's and the hand-made namespace's), the container's is started here."""
    length = plan["iperf_args"]
    up, host_ip = plan["upstream_ip"], plan["host_ip"]
    enter = ["nsenter", f"--net=/run/netns/{plan['veth_ns']}", "--"]
    ways: dict[str, Callable[[], float]] = {
        VETH_OUT: lambda: _iperf(enter + ["iperf3", "-J", "-c", up, "-p", str(plan["upstream_port"]), *length]),
        VETH_IN: lambda: _iperf(["iperf3", "-J", "-c", plan["veth_ip"], "-p", str(plan["veth_port"]), *length]),
    }
    server = None
    try:
        import isolate

        host = isolate.RootFS.host()

        def bridged_client(argv: list[str]) -> str:
            with isolate.Container(rootfs=host, net="bridge") as c:
                r = c.run(argv, timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"iperf3 in the container exited {r.returncode}: {r.stderr!r}")
            return (r.stdout or b"").decode()

        ways[BRIDGE_OUT] = lambda: _iperf(["iperf3", "-J", "-c", up, "-p", str(plan["upstream_port"]),
                                           *length], bridged_client)
        port = plan["published_port"]
        server = isolate.Container(rootfs=host, net="bridge", publish=[(port, plan["server_port"])])
        server.start(["iperf3", "-s", "-p", str(plan["server_port"])],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ways[PUBLISHED_IN] = lambda: _iperf(["iperf3", "-J", "-c", host_ip, "-p", str(port), *length])
    except Exception as e:  # noqa: BLE001
        for n in (BRIDGE_OUT, PUBLISHED_IN):
            skipped.setdefault(n, _one_line(e))
    try:
        # The first of each also waits for its server to listen (a refused connection: retry).
        for name in list(ways):
            for attempt in range(50):
                try:
                    ways[name]()
                    break
                except Exception as e:  # noqa: BLE001
                    if attempt == 49 or "refused" not in str(e):
                        skipped[name] = _one_line(e)
                        del ways[name]
                        break
                    time.sleep(0.1)
        for _ in range(plan["iperf_rounds"]):
            for name, fn in ways.items():
                out["throughput"][name].append(fn())
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
