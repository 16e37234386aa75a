"""``isolate`` command line: parses arguments and calls the library, nothing more.

Each subcommand lives in its own module of this package and provides
``add_parser(subparsers)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

from isolate.cli._help import HelpFormatter

# subcommand -> module in isolate.cli
COMMANDS = {
    "gc": "gc",
    "image": "images",
    "images": "images",
    "load": "load",
    "network": "network",
    "probe": "probe",
    "pull": "pull",
    "rmi": "images",
    "run": "run",
}

EPILOG = """\
examples:
  $ isolate probe
  $ isolate run -- echo hello
  $ isolate run --memory 256m --pids 64 -- sh -c 'echo pid $$ in $(hostname)'
  $ isolate gc --dry-run

'isolate COMMAND --help' shows each command's options and more examples.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered, or ``only`` that command's module's
    (what parsing that command needs: the others' modules are not imported)."""
    from isolate import __version__

    parser = argparse.ArgumentParser(prog="isolate", description="Run programs isolated.",
                                     epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [COMMANDS[only]] if only in COMMANDS else COMMANDS.values()
    for module in dict.fromkeys(modules):    # a module may register several commands
        mod = importlib.import_module(f"isolate.cli.{module}")
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``isolate`` and ``python -m isolate``; returns the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv[0] if argv else None)
    if argv[:1] == ["run"]:
        from isolate.cli.run import join_values

        argv = ["run", *join_values(argv[1:])]
    args = parser.parse_args(argv)
    mod = importlib.import_module(f"isolate.cli.{COMMANDS[args.command]}")
    from isolate.errors import IsolateError

    try:
        return int(mod.main(args))
    except IsolateError as e:
        print(f"isolate: {e}", file=sys.stderr)
        return 125 if args.command == "run" else 1


def script() -> int:
    """The ``isolate`` command and ``python -m isolate``: ``main()`` in a process that ends with it.

    What the command leaves is freed by the process's exit: frozen, it is spared the
    interpreter's last garbage collection (about 15 ms after a pull).
    """
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(script())
