"""``isolate pull``: an image from a registry into the image store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._help import HelpFormatter

EPILOG = """\
examples:
  # from Docker Hub (docker.io/library/ is implied), printing the manifest's digest:
  #   isolate pull alpine:3.20
  # another platform of a multi-platform image, into a store of your own:
  #   isolate pull --platform linux/arm64 --store ./images alpine:3.20
  # a registry with a private CA and a login:
  #   isolate pull --cert-dir ./certs --creds me:secret registry.example.com/team/app:1
  $ isolate pull --help
"""


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_store_option(p: argparse.ArgumentParser) -> None:
    """``--store DIR``, the image store, for every command that uses one."""
    p.add_argument("--store", metavar="DIR", default=None,
                   help="the image store (default $ISOLATE_IMAGE_STORE, /var/lib/isolate/images "
                        "for root, else ~/.local/share/isolate/images)")


def add_registry_options(p: argparse.ArgumentParser) -> None:
    """The options of a pull (``isolate pull``, and ``isolate run --image`` when it pulls)."""
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="the platform to pick from a multi-platform image (default: this host's)")
    p.add_argument("--tls-verify", type=_bool, nargs="?", const=True, default=True, metavar="BOOL",
                   help="require HTTPS with a verified certificate (default true; a registry on "
                        "this host may use plain HTTP anyway)")
    p.add_argument("--cert-dir", metavar="DIR",
                   help="CA certificates (*.crt) and client pairs (*.cert, *.key) for the registry "
                        "(default /etc/containers/certs.d/HOST, /etc/docker/certs.d/HOST)")
    p.add_argument("--authfile", metavar="FILE", help="credentials file (podman's auth.json format)")
    p.add_argument("--creds", metavar="USER:PASS", help="credentials for the registry")


def pull_options(args: argparse.Namespace) -> dict[str, Any]:
    """``isolate.images.pull``'s keywords from the options of ``add_registry_options``."""
    from isolate.errors import ImageError

    creds = None
    if args.creds is not None:
        user, sep, password = args.creds.partition(":")
        if not sep or not user:
            raise ImageError(f"--creds: expected USER:PASS, got {args.creds!r}")
        creds = (user, password)
    return dict(platform=args.platform, insecure=not args.tls_verify, cert_dir=args.cert_dir,
                auth_file=args.authfile, credentials=creds)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``pull`` with the ``isolate`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "pull", help="pull an image from a registry into the image store",
        description="Pull REF (name[:tag] or name@digest; docker.io and library/ by default) "
                    "into the image store: the platform's manifest of an index, its config and "
                    "every layer, each verified against its digest, layers in parallel and "
                    "only those not in the store yet.  A pull that is interrupted resumes where "
                    "it stopped.  Credentials come from --creds, --authfile, "
                    "$REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or "
                    "~/.docker/config.json.  Prints the manifest's digest.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("reference", metavar="REF", help="the image: name[:tag] or name@sha256:...")
    add_registry_options(p)
    add_store_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (reference, digest, config, layers)")
    return p


def main(args: argparse.Namespace) -> int:
    """Pull and print the manifest digest (or a JSON object); 0, or 1 with one error line."""
    from isolate.images import pull
    from isolate.images.store import Store

    img = pull(args.reference, store=Store(args.store) if args.store else None,
               progress=False if (args.quiet or args.json) else None, **pull_options(args))
    if args.json:
        json.dump({"reference": img.reference, "digest": img.manifest_digest,
                   "config": img.config_digest,
                   "layers": [x.digest for x in img.manifest.layers]}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(img.manifest_digest)
    return 0
