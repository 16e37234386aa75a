"""What a user meets first: the version, the sdist, the wheel (built from a copy of the tree)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import isolate
from isolate.cli.__main__ import main

ROOT = Path(__file__).resolve().parents[2]

#: What a build reads; the copy leaves out whatever a build in place made.
TREE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "csrc", "src")
GENERATED = ("__pycache__", "*.egg-info", "*.so", "_isolate_child", "_seccomp_ffi.py", "_native.c")


def copy_tree(dest: Path) -> Path:
    """The files a build reads, copied to ``dest`` (so that no test writes into the checkout)."""
    dest.mkdir(parents=True)
    for name in TREE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(*GENERATED))
        else:
            shutil.copy2(src, dest / name)
    return dest


def needs_backend() -> None:
    """Skip unless this Python has the build backend pyproject.toml asks for (setuptools>=77:
    PEP 639's license string), as a Debian Python (the rootless tests' user's) does not."""
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        major = 0
    if major < 77:
        pytest.skip("building needs setuptools>=77 (pyproject.toml's build-system), not installed here")


def build_sdist(tree: Path, out: Path, env: dict[str, str] | None = None) -> Path:
    """Run setuptools' PEP 517 ``build_sdist`` hook in ``tree``; the archive it wrote."""
    needs_backend()
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tree, capture_output=True,
                       text=True, env={**os.environ, **(env or {})}, timeout=300)
    assert r.returncode == 0, r.stderr
    return out / r.stdout.split()[-1]


def test_version_is_the_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    assert importlib.metadata.version("isolate-linux") == isolate.__version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"isolate {isolate.__version__}\n"


def test_metadata_names_the_license_and_what_python_313_needs() -> None:
    meta = importlib.metadata.metadata("isolate-linux")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "cffi>=1.17" in (meta.get_all("Requires-Dist") or [])
    assert {url.split(",")[0] for url in meta.get_all("Project-URL") or []} >= {"Source", "Issues"}
    files = importlib.metadata.files("isolate-linux") or []
    assert any(f.name == "LICENSE" and "licenses" in f.parts for f in files)


def test_the_extension_is_built_on_the_limited_api() -> None:
    from isolate import _native

    assert Path(_native.__file__).name == "_native.abi3.so"


def test_an_sdist_built_twice_is_the_same(tmp_path: Path) -> None:
    first = build_sdist(copy_tree(tmp_path / "a"), tmp_path / "out-a")
    b = copy_tree(tmp_path / "b")
    for path in b.rglob("*"):          # other times and another path: neither may show
        os.utime(path, (1_000_000_000, 1_000_000_000))
    second = build_sdist(b, tmp_path / "out-b")
    assert first.name == second.name == f"isolate_linux-{isolate.__version__}.tar.gz"
    assert first.read_bytes() == second.read_bytes()


def test_an_sdist_holds_the_sources_in_order_with_source_date_epoch(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    (tree / "src" / "isolate" / "_seccomp_ffi.py").write_text("# what build_ext --inplace makes\n")
    sdist = build_sdist(tree, tmp_path / "out", {"SOURCE_DATE_EPOCH": "1700000000"})
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    top = f"isolate_linux-{isolate.__version__}"
    assert {f"{top}/LICENSE", f"{top}/PKG-INFO", f"{top}/csrc/spawn.c", f"{top}/csrc/build_child.py",
            f"{top}/csrc/build_front.py", f"{top}/csrc/front/front.c", f"{top}/csrc/front/front.h",
            f"{top}/src/isolate/py.typed"} <= set(names)
    assert f"{top}/src/isolate/_seccomp_ffi.py" not in names
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(1700000000, 0, 0, "", "")}
    assert {m.mode for m in members} <= {0o644, 0o755}
    head = sdist.read_bytes()[:10]
    assert head[4:8] == b"\0\0\0\0" and not head[3] & 0x08     # gzip: no time, no file name


@pytest.mark.slow
def test_a_wheel_serves_every_python_and_leaves_no_build_directory(tmp_path: Path) -> None:
    needs_backend()
    tree = copy_tree(tmp_path / "tree")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "out"), str(tree)], capture_output=True, text=True,
                       env={**os.environ, "TMPDIR": str(scratch)}, timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "out").iterdir()
    assert wheel.name.startswith(f"isolate_linux-{isolate.__version__}-cp310-abi3-linux_")
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
    assert "isolate/_native.abi3.so" in infos and "isolate/_seccomp_ffi.py" in infos
    assert infos["isolate/_isolate_child"].external_attr >> 16 & 0o111
    # isolate-oci is the C front end, installed as a command byte for byte (no #!python).
    front = infos[f"isolate_linux-{isolate.__version__}.data/scripts/isolate-oci"]
    assert front.external_attr >> 16 & 0o111
    with zipfile.ZipFile(wheel) as z:
        assert z.read(front)[:4] == b"\x7fELF"
        entry_points = z.read(f"isolate_linux-{isolate.__version__}.dist-info/entry_points.txt").decode()
    assert "isolate-oci" not in entry_points
    assert f"isolate_linux-{isolate.__version__}.dist-info/licenses/LICENSE" in infos
    assert not (tree / "build").exists()
    assert [p.name for p in scratch.iterdir()] == []
