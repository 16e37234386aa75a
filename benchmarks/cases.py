"""The latency cases: each starts /bin/true and waits for it.

A case is one small function in ``REGISTRY``: a context manager that sets up
whatever the case needs, yields the callable that is timed (one start and
wait), and tears down on exit.  It raises ``Skip`` with the reason when the
host cannot run it.  New capabilities appear as new entries; the Container
cases register themselves once ``isolate.Container`` exists.
"""

from __future__ import annotations

import contextlib
import glob
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ContextManager

import isolate
from isolate import _ops as O
from isolate import _plan as P

TRUE = "/bin/true"
CGROUP_PREFIX = "isolate-test-bench"
Iteration = Callable[[], None]


class Skip(Exception):
    """The case cannot run on this host; the message says why."""


@dataclass(frozen=True)
class Case:
    """One row of the latency table."""

    name: str
    group: str  # baseline | isolate | external | container
    setup: Callable[[], ContextManager[Iteration]]
    note: str = ""


REGISTRY: list[Case] = []


def case(name: str, group: str, note: str = ""
         ) -> Callable[[Callable[[], Iterator[Iteration]]], Callable[[], Iterator[Iteration]]]:
    """Register a generator function (set up, ``yield`` the iteration, tear down) as a case."""
    def register(fn: Callable[[], Iterator[Iteration]]) -> Callable[[], Iterator[Iteration]]:
        REGISTRY.append(Case(name, group, contextlib.contextmanager(fn), note))
        return fn
    return register


def tool(name: str) -> str:
    """The path of ``name`` beside this Python (isolate's own), on PATH (sbin included), or ``Skip``."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    path = (beside if os.access(beside, os.X_OK) else None) or shutil.which(name) \
        or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        raise Skip(f"{name} not found on PATH")
    return path


def check_tool(argv: list[str], **kw: Any) -> None:
    """Run ``argv`` once with stderr captured; ``Skip`` with the tool's own error if it fails."""
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60, **kw)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
        msg = lines[-1].strip() if lines else f"exit status {r.returncode}"
        raise Skip(f"{os.path.basename(argv[0])} failed: {msg}")


def run_quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    """The timed form of an external tool run: stdio on /dev/null, non-zero exit is an error."""
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {r.returncode}")


def spawn_wait(**options: Any) -> None:
    """One isolate.spawn of /bin/true, waited for."""
    p = isolate.spawn([TRUE], **options)
    try:
        if p.wait() != 0:
            raise RuntimeError(f"/bin/true exited with {p.returncode} ({options})")
    finally:
        p.close()


# --- baselines ---------------------------------------------------------------


@case("subprocess.run", "baseline", "the reference: every ratio divides by this row's median")
def _subprocess_run() -> Iterator[Iteration]:
    yield lambda: subprocess.run([TRUE], check=True)


@case("os.posix_spawn + waitpid", "baseline")
def _posix_spawn() -> Iterator[Iteration]:
    env = dict(os.environ)

    def it() -> None:
        pid = os.posix_spawn(TRUE, [TRUE], env)
        os.waitpid(pid, 0)
    yield it


# --- isolate.spawn -----------------------------------------------------------

CORE = ("pid", "mnt", "uts", "ipc")
FULL = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


def _ns_case(label: str, namespaces: tuple[str, ...]) -> None:
    @case(f"isolate.spawn {label}", "isolate")
    def _c() -> Iterator[Iteration]:
        ns = frozenset(namespaces)
        spawn_wait(namespaces=ns)  # fails here, not in the timed loop, if the kernel refuses
        yield lambda: spawn_wait(namespaces=ns)


_ns_case("(no namespace)", ())
for _ns in ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup", "time"):
    _ns_case(_ns, (_ns,))
_ns_case("+".join(CORE), CORE)
_ns_case("+".join(CORE) + "+net", CORE + ("net",))
_ns_case("+".join(CORE) + "+net+user", CORE + ("net", "user"))
_ns_case("+".join(FULL), FULL)


