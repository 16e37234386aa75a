"""``isolate run [options] -- CMD ...``: run a command in the default sandbox.

The default sandbox is ``isolate.Container()``: the host's /usr, /bin, /lib*
and a minimal /etc read-only, tmpfs on /tmp (512m) and $HOME (256m), /dev/shm
of 64m, new user, pid, mnt, uts (hostname ``isolate`` or ``--name``), ipc, net
(only ``lo``) and cgroup namespaces, a session of its own (``--tty`` keeps
yours), the OCI default capabilities (none for a non-root ``--user``),
no_new_privs and Docker's default seccomp profile (which also refuses TIOCSTI).

The exit status is the command's, 128+N when a signal N ended it, and 125
when isolate itself failed (one line on stderr naming the failing step).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from typing import Any

from ._help import HelpFormatter
from .pull import add_registry_options, add_store_option, pull_options

__all__ = ["add_parser", "main", "parse_size", "parse_bind", "container_from_args"]

_SIZE = re.compile(r"^(\d+)([kmgt]?)b?$", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """``"512m"`` -> 536870912: a byte count with an optional k/m/g/t suffix (powers of 1024)."""
    from ..errors import ConfigError

    m = _SIZE.match(text.strip())
    if not m or int(m.group(1)) <= 0:
        raise ConfigError(f"{what} must be a positive size like 512m or 2g, got {text!r}")
    return int(m.group(1)) << (10 * "kmgt".find(m.group(2).lower()) + 10 if m.group(2) else 0)


def parse_bind(text: str) -> tuple[str, str, bool]:
    """``SRC:DST[:ro|rw]`` (DST defaults to SRC) -> (src, dst, readonly)."""
    from ..errors import ConfigError

    parts = text.split(":")
    readonly = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        readonly = parts[2] == "ro"
        parts = parts[:2]
    elif len(parts) == 2 and parts[1] in ("ro", "rw"):
        readonly = parts[1] == "ro"
        parts = parts[:1]
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"--bind must be SRC[:DST][:ro], got {text!r}")
    return parts[0], parts[1], readonly


EPILOG = """\
examples:
  $ isolate run -- echo hello
  # 256 MiB of memory, 64 processes, half a CPU, killed after 10 seconds
  $ isolate run --memory 256m --pids 64 --cpus 0.5 --timeout 10 -- nproc
  # the current directory, read-only, as /work
  $ isolate run --bind "$PWD:/work:ro" --cwd /work -- ls -l
  # a writable layer over the root, thrown away at the end
  $ isolate run --overlay -- sh -c 'echo x > /usr/new && cat /usr/new'
  # the cgroup below "jobs" (without root: a subtree delegated to you; default: your own cgroup)
  $ isolate run --cgroup-parent jobs --memory 256m -- true
  # as the sandbox's user nobody, with an environment variable
  $ isolate run --user nobody --env GREETING=hi -- sh -c 'echo $GREETING $(id -u)'
  # the result (exit status, time, memory) as JSON on stderr
  $ isolate run --json -- true
  # on the default network (an address, NAT), the host's port 8080 forwarded to its 80
  $ isolate run --net bridge -p 8080:80 -- busybox ip -4 -o addr show eth0
