"""The ``isolate-oci`` command is the C front end (csrc/front/front.c); with no planner
it runs the verb in the Python of the ``isolate`` script next to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

FRONT = Path(sys.executable).parent / "isolate-oci"
NO_PLANNER = {**os.environ, "ISOLATE_OCI_PLANNER": "0"}


def test_the_command_is_a_program_not_a_python_script() -> None:
    assert FRONT.read_bytes()[:4] == b"\x7fELF"


def test_with_no_planner_it_runs_the_verb_in_python() -> None:
    import isolate

    r = subprocess.run([str(FRONT), "--version"], capture_output=True, text=True, env=NO_PLANNER,
                       timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith(f"isolate-oci version {isolate.__version__}\n")
    r = subprocess.run([str(FRONT), "no-such-verb"], capture_output=True, text=True, env=NO_PLANNER,
                       timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("isolate-oci: ")


def _copy_with_script(tmp_path: Path, script: str) -> Path:
    where = tmp_path / "bin dir"
    where.mkdir()
    shutil.copy2(FRONT, where / "isolate-oci")
    (where / "isolate").write_text(script)
    return where / "isolate-oci"


def test_it_finds_python_on_pips_long_path_form_of_the_script(tmp_path: Path) -> None:
    # pip writes "#!/bin/sh" and an exec line when the interpreter's path is too long
    # for #! or holds a space.
    front = _copy_with_script(tmp_path, f"#!/bin/sh\n'''exec' \"{sys.executable}\" \"$0\" \"$@\"\n' '''\n")
    r = subprocess.run([str(front), "--version"], capture_output=True, text=True, env=NO_PLANNER,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("isolate-oci version "), r.stderr


def test_the_current_directory_is_never_imported_from(tmp_path: Path) -> None:
    (tmp_path / "isolate").mkdir()
    (tmp_path / "isolate" / "__init__.py").write_text("raise SystemExit('imported from the cwd')\n")
    r = subprocess.run([str(FRONT), "--version"], capture_output=True, text=True, env=NO_PLANNER,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("isolate-oci version "), r.stderr


def test_without_its_script_it_says_so(tmp_path: Path) -> None:
    where = tmp_path / "bin"
    where.mkdir()
    shutil.copy2(FRONT, where / "isolate-oci")
    r = subprocess.run([str(where / "isolate-oci"), "--version"], capture_output=True, text=True,
                       env=NO_PLANNER, timeout=60)
    assert r.returncode == 1
    assert r.stderr == ("isolate-oci: cannot find the Python of the isolate script next to this "
                        "program: No such file or directory\n")


SET_ENVIRON = r"""
import os, subprocess
from isolate.oci.warm import _set_environ
os.environ.clear()
os.environ.update(KEPT="same", CHANGED="old", GONE="x")
_set_environ([b"CHANGED=new", b"KEPT=same", b"ADDED=a=b", b"=no name", b"PATH=/usr/bin:/bin"])
print(sorted(os.environ.items()))
print(sorted(subprocess.run(["env"], capture_output=True, text=True).stdout.split()))
"""


def test_a_worker_takes_the_callers_environment_exactly() -> None:
    """What the planner has and the caller not goes, what differs changes (os.environ and
    what the verb's own children get alike)."""
    r = subprocess.run([sys.executable, "-c", SET_ENVIRON], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = [("ADDED", "a=b"), ("CHANGED", "new"), ("KEPT", "same"), ("PATH", "/usr/bin:/bin")]
    assert r.stdout.splitlines() == [repr(want), repr(sorted(f"{k}={v}" for k, v in want))]
