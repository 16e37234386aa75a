"""``isolate-oci`` verbs: parsed runc arguments to ``isolate.oci.runtime`` calls.

Each function takes the parsed arguments and the log, prints what runc
prints, and returns the exit status.  Errors propagate to ``oci.main``,
which prints them on one line.
"""

from __future__ import annotations

import json
import os
import sys

from ..errors import ConfigError
from ..oci import runtime as R
from ..oci.rootless import is_rootless

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace as Args
    from collections.abc import Callable
    from typing import Any

__all__ = ["VERB_FUNCS"]


def _json_out(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def _create(args: Args, log: Any) -> int:
    R.create(args.root, args.container_id, args.bundle or os.getcwd(), pid_file=args.pid_file,
             console_socket=args.console_socket, preserve_fds=args.preserve_fds or 0,
             no_pivot=args.no_pivot, rootless=is_rootless(args.rootless), warn=log.warn,
             notice=log.notice)
    return 0


def _run(args: Args, log: Any) -> int:
    return R.run(args.root, args.container_id, args.bundle or os.getcwd(), pid_file=args.pid_file,
                 console_socket=args.console_socket, preserve_fds=args.preserve_fds or 0,
                 no_pivot=args.no_pivot, detach=args.detach, keep=args.keep,
                 rootless=is_rootless(args.rootless), warn=log.warn, notice=log.notice)


def _start(args: Args, log: Any) -> int:
    R.start(args.root, args.container_id, warn=log.warn)
    return 0


def _state(args: Args, log: Any) -> int:
    _json_out(R.state(args.root, args.container_id))
    return 0


def _kill(args: Args, log: Any) -> int:
    R.kill(args.root, args.container_id, R.parse_signal(args.signal), all=args.all)
    return 0


def _delete(args: Args, log: Any) -> int:
    R.delete(args.root, args.container_id, force=args.force, warn=log.warn)
    return 0


def _pause(args: Args, log: Any) -> int:
    R.pause(args.root, args.container_id)
    return 0


def _resume(args: Args, log: Any) -> int:
    R.resume(args.root, args.container_id)
    return 0


def _list(args: Args, log: Any) -> int:
    states = R.list_states(args.root)
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        _json_out(states)
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root")
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _ps(args: Args, log: Any) -> int:
    pids = R.ps(args.root, args.container_id)
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    import subprocess

    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout.splitlines()
    if not out:
        return 0
    header = out[0].split()
    col = header.index("PID") if "PID" in header else 1
    print(out[0])
    wanted = {str(p) for p in pids}
    for line in out[1:]:
        cells = line.split()
        if len(cells) > col and cells[col] in wanted:
            print(line)
    return 0


def _events(args: Args, log: Any) -> int:
    interval = 5.0
    if args.interval:
        text = args.interval.strip()
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0}
        unit = next((u for u in ("ms", "s", "m") if text.endswith(u)), "s")
        try:
            interval = float(text[: -len(unit)] if text.endswith(unit) else text) * scale[unit]
        except ValueError:
            raise ConfigError(f"--interval: expected a duration like 5s, got {args.interval!r}") from None
    from ..oci.stats import events

    events(args.root, args.container_id, interval=interval, once=args.stats,
           out=lambda obj: print(json.dumps(obj), flush=True))
    return 0


def _update(args: Args, log: Any) -> int:
    R.config_of(args.root, args.container_id)     # no such container: say so first
    res: dict[str, Any] = R.read_json_arg(args.resources, "--resources") if args.resources else {}
    if not isinstance(res, dict):
        raise ConfigError(f"--resources: expected a JSON object, got {type(res).__name__}")

    def num(flag: str, text: str | None) -> int | None:
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--{flag}: expected a number, got {text!r}") from None

    for flag, section, key, value in (
            ("memory", "memory", "limit", num("memory", args.memory)),
            ("memory-swap", "memory", "swap", num("memory-swap", args.memory_swap)),
            ("memory-reservation", "memory", "reservation", num("memory-reservation", args.memory_reservation)),
            ("cpu-quota", "cpu", "quota", num("cpu-quota", args.cpu_quota)),
            ("cpu-period", "cpu", "period", num("cpu-period", args.cpu_period)),
            ("cpu-share", "cpu", "shares", num("cpu-share", args.cpu_share)),
            ("pids-limit", "pids", "limit", args.pids_limit),
            ("blkio-weight", "blockIO", "weight", args.blkio_weight)):
        if value is not None:
            res.setdefault(section, {})[key] = value
    for flag, key, value in (("cpuset-cpus", "cpus", args.cpuset_cpus), ("cpuset-mems", "mems", args.cpuset_mems)):
        if value is not None:
            res.setdefault("cpu", {})[key] = value
    from ..oci.stats import update

    update(args.root, args.container_id, res)
    return 0


def _exec(args: Args, log: Any) -> int:
    from ..oci import spec as S

    config = R.config_of(args.root, args.container_id)     # no such container: say so first
    if args.process:
        raw = R.read_json_arg(args.process, "--process")
        proc = S.Process.from_json(raw, "process")
    else:
        command = list(args.command or ())
        if command[:1] == ["--"]:
            command = command[1:]
        proc = R.process_from_args(config, command, cwd=args.cwd, env=args.env, user=args.user,
                                   tty=args.tty, additional_gids=args.additional_gids,
                                   no_new_privs=args.no_new_privs)
    return R.exec_process(args.root, args.container_id, proc, detach=args.detach, pid_file=args.pid_file,
                          console_socket=args.console_socket, preserve_fds=args.preserve_fds or 0,
                          extra_caps=args.cap, ignore_paused=args.ignore_paused)


VERB_FUNCS: dict[str, Callable[[Args, Any], int]] = {
    "create": _create, "run": _run, "start": _start, "state": _state, "kill": _kill, "delete": _delete,
    "pause": _pause, "resume": _resume, "list": _list, "ps": _ps, "events": _events, "update": _update,
    "exec": _exec,
}
