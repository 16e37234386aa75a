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

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from types import SimpleNamespace
    from typing import Any, NoReturn

    from .oci_verbs import Args

__all__ = ["VERBS", "build_parser", "main"]

PROG = "isolate-oci"
DEFAULT_ROOT = "/run/isolate-oci"       # as root; without root, $XDG_RUNTIME_DIR/isolate-oci

# verb -> (help, positionals, flags).  Positionals: (name, nargs).  Flags: (names, kind)
# with kind "bool", "str", "int" or "list" (repeatable).  Copied from runc 1.1's --help.
_CONSOLE = (("--console-socket",), "str")
_PID_FILE = (("--pid-file",), "str")
_BUNDLE = (("--bundle", "-b"), "str")
_REMAINDER = "..."      # argparse.REMAINDER, without importing argparse
_ID = (("container_id", None),)
_CREATE_FLAGS = (_BUNDLE, _CONSOLE, _PID_FILE, (("--no-pivot",), "bool"), (("--no-new-keyring",), "bool"),
                 (("--preserve-fds",), "int"))
VERBS: dict[str, tuple[str, tuple[tuple[str, Any], ...], tuple[tuple[tuple[str, ...], str], ...]]] = {
    "checkpoint": ("checkpoint a running container", _ID, (
        (("--image-path",), "str"), (("--work-path",), "str"), (("--parent-path",), "str"),
        (("--leave-running",), "bool"), (("--tcp-established",), "bool"), (("--ext-unix-sk",), "bool"),
        (("--shell-job",), "bool"), (("--lazy-pages",), "bool"), (("--status-fd",), "int"),
        (("--page-server",), "str"), (("--file-locks",), "bool"), (("--pre-dump",), "bool"),
        (("--manage-cgroups-mode",), "str"), (("--empty-ns",), "list"), (("--auto-dedup",), "bool"))),
    "create": ("create a container", _ID, _CREATE_FLAGS),
    "delete": ("delete a container's resources", _ID, ((("--force", "-f"), "bool"),)),
    "events": ("display container events and statistics", _ID,
               ((("--interval",), "str"), (("--stats",), "bool"))),
    "exec": ("execute a new process inside the container",
             (("container_id", None), ("command", _REMAINDER)), (
                 _CONSOLE, (("--cwd",), "str"), (("--env", "-e"), "list"), (("--tty", "-t"), "bool"),
                 (("--user", "-u"), "str"), (("--additional-gids", "-g"), "list"),
                 (("--process", "-p"), "str"), (("--detach", "-d"), "bool"), _PID_FILE,
                 (("--process-label",), "str"), (("--apparmor",), "str"), (("--no-new-privs",), "bool"),
                 (("--cap", "-c"), "list"), (("--preserve-fds",), "int"), (("--cgroup",), "list"),
                 (("--ignore-paused",), "bool"))),
    "features": ("show the enabled features", (), ()),
    "kill": ("send a signal to the container's init process",
             (("container_id", None), ("signal", "?")), ((("--all", "-a"), "bool"),)),
    "list": ("list containers", (), ((("--format", "-f"), "str"), (("--quiet", "-q"), "bool"))),
    "pause": ("suspend all processes in the container", _ID, ()),
    "ps": ("list the container's processes", (("container_id", None), ("ps_args", _REMAINDER)),
           ((("--format", "-f"), "str"),)),
    "restore": ("restore a container from a checkpoint", _ID, (
        _CONSOLE, (("--image-path",), "str"), (("--work-path",), "str"), (("--tcp-established",), "bool"),
        (("--ext-unix-sk",), "bool"), (("--shell-job",), "bool"), (("--file-locks",), "bool"),
        (("--manage-cgroups-mode",), "str"), _BUNDLE, (("--detach", "-d"), "bool"), _PID_FILE,
        (("--no-subreaper",), "bool"), (("--no-pivot",), "bool"), (("--empty-ns",), "list"),
        (("--auto-dedup",), "bool"), (("--lazy-pages",), "bool"), (("--lsm-profile",), "str"),
        (("--lsm-mount-context",), "str"))),
    "resume": ("resume all processes in the container", _ID, ()),
    "run": ("create and start a container", _ID, _CREATE_FLAGS + (
        (("--detach", "-d"), "bool"), (("--keep",), "bool"), (("--no-subreaper",), "bool"))),
    "spec": ("write a new config.json", (), (_BUNDLE, (("--rootless",), "bool"))),
    "start": ("start the user process of a created container", _ID, ()),
    "state": ("output the state of a container", _ID, ()),
    "update": ("update container resource constraints", _ID, (
        (("--resources", "-r"), "str"), (("--blkio-weight",), "int"), (("--cpu-period",), "str"),
        (("--cpu-quota",), "str"), (("--cpu-share",), "str"), (("--cpu-rt-period",), "str"),
        (("--cpu-rt-runtime",), "str"), (("--cpuset-cpus",), "str"), (("--cpuset-mems",), "str"),
        (("--memory",), "str"), (("--memory-reservation",), "str"), (("--memory-swap",), "str"),
        (("--pids-limit",), "int"), (("--l3-cache-schema",), "str"), (("--mem-bw-schema",), "str"))),
}
IMPLEMENTED = frozenset(VERBS) - {"checkpoint", "restore"}
_GLOBAL_VALUE = ("root", "log", "log-format", "criu", "rootless")
_GLOBAL_BOOL = ("debug", "systemd-cgroup", "help", "version")


