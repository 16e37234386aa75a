"""isolate-oci's verbs in Python as a separate process (what the C front end runs when no planner serves it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from isolate.oci import parse


def isolate_oci(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isolate.cli.oci", *args], capture_output=True, text=True, check=False,
                          cwd=cwd, timeout=60)


def test_spec_then_features(tmp_path: Path) -> None:
    r = isolate_oci("spec", "--rootless", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    spec = parse((tmp_path / "config.json").read_text())
    assert spec.linux is not None and spec.linux.namespace("user") is not None
    r = isolate_oci("--root", str(tmp_path / "state"), "features")
    assert r.returncode == 0 and json.loads(r.stdout)["ociVersionMax"] == "1.2.0"
    assert not (tmp_path / "state").exists()     # nothing written under --root


def test_create_without_config_is_one_line_status_1(tmp_path: Path) -> None:
    r = isolate_oci("--root", str(tmp_path / "state"), "create", "--bundle", str(tmp_path), "c1")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"isolate-oci: create: bundle {str(tmp_path)!r}: cannot read config.json: "
                        "No such file or directory\n")
    assert not (tmp_path / "state").exists()


def test_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    r = isolate_oci("--root", str(tmp_path / "state"), "checkpoint", "c1")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "isolate-oci: checkpoint: not supported (no checkpoint/restore in isolate)\n"

