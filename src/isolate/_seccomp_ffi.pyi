"""Types of ``isolate._seccomp_ffi``, the module csrc/build_seccomp_ffi.py generates (cffi, ABI mode).

The generated ``.py`` imports ``_cffi_backend``, which has no types; this stub
stands in for it wherever the build put it (mypy prefers a ``.pyi``).
"""

from typing import Any

ffi: Any
