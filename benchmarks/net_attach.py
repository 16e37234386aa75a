"""How long ``isolate.net.attach`` takes (and ``Attachment.close``), in a fake host.

    sudo .venv/bin/python benchmarks/net_attach.py [N] [--tmpfs]

Makes a fake host (tests/net/fakehost.py: network namespaces of its own, the
machine's network untouched), then in it N network namespaces ahead of time
(as a ``NetnsPool`` holds them), and attaches each to the default network
(whose bridge and rules the first, untimed attach made), N more with one
published port, then closes them all.  Prints the median and the quartiles
of each, in milliseconds.  The state goes to a temporary directory under /tmp,
or with ``--tmpfs`` under /dev/shm: where /run is a tmpfs (the usual case),
that is what the runtime state (``/run/isolate/networks``) costs.
"""

from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "net"))

from fakehost import FakeHost  # noqa: E402

CODE = """
import os, statistics, sys, time
from isolate.net import attach
from isolate._spawn import netns_new
n = int(sys.argv[1])
home = os.open("/proc/self/ns/net", os.O_RDONLY)
attach("bridge", netns_new(home=home), name="warm").close()
fds = [netns_new(home=home) for _ in range(2 * n)]
times = {"attach": [], "attach, 1 published port": [], "close": []}
done = []
for i, fd in enumerate(fds):
    pub = [(10000 + i, 80)] if i >= n else []
    t = time.perf_counter()
    a = attach("bridge", fd, name=f"c{i}", publish=pub)
    times["attach, 1 published port" if pub else "attach"].append(time.perf_counter() - t)
    done.append(a)
for a in done:
    t = time.perf_counter()
    a.close()
    times["close"].append(time.perf_counter() - t)
for what, ts in times.items():
    q = statistics.quantiles([x * 1000 for x in ts], n=4)
    print(f"{what:28} median {q[1]:6.2f} ms  (quartiles {q[0]:.2f} .. {q[2]:.2f}, {len(ts)} runs)")
"""


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--tmpfs"]
    n = args[0] if args else "100"
    where = "/dev/shm" if "--tmpfs" in sys.argv else None
    with tempfile.TemporaryDirectory(prefix="isolate-net-bench-", dir=where) as tmp:
        h = FakeHost(os.path.join(tmp, "state"))
        try:
            r = h.python(CODE, n, timeout=600)
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
        finally:
            h.close()


if __name__ == "__main__":
    main()