"""


def add_parser(sub: Any) -> None:
    """Register ``run`` on the ``isolate`` parser."""
    p = sub.add_parser(
        "run", help="run a command in the default sandbox",
        description="Run CMD in a sandbox built from the host's /usr (or --rootfs DIR).",
        usage="isolate run [options] -- CMD [ARG ...]", epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 512m")
    p.add_argument("--cpus", type=float, metavar="N", help="CPU bandwidth, e.g. 0.5")
    p.add_argument("--pids", type=int, metavar="N", help="maximum number of processes")
    p.add_argument("--cgroup-parent", default=None, metavar="PATH",
                   help="make the sandbox's cgroup below PATH: a cgroup path such as jobs/a, used "
                        "in every hierarchy a limit needs, or a directory under /sys/fs/cgroup "
                        "(default: isolate/ below your own cgroup, which without root must be "
                        "delegated to you)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="kill the sandbox after this")
    p.add_argument("--rootfs", metavar="DIR", help="an unpacked image to use as the root")
    p.add_argument("--image", metavar="REF", default=None,
                   help="an image of the store as the root (its layers under a tmpfs layer of "
                        "--overlay-size); without CMD its Entrypoint and Cmd run, with CMD the "
                        "Entrypoint and CMD; its Env, WorkingDir and User apply unless given")
    p.add_argument("--entrypoint", metavar="PROGRAM", default=None,
                   help="with --image: run PROGRAM (then CMD as its arguments) instead of the "
                        "image's Entrypoint and Cmd; '' runs CMD alone")
    add_store_option(p)
    p.add_argument("--pull", choices=("missing", "always", "never"), default="missing",
                   help="with --image: pull it first when it is not in the store (missing, the "
                        "default, as podman run), every time (always), or never")
    add_registry_options(p)
    p.add_argument("--bind", action="append", default=[], metavar="SRC:DST[:ro]",
                   help="bind a host path into the sandbox (repeatable)")
    p.add_argument("--overlay", nargs="?", const="", default=None, metavar="DIR",
                   help="writable layer over the root (on tmpfs, or kept in DIR)")
    p.add_argument("--net", "--network", default="none", metavar="NET",
                   help="none: own network namespace with lo (default); host: the host's; bridge: "
                        "the default network (isolate, 10.88.0.0/16): an address, outbound traffic "
                        "through NAT, the host's resolvers; NAME: a network made with 'isolate "
                        "network create' (its containers reach each other by name); without root "
                        "bridge gives pasta or slirp4netns")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:PORT[/udp]",
                   help="with --net bridge or NAME: forward the host's port HOST (on IP only, if "
                        "given) to the sandbox's PORT (repeatable)")
    p.add_argument("--dns", action="append", default=None, metavar="IP",
                   help="with --net bridge or NAME: a resolver for the sandbox's /etc/resolv.conf "
                        "(repeatable; default: the host's)")
    p.add_argument("--userns", choices=("auto", "identity", "keep-id"), default="auto",
                   help="how the sandbox's ids map to the host's: auto (default): as root, a block "
                        "of 65536 host ids of its own (the 'isolate' lines of /etc/subuid and "
                        "/etc/subgid, else 1879048192 up), so its root is no host user of note; "
                        "identity: every id to itself (its root is host root); keep-id: your id "
                        "to itself, one line, running as it")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set an environment variable (repeatable)")
    p.add_argument("--cwd", default=None, metavar="DIR", help="working directory inside")
    p.add_argument("--user", default=None, metavar="USER",
                   help="user (name or uid) to run as, from the sandbox's /etc/passwd; a non-root "
                        "user has no capabilities; run without root, a user or group other than "
                        "root inside takes its ids from your /etc/subuid and /etc/subgid ranges")
    p.add_argument("--group", default=None, metavar="GROUP",
                   help="group (name or gid) to run as (default: the user's, from the sandbox's "
                        "/etc/passwd; 65534 for a uid without an entry)")
    p.add_argument("--tty", action="store_true",
                   help="hand the sandbox your terminal: it stays in your session with the terminal "
                        "as its controlling tty (interactive programs, job control); without it the "
                        "sandbox runs in a session of its own")
    p.add_argument("--tmp-size", default=None, metavar="SIZE",
                   help="size of the tmpfs on /tmp (default 512m)")
    p.add_argument("--home-size", default=None, metavar="SIZE",
                   help="size of the tmpfs on $HOME (default 256m)")
    p.add_argument("--shm-size", default=None, metavar="SIZE",
                   help="size of /dev/shm (default 64m)")
    p.add_argument("--overlay-size", default=None, metavar="SIZE",
                   help="size of the tmpfs holding --overlay's writable layer (default 1g)")
    p.add_argument("--hostname", default=None,
                   help="hostname inside (default: --name made a hostname, else 'isolate')")
    p.add_argument("--name", default=None, help="container name (also its cgroup's name)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the result as JSON to FILE (stderr without FILE)")
    # dest "argv": "command" is the subcommand's name in the shared namespace.
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD",
                   help="the command and its arguments")


def container_from_args(args: argparse.Namespace) -> Any:
    """The ``Container`` the options describe (``ConfigError`` for bad ones)."""
    from .._userdb import resolve, rootfs_db
    from .._resolve import DEFAULT_PATH
    from ..container import Container
    from ..errors import ConfigError
    from ..rootfs import HOME_SIZE, OVERLAY_SIZE, TMP_SIZE, RootFS

    user: Any = args.user
    if user is not None and user.isdigit():
        user = int(user)
    group: Any = args.group
    if group is not None and group.isdigit():
        group = int(group)
    tmp_size = TMP_SIZE if args.tmp_size is None else parse_size(args.tmp_size, "--tmp-size")
    home_size = HOME_SIZE if args.home_size is None else parse_size(args.home_size, "--home-size")
    shm_size = None if args.shm_size is None else parse_size(args.shm_size, "--shm-size")
    overlay_size = (OVERLAY_SIZE if args.overlay_size is None
                    else parse_size(args.overlay_size, "--overlay-size"))
    if getattr(args, "entrypoint", None) is not None and args.image is None:
        raise ConfigError("--entrypoint needs --image")
    if getattr(args, "image", None) is not None:
        return _image_container(args, user, group, overlay_size)
    if args.overlay_size is not None and args.overlay is None:
        raise ConfigError("--overlay-size needs --overlay")
    if args.tty and not os.isatty(0):
        raise ConfigError("--tty needs a terminal on stdin")
    if args.rootfs is not None:
        rootfs = RootFS.from_directory(args.rootfs)
        rootfs.tmpfs("/tmp", size=tmp_size)
    else:
        rootfs = RootFS.host(tmp_size=tmp_size)
    # The user as the sandbox knows it (its /etc/passwd): an unknown one is an error here.
    ident = resolve(rootfs_db(rootfs), user, group)
    home = "/root" if ident.uid == 0 else (ident.home or "/")
    if args.rootfs is None and _own_tmpfs(home):
        rootfs.tmpfs(home, mode=0o700, size=home_size)
    elif args.rootfs is None:
        home = "/"
    if shm_size is not None:
        rootfs.mount_options("/dev/shm", size=shm_size)
    if args.overlay is not None:
        rootfs.overlay(args.overlay or None, size=overlay_size)
    for b in args.bind:
        src, dst, ro = parse_bind(b)
        rootfs.bind(src, dst, readonly=ro)
    env = {"PATH": DEFAULT_PATH, "HOME": home}
    if "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    env.update(_env_options(args))
    return Container(rootfs=rootfs, env=env, cwd=args.cwd or (home if args.rootfs is None else "/"),
                     user=user, group=group, **_container_options(args))


def _env_options(args: argparse.Namespace) -> dict[str, str]:
    """The variables of ``--env KEY=VALUE`` (``ConfigError`` for another shape)."""
    from ..errors import ConfigError

    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env must be KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def _container_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Container`` keywords every root shares: limits, network, ids, name, hostname."""
    from ..errors import ConfigError

    limits = None
    if args.pids is not None and args.pids < 1:
        raise ConfigError(f"--pids must be at least 1, got {args.pids!r}")
    if args.memory is not None or args.cpus is not None or args.pids is not None:
        from ..cgroup import Limits

        limits = Limits(memory_max=None if args.memory is None else parse_size(args.memory, "--memory"),
                        cpus=args.cpus, pids_max=args.pids)
    extra: dict[str, Any] = {}
    if args.hostname is not None:
        extra["hostname"] = args.hostname
    if args.publish:
        extra["publish"] = args.publish
    if args.dns is not None:
        extra["dns"] = args.dns
    return dict(net=args.net, userns=args.userns, limits=limits, name=args.name,
                cgroup_parent=args.cgroup_parent, new_session=not args.tty, **extra)


