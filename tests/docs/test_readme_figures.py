"""Every figure the README's Benchmarks section quotes is in the docs/benchmarks/ file it cites.

A figure is a number followed by ms, µs or × (or x).  A paragraph or table
that names a ``docs/benchmarks/`` file is checked against that file (or
those files); any other one against the first file the section names.  A
figure is found when the file has a number that rounds to it at the figure's
precision: for a time, a number not followed by × (µs figures may be given
in ms in the file); for a ratio, any number (a table column may leave out
the ×).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BENCH = "docs/benchmarks/"

FIGURE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)\s*(ms|µs|us|×|x)(?![\w])")
CITE = re.compile(r"docs/benchmarks/([\w.-]+\.(?:md|json))")
NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(\s*×)?")


def section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def figures(text: str) -> list[tuple[str, str]]:
    """(number, unit) of every figure in ``text``, outside code blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return [(m.group(1), m.group(2)) for m in FIGURE.finditer(text)]


def found(figure: str, unit: str, files: list[str]) -> bool:
    """Whether one of ``files`` has ``figure`` as it is written (a µs figure may be in ms)."""
    forms = [figure]
    if unit in ("µs", "us"):
        forms.append(f"{float(figure) / 1000:.3f}")
    # The same digits, not part of a longer number; a time is not a ratio (not followed by ×).
    after = r"(?![\d])" if unit in ("×", "x") else r"(?![\d])(?!\s*×)"
    for name in files:
        text = (ROOT / BENCH / name).read_text()
        if any(re.search(r"(?<![\d.])" + re.escape(f) + after, text) for f in forms):
            return True
    return False


def cited_figures() -> list[tuple[str, str, list[str], str]]:
    bench = section(README.read_text(), "Benchmarks")
    default = CITE.findall(bench)
    assert default, "the Benchmarks section cites no docs/benchmarks/ file"
    out = []
    for para in re.split(r"\n\s*\n", bench):
        files = CITE.findall(para) or default[:1]
        for fig, unit in figures(para):
            out.append((fig, unit, files, para.strip().splitlines()[0][:60]))
    return out


def test_cited_files_exist() -> None:
    for name in set(CITE.findall(README.read_text())):
        assert (ROOT / BENCH / name).is_file(), f"README.md cites {BENCH}{name}, which does not exist"


def test_benchmark_figures_are_in_the_results() -> None:
    figs = cited_figures()
    assert len(figs) >= 10, f"only {len(figs)} figures found: the pattern no longer reads the section"
    missing = [f"{fig} {unit} (in '{where}...', looked in {', '.join(files)})"
               for fig, unit, files, where in figs if not found(fig, unit, files)]
    assert not missing, "figures the README quotes but its results do not have:\n" + "\n".join(missing)


def test_a_figure_not_in_the_results_is_caught() -> None:
    assert found("0.66", "×", ["results.md"])
    assert found("20.549", "ms", ["results.md"])
    assert not found("0.6612", "×", ["results.md"])
    assert not found("20.55", "ms", ["results.md"])     # not as the file writes it
    assert not found("30.80", "ms", ["results.md"])     # a ratio there, not a time
    assert not found("123.4", "ms", ["results.md"])
