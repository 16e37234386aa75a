"""Builds the ``isolate-oci`` program: the C front end (csrc/front/: front.c, serve.c).

It is linked with the parent's side of the C core (the same sources as
``isolate._native``: spawn.c, clone.c, wire.c, helper.c, host.c, net.c), so
that it clones a container from a plan as the Python library does, and is
installed as the ``isolate-oci`` command itself (setup.py's ``build_scripts``):
no Python starts on a call a warm planner serves.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent

# : The C core's parent side, as csrc/build_ffi.py compiles it into isolate._native.
CORE = ("spawn.c", "clone.c", "wire.c", "helper.c", "host.c", "net.c")
SOURCES = ("front/front.c", "front/serve.c", *CORE)

FLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-pthread", "-fPIE"]
#: Linked statically where the toolchain can (a fifth less time from exec to main: it runs on
#: every call), else as an ordinary PIE.
LINKS = (["-static-pie"], ["-pie"])
# : ISOLATE_WERROR = 1(.ci / run) : every warning is an error.
WERROR = os.environ.get("ISOLATE_WERROR") == "1"


def _cc() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def build(out: Path, extra: list[str] | None = None) -> Path:
    """Compile and link the front end at ``out`` (mode 0755); returns ``out``.

    ``extra``: more compiler flags (setup.py's ``-ffile-prefix-map``).  Raises
    ``RuntimeError`` with the compiler's output when the build fails.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for link in LINKS:
        cmd = _cc() + FLAGS + link + (["-Werror"] if WERROR else []) + (extra or []) + [
            f"-I{HERE}", "-o", str(out), *(str(HERE / s) for s in SOURCES)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            os.chmod(out, 0o755)
            return out
        errors.append(f"{' '.join(link)}: {r.stderr.strip()}")
    raise RuntimeError("cannot build the isolate-oci program:\n" + "\n".join(errors))


if __name__ == "__main__":
    import sys

    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "isolate-oci")))