def settled(it: Iteration, *pools: Any) -> Iteration:
    """``it``, marked to be followed (untimed) by a wait until every pool is full again.

    A pool refills in a background thread right after a take: back to back,
    that work would land on the clock of whichever case runs next (and a
    network namespace being made in the background slows another being made
    in the foreground).  The runner calls ``it.settle()`` after timing ``it``,
    so every row is timed without another row's leftovers; a pooled row is
    then its best case, a pool that had time to refill (as with spawns some
    milliseconds apart; benchmarks/test_cgroup.py also times a pool back to back).
    """
    def settle() -> None:
        deadline = time.monotonic() + 5.0
        while any(p.ready < p.size for p in pools) and time.monotonic() < deadline:
            time.sleep(0.0002)
    it.settle = settle  # type: ignore[attr-defined]
    return it


@contextlib.contextmanager
def netns_pool(size: int = 16) -> Iterator[isolate.NetnsPool]:
    """A NetnsPool, or ``Skip`` where network namespaces cannot be made."""
    try:
        pool = isolate.NetnsPool(size=size)
    except isolate.UnsupportedError as e:
        raise Skip(str(e)) from None
    with pool:
        yield pool


@case("isolate.spawn " + "+".join(FULL) + ", net from NetnsPool", "isolate",
      "net joined from a pool filled by a background thread; take + close timed")
def _pooled_full() -> Iterator[Iteration]:
    others = frozenset(FULL) - {"net"}
    with netns_pool() as pool:
        def it() -> None:
            with pool.take() as ns:
                spawn_wait(namespaces=others, join=[ns])
        it()
        yield settled(it, pool)


def rootfs_ops(root: bytes) -> list[P.Op]:
    """A bwrap-shaped host root built from plan ops: tmpfs root, ro /usr, /proc, /dev, pivot_root."""
    ops: list[P.Op] = [O.Mount(b"tmpfs", root, b"tmpfs", P.lib.MS_NOSUID, b"mode=0755,size=1m"),
                       O.Mkdir(root + b"/usr"), O.Bind(b"/usr", root + b"/usr", readonly=True)]
    for d in (b"bin", b"lib", b"lib64", b"sbin"):
        if os.path.islink(b"/" + d):
            ops.append(O.Symlink(os.readlink(b"/" + d), root + b"/" + d))
        elif os.path.isdir(b"/" + d):
            ops += [O.Mkdir(root + b"/" + d), O.Bind(b"/" + d, root + b"/" + d, readonly=True)]
    nodev = P.lib.MS_NOSUID | P.lib.MS_NODEV
    ops += [O.Mkdir(root + b"/proc"),
            O.Mount(b"proc", root + b"/proc", b"proc", nodev | P.lib.MS_NOEXEC),
            O.Mkdir(root + b"/dev"),
            O.Mount(b"tmpfs", root + b"/dev", b"tmpfs", P.lib.MS_NOSUID, b"mode=0755")]
    for dev in (b"null", b"zero", b"full", b"random", b"urandom", b"tty"):
        ops += [O.WriteFile(root + b"/dev/" + dev, b""), O.Bind(b"/dev/" + dev, root + b"/dev/" + dev)]
    ops += [O.Symlink(b"/proc/self/fd", root + b"/dev/fd"), O.PivotRoot(root)]
    return ops


@case("isolate.spawn " + "+".join(FULL) + ", rootfs plan (ro /usr, /proc, /dev, pivot_root)",
      "isolate", "the shape of bwrap's row, built from isolate._plan ops until Container exists")
def _rootfs_plan() -> Iterator[Iteration]:
    with tempfile.TemporaryDirectory(prefix="isolate-bench-root-") as d:
        ops = rootfs_ops(os.fsencode(d))
        spawn_wait(namespaces=frozenset(FULL), ops=ops)
        yield lambda: spawn_wait(namespaces=frozenset(FULL), ops=ops)


@case("isolate.spawn " + "+".join(FULL) + ", rootfs plan, net from NetnsPool", "isolate")
def _rootfs_plan_pooled() -> Iterator[Iteration]:
    others = frozenset(FULL) - {"net"}
    with tempfile.TemporaryDirectory(prefix="isolate-bench-root-") as d, netns_pool() as pool:
        ops = rootfs_ops(os.fsencode(d))

        def it() -> None:
            with pool.take() as ns:
                spawn_wait(namespaces=others, join=[ns], ops=ops)
        it()
        yield settled(it, pool)


