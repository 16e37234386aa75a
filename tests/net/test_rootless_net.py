"""Rootless networking (``isolate.net.rootless``) with pasta and slirp4netns, for real.

Everything runs as the ordinary user tests/rootless.py makes, in a fake host's
network namespace (``fakehost``), so the machine's network is never touched:
root makes a private mount namespace (the fake host's /etc/resolv.conf, naming
the upstream as its resolver; and, on a host whose /dev/net/tun is not 0666 as
Debian's udev makes it, a 0666 node of it), enters the fake host's network
namespace, then becomes the user.  The user spawns a held child in new user and
network namespaces (``exec_gate``, as a container's child is held), calls
``start()`` and then releases it; traffic goes from the child to the upstream
(HTTP and the DNS forwarder) and from the upstream and the fake host to the
published ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root, pytest.mark.userns]

TOOLS = ["pasta", "slirp4netns"]

# Run by root: the private mounts, then the rest of argv (nsenter, setpriv, the command).
_MOUNTS = """set -e
mount --bind "$1" /etc/resolv.conf
if [ "$2" = tun ]; then
    mount -t tmpfs -o mode=0755 isolate-test-tun /dev/net
    mknod -m 0666 /dev/net/tun c 10 200
fi
shift 2
exec "$@"
"""

# The upstream: HTTP on 8000 (one known body) and a UDP echo on 53 (the resolver).
_UPSTREAM = """
import http.server, socket, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"upstream says hello\\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("192.0.2.2", 8000), H)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("192.0.2.2", 53))
def echo():
    while True:
        data, peer = udp.recvfrom(512); udp.sendto(b"dns:" + data, peer)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
srv.serve_forever()
"""

# The child in its own user+net namespaces: TCP and UDP servers on port 80, then
# outbound HTTP and a query to the resolver resolv_conf() names (its first line of input).
_INSIDE = """
import json, socket, subprocess, sys, threading, urllib.request
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(); return s
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 80))
def serve_tcp(s, client_first):
    while True:
        c, peer = s.accept()
        if client_first:
            c.recv(100)
        c.sendall(f"inside tcp from {peer[0]}\\n".encode() if client_first
                  else b"inside banner\\n")
        c.close()
def serve_udp():
    while True:
        data, peer = udp.recvfrom(512); udp.sendto(b"inside udp:" + data, peer)
# Port 80 answers what the client sends (as HTTP does); port 81 speaks first (as SSH does).
threading.Thread(target=serve_tcp, args=(listen(80), True), daemon=True).start()
threading.Thread(target=serve_tcp, args=(listen(81), False), daemon=True).start()
threading.Thread(target=serve_udp, daemon=True).start()
out = {"addr": subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                              capture_output=True, text=True).stdout.split(),
       "route": subprocess.run(["ip", "-4", "route", "show", "default"],
                               capture_output=True, text=True).stdout.split()}
out["http"] = urllib.request.urlopen("http://192.0.2.2:8000/", timeout=10).read().decode()
def reach(addr, port):
    try:
        socket.create_connection((addr, port), timeout=2).close()
        return "connected"
    except OSError as e:
        return type(e).__name__
# The host's loopback listener (the user's, on 127.0.0.1:8099), by both ways in.
out["host loopback"] = [reach("127.0.0.1", 8099), reach(out["route"][2], 8099)]
q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); q.settimeout(10)
q.sendto(b"query", (sys.stdin.readline().strip(), 53))
out["dns"] = q.recvfrom(512)[0].decode()
print(json.dumps(out), flush=True)
sys.stdin.read()
"""

# The user's side: held child, start(), release; report; wait for "done"; close; report.
_USER = """
import json, os, sys, time, isolate
from isolate.net import rootless
def children():
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                out.append(p)
        except OSError:     # gone meanwhile
            pass
    return sorted(out)
tool, publish = sys.argv[1], json.loads(sys.argv[2])
runtime = os.environ["XDG_RUNTIME_DIR"]
before = set(os.listdir(runtime))      # (what the suite's other tests left there for this user)
gate_r, gate_w = os.pipe()
child = isolate.spawn([sys.executable, "-c", sys.argv[3]], namespaces={"user", "net"},
                      exec_gate=gate_r, stdin=isolate.PIPE, stdout=isolate.PIPE)
