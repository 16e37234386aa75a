"""``isolate images``, ``isolate rmi`` and ``isolate image prune|bundle``: the image store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._help import HelpFormatter
from .pull import add_store_option

EPILOG_IMAGES = """\
examples:
  $ isolate images --store ./store
  $ isolate images --json --store ./store
"""
EPILOG_RMI = """\
examples:
  # drop a name (exit 1 when the store has no such image), then what nothing else uses:
  $ isolate rmi --store ./store alpine:3.20 || echo "no such image"
"""
EPILOG_IMAGE = """\
examples:
  # remove the blobs and layers no name reaches (never those a running container uses):
  $ isolate image prune --store ./store
  # an OCI runtime bundle (rootfs/ and config.json), as umoci unpack writes:
  $ isolate image bundle --store ./store alpine:3.20 ./bundle || echo "pull it first"
"""


def add_parser(sub: Any) -> None:
    """Register ``images``, ``rmi`` and ``image`` with the ``isolate`` command's subparsers."""
    p = sub.add_parser("images", help="list the images of the store",
                       description="List the images of the store: REPOSITORY, TAG, IMAGE ID (the "
                                   "manifest digest's first 12 hex digits) and SIZE (compressed).",
                       epilog=EPILOG_IMAGES, formatter_class=HelpFormatter)
    p.add_argument("--json", action="store_true", help="one JSON list of objects instead of a table")
    add_store_option(p)
    p = sub.add_parser("rmi", help="remove images' names, then what no name reaches",
                       description="Drop each REF (a name, a digest or a unique digest prefix: "
                                   "every name of that image), then prune the store: blobs and "
                                   "layers no other name reaches go, except layers a running "
                                   "container uses.",
                       epilog=EPILOG_RMI, formatter_class=HelpFormatter)
    p.add_argument("refs", nargs="+", metavar="REF")
    add_store_option(p)
    p = sub.add_parser("image", help="manage the image store (prune, bundle)",
                       description="Manage the image store.", epilog=EPILOG_IMAGE,
                       formatter_class=HelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    q = verbs.add_parser("prune", help="remove blobs and layers no name reaches",
                         epilog=EPILOG_IMAGE, formatter_class=HelpFormatter)
    add_store_option(q)
    q = verbs.add_parser("bundle", help="write an OCI runtime bundle of an image",
                         epilog=EPILOG_IMAGE, formatter_class=HelpFormatter)
    q.add_argument("ref", metavar="REF")
    q.add_argument("directory", metavar="DIR")
    add_store_option(q)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000     # type: ignore[assignment]
    return str(n)


def main(args: argparse.Namespace) -> int:
    """Run ``images``, ``rmi`` or ``image VERB``; returns the exit status."""
    from ..images import Image, Store, prune, remove
    from ..images.reference import parse_reference

    store = Store(args.store)
    if args.command == "images":
        rows: list[dict[str, Any]] = []
        for name, digest in sorted(store.refs().items()):
            ref = parse_reference(name)
            try:
                size = Image(store, digest, name).size
            except Exception:     # a broken entry still lists, without a size
                size = -1
            rows.append({"repository": ref.name, "tag": ref.tag or "<none>", "id": digest[7:19],
                         "digest": digest, "size": size})
        if args.json:
            print(json.dumps(rows))
            return 0
        table = [("REPOSITORY", "TAG", "IMAGE ID", "SIZE")]
        table += [(r["repository"], r["tag"], r["id"], _size(r["size"]) if r["size"] >= 0 else "?")
                  for r in rows]
        widths = [max(len(t[i]) for t in table) for i in range(3)]
        for t in table:
            print("  ".join(t[i].ljust(widths[i]) for i in range(3)) + "  " + t[3])
        return 0
    if args.command == "rmi":
        status = 0
        for ref in args.refs:
            try:
                digest = remove(store, ref)
            except Exception as e:
                print(f"isolate: rmi: {e}", file=sys.stderr)
                status = 1
                continue
            print(f"Untagged: {ref} ({digest[7:19]})")
        p = prune(store)
        for d in p.layers:
            print(f"Deleted layer: {d}")
        return status
    if args.verb == "prune":
        p = prune(store)
        for b in p.blobs:
            print(f"Deleted blob: {b}")
        for d in p.layers:
            print(f"Deleted layer: {d}")
        for d in p.in_use:
            print(f"Kept (in use): {d}")
        print(f"Total reclaimed space: {_size(p.bytes_freed)}")
        return 0
    path = Image.open(args.ref, store=store).bundle(args.directory)
    print(path)
    return 0