# --- cgroups (issue 3: create, limit, spawn into, remove) ---------------------

CGROUP_LIMITS = dict(memory_max=256 << 20, pids_max=100, cpus=0.5)
CGROUP_CONTROLLERS = frozenset({"memory", "pids", "cpu"})


@contextlib.contextmanager
def cgroup_parent(name: str) -> Iterator[str]:
    """A parent group ``name`` in every hierarchy (made here, removed after), as a service's
    own parent group would be: yields its path relative to each hierarchy's root."""
    from isolate.cgroup import detect

    layout = detect()
    made = []
    try:
        for h in layout.hierarchies():
            if h.version == 2 and layout.kind == "hybrid":
                continue
            path = os.path.join(h.mount, name)
            if not os.path.isdir(path):
                os.mkdir(path)
                made.append(path)
            if h.version == 2:
                with open(os.path.join(path, "cgroup.subtree_control"), "w") as f:
                    f.write(" ".join("+" + c for c in sorted(CGROUP_CONTROLLERS)))
        yield name
    finally:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(path)


@case("isolate.spawn into a new Cgroup (memory+pids+cpu limits)", "isolate",
      "Cgroup.create with the limits, spawn into it, wait, close (removes it)")
def _cgroup_cycle() -> Iterator[Iteration]:
    if not hasattr(isolate, "Cgroup"):
        raise Skip("isolate.Cgroup is not available in this version")
    limits = isolate.Limits(**CGROUP_LIMITS)
    counter = iter(range(1 << 62))
    with cgroup_parent(f"{CGROUP_PREFIX}-cg-{os.getpid()}") as parent:
        def it() -> None:
            with isolate.Cgroup.create(f"c{next(counter)}", parent=parent, limits=limits,
                                       controllers=CGROUP_CONTROLLERS) as cg:
                spawn_wait(cgroup=cg)
        try:
            it()
        except (isolate.UnsupportedError, isolate.CgroupError) as e:
            raise Skip(f"{type(e).__name__}: {e}") from None
        yield it


@case("isolate.spawn into a Cgroup from CgroupPool (memory+pids+cpu limits)", "isolate",
      "a fresh group per spawn, made ahead and removed behind by the pool's thread")
def _cgroup_pool_cycle() -> Iterator[Iteration]:
    if not hasattr(isolate, "CgroupPool"):
        raise Skip("isolate.CgroupPool is not available in this version")
    with cgroup_parent(f"{CGROUP_PREFIX}-pool-{os.getpid()}") as parent:
        try:
            pool = isolate.CgroupPool(parent=parent, limits=isolate.Limits(**CGROUP_LIMITS),
                                      controllers=CGROUP_CONTROLLERS)
        except (isolate.UnsupportedError, isolate.CgroupError) as e:
            raise Skip(f"{type(e).__name__}: {e}") from None
        with pool:
            def it() -> None:
                with pool.take() as cg:
                    spawn_wait(cgroup=cg)
            it()
            yield settled(it, pool)


# --- isolate.Container (appears once issue 4's Container exists) -------------


