"""Bridged networks as root, in fake hosts: NAT, published ports, names, bad input, crashes, undo.

Each test runs isolate inside a fake host (``fakehost``), in one Python
process there (``run``): the containers are network namespaces that process
makes, servers and clients are threads that entered them (see ``netcheck``),
and busybox runs in them where a real program is the point.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from fakehost import HOST_IP, UPSTREAM_IP, FakeHost

HERE = os.path.dirname(os.path.abspath(__file__))
PRELUDE = f"""\
import os, sys, json, signal, subprocess, time
sys.path.insert(0, {HERE!r})
from netcheck import *
from isolate.net import attach, create_network, get_network, list_networks, remove_network
from isolate.errors import ConfigError, NetworkError
"""


def run(h: FakeHost, code: str, timeout: float = 60) -> str:
    """``code`` (after ``PRELUDE``) run by Python in the fake host; its stdout.  Fails the test
    with its stderr when it fails."""
    r = h.python(PRELUDE + textwrap.dedent(code), timeout=timeout,
                 env=h.env({"UPSTREAM": h.upstream}))
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def test_nat_published_ports_hairpin_and_names(fakehost: FakeHost) -> None:
    out = run(fakehost, f"""
    before = sysctls()
    up = upstream()
    serve(up, 9000, tag="up:")
    a_ns, b_ns = container(), container()
    a = attach("bridge", a_ns, name="web", hostname="www",
               publish=["8080:80", "5353:53/udp", "127.0.0.1:8081:81"])
    b = attach("bridge", b_ns, name="db")
    for port, proto in ((80, "tcp"), (53, "udp"), (81, "tcp")):
        serve(a_ns, port, proto, tag=f"web{{port}}:")

    # outbound, masqueraded: the upstream server sees the host's address
    assert ask(a_ns, "{UPSTREAM_IP}", 9000) == "up:{HOST_IP}"
    r = run_in(a_ns, "busybox", "ping", "-c1", "-W2", "{UPSTREAM_IP}")
    assert r.returncode == 0, r.stdout + r.stderr
    # published: from upstream (its own source address kept), from the host on its address
    # and on loopback, from another container of the network through the host (hairpin)
    assert ask(up, "{HOST_IP}", 8080) == "web80:{UPSTREAM_IP}"
    assert ask(None, "{HOST_IP}", 8080).startswith("web80:")
    assert ask(None, "127.0.0.1", 8080).startswith("web80:")
    assert ask(b_ns, "{HOST_IP}", 8080) == "web80:10.88.0.1"
    assert ask(a_ns, "{HOST_IP}", 8080) == "web80:10.88.0.1"      # itself, the same way
    assert ask(up, "{HOST_IP}", 5353, "udp") == "web53:{UPSTREAM_IP}"
    # host_ip honoured: 127.0.0.1 only
    assert ask(None, "127.0.0.1", 8081).startswith("web81:")
    assert reachable(up, "{HOST_IP}", 8081) is None
    # no global forwarding: per-interface is enough
    assert sysctls()["ip_forward"] == "0"

    # names: every member in every member's hosts file, rewritten in place
    assert a.address.ip.exploded == "10.88.0.2" and b.address.ip.exploded == "10.88.0.3"
    ino = os.stat(b.hosts_path).st_ino
    c = attach("bridge", container(), name="cache")
    text = open(b.hosts_path).read()
    assert "10.88.0.2\\twww web\\n" in text and "10.88.0.4\\tcache\\n" in text, text
    assert text.splitlines()[2] == "10.88.0.3\\tdb"
    assert os.stat(b.hosts_path).st_ino == ino
    c.close()
    assert "cache" not in open(b.hosts_path).read() and os.stat(b.hosts_path).st_ino == ino
    assert not os.path.exists(c.hosts_path)
    # db reaches web by its names, through its hosts file bound on /etc/hosts as a
    # container's is
    for who in ("www", "web"):
        r = run_in(b_ns, "unshare", "-m", "sh", "-c", f"mount --bind {{b.hosts_path}} /etc/hosts"
                   f" && busybox ping -c1 -W2 {{who}}")
        assert r.returncode == 0 and "10.88.0.2" in r.stdout, r.stdout + r.stderr

    a.close(); a.close()
    assert reachable(up, "{HOST_IP}", 8080) is None
    assert "dnat to" not in ruleset()
    b.close()
    remove_network("isolate")
    assert sysctls() == before, (before, sysctls())
    print("ok")
    """)
    assert out.strip() == "ok"
    names = [line.split(": ")[1].split("@")[0] for line in fakehost.ip("-o", "link").splitlines()]
    assert sorted(names) == ["lo", "up0"]
    r = fakehost.run(["nft", "list", "tables"])
    assert r.stdout == ""


def test_resolv_conf(fakehost: FakeHost) -> None:
    run(fakehost, """
    create_network("withdns", "10.89.7.0/24", dns=["192.0.2.53"])
    a = attach("withdns", container(), name="a")
    assert open(a.resolv_path).read() == "nameserver 192.0.2.53\\n"
    b = attach("withdns", container(), name="b", dns=["198.51.100.1", "2001:db8::1"])
    assert open(b.resolv_path).read() == "nameserver 198.51.100.1\\nnameserver 2001:db8::1\\n"
    create_network("plain", "10.89.8.0/24")
    c = attach("plain", container(), name="c")
    host = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")]
    usable = [s for s in host if not s.startswith("127.") and ":" not in s]
    if usable:
        got = [l.split()[1] for l in open(c.resolv_path) if l.startswith("nameserver")]
        assert got == usable, (got, usable)
    for x in (a, b, c):
        x.close()
    assert not os.path.exists(a.resolv_path)
    """)


BAD_CREATE = [
    ("create_network('n1', '10.89.300.0/24')", "ConfigError", "subnet '10.89.300.0/24'"),
    ("create_network('n1', '10.89.5.1/24')", "ConfigError", "host bits set"),
    ("create_network('n1', '10.89.5.0/24', '10.89.6.1')", "ConfigError", "gateway 10.89.6.1"),
    ("create_network('n1', '10.89.5.0/24', '10.89.5.0')", "ConfigError", "gateway 10.89.5.0"),
    ("create_network('n1', '10.89.0.0/16')", "NetworkError", "overlaps network"),
    ("create_network('n1', '192.0.2.128/25')", "NetworkError", "address 192.0.2.1/24 of up0"),
    ("create_network('n1', '198.51.100.0/24')", "NetworkError", "route 198.51.100.0/24"),
    ("create_network('n1', '127.1.0.0/16')", "ConfigError", "loopback"),
    ("create_network('taken', '10.90.0.0/24')", "NetworkError", "'taken' exists already"),
    ("create_network('a/b')", "ConfigError", "network name"),
    ("create_network('host')", "ConfigError", "reserved"),
    ("create_network('n1', dns=['8.8.8.x'])", "ConfigError", "dns: '8.8.8.x'"),
    ("remove_network('nope')", "NetworkError", "no network named 'nope'"),
    ("remove_network('taken')", "NetworkError", "'taken' is in use by web"),
    ("attach('nope', container(), name='x')", "NetworkError", "no network named 'nope'"),
    ("attach('taken', container(), name='web')", "NetworkError", "container named 'web'"),
    ("attach('taken', container(), name='bad name')", "ConfigError", "container name"),
    ("attach('taken', container(), name='x', publish=['8080:80'])", "NetworkError",
     "8080/tcp is published already, by web"),
    ("attach('other', container(), name='x', publish=['8080:80'])", "NetworkError",
     "8080/tcp is published already, by web"),
    ("attach('taken', container(), name='x', publish=['2222:22'])", "NetworkError",
     "2222/tcp is in use on the host"),
    ("attach('taken', container(), name='x', publish=['70000:1'])", "ConfigError",
     "host port must be 1 to 65535"),
    ("attach('taken', os.open('/', os.O_RDONLY), name='x')", "ConfigError",
     "is not a network namespace"),
    ("attach('taken', os.open('/proc/self/ns/net', os.O_RDONLY), name='x')", "ConfigError",
     "the caller's own network namespace"),
    ("web.hand_over(2**22 + 1)", "NetworkError", "does not exist"),
    ("attach('taken', has_eth0, name='x', publish=['8081:80'])", "NetworkError",
     "making veth"),
]


def test_bad_input_is_one_line_and_leaves_nothing(fakehost: FakeHost) -> None:
    fakehost.ip("route", "add", "198.51.100.0/24", "via", UPSTREAM_IP)
    cases = repr(BAD_CREATE)
    out = run(fakehost, f"""
    import socket
    create_network("taken", "10.89.0.0/24")
    create_network("other", "10.89.1.0/24")
    web = attach("taken", container(), name="web", publish=["8080:80"])
    busy = socket.socket(); busy.bind(("0.0.0.0", 2222)); busy.listen()
    has_eth0 = container()                # a namespace that has an eth0 already
    assert run_in(has_eth0, "ip", "link", "add", "eth0", "type", "bridge").returncode == 0
    for call, cls, text in {cases}:
        before = snapshot()
        try:
            eval(call)
        except (ConfigError, NetworkError) as e:
            assert type(e).__name__ == cls, (call, e)
            assert text in str(e) and "\\n" not in str(e), (call, str(e))
            print(e)
        else:
            raise AssertionError(f"{{call}}: no error")
        assert snapshot() == before, call
    """)
    assert len(out.splitlines()) == len(BAD_CREATE)


def test_default_subnets_and_persistence(fakehost: FakeHost) -> None:
    fakehost.ip("route", "add", "10.89.1.0/24", "via", UPSTREAM_IP)
    out = run(fakehost, """
    nets = [create_network(n) for n in ("one", "two", "a-very-long-network-name")]
    assert [str(n.subnet) for n in nets] == ["10.89.0.0/24", "10.89.2.0/24", "10.89.3.0/24"]
    assert nets[2].bridge.startswith("iso-") and len(nets[2].bridge) == 15
    assert [n.name for n in list_networks()] == ["a-very-long-network-name", "one", "two"]
    # a lease handed to a live process outlives its maker
    sleeper = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    a = attach("one", container(), name="a")
    a.hand_over(sleeper.pid)
    print(sleeper.pid)
    """)
    run(fakehost, f"""
    assert get_network("one").gateway.exploded == "10.89.0.1"
    b = attach("one", container(), name="b")      # another process: the next address
    assert b.address.ip.exploded == "10.89.0.3", b
    assert "10.89.0.2\\ta\\n" in open(b.hosts_path).read()
    b.close()
    os.kill({int(out)}, signal.SIGKILL)
    """)


def test_killed_caller_is_reclaimed_by_gc_and_by_the_next_attach(fakehost: FakeHost,
                                                                  tmp_path: Path) -> None:
    run(fakehost, f"""
    import isolate._registry, isolate._idalloc
    isolate._registry.REGISTRY = {str(tmp_path / "owners")!r}     # this test's own registry
    isolate._idalloc.STATE_DIR = {str(tmp_path / "userns")!r}
    from isolate._owner import gc
    stay_ns = container()
    stay = attach("bridge", stay_ns, name="stay")
    ns = container()                 # held here, as a pool would: the veth outlives the caller
    child = "; ".join(["import os, signal, sys", "from isolate.net import attach",
                       "a = attach('bridge', int(sys.argv[1]), name='doomed', publish=['8080:80'])",
                       "print(a.host_ifname, flush=True)", "os.kill(os.getpid(), signal.SIGKILL)"])
    def killed():
        r = subprocess.run([sys.executable, "-c", child, str(ns)], pass_fds=(ns,),
                           capture_output=True, text=True)
        assert r.returncode == -9, r.stderr
        return r.stdout.strip()
    veth = killed()
    assert veth in links() and "8080" in ruleset()
    assert "doomed" in open(stay.hosts_path).read()
    found = gc()
    assert [f.kind for f in found] == ["net-lease"], found
    assert "isolate/10.88.0.3 (doomed, " + veth + ")" == found[0].path
    assert veth not in links() and "8080" not in ruleset()
    assert "doomed" not in open(stay.hosts_path).read()
    assert "isolate0" in links()      # the network stays
    assert gc() == []

    veth = killed()
    again = attach("bridge", ns, name="again")     # reclaims; the next address (round-robin)
    assert again.address.ip.exploded == "10.88.0.5" and veth not in links()
    assert "8080" not in ruleset() and "doomed" not in open(stay.hosts_path).read()
    again.close()

    # handed over to a process that ends: gc takes it even though its maker lives, and
    # the maker's close() afterwards leaves the address's next holder alone (on a network
    # of one address, so that the next holder has it)
    from isolate.net import create_network, remove_network
    create_network("one", subnet="10.99.0.0/30")
    sleeper = subprocess.Popen(["sleep", "60"])
    x = attach("one", container(), name="x", publish=["8080:80"])
    x.hand_over(sleeper.pid)
    assert gc() == []
    sleeper.kill(); sleeper.wait()
    assert [f.path.split(" ")[1] for f in gc()] == ["(x,"]
    y = attach("one", container(), name="y")
    assert y.address == x.address
    x.close()
    assert y.host_ifname in links() and os.path.exists(y.hosts_path)
    y.close(); stay.close()
    remove_network("one")
    """)


def test_networks_share_the_host_changes_and_the_last_one_undoes_them(fakehost: FakeHost) -> None:
    run(fakehost, """
    before = sysctls()
    create_network("red", "10.89.10.0/24")
    create_network("blue", "10.89.11.0/24")
    r = attach("red", container(), name="r")
    b = attach("blue", container(), name="b", publish=["8080:80"])
    assert {"iso-red", "iso-blue"} <= set(links())
    assert sysctls()["up0/forwarding"] == "1"
    r.close(); b.close()
    remove_network("red")
    assert "iso-red" not in links() and "iso-blue" in links()
    assert "10.89.10.0" not in ruleset() and "10.89.11.0" in ruleset()
    assert sysctls()["up0/forwarding"] == "1"
    remove_network("blue")
    assert sysctls() == before
    assert links() == ["lo", "up0"] and ruleset() == ""
    assert state_files() == {}, state_files()

    # a network whose definition went (by hand, or a crash mid-remove): gc takes its bridge
    # down, and with it, the last, every change
    create_network("green", "10.89.12.0/24")
    attach("green", container(), name="g").close()
    os.unlink(os.environ["ISOLATE_NET_DIR"] + "/networks/green.json")
    from isolate.net.attachment import sweep
    assert sweep() == []
    assert links() == ["lo", "up0"] and ruleset() == "" and sysctls() == before
    """)


def test_cli(fakehost: FakeHost) -> None:
    isolate = [sys.executable, "-m", "isolate"]
    r = fakehost.run([*isolate, "network", "create", "--subnet", "10.89.9.0/24", "--dns",
                      "192.0.2.53", "web"])
    assert (r.returncode, r.stdout, r.stderr) == (0, "web\n", "")
    r = fakehost.run([*isolate, "network", "create", "--subnet", "10.89.9.0/25", "web2"])
    assert (r.returncode, r.stderr) == (
        1, "isolate: subnet 10.89.9.0/25 overlaps network 'web' (10.89.9.0/24)\n")
    r = fakehost.run([*isolate, "network", "ls"])
    assert r.stdout.splitlines()[1].split() == ["web", "10.89.9.0/24", "10.89.9.1", "iso-web"]
    r = fakehost.run([*isolate, "network", "inspect", "web"])
    import json

    got = json.loads(r.stdout)[0]
    assert (got["subnet"], got["dns"]) == ("10.89.9.0/24", ["192.0.2.53"])
    r = fakehost.run([*isolate, "network", "rm", "web", "nope"])
    assert (r.returncode, r.stdout) == (1, "web\n")
    assert r.stderr == "isolate: network rm: no network named 'nope'\n"
    r = fakehost.run([*isolate, "network", "ls", "--json"])
    assert r.stdout == "[]\n"


def test_state_of_another_boot_is_dropped(fakehost: FakeHost) -> None:
    run(fakehost, """
    a = attach("bridge", container(), name="a")
    a.hand_over(1)                                     # init: alive for the whole boot
    top = os.environ["ISOLATE_NET_DIR"]
    with open(f"{top}/run/boot", "w") as f:
        f.write("another-boot\\n")
    assert [n.name for n in list_networks()] == ["isolate"]     # definitions stay
    assert not os.path.exists(f"{top}/run/leases/isolate")
    assert not os.path.exists(f"{top}/run/host.json")
    """)


def test_concurrent_attaches_never_share_an_address(fakehost: FakeHost) -> None:
    out = run(fakehost, """
    worker = "; ".join([
        "import sys, os", "from isolate.net import attach", "from isolate._spawn import netns_new",
        "home = os.open('/proc/self/ns/net', os.O_RDONLY)",
        "fds = [netns_new(home=home) for i in range(6)]", "import isolate.net.attachment",
        "print('ready', flush=True)", "sys.stdin.readline()",      # all start at once
        "a = [attach('bridge', fd, name=f'{sys.argv[1]}-{i}') for i, fd in enumerate(fds)]",
        "print(' '.join(str(x.address.ip) for x in a), flush=True)", "sys.stdin.read()"])
    get_network("isolate", create=True)
    ps = [subprocess.Popen([sys.executable, "-c", worker, f"w{n}"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True) for n in range(3)]
    assert [p.stdout.readline() for p in ps] == ["ready\\n"] * 3
    for p in ps:
        p.stdin.write("go\\n"); p.stdin.flush()
    got = [p.stdout.readline().split() for p in ps]
    flat = [a for g in got for a in g]
    assert len(flat) == 18 and len(set(flat)) == 18, got
    assert sorted(flat) == sorted(f"10.88.0.{n}" for n in range(2, 20)), flat
    for p in ps:
        p.stdin.close(); p.wait()
    print("ok")
    """)
    assert out.strip() == "ok"


def test_resolv_conf_falls_back_from_loopback_resolvers(fakehost: FakeHost, tmp_path: Path) -> None:
    """A host whose /etc/resolv.conf names only 127.0.0.53 (systemd-resolved): the container
    gets resolved's upstream servers, or none, with a warning."""
    fake = tmp_path / "resolv.conf"
    fake.write_text("nameserver 127.0.0.53\nsearch example.org\n")
    upstream = tmp_path / "systemd" / "resolve" / "resolv.conf"
    upstream.parent.mkdir(parents=True)
    upstream.write_text("nameserver 192.0.2.99\nsearch corp.example\n")
    code = (
        "import warnings; from isolate.net.attachment import resolv_text\n"
        "print(repr(resolv_text(())))\n"
        f"import os; os.unlink({str(upstream)!r})\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always'); print(repr(resolv_text(()))); print(w[0].message)\n")
    # (a private mount namespace: a tmpfs over /run, nothing of the machine's changes)
    script = (f"mount --bind {fake} /etc/resolv.conf && mount -t tmpfs tmpfs /run && "
              f"mkdir -p /run/systemd && mount --bind {upstream.parent.parent} /run/systemd && "
              f"exec {sys.executable} -c \"$0\"")
    r = fakehost.run(["unshare", "-m", "sh", "-c", script, code])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == repr("search corp.example\nnameserver 192.0.2.99\n")
    assert lines[1] == "None"
    assert "all on loopback" in lines[2]


def test_a_failed_first_attach_leaves_no_bridge_rules_or_settings(fakehost: FakeHost) -> None:
    run(fakehost, """
    get_network("isolate", create=True)
    before = snapshot()
    has_eth0 = container()
    assert run_in(has_eth0, "ip", "link", "add", "eth0", "type", "bridge").returncode == 0
    try:
        attach("bridge", has_eth0, name="x", publish=["8080:80"])
    except NetworkError as e:
        assert "File exists" in str(e), e
    else:
        raise AssertionError("attached")
    assert snapshot() == before
    # and the next one sets everything up
    a = attach("bridge", container(), name="y", publish=["8080:80"])
    assert "isolate0" in links() and "dnat to 10.88.0.2:80" in ruleset()
    assert "masquerade" in ruleset()
    a.close()
    """)


def test_a_made_ahead_link_and_a_deferred_close(fakehost: FakeHost) -> None:
    """``make_link`` leases ahead (a pooled lease, in nobody's hosts file); ``attach(link=)``
    makes it the container's, on eth0's address already; a close left for later
    (``close_later``) keeps the name until an attach of that name needs it, which closes
    it at once; ``release_link`` gives back a lease never attached, and only such a one."""
    out = run(fakehost, """
    from isolate.net.attachment import make_link, release_link
    top = os.environ["ISOLATE_NET_DIR"] + "/run"
    leases = lambda: {a: json.load(open(f"{top}/leases/isolate/{a}")) for a in os.listdir(f"{top}/leases/isolate")}
    web = attach("bridge", container(), name="web")
    ns = container()
    link = make_link("bridge", ns)
    le = leases()[str(link.address)]
    print(le["pooled"], le["pid"] == os.getpid(), str(link.address) != str(web.address.ip))
    print("(pooled)" in open(f"{top}/hosts/isolate/web").read())
    a = attach("bridge", ns, name="app", link=link)
    print(a.address.ip == link.address, "pooled" in leases()[str(link.address)])
    print(run_in(ns, "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3] == str(a.address))
    print(open(f"{top}/hosts/isolate/web").read().count("app"))
    release_link(link)                       # attached: not the link's to give back
    print(str(link.address) in leases())
    a.close_later()
    print(open(f"{top}/hosts/isolate/web").read().count("app"))   # still there, until ...
    b = attach("bridge", container(), name="app")                  # ... its name is wanted
    print(a.closed, str(link.address) in leases(), open(f"{top}/hosts/isolate/web").read().count("app"))
    unused = make_link("bridge", container())
    release_link(unused)
    print(str(unused.address) in leases(), sorted(le["name"] for le in leases().values()))
    for x in (a, b, web):
        x.close()
    """)
    assert out.splitlines() == ["True True True", "False", "True False", "True", "1", "True",
                                "1", "True False 1", "False ['app', 'web']"], out
