"""Container root is not host root: the cgroup self-raise, against the default id map.

As root, the default container's user namespace maps its root to a block of
host ids of its own (``userns="auto"``, src/isolate/_idalloc.py).  The files
of its cgroup belong to host root, an id its namespace does not map, so no
capability held inside (CAP_DAC_OVERRIDE in a nested user namespace of its
own included) lets it write them.  With ``userns="identity"`` (the old
default) the same attack raises both limits: that run is part of the test,
so the attack is known to reach the files.

(Named apart from tests/integration/test_userns_auto.py: the test directories are not
packages, so two modules of one basename cannot both be collected.)
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

import pytest

import isolate

PY = "/usr/bin/python3"
pytestmark = [pytest.mark.root]

#: Run inside as root: every way it has to its own group's limit files.  Prints
#: {"<where>:<file>": errno or 0} for each write tried, and each mount's errno.
ATTACK = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
NAMES = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max", "memory.high",
         "memory.swap.max", "pids.max")

def raise_in(tag, top):
    for d, _, files in os.walk(top):
        for n in files:
            if n in NAMES:
                p = os.path.join(d, n)
                try:
                    with open(p, "w") as f:
                        f.write("-1" if "limit_in_bytes" in n else "max")
                    out[f"{tag}:{p}"] = 0
                except OSError as e:
                    out[f"{tag}:{p}"] = e.errno

def mount(src, dst, fstype, data):
    os.makedirs(dst, exist_ok=True)
    rc = libc.mount(src.encode(), dst.encode(), fstype.encode(), 0,
                    data.encode() if data else None)
    return ctypes.get_errno() if rc else 0

def mounts(tag):
    for sub in ("memory", "pids"):
        where = f"/tmp/{tag}-{sub}"
        out[f"mount {tag} {sub}"] = mount("cgroup", where, "cgroup", sub)
        raise_in(tag, where)
        raise_in(tag + " via /proc/self/root", "/proc/self/root" + where)
        raise_in(tag + " via /proc/1/root", "/proc/1/root" + where)
    where = f"/tmp/{tag}-unified"
    out[f"mount {tag} cgroup2"] = mount("cgroup2", where, "cgroup2", None)
    raise_in(tag, where)
    raise_in(tag + " via /proc/1/root", "/proc/1/root" + where)

# The cgroup files the root already shows, then a cgroupfs mounted in the container's
# own mount and cgroup namespaces.
raise_in("inside", "/sys/fs/cgroup")
raise_in("inside via /proc/1/root", "/proc/1/root/sys/fs/cgroup")
mounts("direct")
# Then from a nested user namespace, which holds every capability over new mount and
# cgroup namespaces of its own (rooted at the container's group).
NEWNS, NEWCGROUP, NEWUSER = 0x20000, 0x02000000, 0x10000000
uid, gid = os.getuid(), os.getgid()
if libc.unshare(NEWUSER | NEWNS | NEWCGROUP) == 0:
    open("/proc/self/setgroups", "w").write("deny")
    open("/proc/self/uid_map", "w").write(f"0 {uid} 1")
    open("/proc/self/gid_map", "w").write(f"0 {gid} 1")
    mounts("nested")
else:
    out["unshare nested"] = ctypes.get_errno()
print(json.dumps(out))
'''


def _limits_of(c: isolate.Container) -> dict[str, str]:
    """The container's memory and pids limits as the host's cgroup files say."""
    assert c.cgroup is not None
    got = {}
    for path in c.cgroup.paths.values():
        for name in ("memory.limit_in_bytes", "memory.max", "pids.max"):
            try:
                with open(os.path.join(path, name)) as f:
                    got[name] = f.read().strip()
            except OSError:
                pass
    return got


def _attack(userns: str | None, capabilities: Any) -> tuple[dict[str, int], dict[str, str]]:
    """Run ATTACK in a container with limits and no seccomp filter (``userns`` None: the
    default's); returns its report and the limits afterwards."""
    if not os.path.exists(PY):
        pytest.skip(f"{PY} is needed inside the container for this attack")
    limits = isolate.Limits(memory_max=64 << 20, pids_max=32)
    options: dict[str, Any] = {} if userns is None else {"userns": userns}
    with isolate.Container(limits=limits, seccomp=None, capabilities=capabilities,
                           name=f"isolate-test-raise-{os.getpid()}", **options) as c:
        r = c.run([PY, "-c", ATTACK], timeout=60)
        after = _limits_of(c)
    assert r.returncode == 0, r
    return json.loads(r.stdout), after


@pytest.mark.parametrize("capabilities", ["default", None], ids=["default-caps", "all-caps"])
def test_root_cannot_raise_its_own_cgroup_limits(capabilities: Any) -> None:
    """Tried: as container root without seccomp (and with every capability), write
    unlimited memory and pids limits into its own group: through /sys/fs/cgroup, a
    cgroupfs (v1 memory and pids, and cgroup2) mounted in its namespaces and in a nested
    user namespace's, each also through /proc/self/root and /proc/1/root.
    Stopped by: the group's files belong to host root, which the container's user
    namespace does not map (userns="auto"): no capability inside applies to them (EACCES);
    the mounts themselves may succeed."""
    report, after = _attack(None, capabilities)          # the default: userns="auto"
    writes = {k: v for k, v in report.items() if not k.startswith(("mount", "unshare"))}
    # The attack reached the limit files (a nested mount always can), and every write failed.
    assert any("memory.limit_in_bytes" in k or "memory.max" in k for k in writes), report
    assert any("pids.max" in k for k in writes), report
    assert writes and all(v == errno.EACCES for v in writes.values()), report
    assert after.get("pids.max") == "32", after
    mem = after.get("memory.max", after.get("memory.limit_in_bytes"))
    assert mem == str(64 << 20), after


def test_the_same_attack_raises_the_limits_under_the_identity_map() -> None:
    """The control: with every id mapped to itself (userns="identity", the old default)
    container root is host root to the cgroup files and the same attack raises both
    limits, so the test above attacks what it says."""
    report, after = _attack("identity", "default")
    assert any(v == 0 for k, v in report.items() if not k.startswith(("mount", "unshare"))), report
    assert after.get("pids.max") == "max", after
    mem = after.get("memory.max", after.get("memory.limit_in_bytes"))
    assert mem is not None and mem != str(64 << 20), after
