"""``isolate load``: images from an archive or an OCI layout into the image store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._help import HelpFormatter
from .pull import add_store_option

EPILOG = """\
examples:
  # what podman or docker saved:
  #   podman save -o app.tar example.com/team/app:1 && isolate load -i app.tar
  # an OCI image layout directory whose image has no name:
  #   isolate load -i ./layout --tag example.com/team/app:1
  $ isolate load --help
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``load`` with the ``isolate`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "load", help="load images from a docker/podman save archive or an OCI layout",
        description="Load every image of an OCI image layout (a directory, or a tar of one) "
                    "or a docker-archive (docker save, podman save; gzip too) into the image "
                    "store, each blob verified against its digest.  Names come from the "
                    "layout's annotations or the archive's RepoTags.  Prints one line per name: "
                    "the name and its manifest's digest.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("-i", "--input", required=True, metavar="ARCHIVE|DIR",
                   help="the archive or layout directory")
    p.add_argument("--tag", metavar="NAME", help="name an image that has none")
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of the images loaded")
    return p


def main(args: argparse.Namespace) -> int:
    """Load and print what was loaded; 0, or 1 with one error line."""
    from isolate.images.importer import load
    from isolate.images.store import Store

    images = load(args.input, store=Store(args.store) if args.store else None, tag=args.tag)
    if args.json:
        json.dump([{"reference": i.reference, "digest": i.manifest_digest, "config": i.config_digest}
                   for i in images], sys.stdout)
        sys.stdout.write("\n")
    else:
        for i in images:
            print(f"{i.reference} {i.manifest_digest}")
    return 0
