"""Containers on networks (``Container(net="bridge" | NAME, publish=..., dns=...)``), as a user
of isolate sees them: real traffic between containers, the fake host and its upstream.

Each test runs its isolate code inside a fake host (``fakehost.FakeHost``: a host network
namespace with an upstream behind it), so nothing here touches the machine's network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakehost import HOST_IP, UPSTREAM_IP, FakeHost

pytestmark = pytest.mark.root

BUSYBOX = "/bin/busybox"


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def _upstream_server(h: FakeHost, tmp: Path, port: int = 8000) -> None:
    """An HTTP server in the upstream namespace, logging each client's address."""
    www = tmp / "www"
    www.mkdir()
    (www / "index.html").write_text("upstream says hi\n")
    h.popen([BUSYBOX, "httpd", "-f", "-vv", "-p", f"{UPSTREAM_IP}:{port}", "-h", str(www)],
            upstream=True, stdout=subprocess.DEVNULL, stderr=open(tmp / "httpd.log", "wb"))
    for _ in range(100):
        probe = f"import socket; socket.create_connection(('{UPSTREAM_IP}', {port}), 1).close()"
        if h.upstream_run([sys.executable, "-c", probe]).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("the upstream server did not start")


def test_a_bridged_container_reaches_upstream_through_nat(fakehost: FakeHost, tmp_path: Path) -> None:
    _upstream_server(fakehost, tmp_path)
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate
        with isolate.Container(net="bridge") as c:
            r = c.run(["{BUSYBOX}", "sh", "-c",
                       "{BUSYBOX} wget -qO- http://{UPSTREAM_IP}:8000/ && {BUSYBOX} ip -o -4 addr show eth0"
                       " && {BUSYBOX} ip route"], timeout=30)
        print(r.returncode, r.stdout.decode(), r.stderr.decode())
        """)))
    assert out.startswith("0 upstream says hi\n"), out
    assert " eth0    inet 10.88." in out and "default via 10.88.0.1 dev eth0" in out, out
    # The server saw the fake host's address: the container's was masqueraded.
    log = (tmp_path / "httpd.log").read_text()
    assert HOST_IP in log and "10.88." not in log, log


def test_a_published_port_is_reachable_from_outside_from_the_host_and_by_hairpin(
        fakehost: FakeHost, tmp_path: Path) -> None:
    www = tmp_path / "site"
    www.mkdir()
    (www / "index.html").write_text("container says hi\n")
    code = textwrap.dedent(f"""
        import isolate, subprocess, sys, time
        root = isolate.RootFS.host().bind("{www}", "/site", readonly=True)
        with isolate.Container(net="bridge", rootfs=root, publish=["8080:80"]) as c:
            c.start(["{BUSYBOX}", "httpd", "-f", "-p", "80", "-h", "/site"])
            time.sleep(0.3)
            print("ready", flush=True)
            sys.stdin.readline()
            with isolate.Container(net="bridge") as other:
                r = other.run(["{BUSYBOX}", "wget", "-qO-", "http://{HOST_IP}:8080/"], timeout=30)
                print("hairpin", r.returncode, r.stdout.decode().strip(), flush=True)
            for addr in ("{HOST_IP}", "127.0.0.1"):
                r = subprocess.run(["{BUSYBOX}", "wget", "-qO-", f"http://{{addr}}:8080/"],
                                   capture_output=True, text=True, timeout=30)
                print("host", addr, r.returncode, r.stdout.strip(), flush=True)
        """)
    p = fakehost.popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline() == "ready\n", p.stderr.read() if p.stderr else ""
    outside = fakehost.upstream_run([BUSYBOX, "wget", "-qO-", f"http://{HOST_IP}:8080/"])
    p.stdin.write("\n")
    p.stdin.flush()
    rest, err = p.communicate(timeout=60)
    assert outside.returncode == 0 and outside.stdout == "container says hi\n", outside
    assert rest.splitlines() == ["hairpin 0 container says hi",
                                 f"host {HOST_IP} 0 container says hi",
                                 "host 127.0.0.1 0 container says hi"], (rest, err)


def test_containers_of_a_network_reach_each_other_by_name(fakehost: FakeHost) -> None:
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate, isolate.net, time
        isolate.net.create_network("team")
        with isolate.Container(net="team", name="web") as web:
            web.start(["{BUSYBOX}", "sh", "-c", "echo web says hi > /tmp/index.html; "
                       "exec {BUSYBOX} httpd -f -p 80 -h /tmp"])
            time.sleep(0.3)
            with isolate.Container(net="team", name="client") as c:
                r = c.run(["{BUSYBOX}", "sh", "-c",
                           "{BUSYBOX} wget -qO- http://web/ && grep -c client /etc/hosts"], timeout=30)
                print(r.returncode, r.stdout.decode().split(), r.stderr.decode())
                # The first container's /etc/hosts learns of the second while it runs ...
                c.start(["{BUSYBOX}", "sleep", "30"])
                print(web.exec(["{BUSYBOX}", "grep", "-c", "client", "/etc/hosts"]).stdout.decode().strip())
            # ... and forgets it once it is gone.
            print(web.exec(["{BUSYBOX}", "grep", "-c", "client", "/etc/hosts"]).stdout.decode().strip())
        isolate.net.remove_network("team")
        """)))
    lines = out.splitlines()
    assert lines[0].startswith("0 ['web', 'says', 'hi', '1']") and lines[1:] == ["1", "0"], out


