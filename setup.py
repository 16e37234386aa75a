"""Builds the two cffi modules, the child program (csrc/build_child.py) and the
``isolate-oci`` program (csrc/build_front.py).

One wheel serves every supported Python: ``isolate._native`` is built on the
limited API of Python 3.10 and the wheel is tagged ``cp310-abi3``; the child
program is a static executable, ``isolate-oci`` a C program installed as a
script (it finds its Python on the ``#!`` line of the ``isolate`` script next
to it), and ``isolate._seccomp_ffi`` pure Python.
"""

import atexit
import gzip
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext
from distutils.command.build_scripts import build_scripts
from setuptools.command.sdist import sdist

sys.path.insert(0, str(Path(__file__).resolve().parent / "csrc"))
import build_child  # noqa: E402
import build_front  # noqa: E402

#: The oldest Python whose stable ABI the extension uses (the ``cp310-abi3`` tag).
LIMITED_API = ("Py_LIMITED_API", "0x030A0000")


class BuildOutsideTree(build):
    """``build`` in a temporary directory, removed at exit: ``pip install .`` leaves no build/.

    An explicit ``--build-base`` still wins (options are parsed after this).
    """

    def initialize_options(self) -> None:
        super().initialize_options()
        self.build_base = tempfile.mkdtemp(prefix="isolate-build-")
        atexit.register(shutil.rmtree, self.build_base, ignore_errors=True)


class BuildExtAndChild(build_ext):
    """``build_ext`` (the cffi modules), then the static child program next to them."""

    def run(self) -> None:
        # Paths in the debug info name neither the scratch directory nor the checkout.
        build_base = self.get_finalized_command("build").build_base
        prefix_maps = [f"-ffile-prefix-map={build_base}=build", f"-ffile-prefix-map={os.getcwd()}=."]
        for ext in self.extensions:
            # cffi builds on the limited API of Python 3.2 unless told which.
            if getattr(ext, "py_limited_api", False) and LIMITED_API not in ext.define_macros:
                ext.define_macros.append(LIMITED_API)
            ext.extra_compile_args = [*ext.extra_compile_args, *prefix_maps]
        super().run()
        where = Path("src") if self.inplace else Path(self.build_lib)
        build_child.build(where / "isolate" / "_isolate_child")


class BuildFront(build_scripts):
    """``build_scripts``: compile the ``isolate-oci`` program (csrc/front/front.c) into the
    scripts directory, which the wheel installs as a command, byte for byte.

    ``scripts`` names its source only so that setuptools runs this command at all.
    """

    def run(self) -> None:
        build_base = self.get_finalized_command("build").build_base
        prefix_maps = [f"-ffile-prefix-map={build_base}=build", f"-ffile-prefix-map={os.getcwd()}=."]
        self.mkpath(self.build_dir)
        build_front.build(Path(self.build_dir) / "isolate-oci", prefix_maps)


#: Every file's time in the sdist when SOURCE_DATE_EPOCH is not set (as hatchling's default).
DEFAULT_EPOCH = 1580601600  # 2020-02-02


class ReproducibleSdist(sdist):
    """``sdist`` whose archive depends only on the files' contents and modes.

    Members in sorted order, every time SOURCE_DATE_EPOCH (else a fixed date),
    owner root, no user or group names, modes 0644/0755, and a gzip header
    with no name or time: an sdist built twice is byte-for-byte the same.
    """

    def make_archive(self, base_name: str, format: str, root_dir: str | None = None,
                     base_dir: str | None = None, owner: str | None = None,
                     group: str | None = None) -> str:
        if format != "gztar" or root_dir is not None or base_dir is None:
            return super().make_archive(base_name, format, root_dir, base_dir, owner, group)
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
        paths = [base_dir]
        for top, dirs, files in os.walk(base_dir):
            paths += [os.path.join(top, name) for name in dirs + files]
        out = base_name + ".tar.gz"
        with open(out, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(paths):
                info = tar.gettarinfo(path)
                info.mtime = epoch
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        return out


setup(cmdclass={"build": BuildOutsideTree, "build_ext": BuildExtAndChild,
                "build_scripts": BuildFront, "sdist": ReproducibleSdist},
      scripts=["csrc/front/front.c"],
      options={"bdist_wheel": {"py_limited_api": "cp310"}},
      cffi_modules=["csrc/build_ffi.py:ffibuilder", "csrc/build_seccomp_ffi.py:ffibuilder"])
