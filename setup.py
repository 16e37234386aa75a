"""Builds the two cffi modules and the child program (csrc/build_child.py)."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, str(Path(__file__).resolve().parent / "csrc"))
import build_child  # noqa: E402


class BuildExtAndChild(build_ext):
    """``build_ext`` (the cffi modules), then the static child program next to them."""

    def run(self) -> None:
        super().run()
        where = Path("src") if self.inplace else Path(self.build_lib)
        build_child.build(where / "isolate" / "_isolate_child")


setup(cmdclass={"build_ext": BuildExtAndChild},
      cffi_modules=["csrc/build_ffi.py:ffibuilder", "csrc/build_seccomp_ffi.py:ffibuilder"])