def _in_store(reference: str, store: Any) -> bool:
    """Whether ``isolate run --image`` finds ``reference`` in ``store`` (by name or digest)."""
    from ..errors import ImageError
    from ..images import Image

    try:
        Image.open(reference, store=store)
    except ImageError:
        return False
    return True


def _image_container(args: argparse.Namespace, user: Any, group: Any, overlay_size: Any) -> Any:
    """``--image REF``: the image's layers as the root, its config as the defaults."""
    from ..container import Container
    from ..errors import ConfigError
    from ..images.store import Store
    from ..rootfs import RootFS

    if args.rootfs is not None or args.overlay is not None:
        raise ConfigError("--image takes neither --rootfs nor --overlay (the image has its own layer)")
    store = Store(args.store) if args.store is not None else Store()
    if args.pull == "always" or (args.pull == "missing" and not _in_store(args.image, store)):
        from ..images import pull

        pull(args.image, store=store, **pull_options(args))
    image: Any = args.image
    if args.entrypoint is not None:
        from ..images import Image

        # As docker run --entrypoint: the image's Cmd goes too.
        image = Image.open(args.image, store=store).with_config(
            entrypoint=[args.entrypoint] if args.entrypoint else None, cmd=None)
    rootfs = RootFS.from_image(image, store=store, size=overlay_size)
    if args.shm_size is not None:
        rootfs.mount_options("/dev/shm", size=parse_size(args.shm_size, "--shm-size"))
    for b in args.bind:
        src, dst, ro = parse_bind(b)
        rootfs.bind(src, dst, readonly=ro)
    # The image's Env applies under --env (None: the image's alone).
    return Container(rootfs=rootfs, env=_env_options(args) or None, cwd=args.cwd or "/", user=user,
                     group=group, **_container_options(args))


