"""isolate pull and isolate load, run as a user runs them (the installed script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from isolate.images.store import Store
from registry import Registry, push

BIN = Path(sys.executable).parent


def isolate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "isolate"), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_pull_prints_the_digest_or_one_json_object(registry: Registry, layout: Path,
                                                   tmp_path: Path) -> None:
    digest = push(registry.url, "cli/small", layout, "small", as_tag="1")
    ref = f"{registry.host}/cli/small:1"
    r = isolate("pull", "--quiet", "--store", str(tmp_path / "s1"), ref)
    assert (r.returncode, r.stdout, r.stderr) == (0, digest + "\n", "")
    r = isolate("pull", "--json", "--store", str(tmp_path / "s2"), ref)
    out = json.loads(r.stdout)
    assert (out["reference"], out["digest"], len(out["layers"])) == (ref, digest, 3)
    assert Store(tmp_path / "s2").refs() == {ref: digest}


def test_pull_errors_are_one_line(registry: Registry, tmp_path: Path) -> None:
    r = isolate("pull", "--store", str(tmp_path / "s"), f"{registry.host}/cli/none:1")
    assert r.returncode == 1
    assert r.stderr == f"isolate: {registry.host}/cli/none:1: manifest unknown\n"
    r = isolate("pull", "--creds", "nocolon", "--store", str(tmp_path / "s"), "x")
    assert (r.returncode, r.stderr) == (1, "isolate: --creds: expected USER:PASS, got 'nocolon'\n")


def test_load_names_what_it_loaded(layout: Path, tmp_path: Path) -> None:
    r = isolate("load", "-i", str(layout), "--store", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    lines = sorted(r.stdout.splitlines())
    refs = Store(tmp_path / "s").refs()
    assert lines == sorted(f"{k} {v}" for k, v in refs.items())
    assert "localhost/small:latest" in refs
    r = isolate("load", "-i", str(tmp_path / "nothing"), "--store", str(tmp_path / "s"))
    assert (r.returncode, r.stderr) == (1, f"isolate: load: {str(tmp_path / 'nothing')!r} does not exist\n")


def test_run_image_pulls_what_the_store_lacks_unless_told_never(registry: Registry, layout: Path,
                                                                 tmp_path: Path) -> None:
    digest = push(registry.url, "cli/run", layout, "small", as_tag="1")
    ref = f"{registry.host}/cli/run:1"
    store = str(tmp_path / "s")
    r = isolate("run", "--store", store, "--pull", "never", "--image", ref, "--", "/bin/true")
    assert (r.returncode, r.stderr) == (125, f"isolate: {ref}: not in the store (isolate pull {ref})\n")
    assert Store(store).refs() == {}
    r = isolate("run", "--store", store, "--image", ref, "--", "/bin/sh", "-c", "ls /data")
    assert (r.returncode, r.stdout) == (0, "one\ntwo\n"), r.stderr
    assert Store(store).refs() == {ref: digest}
    # In the store now: --pull missing does not ask the registry again; --pull always does.
    def manifest_gets() -> int:
        return registry.log.read_text(errors="replace").count("GET /v2/cli/run/manifests/1 ")

    before = manifest_gets()
    r = isolate("run", "--store", store, "--image", ref, "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert manifest_gets() == before
    r = isolate("run", "--store", store, "--pull", "always", "--image", ref, "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert manifest_gets() == before + 1
