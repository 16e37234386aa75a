"""The public API keeps its types: mypy --strict, run the way a user runs it, sees them.

Both checks run against the installed package (the built tree, with the
modules cffi generates), from a directory with no mypy configuration of ours.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# A Python without mypy (Debian's, run by the rootless tests' user) cannot check types.
pytest.importorskip("mypy", reason="mypy is not installed for this Python")


def mypy(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                           "--cache-dir", str(tmp_path / "cache"), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


def check(tmp_path: Path, code: str) -> list[str]:
    """mypy's error lines for ``code``, a user's module (notes left out)."""
    (tmp_path / "user.py").write_text(textwrap.dedent(code))
    out = mypy(tmp_path, "user.py").stdout
    return [line for line in out.splitlines() if ": error:" in line]


def test_the_installed_package_is_strict_clean(tmp_path: Path) -> None:
    r = mypy(tmp_path, "-p", "isolate")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_users_correct_calls_type_check(tmp_path: Path) -> None:
    errors = check(tmp_path, """
        import isolate
        from isolate.config import ContainerConfig, ProcessSpec

        p = isolate.spawn(["true"], namespaces=["pid"], env={"A": "1"})
        code: int = p.wait()
        r = isolate.run(["true"], namespaces=["pid"], capture_output=True, timeout=1.5)
        out: bytes = r.stdout
        spec = ProcessSpec(args=["true"], user="nobody")
        with isolate.Container(ContainerConfig(process=spec)) as c:
            res: isolate.Result = c.run(timeout=2)
    """)
    assert errors == []


@pytest.mark.parametrize("call", [
    'isolate.spawn(["true"], namespace=["pid"])',
    'isolate.run(["true"], namespace=["pid"])',
    'isolate.run(["true"], capture=True)',
    'isolate.Container(namespace=["pid"])',
    'isolate.Container().run(["true"], timout=1)',
    'ProcessSpec(arg=["true"])',
])
def test_a_misspelt_keyword_is_a_type_error(tmp_path: Path, call: str) -> None:
    errors = check(tmp_path, f"""
        import isolate
        from isolate.config import ProcessSpec

        {call}
    """)
    assert len(errors) == 1 and "Unexpected keyword argument" in errors[0], errors


@pytest.mark.parametrize("call,expected", [
    ('isolate.run(["true"], timeout="3")', 'Argument "timeout"'),
    ('isolate.spawn(["true"], namespaces=["pid"], cgroup="/sys/fs/cgroup/x")', 'Argument "cgroup"'),
    ('isolate.Container(limits={"memory_max": 1})', 'Argument "limits"'),
])
def test_a_wrongly_typed_value_is_a_type_error(tmp_path: Path, call: str, expected: str) -> None:
    errors = check(tmp_path, f"""
        import isolate

        {call}
    """)
    assert len(errors) == 1 and expected in errors[0], errors