def _own_tmpfs(home: str) -> bool:
    """Whether ``home`` can have a tmpfs of its own in a host root: an absolute path
    below the root that is not /tmp or one of the host directories bound there."""
    from ..errors import ConfigError
    from ..rootfs import HOST_DIRS, container_path

    try:
        rel = container_path(home, "home")
    except ConfigError:
        return False
    top = rel.split(b"/")[0].decode(errors="replace")
    return rel != b"." and top not in ("tmp", "proc", "sys", "dev", "etc", *HOST_DIRS)


class _SignalForwarder:
    """SIGINT, SIGTERM, SIGHUP and SIGQUIT reach the command, as ``docker run`` forwards them.

    The command often runs as pid 1 of its pid namespace, which the kernel
    shields from signals it has no handler for; so a second signal kills the
    whole sandbox.  Either way the command ends and the ``with`` block tears
    down the cgroup and overlay: a signal never leaves them behind.  A signal
    that arrives before the command exists is delivered once it starts.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self, container: Any) -> None:
        self.container = container
        self.received: list[int] = []
        self.delivered = 0
        self.old: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarder:
        self.old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)

    def _handler(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        self._deliver()

    def started(self) -> None:
        """Call once the command runs: delivers a signal that came before."""
        self._deliver()

    def _deliver(self) -> None:
        # Each signal is acted on once, whether the handler or started() gets to it
        # first (started() after a forwarded signal used to kill the sandbox).
        proc = getattr(self.container, "process", None)
        if proc is None:
            return
        while self.delivered < len(self.received):
            first = self.delivered == 0
            self.delivered += 1
            if first:
                proc.send_signal(self.received[0])
            else:
                self.container.kill()


#: Options whose value may look like an option (``--memory -5m``): argparse would take
#: it for one and report a missing argument instead of the bad value.
VALUE_OPTIONS = ("--memory", "--cpus", "--pids", "--cgroup-parent", "--timeout", "--tmp-size", "--home-size",
                 "--shm-size", "--overlay-size")


def join_values(argv: list[str]) -> list[str]:
    """``--memory -5m`` -> ``--memory=-5m`` (before the command only), so the value is checked."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return out + argv[i:]
        if a in VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                and argv[i + 1] != "--":
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _check_json_path(path: str | None) -> None:
    """``--json FILE``: its directory must exist and be writable, checked before anything runs."""
    if path is None or path == "-":
        return
    from ..errors import ConfigError

    where = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(where):
        raise ConfigError(f"--json: {where!r} is not an existing directory (for {path!r})")
    if os.path.isdir(path) or not os.access(path if os.path.exists(path) else where, os.W_OK):
        raise ConfigError(f"--json: cannot write {path!r}")


def main(args: argparse.Namespace) -> int:
    """Run the command; returns its exit status (128+N for signal N, 125 for isolate's errors)."""
    from ..errors import IsolateError, SetupError

    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command and getattr(args, "image", None) is None:
        print("isolate: run: no command given (isolate run [options] -- CMD ...)", file=sys.stderr)
        return 125
    try:
        if args.timeout is not None and args.timeout < 0:
            from ..errors import ConfigError

            raise ConfigError(f"--timeout must be >= 0, got {args.timeout!r}")
        _check_json_path(args.json)
        with container_from_args(args) as c, _SignalForwarder(c) as forwarder:
            c.start(command or None)
            forwarder.started()
            result = c.wait(args.timeout)
    except SetupError as e:
        print(f"isolate: step {e.step} ({e.op}): {e.strerror}", file=sys.stderr)
        return 125
    except IsolateError as e:
        print(f"isolate: {e}", file=sys.stderr)
        return 125
    if args.json is not None:
        text = json.dumps(result.to_dict())
        if args.json == "-":
            print(text, file=sys.stderr)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    rc: int = result.returncode
    return 128 - rc if rc < 0 else rc