class UsageError(Exception):
    """Bad command-line usage (exit status 1, as runc's)."""


def _parser_class() -> type[argparse.ArgumentParser]:
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

    from .oci_help import EPILOG, VERB_EPILOGS, HelpFormatter

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
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=parser_class)
    for verb, (help_, positionals, flags) in VERBS.items():
        if only is not None and verb != only:
            continue
        sp = sub.add_parser(verb, help=help_, description=help_, epilog=VERB_EPILOGS[verb],
                            formatter_class=HelpFormatter)
        for names, kind in flags:
            dest = _dest(names)
            if kind == "bool":
                sp.add_argument(*names, dest=dest, action="store_true")
            elif kind == "int":
                sp.add_argument(*names, dest=dest, type=_nonnegative, default=None)
            elif kind == "list":
                sp.add_argument(*names, dest=dest, action="append", default=[])
            else:
                sp.add_argument(*names, dest=dest)
        for name, nargs in positionals:
            sp.add_argument(name, nargs=nargs)
    return p


def _dest(names: tuple[str, ...]) -> str:
    return names[0].lstrip("-").replace("-", "_")


# The verbs every container start goes through; their plain command lines skip argparse.
_FAST_VERBS = frozenset({"create", "run", "start", "state", "kill", "delete"})
_GLOBAL_DEFAULTS = {"root": None, "log": None, "log_format": "text", "debug": False,
                    "systemd_cgroup": False, "rootless": "auto", "criu": "criu", "version": False}
_GLOBAL_CHOICES = {"log_format": ("text", "json"), "rootless": ("true", "false", "auto")}


def _fast_args(argv: list[str], verb: str) -> SimpleNamespace | None:
    """``argv`` (normalized) parsed as argparse would, for a plain command line of a fast verb.

    None for anything else (help, abbreviations, Go-style single-dash flags,
    ``--``, a value that starts with ``-``, a bad number or choice, misplaced
    positionals): argparse then parses it, with its own messages.
    """
    from types import SimpleNamespace

    values: dict[str, Any] = dict(_GLOBAL_DEFAULTS)
    i = 0
    while i < len(argv) and argv[i] != verb:
        name, eq, value = argv[i].partition("=")
        dest = name[2:].replace("-", "_")
        if not name.startswith("--") or dest not in values or dest == "version":
            return None
        if isinstance(values[dest], bool):
            if eq:
                return None
            values[dest] = True
        else:
            if not eq:
                i += 1
                if i == len(argv) or argv[i].startswith("-"):
                    return None
                value = argv[i]
            if value not in _GLOBAL_CHOICES.get(dest, (value,)):
                return None
            values[dest] = value
        i += 1
    if i == len(argv):
        return None
    values["verb"] = verb
    _, positionals, flags = VERBS[verb]
    kinds: dict[str, tuple[str, str]] = {}
    for names, kind in flags:
        dest = _dest(names)
        values[dest] = False if kind == "bool" else [] if kind == "list" else None
        kinds.update(dict.fromkeys(names, (dest, kind)))
    given: list[str] = []
    last_positional = -1
    i += 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            if given and last_positional != i - 1:
                return None         # argparse fills an optional positional early: leave it the quirk
            given.append(arg)
            last_positional = i
            i += 1
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in kinds:
            return None
        dest, kind = kinds[name]
        if kind == "bool":
            if eq:
                return None
            values[dest] = True
            i += 1
            continue
        if not eq:
            i += 1
            if i == len(argv) or argv[i].startswith("-"):
                return None
            value = argv[i]
        if kind == "int":
            if not (value.isascii() and value.isdigit()):
                return None
            values[dest] = int(value)
        elif kind == "list":
            values[dest].append(value)
        else:
            values[dest] = value
        i += 1
    required = [name for name, nargs in positionals if nargs is None]
    optional = [name for name, nargs in positionals if nargs == "?"]
    if len(required) + len(optional) != len(positionals) or \
            not len(required) <= len(given) <= len(required) + len(optional):
        return None
    for name in required + optional:
        values[name] = given.pop(0) if given else None
    return SimpleNamespace(**values)


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
        norm = _normalize(raw)
        verb = next((a for a in norm if a in VERBS), None)
        args: Args | None = _fast_args(norm, verb) if verb in _FAST_VERBS else None
        if args is None:
            args = build_parser(verb).parse_args(norm)
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


def _spec(args: Args) -> int:
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
