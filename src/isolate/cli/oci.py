"""``isolate-oci``: an OCI runtime command line, argument-compatible with runc.

What containerd's runc shim, conmon (podman, CRI-O) and people type is
accepted: the global flags (``--root``, ``--log``, ``--log-format``,
``--debug``, ``--systemd-cgroup``, ``--rootless``) and every runc verb with
its flags.  Every verb works except checkpoint and restore (no CRIU); the
verbs themselves are in ``oci_verbs.py``, the operations in
``isolate.oci.runtime``.  Errors are one line on
stderr (and, with ``--log``, a log entry in runc's text or JSON format,
where containerd's shim looks for them); the exit status is 1, as runc's.
"""

from __future__ import annotations

import os
import sys

# argparse and json are imported where used: after main() has raised the threshold of the
# cyclic garbage collector, whose collections while they load cost a call without a planner 1 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import NoReturn

__all__ = ["VERBS", "UsageError", "build_parser", "keep_parser", "main", "parse_args"]

PROG = "isolate-oci"
DEFAULT_ROOT = "/run/isolate-oci"       # as root; without root, $XDG_RUNTIME_DIR/isolate-oci

#: runc's verbs, each with its one-line help (runc 1.1's --help); ``_add_verb`` has their flags.
VERBS = {
    "checkpoint": "checkpoint a running container",
    "create": "create a container",
    "delete": "delete a container's resources",
    "events": "display container events and statistics",
    "exec": "execute a new process inside the container",
    "features": "show the enabled features",
    "kill": "send a signal to the container's init process",
    "list": "list containers",
    "pause": "suspend all processes in the container",
    "ps": "list the container's processes",
    "restore": "restore a container from a checkpoint",
    "resume": "resume all processes in the container",
    "run": "create and start a container",
    "spec": "write a new config.json",
    "start": "start the user process of a created container",
    "state": "output the state of a container",
    "update": "update container resource constraints",
}
IMPLEMENTED = frozenset(VERBS) - {"checkpoint", "restore"}
_GLOBAL_VALUE = ("root", "log", "log-format", "criu", "rootless")
_GLOBAL_BOOL = ("debug", "systemd-cgroup", "help", "version")


class UsageError(Exception):
    """Bad command-line usage (exit status 1, as runc's)."""


def _parser_class() -> type[argparse.ArgumentParser]:
    """An ``ArgumentParser`` that raises ``UsageError`` with argparse's message (instead of
    printing the usage and exiting 2)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(message)

    return _Parser


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser: global flags, then one subcommand per runc verb.

    ``only``: add just that verb's subcommand (a parser for every verb costs
    more than a container start; the verb is known from the command line).
    """
    import argparse

    from .oci_help import EPILOG, HelpFormatter

    parser_class = _parser_class()
    p = parser_class(prog=PROG, description="An OCI runtime built on isolate (runc-compatible arguments).",
                     epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--root", default=None,
                   help=f"directory for container state (default {DEFAULT_ROOT}; without root "
                        "$XDG_RUNTIME_DIR/isolate-oci)")
    p.add_argument("--log", help="write errors and debug messages to this file (default stderr)")
    p.add_argument("--log-format", default="text", choices=("text", "json"), help="log format")
    p.add_argument("--debug", action="store_true", help="log debug messages")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="use the systemd cgroup driver (not supported: an error for verbs that need cgroups)")
    p.add_argument("--rootless", default="auto", choices=("true", "false", "auto"),
                   help="ignore cgroup permission errors: run without a cgroup and its limits, "
                        "with a warning (true, false or auto: true when not root, as runc's)")
    p.add_argument("--criu", default="criu", help=argparse.SUPPRESS)
    p.add_argument("--version", "-v", action="store_true", help="print the version")
    # prog given: argparse would lay out the usage to work it out (the same "isolate-oci").
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=parser_class, prog=PROG)
    for verb in VERBS if only is None else (only,):
        _add_verb(sub, verb)
    return p


