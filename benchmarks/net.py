"""The ``net`` section: container networking beside podman's CNI bridge and a hand-made veth pair.

Nothing runs in the machine's network namespace.  The section makes a fake
host (tests/net/fakehost.py: a "host" network namespace with an "upstream"
behind it, 192.0.2.1 and 192.0.2.2) and runs every tool inside that host:
podman, iperf3 and isolate (``ISOLATE_NET_DIR`` in a temporary directory),
through one Python (``benchmarks/net_host.py``) started there with
``nsenter --net``.

The runtime state of both goes to a temporary directory on /dev/shm (a
tmpfs, as /run is on a usual host): isolate's ``ISOLATE_NET_DIR`` (leases,
host changes, the hosts and resolv.conf files) and podman's runroot and
tmpdir; the image stores stay on disk under /tmp.

podman (4.3, CNI backend) runs with a store, configuration and network
directory of its own (tests/images/tools.py's ``PrivatePodman``), on a
network of its own made with ``podman network create`` in that directory
(``isolatebench-<pid>``, 10.231.7.0/24, its bridge and iptables rules in the
fake host) and made the default network, so ``--network bridge`` is it.
Its runtime is runc (crun 1.8 refuses a hybrid-cgroup host) and the
container's nofile/nproc limits are lowered in containers.conf (the machine
has no CAP_SYS_RESOURCE to raise them to podman's defaults).  CNI's
host-local IPAM keeps its leases in /var/lib/cni/networks/<network>: that
directory is removed at the end (and /var/lib/cni if the run made it).

The image is static busybox (tests/images/build.py), written as an OCI
layout, loaded into podman (``podman load`` of its tar) and into isolate's
store (``isolate.images.load``).

**Start** (ms, the five interleaved round by round after warm-up rounds;
ratio = median / podman's), each from the call to the container's exit:

- ``podman run --rm --network bridge IMAGE /bin/true`` (the CLI: the Go
  binary's start-up, CNI's bridge, host-local, firewall and portmap plugins,
  conmon, runc, the teardown ``--rm`` does);
- ``Container(net="bridge", rootfs=RootFS.from_image(IMAGE))`` made and
  ``.run(["/bin/true"])`` (a network namespace made, attached to isolate's
  default network: veth, address, routes, its /etc/hosts and resolv.conf;
  detached at exit); the ``RootFS`` is built once, outside the clock;
- the same with ``netns_pool=NetnsPool(2, network="bridge")``: the namespace
  taken ready from the pool, its address leased and eth0 configured already;
  the close leaves the undoing to the pool's thread.  After each such start
  an untimed wait until the pool has refilled (its thread disposes of what
  came back first), so its thread never runs on another row's clock (the
  row is the pool's best case: starts some milliseconds apart);
- the same with a plain ``NetnsPool(2)``: the namespace pooled, attached
  to the network at start (and the same untimed wait);
- the same with ``net="none"`` (a namespace with only lo): target 2 is the
  pooled row minus this one (the plain pool's row where this isolate has
  no ``NetnsPool(network=)``).

**Throughput** (Gbit/s the receiver saw, ``iperf3 -J``; one TCP stream,
client and server pinned each to a CPU of its own (``-A``) where there are
two; the four paths interleaved round by round after one untimed run each;
ratio = median / the hand-made path's):

- a hand-made namespace (``ip netns add``, a veth pair to the fake host,
  10.231.8.2/24 inside, a default route via the host's end, forwarding on in
  the fake host and a route back in upstream: no isolate, no NAT) -> the
  iperf3 server in upstream;
- ``Container(net="bridge", rootfs=RootFS.host())`` running the iperf3 client
  -> the same server (bridge, routing and masquerade of the fake host);
- the fake host -> an iperf3 server in the hand-made namespace, at its address;
- the fake host -> an iperf3 server in a ``Container(net="bridge",
  publish=[(15201, 5201)])``, at the host's own address 192.0.2.1:15201 (DNAT
  of locally made traffic).

Skipped, with the reason, when not root or a tool is missing; an isolate row
whose first start fails (networking not in this isolate yet) is skipped with
its error while the baselines still run.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import cases as C
from . import net_host as H
from .images import _tests_on_path
from .stats import summary

TOOLS = ("podman", "runc", "iperf3", "nsenter", "ip")
IMAGE = "localhost/isolatebench-net:latest"
PODMAN_SUBNET = "10.231.7.0/24"
VETH_HOST, VETH_NS = "10.231.8.1", "10.231.8.2"
UPSTREAM_PORT, VETH_PORT, SERVER_PORT, PUBLISHED_PORT = 5201, 5202, 5201, 15201
CNI_STATE = Path("/var/lib/cni")


def _net_tests_on_path() -> None:
    _tests_on_path()
    here = Path(__file__).resolve().parents[1] / "tests" / "net"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _podman_class() -> Any:
    from tools import PrivatePodman, private_cache, run_tool

    class HostPodman(PrivatePodman):  # type: ignore[misc]
        """``PrivatePodman`` in the fake host's network namespace, with runc and the
        machine's rlimits (see the module's docstring)."""

        def __init__(self, root: Path, netns: str, run: Path) -> None:
            super().__init__(root)
            self.netns = netns
            # Its runtime state (runroot, libpod's tmp_dir) on ``run``, as in /run by default.
            self.run = run
            for name in ("run", "libpod-tmp"):
                (run / name).mkdir(parents=True)
            storage = Path(self.env["CONTAINERS_STORAGE_CONF"])
            storage.write_text(storage.read_text().replace(str(root / "run"), str(run / "run")))
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            conf = Path(self.env["CONTAINERS_CONF"])
            conf.write_text(conf.read_text().replace(str(root / "libpod-tmp"), str(run / "libpod-tmp"))
                            .replace("[engine]\n", '[engine]\nruntime = "runc"\n')
                            + f'[containers]\ndefault_ulimits = ["nofile={min(nofile, 1024)}:'
                            f'{min(nofile, 1024)}", "nproc=4096:4096"]\n')

        def use_network(self, name: str) -> None:
            """Make ``name`` the default network (``--network bridge``): after it exists,
            since podman treats the default network's name as taken."""
            conf = Path(self.env["CONTAINERS_CONF"])
            conf.write_text(conf.read_text().replace("[network]\n", f'[network]\ndefault_network = "{name}"\n'))

        def argv(self, *args: str) -> list[str]:
            """The podman command line for ``args`` on this store."""
            return [self.exe, "--root", str(self.root / "storage"), "--runroot", str(self.run / "run"),
                    "--storage-driver", self.driver, "--events-backend", "none",
                    "--tmpdir", str(self.run / "libpod-tmp"), "--volumepath", str(self.root / "volumes"),
                    "--network-config-dir", str(self.root / "networks"), *args]

        def __call__(self, *args: str) -> str:
            wrap = private_cache if args[:1] in (("pull",), ("push",), ("save",), ("load",)) else list
            return str(run_tool(wrap(["nsenter", f"--net=/run/netns/{self.netns}", "--", *self.argv(*args)]),
                                self.env))

    return HostPodman