os.close(gate_r)
import socket
guard = socket.socket(); guard.bind(("127.0.0.1", 8099)); guard.listen()
t = time.perf_counter()
net = rootless.start(child.pid, publish=publish, tool=tool,
                     dns=json.loads(sys.argv[4]) if len(sys.argv) > 4 else None)
took = time.perf_counter() - t
resolv = net.resolv_conf().decode()
nameserver = resolv.split()[1]
os.write(gate_w, b"x"); os.close(gate_w)       # released: the child runs
report = {"tool": net.tool, "pid": net.pid, "address": str(net.address),
          "gateway": str(net.gateway), "dns": str(net.dns), "resolv": resolv, "took": took,
          "files": sorted(set(os.listdir(runtime)) - before),
          "helper_argv": open(f"/proc/{net.pid}/cmdline", "rb").read().split(b"\\0")[0].decode()}
"""

_USER_RUN = _USER + """
child.stdin.write(nameserver.encode() + b"\\n"); child.stdin.flush()
line = child.stdout.readline()
report["inside"] = json.loads(line)
print(json.dumps(report), flush=True)
sys.stdin.readline()
child.stdin.close(); child.wait()
net.close(); net.close()
gone = not os.path.exists(f"/proc/{report['pid']}")
print(json.dumps({"gone": gone, "files": sorted(set(os.listdir(runtime)) - before),
                  "children": children()}), flush=True)
"""


@pytest.fixture
def world(fakehost: Any, rootless: Any, tmp_path: Path) -> Iterator[Any]:
    """The fake host with its upstream servers running, and a way to run as the user there."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example.test\nnameserver 192.0.2.2\n")
    resolv.chmod(0o644)
    tmp_path.chmod(0o755)
    up = fakehost.popen([sys.executable, "-c", _UPSTREAM], upstream=True,
                        stdout=subprocess.PIPE, text=True)
    assert up.stdout is not None and up.stdout.readline().strip() == "ready"
    # Debian's udev makes /dev/net/tun 0666; where it is not, give the user's mount
    # namespace a node that is (the device is the same, nothing of the host changes).
    tun = "tun" if os.stat("/dev/net/tun").st_mode & 0o006 != 0o006 else "keep"

    def command(argv: Sequence[str], *, with_tun: bool = True) -> list[str]:
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", _MOUNTS, "sh",
                str(resolv), tun if with_tun else "keep",
                *rootless.command(argv, netns=fakehost.host)]

    yield fakehost, rootless, command
    rootless.kill_all()