def _add_verb(sub: argparse._SubParsersAction[argparse.ArgumentParser], verb: str) -> None:
    """``verb``'s subcommand, with runc's flags (in runc 1.1's order) and positionals."""
    import argparse

    from .oci_help import VERB_EPILOGS, HelpFormatter

    sp = sub.add_parser(verb, help=VERBS[verb], description=VERBS[verb], epilog=VERB_EPILOGS[verb],
                        formatter_class=HelpFormatter)
    value = sp.add_argument

    def flag(*names: str) -> None:
        sp.add_argument(*names, action="store_true")

    def number(*names: str) -> None:
        sp.add_argument(*names, type=_nonnegative)

    def repeated(*names: str) -> None:
        sp.add_argument(*names, action="append", default=[])

    if verb in ("create", "run"):
        value("--bundle", "-b")
        value("--console-socket")
        value("--pid-file")
        flag("--no-pivot")
        flag("--no-new-keyring")
        number("--preserve-fds")
        if verb == "run":
            flag("--detach", "-d")
            flag("--keep")
            flag("--no-subreaper")
    elif verb == "checkpoint":
        value("--image-path")
        value("--work-path")
        value("--parent-path")
        for name in ("--leave-running", "--tcp-established", "--ext-unix-sk", "--shell-job", "--lazy-pages"):
            flag(name)
        number("--status-fd")
        value("--page-server")
        flag("--file-locks")
        flag("--pre-dump")
        value("--manage-cgroups-mode")
        repeated("--empty-ns")
        flag("--auto-dedup")
    elif verb == "restore":
        value("--console-socket")
        value("--image-path")
        value("--work-path")
        for name in ("--tcp-established", "--ext-unix-sk", "--shell-job", "--file-locks"):
            flag(name)
        value("--manage-cgroups-mode")
        value("--bundle", "-b")
        flag("--detach", "-d")
        value("--pid-file")
        flag("--no-subreaper")
        flag("--no-pivot")
        repeated("--empty-ns")
        flag("--auto-dedup")
        flag("--lazy-pages")
        value("--lsm-profile")
        value("--lsm-mount-context")
    elif verb == "delete":
        flag("--force", "-f")
    elif verb == "events":
        value("--interval")
        flag("--stats")
    elif verb == "exec":
        value("--console-socket")
        value("--cwd")
        repeated("--env", "-e")
        flag("--tty", "-t")
        value("--user", "-u")
        repeated("--additional-gids", "-g")
        value("--process", "-p")
        flag("--detach", "-d")
        value("--pid-file")
        value("--process-label")
        value("--apparmor")
        flag("--no-new-privs")
        repeated("--cap", "-c")
        number("--preserve-fds")
        repeated("--cgroup")
        flag("--ignore-paused")
    elif verb == "kill":
        flag("--all", "-a")
    elif verb == "list":
        value("--format", "-f")
        flag("--quiet", "-q")
    elif verb == "ps":
        value("--format", "-f")
    elif verb == "spec":
        value("--bundle", "-b")
        flag("--rootless")
    elif verb == "update":
        value("--resources", "-r")
        number("--blkio-weight")
        for name in ("--cpu-period", "--cpu-quota", "--cpu-share", "--cpu-rt-period", "--cpu-rt-runtime",
                     "--cpuset-cpus", "--cpuset-mems", "--memory", "--memory-reservation", "--memory-swap"):
            value(name)
        number("--pids-limit")
        value("--l3-cache-schema")
        value("--mem-bw-schema")
    if verb not in ("features", "list", "spec"):
        value("container_id")
    if verb == "exec":
        value("command", nargs=argparse.REMAINDER)
    elif verb == "kill":
        value("signal", nargs="?")
    elif verb == "ps":
        value("ps_args", nargs=argparse.REMAINDER)


#: The parser of every verb, kept by ``keep_parser``.
_kept: argparse.ArgumentParser | None = None


def keep_parser() -> None:
    """Build the parser of every verb now and keep it for ``parse_args`` in this process and its forks.

    For the warm planner, before it forks its workers: a worker then only
    parses (0.1 ms) instead of building the verb's parser (1-2 ms).
    """
    global _kept
    _kept = build_parser()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """runc's command line (without the program name) parsed; raises ``UsageError``.

    Unless a parser was kept (``keep_parser``), only the verb's subcommand is
    built: the verb is the first argument that names one.  If that was the
    value of a global flag (``--root start run c1``), the parser of every
    verb parses it again.
    """
    norm = _normalize(argv)
    if _kept is not None:
        return _kept.parse_args(norm)
    verb = next((a for a in norm if a in VERBS), None)
    try:
        return build_parser(verb).parse_args(norm)
    except UsageError:
        if verb is None:
            raise
    return build_parser().parse_args(norm)


