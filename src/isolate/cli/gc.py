"""``isolate gc``: remove what isolate processes that are gone left behind."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from ._help import HelpFormatter

EPILOG = """\
examples:
  # what would be removed, removing nothing:
  $ isolate gc --dry-run
  # remove it (safe at any time: what a live process owns is never touched):
  $ isolate gc
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gc`` with the ``isolate`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "gc", help="remove cgroups, overlay work directories and namespace mounts left by "
                   "isolate processes that are gone",
        description="Remove what isolate processes that were killed (or ended without "
                    "closing) left behind: their cgroups (killing what still runs there), "
                    "overlay work directories and namespace bind mounts, and (as root) the "
                    "blocks of host ids their containers had, once no process runs with those "
                    "ids, and their bridged containers' addresses with the veths, published "
                    "ports and hosts entries that came with them.  Only things with an "
                    "owner record whose owner is gone; a running process's things, and "
                    "anything handed over with detach(), are never touched.  Prints one line "
                    "per thing removed; exits 0.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="remove nothing; print what would be removed")
    return p


def main(args: argparse.Namespace) -> int:
    """Reclaim (or list, with ``--dry-run``) and print one line per thing; returns 0.

    Things that cannot be removed yet are named on stderr (and kept for the
    next run); 1 only when the owner registry itself cannot be read.
    """
    from isolate._owner import gc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found = gc(dry_run=args.dry_run)
        except OSError as e:        # the registry itself is unusable: say which and why
            print(f"isolate gc: {e}", file=sys.stderr)
            return 1
    verb = "would remove" if args.dry_run else "removed"
    for item in found:
        print(f"{verb} {item}")
    for w in caught:
        print(f"isolate gc: {w.message}", file=sys.stderr)
    return 0
