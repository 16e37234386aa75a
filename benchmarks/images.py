"""The ``images`` section: pulling and running an OCI image, beside skopeo + umoci and podman.

The section writes a multi-layer image of about 100 MB, compressed (static
busybox and four layers of files of mixed sizes, three quarters random bytes
so that gzip cannot shrink them away), pushes it to a real registry on 127.0.0.1 (Debian's
docker-registry, started for the run with its own storage), and times, each
into an empty store and interleaved round by round:

- ``isolate pull`` (download, verify, unpack every layer);
- ``skopeo copy docker://… oci:DIR`` then ``umoci unpack`` (what a user
  without isolate does to get a root filesystem);
- ``podman pull`` into a private storage root (overlay driver).

Before each timed pull the page cache's dirty pages are written back (``sync``),
so that none pays for another's writes.  skopeo and podman run with a tmpfs of
their own on /var/lib/containers
(``private_cache``: run as root they write a blob-info cache there whatever
their options); the mount costs them a few milliseconds.

Then a second image that shares every layer but the top one is pulled into
the store that holds the first: the registry's log says which blobs it
served.  Last, ``Container.run(["/bin/true"])`` on ``RootFS.from_image`` and
on ``RootFS.from_directory(<umoci's rootfs>).overlay()``, interleaved.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .stats import sample_rows

PULL = "isolate pull (download + unpack)"
SKOPEO = "skopeo copy + umoci unpack"
PODMAN = "podman pull (overlay storage)"
FROM_IMAGE = "Container.run on RootFS.from_image"
FROM_DIR = "Container.run on RootFS.from_directory(unpacked).overlay()"
TOOLS = ("skopeo", "umoci", "podman", "docker-registry")


def _tests_on_path() -> None:
    here = Path(__file__).resolve().parents[1] / "tests" / "images"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))


def _layers(total_mb: int, n: int, seed: int) -> list[list[Any]]:
    """``n`` layers of files (4 KiB to 1 MiB), about ``total_mb`` MB in all once gzipped:
    three quarters of each file random, a quarter text."""
    import build as B

    rng = random.Random(seed)
    text = b"the quick brown fox jumps over the lazy dog; " * 64
    per = total_mb * 1_320_000 // n
    out = []
    for i in range(n):
        entries, size, k = [B.Entry(f"data{i}", "dir")], 0, 0
        while size < per:
            length = min(rng.choice((4 << 10, 64 << 10, 256 << 10, 1 << 20)), per - size)
            half = length * 3 // 4
            data = os.urandom(half) + (text * (1 + (length - half) // len(text)))[:length - half]
            entries.append(B.Entry(f"data{i}/d{k % 16}", "dir") if k < 16 else
                           B.Entry(f"data{i}/d{k % 16}/f{k}", data=data))
            size += length if k >= 16 else 0
            k += 1
        out.append(entries)
    return out


def _run(argv: list[str], **kw: Any) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr.strip()[-500:]}")


def images(rounds: int, start_rounds: int, log: Callable[[str], None], *, total_mb: int = 100) -> dict[str, Any]:
    """The section's result: ``pull`` rows (ratios to skopeo + umoci), ``second`` (what a
    second image downloaded), ``start`` rows (ratios to the directory root)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        why = "needs root" if os.geteuid() != 0 else f"missing: {', '.join(missing)}"
        return {"skipped": why}
    _tests_on_path()
    import build as B
    from registry import Registry, push
    from tools import PrivatePodman, private_cache

    import isolate
    from isolate.images import Store

    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="isolate-bench-images-"))
    bindir = Path(sys.executable).parent
    isolate_cmd = str(bindir / "isolate") if (bindir / "isolate").exists() else "isolate"
    reg = None
    try:
        log(f"  writing a {total_mb} MB image (5 layers) ...")
        layout = work / "layout"
        layers = [B.busybox_entries()] + _layers(total_mb, 4, 1)
        B.write_layout(layout, "v1", layers, Cmd=["/bin/sh"])
        top = [[B.Entry("data-v2", "dir"), B.Entry("data-v2/f", data=os.urandom(1 << 20))]]
        B.write_layout(layout, "v2", layers[:-1] + top, Cmd=["/bin/sh"])
        size = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir())
        reg = Registry(work / "registry")
        for tag in ("v1", "v2"):
            push(reg.url, "bench", layout, tag)
        host = reg.url.split("://", 1)[1]
        ref = f"{host}/bench:v1"
        samples: dict[str, list[int]] = {PULL: [], SKOPEO: [], PODMAN: []}
        log(f"  pull: {len(samples)} ways x {rounds} rounds of {size / 1e6:.0f} MB compressed")

        def fresh(name: str) -> Path:
            d = work / name
            if d.exists():
                subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=True)
            d.mkdir()
            return d

        podmans: list[Any] = []

        def podman_reset() -> None:
            # A store of its own each round (its own configuration and network directory: a
            # reset of the host's would drop the host's podman networks).
            if podmans:
                podmans.pop().close()
            podmans.append(PrivatePodman(fresh("podman")))

        def skopeo_umoci() -> None:
            _run(private_cache(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}",
                                f"oci:{work}/skopeo/oci:v1"]))
            _run(["umoci", "unpack", "--image", f"{work}/skopeo/oci:v1", str(work / "skopeo" / "bundle")])

        # (name, untimed preparation, timed work)
        ways: tuple[tuple[str, Callable[[], Any], Callable[[], Any]], ...] = (
            (PULL, lambda: fresh("store"),
             lambda: _run([isolate_cmd, "pull", "--quiet", "--store", str(work / "store"), ref])),
            (SKOPEO, lambda: fresh("skopeo"), skopeo_umoci),
            (PODMAN, podman_reset,
             lambda: podmans[-1]("pull", "--quiet", "--tls-verify=false", ref)),
        )
        try:
            for _ in range(rounds):
                for name, prepare, fn in ways:
                    prepare()
                    # Each starts with no dirty pages of the others' to write back.
                    os.sync()
                    s = time.perf_counter_ns()
                    fn()
                    samples[name].append(time.perf_counter_ns() - s)
        finally:
            while podmans:
                podmans.pop().close()

        # A second image sharing all but its top layer, into the store holding the first.
        store_dir = fresh("store")
        _run([isolate_cmd, "pull", "--quiet", "--store", str(store_dir), ref])
        before = len(reg.blob_gets())
        _run([isolate_cmd, "pull", "--quiet", "--store", str(store_dir), f"{host}/bench:v2"])
        second = sorted(set(reg.blob_gets()[before:]))
        store = Store(store_dir)
        from isolate.images import Image

        v1, v2 = Image.open(ref, store=store), Image.open(f"{host}/bench:v2", store=store)
        new_layers = [d.digest for d in v2.manifest.layers if d not in v1.manifest.layers]
        new_config = v2.manifest.config.digest
        log(f"  second image: {len(second)} blob(s) downloaded")

        # Starting a container: the pulled image against the same tree unpacked by umoci.
        bundle = work / "skopeo" / "bundle" / "rootfs"
        on_image = isolate.RootFS.from_image(ref, store=store)
        on_dir = isolate.RootFS.from_directory(bundle).overlay()
        starts: dict[str, list[int]] = {FROM_IMAGE: [], FROM_DIR: []}
        log(f"  start: 2 roots x {start_rounds} rounds")
        for i in range(start_rounds + 10):
            for name, root in ((FROM_IMAGE, on_image), (FROM_DIR, on_dir)):
                s = time.perf_counter_ns()
                with isolate.Container(rootfs=root) as c:
                    if c.run(["/bin/true"]).returncode != 0:
                        raise RuntimeError(f"{name}: /bin/true failed")
                if i >= 10:
                    starts[name].append(time.perf_counter_ns() - s)
        return {"rounds": rounds, "start_rounds": start_rounds, "compressed_bytes": size,
                "pull": sample_rows(samples, SKOPEO, {}, "images"),
                "second": {"downloaded": second, "expected": sorted([*new_layers, new_config])},
                "start": sample_rows(starts, FROM_DIR, {}, "images"), "seconds": time.monotonic() - t0}
    finally:
        if reg is not None:
            reg.close()
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
