"""The child process that unpacks or removes layers inside a user namespace of the caller's
subordinate ids (a rootless store whose layers keep their owners, shifted).

Started by ``unpack.unpack_layer`` / ``unpack.remove_tree`` with
``isolate.spawn(..., namespaces={"user"}, uid_map=..., gid_map=...)`` and
the maps of ``idmap.subid_maps`` (0 is the caller, 1 and up its
/etc/subuid and /etc/subgid ranges), as ``podman unshare`` would.  Root
there may ``lchown`` to any id of those ranges and remove what they own;
it still cannot make device nodes nor set ``trusted.*`` xattrs (those need
capabilities in the initial user namespace).

The command line is ``unpack BLOB DEST DIFF_ID COMPRESSION NAME``,
``rm PATH...``, ``bundle ROOTFS LAYER...`` (``Image.bundle``'s copy of
shifted layers, owners kept) or ``fix DEST LAYER IMPLIED_JSON LOWER...``
(``image.fix_layer``: a shifted layer's metadata layer); the outcome is one
JSON object on stdout: ``{"size": n, "implied": [...], "warnings": [...]}``
(unpack), ``{}`` (rm, bundle, fix) or ``{"error": <type>, ...}``
with the error's one-line message (``ImageError``, ``DigestError`` with its
two digests, ``OSError`` with its errno and file name), which the parent
raises again as the same type.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

__all__ = ["main"]


def _error(e: BaseException) -> dict[str, Any]:
    from ..errors import DigestError, ImageError

    if isinstance(e, DigestError):
        return {"error": "DigestError", "message": str(e), "expected": e.expected, "actual": e.actual}
    if isinstance(e, ImageError):
        return {"error": "ImageError", "message": str(e)}
    if isinstance(e, OSError):
        return {"error": "OSError", "errno": e.errno, "strerror": e.strerror,
                "filename": None if e.filename is None else os.fsdecode(e.filename)}
    return {"error": type(e).__name__, "message": str(e)}


def main(argv: list[str]) -> int:
    """Run one command (see the module's doc); the exit status is 0 when the JSON
    outcome was written, whatever it says."""
    from .unpack import _rmtree_path, _unpack

    out: dict[str, Any]
    try:
        if argv[:1] == ["unpack"] and len(argv) == 6:
            blob, dest, diff_id, compression, name = argv[1:]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                done = _unpack(blob, dest, diff_id=diff_id, compression=compression, name=name,
                               mode="shifted")
            out = {"size": done.size, "implied": list(done.implied),
                   "warnings": [str(w.message) for w in caught]}
        elif argv[:1] == ["bundle"] and len(argv) >= 2:
            from pathlib import Path

            from .image import fill_rootfs

            fill_rootfs(Path(argv[1]), [Path(x) for x in argv[2:]])
            out = {}
        elif argv[:1] == ["fix"] and len(argv) >= 4:
            from pathlib import Path

            from .image import fix_layer

            fix_layer(Path(argv[1]), Path(argv[2]), json.loads(argv[3]), [Path(x) for x in argv[4:]])
            out = {}
        elif argv[:1] == ["rm"]:
            for path in argv[1:]:
                _rmtree_path(path)
            out = {}
        else:
            out = {"error": "ImageError", "message": f"unpack child: bad arguments {argv!r}"}
    except Exception as e:
        out = _error(e)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
