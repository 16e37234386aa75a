"""The source tree's shape (STYLE.md, issue 14): small files, no import cycles, one door to C.

Read from the checkout (src/ and csrc/), not from the installed package: imports
are found with ``ast``, so nothing here is imported or run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "isolate"
MAX_LINES = 800
SUFFIXES = {".py", ".pyi", ".c", ".h"}
#: The modules that may import the compiled binding (STYLE.md, section 2).
NATIVE_IMPORTERS = {"isolate._plan", "isolate._spawn"}


def sources() -> list[Path]:
    """Every source file of src/ and csrc/ (what a build left there is not one)."""
    files = [p for top in (ROOT / "src", ROOT / "csrc") for p in top.rglob("*")
             if p.suffix in SUFFIXES and p.is_file() and "egg-info" not in str(p)]
    generated = {PACKAGE / "_seccomp_ffi.py", PACKAGE / "_native.c"}
    return sorted(p for p in files if p not in generated)


def module_name(path: Path) -> str:
    """The dotted name of a module file under src/."""
    parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """isolate's modules (``.py`` files) by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if p != PACKAGE / "_seccomp_ffi.py"}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported: top level, and in top-level ``if`` and
    ``try`` blocks, but not under ``if TYPE_CHECKING`` nor in functions or classes."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time(node.body)
            yield from _import_time(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_time(block)


def _targets(name: str, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The isolate modules ``node`` (in module ``name``) imports."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]
    if node.level:
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:          # ``from . import _spawn``: the module itself
            out.add(sub)
        elif base in known:       # ``from .errors import X``: the module that defines X
            out.add(base)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the isolate modules it imports at import time."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set().union(*(_targets(name, n, known) for n in _import_time(tree.body))) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_file_is_over_800_lines(path: Path) -> None:
    lines = len(path.read_bytes().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by idea"


def test_no_import_cycle_among_isolates_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (module-level imports): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_only_the_plan_and_spawn_modules_import_the_native_binding() -> None:
    known = modules()
    importers = set()
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):   # at any level
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                known_native = {**known, "isolate._native": path}
                if "isolate._native" in _targets(name, node, known_native):
                    importers.add(name)
    assert importers == NATIVE_IMPORTERS


def test_the_checks_see_the_tree() -> None:
    # The graph and the checkers find what is known to be there, so that an empty
    # graph or an unparsed file cannot pass for a clean tree.
    graph = import_graph()
    assert "isolate._plan" in graph["isolate._spawn"]             # from ._plan import ...
    assert "isolate._plans" in graph["isolate.container"]         # from . import _plans
    assert "isolate.cgroup.v1" in graph["isolate.cgroup"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert any(p.name == "spawn.c" for p in sources()) and any(p.suffix == ".pyi" for p in sources())