def _container_case(name: str, with_limits: bool, pooled: bool = False,
                    namespaces: tuple[str, ...] | None = None, note: str = "",
                    cgroup_pool: bool = False, fresh_rootfs: bool = False,
                    maps: tuple[int, int] | None = None, rw_bind: bool = False,
                    userns: str | None = None) -> None:
    @case(name, "container", note)
    def _c() -> Iterator[Iteration]:
        if not hasattr(isolate, "Container") or not hasattr(isolate, "RootFS"):
            raise Skip("isolate.Container is not available in this version")
        kwargs: dict[str, Any] = {}
        if namespaces is not None:
            kwargs["namespaces"] = frozenset(namespaces)
        if userns is not None:
            if "userns" not in inspect.signature(isolate.Container).parameters:
                raise Skip("Container(userns=) is not available in this version")
            kwargs["userns"] = userns
        if with_limits:
            if not hasattr(isolate, "Limits"):
                raise Skip("isolate.Limits is not available in this version")
            kwargs["limits"] = isolate.Limits(memory_max=256 << 20, pids_max=64)
        if maps is not None:
            # (inside 0 -> outside, count): the user namespace's maps, as uid_map and gid_map.
            m = [isolate.IdMap(inside=0, outside=maps[0], count=maps[1])]
            kwargs["uid_map"] = kwargs["gid_map"] = m
        with contextlib.ExitStack() as stack:
            rootfs = isolate.RootFS.host()
            if rw_bind:
                # A root-owned directory bound read-write (idmapped under an unprivileged map).
                work = stack.enter_context(tempfile.TemporaryDirectory(prefix="isolate-bench-bind-"))
                os.chmod(work, 0o755)
                rootfs = rootfs.bind(work, "/work")
            if hasattr(rootfs, "__exit__"):
                stack.enter_context(rootfs)
            pool = stack.enter_context(netns_pool()) if pooled else None
            if cgroup_pool:
                if not hasattr(isolate, "CgroupPool"):
                    raise Skip("isolate.CgroupPool is not available in this version")
                # The same limits; each container takes a fresh group and hands it back.
                kwargs["cgroup"] = cgpool = stack.enter_context(
                    isolate.CgroupPool(limits=kwargs.pop("limits"), parent=f"{CGROUP_PREFIX}-{os.getpid()}"))

            def it() -> None:
                extra = dict(kwargs)
                with contextlib.ExitStack() as inner:
                    if pool is not None:
                        # A Container takes its network namespace through net=.
                        extra["net"] = inner.enter_context(pool.take())
                    # fresh_rootfs: what the simplest loop does, one RootFS.host() per Container.
                    root = isolate.RootFS.host() if fresh_rootfs else rootfs
                    with isolate.Container(rootfs=root, **extra) as c:
                        r = c.run([TRUE])
                        if r.returncode != 0:
                            raise RuntimeError(f"Container.run(/bin/true) gave {r.returncode}")
            try:
                it()
            except Skip:
                raise
            except Exception as e:  # reported in the table, so the gap is visible
                raise Skip(f"Container failed: {type(e).__name__}: {e}") from None
            pools = ([pool] if pool is not None else []) + ([cgpool] if cgroup_pool else [])
            yield settled(it, *pools) if pools else it


_container_case("isolate.Container host rootfs", with_limits=False,
                note="defaults: user+pid+mnt+uts+ipc+net+cgroup, OCI capabilities, seccomp, no_new_privs")
_container_case("isolate.Container host rootfs, userns identity", with_limits=False, userns="identity",
                note="as the first row with every id mapped to itself (the old default as root): "
                     "no block of host ids is allocated, so the difference is the allocation's cost")
_container_case("isolate.Container host rootfs, no user ns", with_limits=False, namespaces=FULL,
                note="the issue's target shape: pid+mnt+uts+ipc+net+cgroup")
_container_case("isolate.Container, a fresh RootFS.host() each", with_limits=False, fresh_rootfs=True,
                note="as the first row, but RootFS.host() made anew for each Container (issue 14: "
                     "within 1.1x of the first row)")
_container_case("isolate.Container no user ns, a fresh RootFS.host() each", with_limits=False,
                namespaces=FULL, fresh_rootfs=True,
                note="as the no-user-ns row, RootFS.host() made anew for each Container")
_container_case("isolate.Container host rootfs + rw bind, identity maps (plain binds)", with_limits=False,
                maps=(0, 65536), rw_bind=True,
                note="container root is host root: /usr, /bin ... and the rw bind are plain binds")
_container_case("isolate.Container host rootfs + rw bind, unprivileged root (idmapped binds)",
                with_limits=False, maps=(200000, 65536), rw_bind=True,
                note="container root is host uid 200000: the same binds idmapped (cloned in the caller, "
                     "idmapped with the child's user namespace), the setuid guard's seccomp profile")
