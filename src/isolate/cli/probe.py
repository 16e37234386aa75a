"""``isolate probe``: print what this kernel and host allow, and how to enable the rest."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._help import HelpFormatter

EPILOG = """\
examples:
  $ isolate probe
  $ isolate probe --json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``probe`` with the ``isolate`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "probe", help="show which namespaces and kernel features are available here",
        description="Probe the kernel and host: each namespace type (really tried), user "
                    "namespace limits, clone3, CLONE_INTO_CGROUP, the cgroup layout, the new "
                    "mount API, idmapped mounts, pidfd, close_range, seccomp, newuidmap and "
                    "/etc/subuid.  Missing features come with how to enable them.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(args: argparse.Namespace) -> int:
    """Run the probe and print it; always exits 0 (a missing feature is not an error)."""
    from isolate._probe import format_table, probe

    result = probe()
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(result))
    return 0
