"""The documentation builds with warnings as errors, and documents the public API.

``docs/conf.py`` makes Sphinx warn for what it would let pass silently: a
public name without a docstring, a name in a documented module's ``__all__``
that no page documents; ``-n`` (nitpicky) warns for a cross-reference or a
type in a signature that resolves nowhere.  The second test checks that
those checks fire, on a module made to break them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import isolate

DOCS = Path(__file__).resolve().parents[2] / "docs"


def sphinx_build(src: Path, out: Path, *extra: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q",
                           "-b", "html", *extra, str(src), str(out)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    built = sphinx_build(DOCS, tmp_path)
    assert built.returncode == 0, f"sphinx-build failed:\n{built.stderr}{built.stdout}"
    # Every public name of the package has an entry: under isolate.<name> or in
    # the module that defines it (the names isolate re-exports, by module).
    ids: set[str] = set()
    for page in (tmp_path / "api").glob("*.html"):
        ids.update(re.findall(r'id="(isolate[\w.]*)"', page.read_text()))
    assert len(isolate.__all__) > 40
    missing = [name for name in isolate.__all__
               if f"isolate.{name}" not in ids and not any(i.endswith(f".{name}") for i in ids)]
    assert not missing, f"not in the API reference: {missing}"
    for name in ("isolate.config.ProcessSpec", "isolate.config.ContainerConfig",
                 "isolate.container.Container.run", "isolate.cgroup.Cgroup.create",
                 "isolate.process.spawn", "isolate.oci.spec.Spec", "isolate.errors.ConfigError"):
        assert name in ids, name
    # Signatures carry their types, linked to their entries (StrPath, an alias,
    # included), and the standard library's through the offline inventory.
    process = (tmp_path / "api" / "process.html").read_text()
    assert 'href="#isolate.process.StrPath"' in process
    assert "https://docs.python.org/3/library/collections.abc.html#collections.abc.Sequence" in process


BROKEN_MODULE = '''
"""A module for the checks to find fault with."""


class Documented:
    """A class with a docstring."""

    def fine(self) -> int:
        """A method with one."""
        return 1

    def bare(self) -> int:
        return 2


def linked() -> None:
    """See :func:`no_such_function`."""


def typed(x: "NoSuchType") -> None:
    """A parameter whose type resolves nowhere."""


def forgotten() -> None:
    """In ``__all__``, on no page."""


__all__ = ["Documented", "linked", "typed", "forgotten"]
'''


def test_checks_find_undocumented_and_unresolved(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text((DOCS / "conf.py").read_text())
    (src / "index.md").write_text(textwrap.dedent("""\
        # Fixture

        ```{eval-rst}
        .. automodule:: docs_fixture_broken
           :members: Documented, linked, typed
        ```
        """))
    (tmp_path / "docs_fixture_broken.py").write_text(BROKEN_MODULE)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    built = sphinx_build(src, tmp_path / "out", env=env)
    log = built.stderr
    assert built.returncode != 0, log
    assert "docs_fixture_broken.Documented.bare has no docstring" in log
    assert "docs_fixture_broken.Documented.fine has no docstring" not in log
    assert "reference target not found: no_such_function" in log
    assert "reference target not found: NoSuchType" in log
    assert "docs_fixture_broken.forgotten is in docs_fixture_broken.__all__ but not documented" in log
