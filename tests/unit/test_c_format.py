"""The C core keeps the style .clang-format writes down (PEP 7, csrc/*.c and *.h, csrc/front/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_csrc_is_formatted_as_clang_format_says() -> None:
    tool = shutil.which("clang-format")
    assert tool is not None, "clang-format is missing: bash .ci/install-deps (.ci/packages.txt)"
    sources = sorted(str(p) for p in (*(ROOT / "csrc").iterdir(), *(ROOT / "csrc" / "front").iterdir())
                     if p.suffix in (".c", ".h"))
    r = subprocess.run([tool, "--dry-run", "--Werror", *sources], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"run clang-format -i csrc/*.[ch]:\n{r.stderr[:4000]}"