_container_case("isolate.Container host rootfs + cgroup limits", with_limits=True)
_container_case("isolate.Container host rootfs + cgroup limits from CgroupPool", with_limits=True,
                cgroup_pool=True, note="Container(cgroup=CgroupPool(limits=...)): a fresh group per container")
_container_case("isolate.Container host rootfs, net from NetnsPool", with_limits=False, pooled=True,
                namespaces=tuple(n for n in FULL if n != "net"),
                note="pid+mnt+uts+ipc+cgroup, net=<PooledNetns>")


# --- other tools ---------------------------------------------------------------


@case("unshare --pid --mount --uts --ipc --fork", "external", "util-linux unshare(1)")
def _unshare() -> Iterator[Iteration]:
    argv = [tool("unshare"), "--pid", "--mount", "--uts", "--ipc", "--fork", TRUE]
    check_tool(argv)
    yield lambda: run_quiet(argv)


def bwrap_argv(share_net: bool) -> list[str]:
    """bwrap with every namespace, ro /usr (and the merged-/usr links), /proc and /dev."""
    argv = [tool("bwrap"), "--unshare-all"] + (["--share-net"] if share_net else [])
    argv += ["--ro-bind", "/usr", "/usr"]
    for d in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink("/" + d):
            argv += ["--symlink", os.readlink("/" + d), "/" + d]
        elif os.path.isdir("/" + d):
            argv += ["--ro-bind", "/" + d, "/" + d]
    return argv + ["--proc", "/proc", "--dev", "/dev", TRUE]


@case("hand-written C spawn of the Container's shape", "external",
      "benchmarks/container_reference.c: pid+mnt+uts+ipc+net+cgroup at clone, lo up, tmpfs root, "
      "ro /usr, /proc, /dev (mknod, devpts, shm), /tmp, pivot_root; no seccomp, caps or masks; "
      "one spawn per byte on a pipe (the round trip counts against it; its CPU, in another "
      "process, is not in the CPU column)")