def _user_popen(world: Any, code: str, *args: str) -> subprocess.Popen[str]:
    fakehost, user, command = world
    return subprocess.Popen(command([user.python, "-c", code, *args]), env=user.env(),
                            cwd=user.home, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _user_run(world: Any, code: str, *args: str, env: dict[str, str] | None = None,
              with_tun: bool = True) -> Any:
    fakehost, user, command = world
    r = subprocess.run(command([user.python, "-c", code, *args], with_tun=with_tun),
                       env=user.env(env), cwd=user.home, capture_output=True, text=True,
                       timeout=60, start_new_session=True)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return json.loads(r.stdout)


def _probe(fakehost: Any, where: str, proto: str, addr: str, port: int,
           client_first: bool = True) -> str:
    """What a TCP connection to (or a UDP datagram sent to) addr:port gets back (after
    sending a line, when ``client_first``), run in the upstream or the fake host;
    "refused", "timeout" or "closed" when nothing comes back."""
    code = f"""
import socket
kind = socket.SOCK_STREAM if {proto!r} == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind); s.settimeout(3)
try:
    if kind == socket.SOCK_STREAM:
        s.connect(({addr!r}, {port}))
        if {client_first!r}:
            s.sendall(b"hello\\n")
        print(s.recv(100).decode().strip() or "closed")
    else:
        s.sendto(b"ping", ({addr!r}, {port})); print(s.recvfrom(100)[0].decode())
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
except ConnectionResetError:
    print("reset")
"""
    argv = [sys.executable, "-c", code]
    r = fakehost.upstream_run(argv) if where == "upstream" else fakehost.run(argv)
    assert r.returncode == 0, r.stderr
    return str(r.stdout.strip())


@contextlib.contextmanager
def _session(world: Any, tool: str, publish: list[str],
             dns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The user's held child with ``start(tool, publish, dns)`` done and released: what the
    user saw, then (after the block) ``after``: what was left once it closed everything."""
    fakehost, user, _ = world
    p = _user_popen(world, _USER_RUN, tool, json.dumps(publish), _INSIDE, json.dumps(dns))
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line, p.communicate(timeout=30)
        got: dict[str, Any] = json.loads(line)
        yield got
        out, err = p.communicate("done\n", timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    got["after"] = json.loads(out)


@pytest.mark.parametrize("tool", TOOLS)
def test_outbound_dns_and_published_ports(world: Any, tool: str) -> None:
    fakehost = world[0]
    with _session(world, tool, ["8080:80", "8081:80/udp", "192.0.2.1:8082:80"]) as got:
        assert got["tool"] == tool and got["helper_argv"].endswith(tool)
        # The namespace is configured as RootlessNet says, with a default route.
        inside = got["inside"]
        assert got["address"] in inside["addr"]
        assert inside["route"][:3] == ["default", "via", got["gateway"]]
        if tool == "pasta":
            assert (got["address"], got["gateway"], got["dns"]) == ("192.0.2.1/24", "192.0.2.2",
                                                                     "169.254.1.1")
        else:
            assert (got["address"], got["gateway"], got["dns"]) == ("10.0.2.100/24", "10.0.2.2",
                                                                     "10.0.2.3")
        # Outbound, and the resolver resolv_conf() names reaches the host's (upstream's).
        assert inside["http"] == "upstream says hello\n"
        assert got["resolv"] == f"nameserver {got['dns']}\nsearch example.test\n"
        assert inside["dns"] == "dns:query"
        # Published: from the upstream through the host's address, and from the host itself.
        # The container's loopback and gateway do not lead to the host's loopback.
        assert "connected" not in inside["host loopback"], inside["host loopback"]
        # Published: from the upstream through the host's address (the client's address
        # kept, with both tools), and from the host itself.
        assert _probe(fakehost, "upstream", "tcp", "192.0.2.1", 8080) == "inside tcp from 192.0.2.2"
        assert _probe(fakehost, "host", "tcp", "127.0.0.1", 8080).startswith("inside tcp from ")
        assert _probe(fakehost, "upstream", "udp", "192.0.2.1", 8081) == "inside udp:ping"
        # host_ip: bound on 192.0.2.1 only.
        assert _probe(fakehost, "upstream", "tcp", "192.0.2.1", 8082).startswith("inside tcp")
        assert _probe(fakehost, "host", "tcp", "127.0.0.1", 8082) == "refused"
        if tool == "slirp4netns":
            assert [f for f in got["files"] if f.startswith("isolate-net-")]
    # close(): the helper reaped, its directory gone, no child of the caller left.
    assert got["after"] == {"gone": True, "files": [], "children": []}
    assert not os.path.exists(f"/proc/{got['pid']}")
    assert _probe(fakehost, "host", "tcp", "192.0.2.1", 8080) == "refused"


# slirp4netns only: Debian 12's pasta (0.0~git20230309) answers the container's SYN-ACK
# with a FIN when the client has sent nothing yet (a published server that speaks first,
# SSH or SMTP, is unreachable from other hosts; from the host itself it works), which is
# why the automatic choice takes slirp4netns first (see isolate.net.rootless).
def test_a_published_server_that_speaks_first(world: Any) -> None:
    fakehost, tool = world[0], "slirp4netns"
    with _session(world, tool, ["8083:81"]):
        assert _probe(fakehost, "host", "tcp", "127.0.0.1", 8083, client_first=False) == "inside banner"
        assert _probe(fakehost, "upstream", "tcp", "192.0.2.1", 8083,
                      client_first=False) == "inside banner"


@pytest.mark.parametrize("tool", TOOLS)
def test_a_low_port_where_the_host_allows_it_and_dns_servers(world: Any, tool: str) -> None:
    # net.ipv4.ip_unprivileged_port_start is the fake host's own (per network namespace).
    fakehost = world[0]
    r = fakehost.run(["sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=80"])
    assert r.returncode == 0, r.stderr
    # dns= names the resolvers instead of the forwarder (the child asks the first: upstream).
    with _session(world, tool, ["80:80"], dns=["192.0.2.2", "192.0.2.53"]) as got:
        assert _probe(fakehost, "upstream", "tcp", "192.0.2.1", 80) == "inside tcp from 192.0.2.2"
        assert got["resolv"] == "nameserver 192.0.2.2\nnameserver 192.0.2.53\nsearch example.test\n"
        assert got["inside"]["dns"] == "dns:query"


_ERRORS = _USER.split("import socket\nguard")[0] + """
import socket
from isolate.errors import ConfigError, NetworkError
from isolate.net.ports import publish_list
busy_tcp = socket.socket(); busy_tcp.bind(("0.0.0.0", 8090)); busy_tcp.listen()
busy_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); busy_udp.bind(("0.0.0.0", 8091))
runtime = os.environ["XDG_RUNTIME_DIR"]
before = sorted(os.listdir(runtime))
held = children()
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "no error"
    except (ConfigError, NetworkError) as e:
        out[name] = f"{type(e).__name__}: {e}"
    assert children() == held, (name, children(), held)
    assert sorted(os.listdir(runtime)) == before, (name, os.listdir(runtime))
attempt("in use", lambda: rootless.start(child.pid, publish=["8090:80"], tool=tool))
attempt("udp in use", lambda: rootless.start(child.pid, publish=["8091:53/udp"], tool=tool))
attempt("privileged", lambda: rootless.start(child.pid, publish=["80:80"], tool=tool))
attempt("not ours", lambda: rootless.start(child.pid, publish=["192.0.2.99:8092:80"], tool=tool))
attempt("no process", lambda: rootless.start(2**22 + 1, tool=tool))
attempt("own netns", lambda: rootless.start(os.getpid(), tool=tool))
attempt("bad tool", lambda: rootless.start(child.pid, tool="vde"))
attempt("bad dns", lambda: rootless.start(child.pid, dns=["1.2.3"], tool=tool))
# The tool's own failure (the port taken between the check and the tool's bind).
path = rootless._choose(tool)[1]
starter = rootless._start_pasta if tool == "pasta" else rootless._start_slirp
attempt("tool fails", lambda: starter(path, child.pid, publish_list(["8090:80"]), ()))
os.environ["PATH"] = "/nonexistent"
attempt("missing", lambda: rootless.start(child.pid, tool=tool))
attempt("none at all", lambda: rootless.start(child.pid))
os.environ["ISOLATE_ROOTLESS_NET"] = "vde"
attempt("bad env", lambda: rootless.start(child.pid))
child.kill(); child.wait()
print(json.dumps(out))
"""


@pytest.mark.parametrize("tool", TOOLS)
def test_refusals_are_one_line_and_leave_nothing(world: Any, tool: str) -> None:
    out = _user_run(world, _ERRORS, tool, "[]", "import time; time.sleep(60)")
    for name, message in out.items():
        assert "\n" not in message, (name, message)
    assert out["in use"] == "NetworkError: publish 8090:80/tcp: host port 8090/tcp is already in use"
    assert out["udp in use"] == "NetworkError: publish 8091:53/udp: host port 8091/udp is already in use"
    assert out["privileged"] == ("NetworkError: publish 80:80/tcp: host port 80 is privileged for "
                                 "this user (net.ipv4.ip_unprivileged_port_start = 1024): use a "
                                 "port >= 1024")
    assert out["not ours"] == ("NetworkError: publish 192.0.2.99:8092:80/tcp: 192.0.2.99 is not "
                               "an address of this host")
    assert out["no process"].startswith("NetworkError: rootless network: process 4194305 does not")
    assert out["own netns"].startswith("ConfigError: rootless network: process ")
    assert out["bad tool"] == ("ConfigError: rootless network tool must be 'pasta' or "
                               "'slirp4netns', got 'vde'")
    assert out["bad dns"] == "ConfigError: dns: '1.2.3' is not an IP address"
    if tool == "pasta":
        assert out["tool fails"].startswith("NetworkError: rootless network: pasta for process ")
        assert "Failed to bind any port for '-t 8090:80'" in out["tool fails"]
    else:
        assert out["tool fails"].startswith("NetworkError: publish 8090:80/tcp: slirp4netns "
                                            "refused it: ")
    package = {"pasta": "'passt'", "slirp4netns": "'slirp4netns'"}[tool]
    assert out["missing"] == (f"NetworkError: rootless network: {tool} is not installed "
                              f"(Debian package {package})")
    assert out["none at all"] == ("NetworkError: rootless network: neither pasta nor slirp4netns "
                                  "is installed: install the 'passt' package (or 'slirp4netns')")
    assert out["bad env"] == ("ConfigError: $ISOLATE_ROOTLESS_NET must be 'pasta' or "
                              "'slirp4netns', got 'vde'")


_CHOICE = """
import json, os, sys
from isolate.errors import ConfigError
from isolate.net import rootless
out = {"default": rootless.available()}
os.environ["ISOLATE_ROOTLESS_NET"] = "pasta"
out["forced"] = rootless.available()
del os.environ["ISOLATE_ROOTLESS_NET"]
only = os.path.join(os.environ["HOME"], "only-pasta")
os.makedirs(only, exist_ok=True)
os.symlink("/usr/bin/pasta", os.path.join(only, "pasta"))
path, os.environ["PATH"] = os.environ["PATH"], only
out["without slirp4netns"] = rootless.available()
os.environ["ISOLATE_ROOTLESS_NET"] = "slirp4netns"
out["forced missing"] = rootless.available()
os.environ["PATH"] = "/nonexistent"
del os.environ["ISOLATE_ROOTLESS_NET"]
out["nothing"] = rootless.available()
os.environ["PATH"] = path
os.environ["ISOLATE_ROOTLESS_NET"] = "bogus"
try:
    rootless.available()
except ConfigError as e:
    out["bogus"] = str(e)
print(json.dumps(out))
"""


def test_automatic_choice(world: Any) -> None:
    out = _user_run(world, _CHOICE)
    assert out == {"default": "slirp4netns", "forced": "pasta", "without slirp4netns": "pasta",
                   "forced missing": None, "nothing": None,
                   "bogus": "$ISOLATE_ROOTLESS_NET must be 'pasta' or 'slirp4netns', got 'bogus'"}


def test_without_a_usable_tun_device_none_is_available(world: Any) -> None:
    if os.stat("/dev/net/tun").st_mode & 0o006 == 0o006:
        pytest.skip("/dev/net/tun is open to every user here")
    code = ("import json; from isolate.net import rootless\n"
            "try:\n    rootless.start(1)\nexcept Exception as e:\n    err = str(e)\n"
            "print(json.dumps([rootless.available(), err]))")
    choice, err = _user_run(world, code, with_tun=False)
    assert choice is None
    assert "needs /dev/net/tun, which this user cannot open" in err


_LIFELINE = _USER.replace("net = rootless.start(child.pid, publish=publish, tool=tool)", """
import threading
box = []
# Started on a thread that ends at once: the helper must not go with it.
th = threading.Thread(target=lambda: box.append(rootless.start(child.pid, publish=publish, tool=tool)))
th.start(); th.join()
net = box[0]""") + """
report["running after its thread ended"] = net.running()
print(json.dumps(report), flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("tool", TOOLS)
def test_the_helper_ends_with_its_caller(world: Any, tool: str) -> None:
    # A caller killed outright (no close()): the helper goes too, though the namespace's
    # process lives on.
    p = _user_popen(world, _LIFELINE, tool, "[]", "import time; time.sleep(60)")
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line, p.communicate(timeout=30)
    report = json.loads(line)
    assert report["running after its thread ended"] is True
    assert p.wait(timeout=30) == -9
    helper = Path(f"/proc/{report['pid']}/stat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if helper.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break       # exited: a zombie of an init that has not reaped it yet
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"{tool} outlived its caller")


_ROOT_SHARED = """set -e
mount -t tmpfs isolate-test "$1"
mount --make-shared "$1"
mkdir "$1/sub"
mount -t tmpfs isolate-test-sub "$1/sub"
shift
exec "$@"
"""


def test_a_root_caller_keeps_its_shared_mounts(fakehost: Any, tmp_path: Path) -> None:
    # slirp4netns's --enable-sandbox, run by root, unmounted the peers of the caller's
    # shared mounts (as ip netns's under /run/netns).  Here in a private mount namespace
    # of the test's, with a shared mount of its own.
    shared = tmp_path / "shared"
    shared.mkdir()
    code = f"""
import os, subprocess, isolate
from isolate.net import rootless
r, w = os.pipe()
child = isolate.spawn(["/bin/true"], namespaces={{"user", "net"}}, exec_gate=r)
net = rootless.start(child.pid, tool="slirp4netns")
print(subprocess.run(["findmnt", "-rn", "-o", "TARGET", {str(shared / "sub")!r}],
                     capture_output=True, text=True).stdout.strip())
net.close(); os.close(w); child.wait()
"""
    r = fakehost.run(["unshare", "-m", "--propagation", "private", "sh", "-c", _ROOT_SHARED, "sh",
                      str(shared), sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(shared / "sub")


_CONTAINER = """
import json, sys
import isolate
out = {}
with isolate.Container(net="bridge", publish=["8090:80"]) as c:
    r = c.run(["/bin/busybox", "sh", "-c",
               "busybox wget -qO- http://192.0.2.2:8000/; busybox ip -4 -o addr; "
               "cat /etc/resolv.conf /etc/hosts"], timeout=30)
    out["run"] = [r.returncode, r.stdout.decode(), r.stderr.decode()]
    # A published port while the container serves it, reached from the fake host's upstream.
    c.start(["/bin/busybox", "sh", "-c", "echo served > /tmp/index.html; "
             "exec busybox httpd -f -p 80 -h /tmp"])
    print(json.dumps(out), flush=True)
    sys.stdin.readline()
print(json.dumps({"after": True}), flush=True)
"""


@pytest.mark.parametrize("tool", TOOLS)
def test_a_container_on_the_bridge_without_root(world: Any, tool: str) -> None:
    """``Container(net="bridge", publish=...)`` as a user: its namespace gets the network
    from the tool while its child is held, its /etc/resolv.conf and /etc/hosts name the
    tool's forwarder and itself, and the published port reaches it from outside."""
    fakehost, user, command = world
    p = subprocess.Popen(command([user.python, "-c", _CONTAINER]),
                         env=user.env({"ISOLATE_ROOTLESS_NET": tool}), cwd=user.home,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        line = p.stdout.readline()
        assert line, p.communicate(timeout=30)
        got = json.loads(line)
        code, out, err = got["run"]
        assert code == 0 and out.startswith("upstream says hello\n"), (out, err)
        inet = [line.split()[1] for line in out.splitlines() if " inet " in line]
        assert len(inet) == 2 and inet[0] == "lo", out      # lo and the tool's interface
        assert "nameserver " in out and "\tisolate" in out, out
        for _ in range(50):
            served = fakehost.upstream_run(["/bin/busybox", "wget", "-qO-", "http://192.0.2.1:8090/"])
            if served.returncode == 0:
                break
            time.sleep(0.1)
        assert served.stdout == "served\n", served
        p.stdin.write("\n")
        p.stdin.flush()
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and json.loads(rest) == {"after": True}, err
    # Its helper is gone with the container's end: the port is free again.
    assert _probe(fakehost, "upstream", "tcp", "192.0.2.1", 8090) == "refused"
