"""Builds the child program ``isolate/_isolate_child`` (see csrc/init.c).

A spawn's clone exec's this program from a sealed memfd before any op, so
the ops run in a process image of their own.  It is linked statically, with
no libc on x86_64 and aarch64 (csrc/nolibc.c: start-up costs nothing), and
with glibc's static library elsewhere or when that link fails.  A build that
does not run (the program, run without arguments, must exit 2 with its usage
line) falls back to the glibc build too.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The sources of the child program (the op loop and the ops), without nolibc.c.
SOURCES = ("init.c", "child.c", "ops_mount.c", "ops_proc.c", "ops_root.c", "net.c")

COMMON = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-U_FORTIFY_SOURCE", "-fno-stack-protector",
          "-fno-asynchronous-unwind-tables", "-ffunction-sections", "-fdata-sections",
          "-fno-pie", "-no-pie", "-static", "-Wl,--gc-sections", "-Wl,--build-id=none"]
# No libc: gcc must not turn nolibc.c's byte loops into calls to memset/memcpy.
NOLIBC = ["-DISO_NOLIBC", "-nostdlib", "-fno-tree-loop-distribute-patterns", "-fno-builtin"]
#: ISOLATE_WERROR=1 (.ci/run): every warning is an error, and the first build must work
#: (a warning must not pass unseen as a fallback to the glibc build).
WERROR = os.environ.get("ISOLATE_WERROR") == "1"


def _cc() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def _link(out: Path, nolibc: bool) -> subprocess.CompletedProcess[str]:
    sources = [str(HERE / s) for s in SOURCES] + ([str(HERE / "nolibc.c")] if nolibc else [])
    flags = COMMON + (NOLIBC if nolibc else []) + (["-Werror"] if WERROR else [])
    cmd = _cc() + flags + [f"-I{HERE}", "-o", str(out)] + sources + (["-lgcc"] if nolibc else [])
    return subprocess.run(cmd, capture_output=True, text=True)


def _runs(out: Path) -> bool:
    try:
        r = subprocess.run([str(out)], capture_output=True, timeout=10)
    except OSError:
        return False
    return r.returncode == 2 and r.stderr.startswith(b"isolate-child:")


def build(out: Path) -> Path:
    """Compile and link the child program at ``out`` (made executable); returns ``out``.

    Raises ``RuntimeError`` with the compiler's output when neither build works.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for nolibc in ((True, False) if platform.machine() in ("x86_64", "aarch64") else (False,)):
        r = _link(out, nolibc)
        if r.returncode == 0 and _runs(out):
            os.chmod(out, 0o755)
            return out
        errors.append(f"{'nolibc' if nolibc else 'static glibc'}: {r.stderr.strip() or 'does not run'}")
        if WERROR:
            break
    raise RuntimeError("cannot build the child program isolate/_isolate_child:\n" + "\n".join(errors))


if __name__ == "__main__":
    import sys

    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "_isolate_child")))