def test_resolv_conf_holds_the_given_resolvers(fakehost: FakeHost) -> None:
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate
        with isolate.Container(net="bridge", dns=["192.0.2.53", "192.0.2.54"]) as c:
            r = c.run(["{BUSYBOX}", "cat", "/etc/resolv.conf"])
        print(r.stdout.decode())
        """)))
    assert [line for line in out.splitlines() if line.startswith("nameserver")] == [
        "nameserver 192.0.2.53", "nameserver 192.0.2.54"], out


@pytest.mark.parametrize("made_for", [None, "bridge"], ids=["plain-pool", "network-pool"])
def test_a_pooled_namespace_gets_the_network_when_taken(fakehost: FakeHost, tmp_path: Path,
                                                        made_for: str | None) -> None:
    """A plain pool's namespace gets its veth pair when taken; a pool made for the network
    has the pair ready (its host end in the bridge), and the start gives it the address."""
    _upstream_server(fakehost, tmp_path)
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate
        with isolate.NetnsPool(size=2, network={made_for!r}) as pool:
            for i in range(3):
                with isolate.Container(net="bridge", netns_pool=pool) as c:
                    r = c.run(["{BUSYBOX}", "wget", "-qO-", "http://{UPSTREAM_IP}:8000/"], timeout=30)
                print(r.returncode, r.stdout.decode().strip())
            try:
                isolate.Container(net="other", netns_pool=pool)
            except isolate.ConfigError as e:
                print(e if pool.network else "refused")
            else:
                print("taken")
        """)))
    last = ("netns_pool: the pool's namespaces are made for network 'bridge', not 'other'"
            if made_for else "taken")
    assert out.splitlines() == ["0 upstream says hi"] * 3 + [last], out


def test_a_killed_caller_s_network_is_reclaimed_by_gc(fakehost: FakeHost) -> None:
    """kill -9 of the program embedding isolate, its container on a network with a published
    port: ``isolate gc`` then removes its veth, lease and rules, and frees the port."""
    before = fakehost.ip("-o", "link")
    code = textwrap.dedent(f"""
        import isolate, sys
        c = isolate.Container(net="bridge", publish=["8081:80"])
        c.start(["{BUSYBOX}", "sleep", "600"])
        print("started", flush=True)
        sys.stdin.readline()
        """)
    p = fakehost.popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline() == "started\n", p.stderr.read() if p.stderr else ""
    assert "veth" in fakehost.ip("-o", "link")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    # Its container died with it (die_with_parent); what it had on the host stays until gc.
    assert "8081" in fakehost.run(["nft", "list", "ruleset"]).stdout
    _ok(fakehost.run([sys.executable, "-m", "isolate", "gc"]))
    assert "veth" not in fakehost.ip("-o", "link")
    assert "8081" not in fakehost.run(["nft", "list", "ruleset"]).stdout
    # The port is free again: a new container publishes it.
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate
        with isolate.Container(net="bridge", publish=["8081:80"]) as c:
            print(c.run(["{BUSYBOX}", "true"]).returncode)
        """)))
    assert out == "0\n"
    assert fakehost.ip("-o", "link").count("veth") == before.count("veth")


def test_a_container_that_outlives_its_caller_owns_its_network(fakehost: FakeHost) -> None:
    """``die_with_parent=False`` and ``detach()``: the container's first process owns its
    address and veth; ``isolate gc`` leaves them while it runs, and takes them once it is gone."""
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate, os
        c = isolate.Container(net="bridge", die_with_parent=False)
        null = os.open(os.devnull, os.O_RDWR)   # (not the pipe this output goes to)
        c.start(["{BUSYBOX}", "sleep", "600"], stdin=null, stdout=null, stderr=null)
        print(c.pid)
        c.detach()
        """)))
    pid = int(out)
    leases = fakehost.state / "run" / "leases" / "isolate"
    try:
        _ok(fakehost.run([sys.executable, "-m", "isolate", "gc"]))
        assert len(list(leases.glob("*"))) == 1 and "veth" in fakehost.ip("-o", "link")
    finally:
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):                 # reaped by whoever adopted it
        if not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.05)
    gc = _ok(fakehost.run([sys.executable, "-m", "isolate", "gc"]))
    assert "net-lease" in gc and list(leases.glob("*")) == [], gc


