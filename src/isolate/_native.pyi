"""Types of ``isolate._native``, the compiled module csrc/build_ffi.py makes (cffi, API mode).

Its ``ffi`` and ``lib`` are typed ``Any``: their types come from the C
declarations in csrc/api.h, and ``_plan.py`` and ``_spawn.py`` give them
types where they call them.  A stub rather than a mypy override, so that any
layout type-checks alike: a checkout, a tree built in place, an installed wheel.
"""

from typing import Any

ffi: Any
lib: Any