def _nonnegative(text: str) -> int:
    import argparse

    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _normalize(argv: list[str]) -> list[str]:
    """runc's flag syntax to argparse's, for the global flags before the verb.

    runc (Go's flag rules) takes ``-root X`` as ``--root X``,
    ``--debug=false`` as no flag, and ``--rootless`` alone as ``--rootless=true``.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VERBS or arg == "--":
            return out + argv[i:]
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and not arg.startswith("--") and name in _GLOBAL_VALUE + _GLOBAL_BOOL:
            arg = "--" + arg.lstrip("-")
        if name in _GLOBAL_BOOL and arg.startswith("--") and eq:
            # Go's boolean flags take --flag=true / --flag=false.
            if value.lower() in ("false", "0"):
                i += 1
                continue
            if value.lower() in ("true", "1"):
                arg = "--" + name
        if name == "rootless" and arg.startswith("--") and not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt in ("true", "false", "auto"):
                out.append(f"--rootless={nxt}")
                i += 2
                continue
            arg = "--rootless=true"
        out.append(arg)
        i += 1
    return out


class _Log:
    """Where errors and debug lines go: stderr, plus ``--log`` in runc's text or JSON format."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def _write(self, level: str, msg: str) -> None:
        if not self.path:
            return
        import datetime
        import json

        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": now})
        else:
            line = f"time={json.dumps(now)} level={level} msg={json.dumps(msg)}"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as e:
            print(f"{PROG}: --log {self.path}: {e.strerror}", file=sys.stderr)

    def error(self, msg: str) -> None:
        print(f"{PROG}: {msg}", file=sys.stderr)
        self._write("error", msg)

    def warn(self, msg: str) -> None:
        """A warning: to ``--log``; on stderr only with ``--debug`` (runtimes' callers read stderr as errors)."""
        if self.debug_on and not self.path:
            print(f"{PROG}: warning: {msg}", file=sys.stderr)
        self._write("warning", msg)

    def notice(self, msg: str) -> None:
        """A warning the user must see (runc prints its warnings): to ``--log``, else stderr."""
        if not self.path:
            print(f"{PROG}: warning: {msg}", file=sys.stderr)
        self._write("warning", msg)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            if not self.path:
                print(f"{PROG}: debug: {msg}", file=sys.stderr)
            self._write("debug", msg)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``isolate-oci``; returns the exit status.

    Run as the program (the console script or ``python -m``, with ``argv``
    None), a verb that succeeds ends the process itself (see ``_exit_now``).
    """
    program = _is_program(argv)
    if program:
        import gc

        # One short-lived call: cyclic collections while the container machinery is
        # imported cost 5-7 ms and find almost nothing.  A long-running verb (events)
        # still collects, past this threshold.
        gc.set_threshold(100_000)
    raw = list(sys.argv[1:] if argv is None else argv)
    log = _Log(None, "text", False)
    try:
        args = parse_args(raw)
    except UsageError as e:
        log.error(str(e))
        return 1
    log = _Log(args.log, args.log_format, args.debug)
    if args.version:
        from .. import __version__
        from ..oci.spec import SPEC_VERSION

        print(f"{PROG} version {__version__}\nspec: {SPEC_VERSION}")
        return 0
    if args.verb is None:
        build_parser().print_help(sys.stderr)
        return 1
    log.debug(f"{args.verb}: {vars(args)}")
    from ..errors import IsolateError

    try:
        if args.verb == "spec":
            return _spec(args)
        if args.verb == "features":
            import json

            from ..oci.features import features

            try:
                print(json.dumps(features(), indent=4), flush=True)
            except BrokenPipeError:
                # `isolate-oci features | head`: the reader left; not an error of ours.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if args.root is None:
            from ..oci.rootless import default_root

            args.root = default_root()
        if args.systemd_cgroup:
            raise _Fail("--systemd-cgroup: the systemd cgroup driver is not supported; use the cgroupfs "
                        "driver (containerd: SystemdCgroup = false; podman: --cgroup-manager cgroupfs)")
        if args.verb not in IMPLEMENTED:
            raise _Fail(f"{args.verb}: not supported (no checkpoint/restore in isolate)")
        from .oci_verbs import VERB_FUNCS

        code = VERB_FUNCS[args.verb](args, log)
        if program:
            _exit_now(code)
        return code
    except _Fail as e:
        log.error(str(e))
    except IsolateError as e:
        log.error(f"{args.verb}: {e}")
    except LookupError as e:
        log.error(f"{args.verb}: {e.args[0] if e.args else e}")
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        log.error(f"{args.verb}:{where}: {e.strerror or e}")
    return 1


class _Fail(Exception):
    """A one-line failure of the verb."""


def _is_program(argv: list[str] | None) -> bool:
    """Whether ``main`` runs as the program: no ``argv``, called from the script's ``__main__``."""
    return argv is None and getattr(sys.modules.get("__main__"), "main", None) is main


def _exit_now(code: int) -> None:
    """End the program now, when a verb has done its work and the program is ``isolate-oci``.

    The interpreter's own teardown (every module and object freed, one by
    one) costs a runtime call 10-20 ms once the container machinery is
    loaded, and nothing needs it: the verbs close what they open.  Returns
    (the normal exit then happens) if flushing the output fails, so that
    error is reported as usual, or if a thread other than this one is alive.
    """
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    owner = sys.modules.get("isolate._owner")
    if owner is not None:
        owner.leave()           # what atexit would do: no empty owner record left behind
    os._exit(code)


def _spec(args: argparse.Namespace) -> int:
    import json

    from ..oci.features import default_spec

    bundle = args.bundle or "."
    if not os.path.isdir(bundle):
        raise _Fail(f"spec: bundle {bundle!r} is not a directory")
    path = os.path.join(bundle, "config.json")
    text = json.dumps(default_spec(rootless=args.rootless), indent="\t")
    try:
        # O_EXCL: never overwrite a config someone wrote (runc refuses too).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise _Fail(f"spec: {path} exists; remove it first") from None
    except OSError as e:
        raise _Fail(f"spec: {path}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