def _container_reference() -> Iterator[Iteration]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Skip("no C compiler (cc) to build benchmarks/container_reference.c")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "container_reference.c")
    with tempfile.TemporaryDirectory(prefix="isolate-bench-cref-") as d:
        exe = os.path.join(d, "container_reference")
        r = subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip(f"cc failed: {r.stderr.strip().splitlines()[-1:]}")
        server = subprocess.Popen([exe, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        assert server.stdin is not None and server.stdout is not None
        w, rd = server.stdin.fileno(), server.stdout.fileno()

        def it() -> None:
            os.write(w, b"g")
            if os.read(rd, 1) != b"k":
                raise RuntimeError("container_reference: a spawn failed")
        try:
            try:
                it()
            except RuntimeError:
                raise Skip("container_reference failed: " + server.stderr.read(500).decode()
                           if server.stderr else "") from None
            yield it
        finally:
            server.stdin.close()
            server.wait()
            server.stdout.close()
            if server.stderr is not None:
                server.stderr.close()


@case("bwrap --unshare-all", "external", "ro /usr, --proc, --dev; bubblewrap")
def _bwrap() -> Iterator[Iteration]:
    argv = bwrap_argv(share_net=False)
    check_tool(argv)
    yield lambda: run_quiet(argv)


@case("bwrap --unshare-all --share-net", "external")
def _bwrap_net() -> Iterator[Iteration]:
    argv = bwrap_argv(share_net=True)
    check_tool(argv)
    yield lambda: run_quiet(argv)


@contextlib.contextmanager
def oci_bundle(runtime: str) -> Iterator[tuple[str, str, str]]:
    """A bundle for ``runtime``: config.json from ``runc spec`` running /bin/true, pid/net/ipc/uts/
    mnt/cgroup namespaces, a read-only rootfs of the host's /usr.  Yields (bundle, state root,
    cgroups path); removes the bundle, any container left and the cgroup on exit."""
    runc = tool("runc")  # `runc spec` writes the config both runtimes read
    with tempfile.TemporaryDirectory(prefix=f"isolate-bench-{runtime}-") as d:
        subprocess.run([runc, "spec", "--bundle", d], check=True, capture_output=True)
        with open(os.path.join(d, "config.json")) as f:
            spec = json.load(f)
        rootfs = os.path.join(d, "rootfs")
        for sub in ("usr", "proc", "dev", "sys", "tmp", "etc"):
            os.makedirs(os.path.join(rootfs, sub))
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink("/" + link):
                os.symlink(os.readlink("/" + link), os.path.join(rootfs, link))
        spec["process"]["args"] = [TRUE]
        spec["process"]["terminal"] = False
        spec["root"] = {"path": "rootfs", "readonly": True}
        spec["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr",
                               "options": ["rbind", "ro", "nosuid", "nodev"]})
        ns = spec["linux"]["namespaces"]
        if not any(n["type"] == "cgroup" for n in ns):
            ns.append({"type": "cgroup"})
        cgpath = f"/{CGROUP_PREFIX}-{runtime}-{os.getpid()}"
        spec["linux"]["cgroupsPath"] = cgpath
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(spec, f, indent=1)
        state = os.path.join(d, "state")
        os.mkdir(state)
        try:
            yield d, state, cgpath
        finally:
            exe = tool(runtime)
            r = subprocess.run([exe, "--root", state, "list", "-q"], capture_output=True, text=True)
            for cid in r.stdout.split():
                subprocess.run([exe, "--root", state, "delete", "-f", cid], capture_output=True)
            remove_cgroups(cgpath)


def remove_cgroups(cgpath: str) -> None:
    """rmdir a cgroup a runtime or engine left behind and what is below it (empty by now), in
    every hierarchy (deepest first)."""
    for top in glob.glob(f"/sys/fs/cgroup/*{cgpath}") + glob.glob(f"/sys/fs/cgroup{cgpath}"):
        for path, _, _ in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(path)


@contextlib.contextmanager
def crun_view() -> Iterator[tuple[list[str], Any]]:
    """How crun runs here: (its extra global flags, a mount namespace to run it in, or None).

    crun 1.8 refuses a hybrid host ("cgroups in hybrid mode not supported"), even
    with its cgroup manager disabled.  There it runs in a mount namespace of our
    own whose /sys/fs/cgroup is a cgroup2 mount, with ``--cgroup-manager=disabled``:
    it makes no cgroup, as the Container rows without limits make none.  It is
    started with ``isolate.spawn(join=[that namespace])``, which costs less than
    the ``subprocess.run`` the other tools get: the difference favours crun.
    """
    from isolate.cgroup import detect

    if detect().kind != "hybrid":
        yield [], None
        return
    holder = subprocess.Popen(
        [tool("unshare"), "--mount", "--propagation", "private", "sh", "-c",
         "mount -t cgroup2 cgroup2 /sys/fs/cgroup && echo ready && exec sleep 100000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline() != b"ready\n":
            raise Skip("crun refuses hybrid hosts, and no mount namespace with cgroup2 at "
                       "/sys/fs/cgroup could be made for it")
        with isolate.Namespace.of(holder.pid, "mnt") as ns:
            yield ["--cgroup-manager=disabled"], ns
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def _run_in(ns: Any, argv: list[str]) -> None:
    """``run_quiet`` in the mount namespace ``ns``."""
    p = isolate.spawn(argv, join=[ns], stdin=isolate.DEVNULL, stdout=isolate.DEVNULL,
                      stderr=isolate.DEVNULL)
    try:
        if p.wait() != 0:
            raise RuntimeError(f"{argv[0]} exited with {p.returncode}")
    finally:
        p.close()


def _oci_case(runtime: str, *, planner: bool = True) -> None:
    group = "isolate" if runtime == "isolate-oci" else "external"
    note = "same bundle: ro host /usr, pid/net/ipc/uts/mnt/cgroup ns"
    if runtime == "crun":
        note += ("; on a hybrid host (which crun refuses) in a mount namespace with cgroup2 at "
                 "/sys/fs/cgroup, --cgroup-manager=disabled: no cgroup, as the Container rows "
                 "without limits (see crun_view)")
    if runtime == "isolate-oci":
        note += ("; served by its warm planner (isolate.oci.warm), the container cloned by the C "
                 "front end" if planner else "; ISOLATE_OCI_PLANNER=0: the verb in a Python "
                 "started for the call, as before the planner")
    env = None if planner else {**os.environ, "ISOLATE_OCI_PLANNER": "0"}
    suffix = "" if planner else " (no planner)"

    @case(f"{runtime} run{suffix}", group, note)
    def _c() -> Iterator[Iteration]:
        exe = tool(runtime)
        with contextlib.ExitStack() as stack:
            flags, ns = stack.enter_context(crun_view()) if runtime == "crun" else ([], None)
            bundle, state, _ = stack.enter_context(oci_bundle(runtime))
            counter = iter(range(1 << 62))

            def argv() -> list[str]:
                return [exe, *flags, "--root", state, "run", "--bundle", bundle,
                        f"isobench-{os.getpid()}-{next(counter)}"]
            if ns is None:
                check_tool(argv(), env=env)
                yield lambda: run_quiet(argv(), env)
            else:
                try:
                    _run_in(ns, argv())
                except RuntimeError as e:
                    raise Skip(f"crun in a cgroup2 mount namespace: {e}") from None
                yield lambda: _run_in(ns, argv())

    if not planner:
        return

    @case(f"{runtime} create+start+state+delete", group,
          note + "; four calls, as a shim makes them: delete --force once /bin/true has run")
    def _lifecycle() -> Iterator[Iteration]:
        exe = tool(runtime)
        with contextlib.ExitStack() as stack:
            flags, ns = stack.enter_context(crun_view()) if runtime == "crun" else ([], None)
            bundle, state, _ = stack.enter_context(oci_bundle(runtime))
            counter = iter(range(1 << 62))

            def call(argv: list[str]) -> None:
                if ns is None:
                    run_quiet(argv)
                else:
                    _run_in(ns, argv)

            def once() -> None:
                cid = f"isobench-{os.getpid()}-{next(counter)}"
                base = [exe, *flags, "--root", state]
                call([*base, "create", "--bundle", bundle, cid])
                call([*base, "start", cid])
                call([*base, "state", cid])
                call([*base, "delete", "--force", cid])

            try:
                once()
            except RuntimeError as e:
                raise Skip(f"{runtime} create+start+state+delete: {e}") from None
            yield once


@case("python -I -S, import isolate._native (isolate-oci's floor)", "baseline",
      "this Python started without site and importing only the C binding: what any "
      "isolate-oci call pays before its own imports and work")
def _python_floor() -> Iterator[Iteration]:
    import _cffi_backend

    paths = [os.path.dirname(os.path.dirname(os.path.abspath(isolate.__file__))),
             os.path.dirname(os.path.abspath(_cffi_backend.__file__))]
    argv = [sys.executable, "-I", "-S", "-c",
            f"import sys; sys.path[:0] = {paths!r}; import isolate._native"]
    check_tool(argv)
    yield lambda: run_quiet(argv)


@case("isolate.oci.runtime.run", "isolate", "isolate-oci run's work in this process: no interpreter start-up")
def _oci_in_process() -> Iterator[Iteration]:
    from isolate.oci import runtime

    with oci_bundle("isolate-oci") as (bundle, state, _):
        counter = iter(range(1 << 62))
        null = os.open(os.devnull, os.O_RDWR)

        def once() -> None:
            # The container inherits stdio: give it /dev/null, as run_quiet does for the CLIs.
            saved = [os.dup(fd) for fd in (0, 1, 2)]
            try:
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                code = runtime.run(state, f"isobench-{os.getpid()}-{next(counter)}", bundle)
            finally:
                for fd, s in zip((0, 1, 2), saved):
                    os.dup2(s, fd)
                    os.close(s)
            if code != 0:
                raise RuntimeError(f"isolate.oci.runtime.run exited with {code}")

        try:
            once()
            yield once
        finally:
            os.close(null)


_oci_case("isolate-oci")
_oci_case("isolate-oci", planner=False)
_oci_case("runc")
_oci_case("crun")