def _rows(samples: dict[str, list[float]], base: str | None, skipped: dict[str, str],
          group: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, xs in samples.items():
        rows.append({"name": name, "group": group, "note": "", "samples": xs,
                     "skipped": skipped.get(name, "no samples") if not xs else None,
                     "stats": summary(xs) if xs else None})
    ref = next((r["stats"]["median"] for r in rows if r["name"] == base and r["stats"]), None)
    for r in rows:
        r["ratio"] = r["stats"]["median"] / ref if ref and r["stats"] else None
    return rows


def _pair_ratio(rows: list[dict[str, Any]], a: str, b: str) -> float | None:
    ra = next((r for r in rows if r["name"] == a and r["stats"]), None)
    rb = next((r for r in rows if r["name"] == b and r["stats"]), None)
    return ra["stats"]["median"] / rb["stats"]["median"] if ra and rb else None


def net(rounds: int, warmup: int, iperf_rounds: int, iperf_args: list[str],
        log: Callable[[str], None]) -> dict[str, Any]:
    """The section's result: ``start`` rows (ns; ratios to podman run) and ``throughput``
    rows (bits per second; each path's ratio to its hand-made counterpart)."""
    missing = [t for t in TOOLS if shutil.which(t) is None and shutil.which(t, path="/usr/sbin:/sbin") is None]
    if os.geteuid() != 0 or missing:
        return {"skipped": "needs root" if os.geteuid() != 0 else f"missing: {', '.join(missing)}"}
    _net_tests_on_path()
    import build as B
    from fakehost import HOST_IP, UPSTREAM_IP, FakeHost

    import isolate.images

    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="isolate-bench-net-"))
    # Runtime state (isolate's ISOLATE_NET_DIR, podman's runroot) on a tmpfs, as /run is on
    # a usual host (this one may have /run on disk: each state write would then pay for it).
    shm = Path("/dev/shm")
    run_dir = Path(tempfile.mkdtemp(prefix="isolate-bench-net-", dir=shm if shm.is_dir() else None))
    network = f"isolatebench-{os.getpid()}"
    cni_existed = CNI_STATE.exists()
    fh = podman = None
    veth_ns = f"isolate-bench-{os.getpid()}-veth"
    veth_made = False
    # podman's containers and conmon go below a cgroup parent of the run's own, made by podman
    # and removed here (its default, libpod_parent, would stay on the host).
    cgroup_parent = f"isolate-bench-podman-{os.getpid()}"
    try:
        fh = FakeHost(run_dir / "isolate-net")
        log(f"  fake host {fh.host}; image, podman store and network {network}")
        layout = work / "layout"
        B.write_layout(layout, IMAGE, [B.busybox_entries()], Cmd=["/bin/sh"])
        archive = work / "image.tar"
        subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
        isolate.images.load(layout, store=isolate.images.Store(work / "store"))
        (work / "podman").mkdir()
        podman = _podman_class()(work / "podman", fh.host, run_dir / "podman")
        podman("load", "-q", "-i", str(archive))
        podman("network", "create", "--subnet", PODMAN_SUBNET, network)
        podman.use_network(network)
        if not (work / "podman" / "networks" / f"{network}.conflist").exists():
            raise RuntimeError(f"podman wrote no {network}.conflist in its private network directory")

        # The hand-made path: a namespace, a veth pair to the fake host, a route each way.
        _ip("netns", "add", veth_ns)
        veth_made = True
        _ip("-n", veth_ns, "link", "set", "lo", "up")
        _ip("-n", fh.host, "link", "add", "vbench0", "type", "veth", "peer", "name", "eth0",
            "netns", veth_ns)
        _ip("-n", fh.host, "addr", "add", f"{VETH_HOST}/24", "dev", "vbench0")
        _ip("-n", veth_ns, "addr", "add", f"{VETH_NS}/24", "dev", "eth0")
        _ip("-n", fh.host, "link", "set", "vbench0", "up")
        _ip("-n", veth_ns, "link", "set", "eth0", "up")
        _ip("-n", veth_ns, "route", "add", "default", "via", VETH_HOST)
        _ip("-n", fh.upstream, "route", "add", VETH_NS, "via", HOST_IP)
        r = fh.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], env=dict(os.environ))
        if r.returncode != 0:
            raise RuntimeError(f"sysctl in the fake host: {r.stderr.strip()}")
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fh.popen(["iperf3", "-s", "-p", str(UPSTREAM_PORT)], upstream=True, **quiet)
        fh.popen(["nsenter", f"--net=/run/netns/{veth_ns}", "--", "iperf3", "-s", "-p", str(VETH_PORT)],
                 **quiet)

        # Client and server each on a CPU of its own (iperf3 -A client,server), on every path:
        # a single stream is CPU-bound, and where the scheduler puts them moves it by a tenth.
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            iperf_args = [*iperf_args, "-A", f"{cpus[0]},{cpus[1]}"]
        plan = {"rounds": rounds, "warmup": warmup, "iperf_rounds": iperf_rounds,
                "iperf_args": iperf_args, "image": IMAGE, "store": str(work / "store"),
                "podman_run": podman.argv("run", "--rm", "--cgroup-parent", f"/{cgroup_parent}",
                                          "--network", "bridge", IMAGE, "/bin/true"),
                "podman_env": podman.env, "upstream_ip": UPSTREAM_IP, "host_ip": HOST_IP,
                "upstream_port": UPSTREAM_PORT, "veth_ns": veth_ns, "veth_ip": VETH_NS,
                "veth_port": VETH_PORT, "server_port": SERVER_PORT, "published_port": PUBLISHED_PORT}
        log(f"  start: {len(H.START_ROWS)} ways x {rounds} rounds (+{warmup} warm-up); "
            f"iperf3: {len(H.THROUGHPUT_ROWS)} paths x {iperf_rounds} rounds ({' '.join(iperf_args)})")
        r = fh.run([sys.executable, str(Path(H.__file__).resolve()), json.dumps(plan)], timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"net_host.py exited {r.returncode}: {r.stderr.strip()[-1500:]}")
        got = json.loads(r.stdout)
        skipped = got["skipped"]
        for name, why in skipped.items():
            log(f"  skipped {name}: {why}")
        start = _rows(got["start"], H.PODMAN, skipped, "start")
        for row in start:
            f = got["failed"].get(row["name"])
            if f:
                row["note"] = f"{f['count']} start(s) failed, not timed; last: {f['last']}"
                log(f"  {row['name']}: {row['note']}")
        tput = _rows(got["throughput"], None, skipped, "throughput")
        for a, b in ((H.BRIDGE_OUT, H.VETH_OUT), (H.PUBLISHED_IN, H.VETH_IN), (H.VETH_OUT, H.VETH_OUT),
                     (H.VETH_IN, H.VETH_IN)):
            for row in tput:
                if row["name"] == a:
                    row["ratio"] = _pair_ratio(tput, a, b)
        return {"rounds": rounds, "warmup": warmup, "iperf_rounds": iperf_rounds,
                "iperf_args": iperf_args, "start": start, "throughput": tput,
                "podman": podman("version", "--format", "{{.Client.Version}}").strip(),
                "seconds": time.monotonic() - t0}
    finally:
        if podman is not None:
            try:
                podman.close()
            except Exception as e:  # noqa: BLE001 - the rest of the cleanup still runs
                log(f"  podman cleanup: {e}")
        if fh is not None:
            fh.close()      # kills the iperf3 servers (by pid), deletes both namespaces
        C.remove_cgroups(f"/{cgroup_parent}")
        if veth_made:
            subprocess.run(["ip", "netns", "del", veth_ns], capture_output=True)
        shutil.rmtree(CNI_STATE / "networks" / network, ignore_errors=True)
        if not cni_existed:
            for d in (CNI_STATE / "networks", CNI_STATE / "results", CNI_STATE):
                try:
                    d.rmdir()
                except OSError:
                    pass
        subprocess.run(["rm", "-rf", "--one-file-system", str(work), str(run_dir)], check=False)
