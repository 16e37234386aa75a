"""``isolate images``, ``rmi``, ``image prune``, ``image bundle`` and ``run --image``, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import build
from build import Entry
from isolate.images import Store


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isolate", *args], capture_output=True, text=True,
                          timeout=60)


def test_images_rmi_prune(store: Store) -> None:
    digest = build.put_image(store, "t:1", [[Entry("f", data=b"f")]])
    build.put_image(store, "localhost:5000/x/y:2", [[Entry("g", data=b"g")]])
    out = cli("images", "--store", str(store.root))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE"]
    assert lines[1].split()[:3] == ["docker.io/library/t", "1", digest[7:19]]
    rows = json.loads(cli("images", "--json", "--store", str(store.root)).stdout)
    assert {r["repository"] for r in rows} == {"docker.io/library/t", "localhost:5000/x/y"}
    out = cli("rmi", "--store", str(store.root), "t:1", "nope")
    assert out.returncode == 1 and "nope: not in the store" in out.stderr
    assert list(store.refs()) == ["localhost:5000/x/y:2"]
    assert not store.has_blob(digest)
    out = cli("image", "prune", "--store", str(store.root))
    assert out.returncode == 0 and "Total reclaimed space" in out.stdout


def test_image_bundle(store: Store, tmp_path: Path) -> None:
    build.put_image(store, "t:1", [[Entry("f", data=b"f")]], Cmd=["/f"])
    out = cli("image", "bundle", "--store", str(store.root), "t:1", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "b/rootfs/f").read_bytes() == b"f"
    assert json.loads((tmp_path / "b/config.json").read_text())["process"]["args"] == ["/f"]


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a container as root")
def test_run_image(store: Store) -> None:
    build.put_image(store, "t:1", [build.busybox_entries()], Entrypoint=["/bin/echo"], Cmd=["from", "cmd"],
                    Env=["PATH=/bin"])
    out = cli("run", "--store", str(store.root), "--image", "t:1")
    assert (out.returncode, out.stdout) == (0, "from cmd\n"), out.stderr
    out = cli("run", "--store", str(store.root), "--image", "t:1", "--", "given")
    assert out.stdout == "given\n"
    out = cli("run", "--store", str(store.root), "--pull", "never", "--image", "missing")
    assert out.returncode == 125 and "missing: not in the store (isolate pull missing)" in out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a container as root")
def test_run_image_entrypoint(store: Store) -> None:
    build.put_image(store, "t:1", [build.busybox_entries()], Entrypoint=["/bin/echo", "ep"], Cmd=["cmd"])
    out = cli("run", "--store", str(store.root), "--image", "t:1", "--entrypoint", "/bin/echo")
    assert out.stdout == "\n", out.stderr          # Cmd goes with the Entrypoint, as docker does
    out = cli("run", "--store", str(store.root), "--image", "t:1", "--entrypoint", "", "--",
              "/bin/echo", "alone")
    assert out.stdout == "alone\n", out.stderr
    out = cli("run", "--entrypoint", "/bin/true", "--", "x")
    assert out.returncode == 125 and "--entrypoint needs --image" in out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a container as root")
def test_a_short_name_finds_an_image_loaded_without_a_registry(store: Store, tmp_path: Path) -> None:
    # isolate load names an image of an OCI layout tagged "hello" localhost/hello:latest, as
    # podman does; "hello" then finds it (the default --pull missing would else ask docker.io).
    build.write_layout(tmp_path / "layout", "hello", [build.busybox_entries()],
                       Cmd=["/bin/echo", "hello from an image"])
    out = cli("load", "-i", str(tmp_path / "layout"), "--store", str(store.root))
    assert out.returncode == 0 and out.stdout.startswith("localhost/hello:latest sha256:"), out.stderr
    out = cli("run", "--store", str(store.root), "--image", "hello")
    assert (out.returncode, out.stdout) == (0, "hello from an image\n"), out.stderr
    out = cli("rmi", "--store", str(store.root), "hello")
    assert out.returncode == 0 and store.refs() == {}, out.stderr
