"""Unpack MB/s of a ~100 MB gzip layer, of big files and of small ones: isolate's
``unpack_layer`` against ``umoci unpack`` and GNU ``tar -xzf`` (best of 3 each).  As root:

    .venv/bin/python benchmarks/images_unpack_bench.py

(The start time of a container on an image is in ``python -m benchmarks.run --sections images``.)
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "images"))
import build  # noqa: E402
from build import Entry  # noqa: E402

from isolate.images import unpack_layer  # noqa: E402

WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit " * 200


def layer(sizes: list[int], total: int) -> bytes:
    """A tar of files of the given sizes (random and text halves) up to ``total`` bytes."""
    entries, n, i = build.busybox_entries(), 0, 0
    while n < total:
        size = int(random.choice(sizes) * random.random()) + 1
        data = (os.urandom(size // 2) + WORDS * (size // (2 * len(WORDS)) + 1))[:size]
        d = f"d{i % 200}"
        if i < 200:
            entries.append(Entry(d, "dir"))
        entries.append(Entry(f"{d}/f{i}", data=data))
        n += size
        i += 1
    return build.layer_tar(entries)


def best(f, n: int = 3) -> float:
    out = []
    for _ in range(n):
        out.append(f())
    return min(out)


def unpack_figures(base: str, name: str, tar: bytes) -> None:
    mb = len(tar) / 1e6
    layout = f"{base}/layout"
    build.write_layout(layout, name, [tar], compression="gzip")
    blob = f"{base}/{name}.gz"
    with open(blob, "wb") as f:
        f.write(build.compress(tar, "gzip"))
    diff = build.digest(tar)

    def ours() -> float:
        shutil.rmtree(f"{base}/out", ignore_errors=True)
        t = time.perf_counter()
        unpack_layer(blob, f"{base}/out", diff_id=diff, compression="gzip")
        return time.perf_counter() - t

    def umoci() -> float:
        shutil.rmtree(f"{base}/umoci", ignore_errors=True)
        t = time.perf_counter()
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:{name}", f"{base}/umoci"], check=True,
                       capture_output=True)
        return time.perf_counter() - t

    def gnu_tar() -> float:
        shutil.rmtree(f"{base}/gt", ignore_errors=True)
        os.mkdir(f"{base}/gt")
        t = time.perf_counter()
        subprocess.run(["tar", "-xzf", blob, "-C", f"{base}/gt"], check=True)
        return time.perf_counter() - t

    for label, f in (("isolate unpack_layer", ours), ("umoci unpack", umoci), ("GNU tar -xzf", gnu_tar)):
        s = best(f)
        print(f"{name}: {label:22} {s:6.2f} s  {mb / s:5.0f} MB/s (of {mb:.0f} MB uncompressed)")


def main() -> None:
    random.seed(1)
    base = tempfile.mkdtemp(prefix="isolate-bench-")
    try:
        unpack_figures(base, "big-files", layer([200, 2000, 20000, 200000, 2000000], 100 << 20))
        unpack_figures(base, "small-files", layer([100, 1000, 4000, 16000], 100 << 20))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
