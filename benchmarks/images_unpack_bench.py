"""Unpack MB/s of a ~100 MB gzip layer (isolate vs umoci unpack) and Container start time on
RootFS.from_image vs RootFS.from_directory(<umoci rootfs>).overlay().  As root:

    .venv/bin/python benchmarks/images_unpack_bench.py
"""
import os, sys, time, random, subprocess, shutil, statistics, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "images"))
import build
from build import Entry
from isolate.images import Store, Image, unpack_layer
from isolate import Container, RootFS
random.seed(1)
base = tempfile.mkdtemp(prefix="isolate-bench-")
words = (b"lorem ipsum dolor sit amet consectetur adipiscing elit " * 200)
entries = build.busybox_entries()
total = 0
i = 0
while total < 100 << 20:
    size = int(random.choice([200, 2000, 20000, 200000, 2000000]) * random.random()) + 1
    data = (os.urandom(size // 2) + words * (size // (2 * len(words)) + 1))[:size]
    d = f"d{i % 50}"
    if i < 50:
        entries.append(Entry(d, "dir"))
    entries.append(Entry(f"{d}/f{i}", data=data))
    total += size
    i += 1
tar = build.layer_tar(entries)
print(f"{i} files, tar {len(tar) / 1e6:.1f} MB", flush=True)
shutil.rmtree(base + "/layout", ignore_errors=True)
build.write_layout(base + "/layout", "t", [tar], compression="gzip", Cmd=["/bin/true"])
blob = build.compress(tar, "gzip")
print(f"gzip blob {len(blob) / 1e6:.1f} MB", flush=True)
open(base + "/blob.gz", "wb").write(blob)
diff = build.digest(tar)
ours = []
for n in range(3):
    shutil.rmtree(base + "/out", ignore_errors=True)
    t = time.perf_counter()
    unpack_layer(base + "/blob.gz", base + "/out", diff_id=diff, compression="gzip")
    ours.append(time.perf_counter() - t)
umoci = []
for n in range(3):
    shutil.rmtree(base + "/umoci", ignore_errors=True)
    t = time.perf_counter()
    subprocess.run(["umoci", "unpack", "--image", base + "/layout:t", base + "/umoci"], check=True, capture_output=True)
    umoci.append(time.perf_counter() - t)
mb = len(tar) / 1e6
print(f"isolate unpack_layer: best {min(ours):.2f}s = {mb / min(ours):.0f} MB/s (uncompressed); runs {[round(x, 2) for x in ours]}")
print(f"umoci unpack:         best {min(umoci):.2f}s = {mb / min(umoci):.0f} MB/s; runs {[round(x, 2) for x in umoci]}")
# start time
shutil.rmtree(base + "/store", ignore_errors=True)
s = Store(base + "/store")
build.put_image(s, "bench:1", [tar], Cmd=["/bin/true"])
Image.open("bench:1", store=s).layers()
def timeit(make, n=30):
    ts = []
    for _ in range(n):
        r = make()
        t = time.perf_counter()
        with Container(rootfs=r, userns="identity") as c:
            res = c.run(["/bin/true"], timeout=10)
        ts.append(time.perf_counter() - t)
        assert res.returncode == 0, res.stderr
    return statistics.median(ts)
for mode in ("identity",):
    a = timeit(lambda: RootFS.from_image("bench:1", store=s))
    b = timeit(lambda: RootFS.from_directory(base + "/umoci/rootfs").overlay())
    print(f"Container start-to-exit (/bin/true, userns={mode}, median of 30): from_image {a*1e3:.2f} ms, from_directory(umoci rootfs).overlay() {b*1e3:.2f} ms, ratio {a/b:.2f}")
shutil.rmtree(base, ignore_errors=True)