def _leases(h: FakeHost, network: str = "isolate") -> dict[str, dict[str, object]]:
    top = h.state / "run" / "leases" / network
    return {p.name: json.loads(p.read_text()) for p in top.glob("[0-9]*")} if top.is_dir() else {}


def test_a_network_pool_leases_ahead_for_its_own_process(fakehost: FakeHost) -> None:
    """A ``NetnsPool(network=)`` holds an address per ready namespace, owned by its process:
    never handed to another container, and reclaimed by ``isolate gc`` after a kill -9."""
    before = fakehost.ip("-o", "link")
    code = textwrap.dedent("""
        import isolate, os, sys, time
        pool = isolate.NetnsPool(size=2, network="bridge")
        while pool.ready < 2:
            time.sleep(0.01)
        print(os.getpid(), flush=True)
        sys.stdin.readline()
        """)
    p = fakehost.popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip().isdigit(), p.stderr.read() if p.stderr else ""
    pooled = _leases(fakehost)
    assert len(pooled) == 2 and all(le["pooled"] and le["pid"] == int(line) for le in pooled.values())
    # Another process's container gets an address of its own, and names none of them.
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate
        with isolate.Container(net="bridge", name="other") as c:
            r = c.run(["{BUSYBOX}", "sh", "-c", "{BUSYBOX} ip -4 -o addr show eth0; cat /etc/hosts"])
        print(r.stdout.decode())
        """)))
    addr = out.split(" inet ")[1].split("/")[0]
    assert addr not in pooled and "pooled" not in out, out
    _ok(fakehost.run([sys.executable, "-m", "isolate", "gc"]))
    assert _leases(fakehost).keys() == pooled.keys()          # its owner runs: kept
    r = fakehost.run([sys.executable, "-m", "isolate", "network", "rm", "isolate"])
    assert r.returncode == 1 and f"in use by a NetnsPool of process {int(line)}" in r.stderr, r
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    gc = _ok(fakehost.run([sys.executable, "-m", "isolate", "gc"]))
    assert _leases(fakehost) == {} and gc.count("net-lease") == 2, gc
    for _ in range(100):                 # (the kernel takes the pairs along with the namespaces)
        if fakehost.ip("-o", "link").count("veth") == before.count("veth"):
            break
        time.sleep(0.05)
    assert fakehost.ip("-o", "link").count("veth") == before.count("veth")


def test_containers_from_a_network_pool_answer_by_name_at_once(fakehost: FakeHost) -> None:
    """A pooled start is on the network by name when it returns (both ways), its address is
    the one its pool leased for it, and its name is free again as soon as it is closed."""
    out = _ok(fakehost.python(textwrap.dedent(f"""
        import isolate, json, os
        top = os.environ["ISOLATE_NET_DIR"] + "/run/leases/isolate"
        def pooled():
            out = []
            for a in os.listdir(top):
                try:
                    if json.load(open(os.path.join(top, a))).get("pooled"):
                        out.append(a)
                except FileNotFoundError:
                    pass        # a lease the pool's thread gave back meanwhile
            return sorted(out)
        with isolate.NetnsPool(size=2, network="bridge") as pool:
            with isolate.Container(net="bridge", netns_pool=pool, name="alpha") as a:
                a.start(["{BUSYBOX}", "sh", "-c", "echo alpha says hi > /tmp/index.html; "
                         "exec {BUSYBOX} httpd -f -p 80 -h /tmp"])
                a.exec(["{BUSYBOX}", "sh", "-c", "for i in $(seq 50); do "
                        "{BUSYBOX} wget -qO- http://127.0.0.1/ && exit; sleep 0.1; done"])
                for i in range(2):
                    ready = pooled()
                    with isolate.Container(net="bridge", netns_pool=pool, name="beta") as b:
                        b.start(["{BUSYBOX}", "sleep", "30"])
                        print(a.exec(["{BUSYBOX}", "grep", "-c", "beta", "/etc/hosts"]).stdout.decode().strip(),
                              b.exec(["{BUSYBOX}", "wget", "-qO-", "http://alpha/"]).stdout.decode().strip(),
                              b.exec(["{BUSYBOX}", "ip", "-4", "-o", "addr", "show", "eth0"]
                                     ).stdout.decode().split()[3].split("/")[0] in ready)
        print(os.listdir(top) if os.path.isdir(top) else [])
        """)))
    assert out.splitlines() == ["1 alpha says hi True"] * 2 + ["[]"], out
